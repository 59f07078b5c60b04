"""Exact file lineage (issue 15) through the real CLI: who read and who wrote each file,
observed with fanotify when the engine runs as root, and never a wrong claim without it
(ambiguous, with the candidates). Every check reads the exported PROV back with ``prov``."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from prov.model import ProvDocument

from tests.conftest import EXAMPLES, ROOT, cli_env
from tests.prov_support import INPUTS, ambiguous, derivations, mechanism, relations

pytestmark = pytest.mark.needs_root  # fanotify filesystem marks need CAP_SYS_ADMIN

OBSERVED = "observed (fanotify)"


def run_workflow(
    tmp_path: Path,
    yaml: str,
    *,
    env: dict[str, str] | None = None,
    inputs: dict[str, str] | None = None,
) -> ProvDocument:
    """Run ``yaml`` with a fresh state and data dir; the run's PROV (JSON) read back."""
    (tmp_path / "wf.yaml").write_text(yaml)
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    for name, text in (inputs or {}).items():
        (data / name).write_text(text)
    base = [sys.executable, "-m", "akoflow"]
    state = ["--state-dir", str(tmp_path / "state")]
    done = subprocess.run(
        [*base, "run", str(tmp_path / "wf.yaml"), *state, "--data-dir", str(data), "-q"],
        capture_output=True,
        text=True,
        env=env or cli_env(),
        timeout=120,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    prov = subprocess.run(
        [*base, "prov", "1", *state], capture_output=True, text=True, env=env or cli_env()
    )
    assert prov.returncode == 0, prov.stderr
    doc = ProvDocument.deserialize(io.StringIO(prov.stdout), format="json")
    assert f"file accesses of run 1: {mechanism(doc)}" in prov.stderr
    return doc


def workflow(*activities: tuple[str, str, list[str]]) -> str:
    lines = ["name: lineage", "spec:", "  activities:"]
    for name, script, deps in activities:
        lines += [f"    - name: {name}", "      run: |"]
        lines += [f"        {line}" for line in script.splitlines()]
        if deps:
            lines.append(f"      dependsOn: [{', '.join(deps)}]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("writer", "idler"),
    [("echo a > a.txt; sleep 2", "sleep 1"), ("echo a > a.txt", "sleep 1")],
    ids=["writer-ends-last", "idler-ends-last"],
)
def test_a_writer_and_an_idler_started_together(tmp_path: Path, writer: str, idler: str) -> None:
    doc = run_workflow(tmp_path, workflow(("writer", writer, []), ("idler", idler, [])))
    used, generated = relations(doc)
    assert mechanism(doc) == OBSERVED
    assert generated == {("writer", "a.txt")}
    assert used == set() and ambiguous(doc) == {}


def test_two_activities_writing_different_files_at_the_same_moment(tmp_path: Path) -> None:
    doc = run_workflow(
        tmp_path,
        workflow(
            ("left", "sleep 0.3\necho l > left.txt\nsleep 0.2", []),
            ("right", "sleep 0.3\necho r > right.txt", []),
        ),
    )
    _, generated = relations(doc)
    assert generated == {("left", "left.txt"), ("right", "right.txt")}


def test_two_activities_writing_the_same_file_make_it_ambiguous(tmp_path: Path) -> None:
    """Both append while both run (each waits for the other's line): neither is its writer."""
    doc = run_workflow(
        tmp_path,
        workflow(
            ("one", "echo 1 >> same.txt\nuntil grep -q 2 same.txt; do sleep 0.01; done", []),
            ("two", "until [ -s same.txt ]; do sleep 0.01; done\necho 2 >> same.txt", []),
        ),
    )
    _, generated = relations(doc)
    assert generated == set()
    assert ambiguous(doc) == {"same.txt": {"one", "two"}}


def test_used_means_read(tmp_path: Path) -> None:
    """`read` reads one of the two files its dependency wrote and one input from before the
    run; `ignore` depends on `make` but reads nothing: it uses nothing."""
    doc = run_workflow(
        tmp_path,
        workflow(
            ("make", "echo 1 > p1.txt\necho 2 > p2.txt", []),
            ("read", "cat p1.txt seed.txt > out.txt", ["make"]),
            ("ignore", "echo quiet", ["make"]),
        ),
        inputs={"seed.txt": "seed\n", "unread.txt": "x\n"},
    )
    used, generated = relations(doc)
    assert used == {("read", "p1.txt"), ("read", "seed.txt")}
    assert not any(path == INPUTS for _, path in used)
    assert generated == {("make", "p1.txt"), ("make", "p2.txt"), ("read", "out.txt")}
    assert derivations(doc) == {("out.txt", "p1.txt"), ("out.txt", "seed.txt")}


def test_a_background_child_writing_after_its_parent_exited(tmp_path: Path) -> None:
    """The subshell's parent `sh` exits at once; the child writes later, while the attempt
    (its `sleep`) still runs, with an unrelated activity running too."""
    doc = run_workflow(
        tmp_path,
        workflow(
            ("spawner", "sh -c '(sleep 0.5; echo b > bg.txt) &'\nsleep 1.5", []),
            ("bystander", "sleep 1", []),
        ),
    )
    _, generated = relations(doc)
    assert generated == {("spawner", "bg.txt")}


def test_the_readme_example_is_attributed_exactly(tmp_path: Path) -> None:
    doc = run_workflow(tmp_path, (EXAMPLES / "hello.yaml").read_text())
    used, generated = relations(doc)
    assert generated == {
        ("make-input", "words.txt"),
        ("count-letters", "letters.txt"),
        ("upper-case", "upper.txt"),
        ("reverse", "reversed.txt"),
        ("report", "report.txt"),
    }
    assert used == {
        ("count-letters", "words.txt"),
        ("upper-case", "words.txt"),
        ("reverse", "words.txt"),
        ("report", "letters.txt"),
        ("report", "upper.txt"),
        ("report", "reversed.txt"),
    }


def test_without_observation_overlapping_writers_are_ambiguous(tmp_path: Path) -> None:
    """AKOFLOW_OBSERVE=off: timing only. a.txt changed while writer and idler both ran: no
    wrong attribution, both are candidates; b.txt, written while only `after` ran, has it as
    its one candidate (timing cannot tell its write from another process's), no generator;
    `after` used what its dependencies may have written."""
    doc = run_workflow(
        tmp_path,
        workflow(
            ("writer", "echo a > a.txt; sleep 1", []),
            ("idler", "sleep 0.5", []),
            ("after", "echo b > b.txt", ["writer", "idler"]),
        ),
        env=cli_env(AKOFLOW_OBSERVE="off"),
    )
    assert mechanism(doc) == "inferred from timing (AKOFLOW_OBSERVE=off)"
    used, generated = relations(doc)
    assert generated == set()
    assert ambiguous(doc) == {"a.txt": {"writer", "idler"}, "b.txt": {"after"}}
    assert used == set()  # a.txt: no dependency alone may have written it


def test_without_privilege_lineage_is_inferred_and_never_wrong() -> None:
    """The engine as uid 65534 (no CAP_SYS_ADMIN): the run says why it was not observed,
    and the overlapping writer and idler are both candidates of a.txt."""
    setpriv = shutil.which("setpriv")
    assert setpriv is not None, "setpriv (util-linux) is needed"
    root = Path(tempfile.mkdtemp(prefix="akoflow-lineage-"))  # where nobody can write
    try:
        os.chmod(root, 0o777)
        (root / "wf.yaml").write_text(
            workflow(("writer", "echo a > a.txt; sleep 1", []), ("idler", "sleep 0.5", []))
        )
        env = cli_env(HOME=str(root), PYTHONPATH=str(ROOT / "src"))
        nobody = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
        base = [*nobody, sys.executable, "-m", "akoflow"]
        state = ["--state-dir", str(root / "state")]
        done = subprocess.run(
            [*base, "run", str(root / "wf.yaml"), *state, "--data-dir", str(root / "data"), "-q"],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            cwd=root,
        )
        assert done.returncode == 0, done.stderr
        prov = subprocess.run(
            [*base, "prov", "1", *state], capture_output=True, text=True, env=env, cwd=root
        )
        assert prov.returncode == 0, prov.stderr
    finally:
        shutil.rmtree(root)
    doc = ProvDocument.deserialize(io.StringIO(prov.stdout), format="json")
    assert mechanism(doc).startswith("inferred from timing (")
    assert "CAP_SYS_ADMIN" in mechanism(doc) and "CAP_SYS_ADMIN" in prov.stderr
    _, generated = relations(doc)
    assert generated == set()
    assert ambiguous(doc) == {"a.txt": {"writer", "idler"}}
