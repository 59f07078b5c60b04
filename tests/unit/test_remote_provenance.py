"""Remote provenance: the listing a job takes of its working directory, and the attribution of
remote file versions to attempts (akoflow.provenance.remote)."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from akoflow.provenance.remote import (
    LIST_FUNCTION,
    Claim,
    RemoteFiles,
    attribute,
    parse_listing,
    remote_files,
)
from akoflow.provenance.snapshot import FileState

BUSYBOX = shutil.which("busybox")


def _tree(root: Path) -> None:
    (root / ".akoflow" / "attempt").mkdir(parents=True)
    (root / ".akoflow" / "attempt" / "exit").write_text("0\n")
    (root / "sub dir").mkdir()
    (root / "sub dir" / "b c.txt").write_text("bb")
    (root / "x").write_text("a")
    (root / "tab\there").write_text("ttt")
    (root / "akoflow_finished_1_2.txt").write_text("AKOFLOW_JOB_FINISHED\n")
    os.utime(root / "x", (1_700_000_000.25, 1_700_000_000.25))


def _list(root: Path, path_env: str | None = None) -> str:
    env = dict(os.environ)
    if path_env is not None:
        env["PATH"] = path_env
    sh = "sh" if path_env is None else str(Path(path_env) / "sh")
    result = subprocess.run(
        [sh, "-c", LIST_FUNCTION + "\nakf_list_files"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout


def test_listing_with_gnu_find(tmp_path: Path) -> None:
    _tree(tmp_path)
    parsed = parse_listing(_list(tmp_path))
    assert parsed is not None
    taken, files = parsed
    assert taken is not None and abs(taken - time.time()) < 5 and taken != int(taken)  # ns
    assert set(files) == {"x", "sub dir/b c.txt", "tab\there"}  # control dir, sentinel left out
    assert files["x"] == FileState(1, 1_700_000_000.25)
    assert files["sub dir/b c.txt"].size == 2


def test_listing_with_busybox_only(tmp_path: Path) -> None:
    """A minimal image: BusyBox find has no -printf, so the stat fallback runs."""
    assert BUSYBOX is not None, "busybox (Debian busybox-static) is required by the test suite"
    tools = tmp_path / "bin"
    tools.mkdir()
    for applet in ("sh", "find", "stat", "date", "printf"):
        (tools / applet).symlink_to(BUSYBOX)
    work = tmp_path / "work"
    work.mkdir()
    _tree(work)
    parsed = parse_listing(_list(work, str(tools)))
    assert parsed is not None
    taken, files = parsed
    assert taken is not None and abs(taken - time.time()) < 5  # no %N: whole seconds
    assert set(files) == {"x", "sub dir/b c.txt", "tab\there"}
    assert files["x"] == FileState(1, 1_700_000_000.0)  # whole seconds from BusyBox stat


ODD_NAMES = [
    b"bad\xffname.txt",
    b"x\n5\t1.0\tforged",  # a newline and what would read as a second entry
    b"trailing\n",
    "\u202eevil.txt".encode(),
    b"\x01\x7f\x80",
    b"q\"u'o te",
    b"%41",
    b"\xff" * 255,
    b"odd dir\xfe\n/inner\tfile",
]


def _odd_tree(root: Path) -> None:
    base = os.fsencode(root)
    os.mkdir(os.path.join(base, b"odd dir\xfe\n"))
    for raw in ODD_NAMES:
        with open(os.path.join(base, raw), "wb") as f:
            f.write(raw)
    (root / "plain.txt").write_text("p")


@pytest.mark.parametrize("tools", ["gnu", "busybox"])
def test_listing_keeps_every_name_and_forges_no_entry(tmp_path: Path, tools: str) -> None:
    """Any byte but '/' and NUL in a name: the listing carries it exactly, through a channel
    that turns bytes that are not UTF-8 into U+FFFD (as the runtimes read it), and a newline
    in a name cannot add an entry."""
    work = tmp_path / "work"
    work.mkdir()
    _odd_tree(work)
    path_env = None
    if tools == "busybox":
        assert BUSYBOX is not None
        path_env = str(tmp_path / "bin")
        os.mkdir(path_env)
        for applet in ("sh", "find", "stat", "date", "printf", "od", "awk"):
            os.symlink(BUSYBOX, os.path.join(path_env, applet))
    text = _list(work, path_env)
    assert text.isascii()  # whatever the names, the listing itself is plain ASCII
    parsed = parse_listing(text.encode().decode("utf-8", errors="replace"))
    assert parsed is not None
    files = parsed[1]
    assert {os.fsencode(name) for name in files} == {*ODD_NAMES, b"plain.txt"}
    for raw in ODD_NAMES:
        assert files[os.fsdecode(raw)].size == len(raw)


def test_parse_rejects_what_is_not_a_listing() -> None:
    assert parse_listing("") is None
    assert parse_listing("sh: find: not found\n") is None
    assert remote_files("hpc:/x", "# akoflow-files 1 5\n", None) is None
    taken, files = parse_listing("# akoflow-files 1 12\n3\t4.5\ta\nbroken line\nx\t1\tb\n") or (
        None,
        {},
    )
    assert taken == 12.0
    assert files == {"a": FileState(3, 4.5)}
    # Hex entries: malformed ones are left out, bytes come back exactly.
    text = "# akoflow-files 1 1\n1\t2\t/zz\n1\t2\t/\n1\t2\t/2f61\n1\t2\t/61ff0a62\n"
    assert parse_listing(text) == (1.0, {os.fsdecode(b"a\xff\nb"): FileState(1, 2.0)})
    assert parse_listing(text.encode()) == parse_listing(text)


def _files(before: dict[str, float], after: dict[str, float], end: float) -> RemoteFiles:
    return RemoteFiles(
        "hpc:/scratch",
        {p: FileState(1, m) for p, m in before.items()},
        {p: FileState(1, m) for p, m in after.items()},
        end - 10,
        end,
    )


def test_attribute_used_and_generated() -> None:
    claims = {("hpc:/scratch", "input"): Claim(5.0, 1, 1, "prepare", 4.0)}
    claims[("hpc:/scratch", "other")] = Claim(5.0, 2, 1, "sibling", 4.0)
    files = _files(
        {"input": 4.0, "other": 4.0, "raw": 1.0}, {"input": 4.0, "raw": 1.0, "out": 9.0}, 10
    )
    found = attribute(files, claims, Claim(10.0, 3, 1, "step", 0.0), {"prepare"})
    # Its dependency's output; not the sibling's, nor what was there before the run (the
    # engine records that once, as the run's inputs).
    assert set(found.used) == {"input"}
    assert set(found.generated) == {"out"}
    assert found.retracted == []


def test_a_version_goes_to_the_attempt_that_ended_soonest_after_it() -> None:
    """Two concurrent attempts both see out.txt change; whoever the engine hears of first,
    the one whose run ended first after the write keeps it."""
    early = Claim(20.0, 1, 1, "early", 0.0)
    late = Claim(30.0, 2, 1, "late", 0.0)
    for_early = _files({}, {"out.txt": 15.0}, 20)
    for_late = _files({}, {"out.txt": 15.0}, 30)

    # The engine hears of the early end first: the late one does not take it.
    found = attribute(for_early, {}, early, set())
    claims = {("hpc:/scratch", "out.txt"): Claim(20.0, 1, 1, "early", 15.0)}
    assert set(found.generated) == {"out.txt"}
    assert attribute(for_late, claims, late, set()).generated == {}

    # The other order: the early one takes it back from the late one.
    claims = {("hpc:/scratch", "out.txt"): Claim(30.0, 2, 1, "late", 15.0)}
    found = attribute(for_early, claims, early, set())
    assert set(found.generated) == {"out.txt"}
    assert found.retracted == [("out.txt", claims[("hpc:/scratch", "out.txt")])]


def test_a_later_rewrite_is_a_new_version() -> None:
    claims = {("hpc:/scratch", "out.txt"): Claim(20.0, 1, 1, "first", 15.0)}
    found = attribute(
        _files({"out.txt": 15.0}, {"out.txt": 25.0}, 30),
        claims,
        Claim(30.0, 2, 1, "second", 0.0),
        set(),
    )
    assert set(found.generated) == {"out.txt"} and found.retracted == []


def test_claims_read_back_after_a_restart_are_kept() -> None:
    claims = {("hpc:/scratch", "out.txt"): Claim(-math.inf, 1, 1, "first", 15.0)}
    found = attribute(_files({}, {"out.txt": 15.0}, 30), claims, Claim(30.0, 2, 1, "b", 0.0), set())
    assert found.generated == {}


@pytest.mark.parametrize("text", [None, "garbage"])
def test_no_listing_no_remote_files(text: str | None) -> None:
    assert remote_files("k8s:pvc/x", text, "# akoflow-files 1 3\n") is None
