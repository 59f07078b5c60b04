"""Declared data: ``inputs:``/``outputs:`` in the spec (validation with path and line, globs
that would leave the data dir refused), the glob rules, and the pure checks the engine calls
(declared outputs missing on the engine's host or in a remote job's listing)."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import pytest

from akoflow.provenance.declared import (
    checked_outputs,
    inputs_problem,
    matches,
    missing_on_host,
)
from akoflow.provenance.remote import RemoteFiles, Writer, attribute
from akoflow.provenance.snapshot import FileState
from akoflow.runtimes.base import Outcome
from akoflow.spec import Activity, WorkflowValidationError, json_schema, load_workflow


def spec(activity: str) -> str:
    body = textwrap.indent(textwrap.dedent(activity).strip("\n"), "      ")
    return f"name: d\nspec:\n  activities:\n    - name: a\n      run: echo\n{body}\n"


def test_declared_paths_are_loaded_in_order_without_repeats() -> None:
    workflow = load_workflow(
        spec("""
        inputs: raw.csv
        outputs: [out/*.txt, summary.json, out/*.txt]
        """)
    )
    (activity,) = workflow.activities
    assert activity.inputs == ("raw.csv",)
    assert activity.outputs == ("out/*.txt", "summary.json")
    assert load_workflow(spec("retries: 0")).activities[0].outputs == ()


@pytest.mark.parametrize(
    ("written", "message"),
    [
        ("../escape.txt", "'..' would leave the data dir"),
        ("out/../../x", "'..' would leave the data dir"),
        ('"**/../x"', "'..' would leave the data dir"),
        ("/etc/passwd", "an absolute path would leave it"),
        ("a//b", "write it normalised, as 'a/b'"),
        ("./c", "write it normalised, as 'c'"),
        ("''", "must not be empty"),
    ],
)
def test_paths_that_escape_the_data_dir_are_refused_with_path_and_line(
    written: str, message: str
) -> None:
    text = spec(f"outputs:\n  - ok.txt\n  - {written}\ninputs: [fine]")
    with pytest.raises(WorkflowValidationError) as info:
        load_workflow(text)
    (error,) = info.value.errors
    assert error.path == "spec.activities[0].outputs[1]"
    assert error.line == 8
    assert message in error.message


def test_the_json_schema_documents_them() -> None:
    activity = json_schema()["$defs"]["ActivitySpec"]["properties"]
    assert "relative to the data dir" in activity["inputs"]["description"]
    assert "missing paths" in activity["outputs"]["description"]


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("*.txt", "a.txt", True),
        ("*.txt", "dir/a.txt", False),  # '*' stays within one name
        ("**/*.txt", "a.txt", True),
        ("**/*.txt", "d/e/a.txt", True),
        ("out/**", "out/a/b", True),
        ("out/?.csv", "out/1.csv", True),
        ("out/?.csv", "out/12.csv", False),
        ("[ab].c", "b.c", True),
        ("[!ab].c", "a.c", False),
        ("*", ".hidden", True),  # dots are not special
        ("a[", "a[", True),  # an unclosed bracket is literal
        ("x.txt", "xxtxt", False),  # '.' is literal
    ],
)
def test_glob_rules(pattern: str, path: str, expected: bool) -> None:
    assert matches(pattern, path) is expected


def test_missing_on_host_looks_for_regular_files(tmp_path: Path) -> None:
    (tmp_path / "plots" / "2024").mkdir(parents=True)
    (tmp_path / "plots" / "2024" / "a.png").write_bytes(b"1")
    (tmp_path / "dir.txt").mkdir()  # a directory is not a declared file
    (tmp_path / "caf\xe9.txt".encode("latin-1").decode("utf-8", "surrogateescape")).touch()
    declared = ["plots/**/*.png", "dir.txt", "*.csv", "caf?.txt"]
    assert missing_on_host(declared, tmp_path) == ["dir.txt", "*.csv"]


def activity(outputs: tuple[str, ...] = (), inputs: tuple[str, ...] = ()) -> Activity:
    workflow = load_workflow(spec("retries: 0"))
    return dataclasses.replace(workflow.activities[0], outputs=outputs, inputs=inputs)


def test_checked_outputs_on_the_host(tmp_path: Path) -> None:
    (tmp_path / "made.txt").write_text("x")
    act = activity(outputs=("made.txt", "lost.txt"))
    ok = Outcome(True, 0)
    failed = checked_outputs(act, ok, tmp_path, remote=False)
    assert not failed.succeeded and failed.exit_code == 0
    assert failed.reason == "declared outputs missing: lost.txt"
    # A failed attempt keeps its own reason; nothing declared: nothing checked.
    bad = Outcome(False, 3, "exit code 3")
    assert checked_outputs(act, bad, tmp_path, remote=False) is bad
    assert checked_outputs(activity(), ok, tmp_path, remote=False) is ok
    assert inputs_problem(activity(inputs=("made.txt",)), tmp_path) is None
    assert inputs_problem(activity(inputs=("in/*",)), tmp_path) == (
        "declared inputs missing in the data dir: in/*"
    )


def test_a_missing_path_is_shown_on_one_line_in_the_reason(tmp_path: Path) -> None:
    """A declared path with a newline or an escape (legal names) is shown escaped: the
    reason is one line in `akoflow run`'s line per ended activity (a newline there forged a
    line like another activity's end) and in status tables."""
    act = activity(outputs=("a\nfailed fake (1ms)", "\x1b[31mred"), inputs=("in\n",))
    reason = checked_outputs(act, Outcome(True, 0), tmp_path, remote=False).reason
    assert reason == "declared outputs missing: a\\x0afailed fake (1ms), \\x1b[31mred"
    assert inputs_problem(act, tmp_path) == "declared inputs missing in the data dir: in\\x0a"


def test_checked_outputs_remote_uses_the_jobs_listings(tmp_path: Path) -> None:
    f = FileState(1, 1.0)
    files = RemoteFiles("hpc:/scratch", {"in.csv": f}, {"in.csv": f, "out/r.txt": f})
    act = activity(outputs=("out/*.txt",), inputs=("in.csv",))
    ok = Outcome(True, 0, files=files)
    # The engine's data dir is empty: only the remote listing counts.
    assert checked_outputs(act, ok, tmp_path, remote=True) is ok
    act = activity(outputs=("out/*.txt", "log.txt"), inputs=("raw.csv",))
    reason = checked_outputs(act, ok, tmp_path, remote=True).reason
    assert reason == (
        "declared inputs missing when it started: raw.csv; declared outputs missing: log.txt"
    )
    no_listing = checked_outputs(act, Outcome(True, 0), tmp_path, remote=True)
    assert not no_listing.succeeded
    assert "cannot be checked" in (no_listing.reason or "")


def test_a_remote_declared_output_is_the_one_declarers() -> None:
    """Two remote attempts that ran at the same time both list a new version of ``out.txt``:
    ambiguous between them, unless exactly one of them declared it (in either order)."""
    loc = "hpc:/scratch"
    v = FileState(5, 100.0)
    listing = RemoteFiles(loc, {}, {"out.txt": v})
    plain, other = Writer(1, 1, "plain"), Writer(2, 1, "other")
    first = attribute(listing, {}, plain, set()).claims["out.txt"][1]
    alone = attribute(listing, {(loc, "out.txt"): first}, other, set()).claims["out.txt"][1]
    assert alone.generator is None
    declared = attribute(listing, {(loc, "out.txt"): first}, other, set(), ("*.txt",))
    assert declared.claims["out.txt"][1].generator == Writer(2, 1, "other", declared=True)
    # The other order: the declarer listed first keeps it.
    held = attribute(listing, {}, other, set(), ("out.txt",)).claims["out.txt"][1]
    later = attribute(listing, {(loc, "out.txt"): held}, plain, set()).claims["out.txt"][1]
    assert later.generator == Writer(2, 1, "other", declared=True)
    # Two declarers: ambiguous, and the reason says both declared it.
    third = attribute(listing, {(loc, "out.txt"): later}, Writer(3, 1, "x"), set(), ("out.*",))
    claim = third.claims["out.txt"][1]
    assert claim.generator is None
    assert claim.reason.endswith("declared as an output by other, x")
