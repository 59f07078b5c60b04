"""What a data dir may hold besides plain files, and names that are not UTF-8: the snapshot and
the inotify watch (akoflow.provenance.snapshot, .watch) never block, never raise, and lose no
name. A FIFO is never opened (its open would wait for a writer forever); a directory that
cannot be read keeps the files last seen there, with a warning, until it can be read again."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

from akoflow.provenance import snapshot as snapshot_module
from akoflow.provenance.snapshot import changes, scan, update
from akoflow.provenance.watch import DirWatch

ROOT = Path(__file__).resolve().parents[2]


def _bounded(fn, *args):  # type: ignore[no-untyped-def]
    """``fn(*args)`` in a thread; a call that blocks (a FIFO opened for reading) fails the test
    instead of hanging the suite."""
    result: list[object] = []
    worker = threading.Thread(target=lambda: result.append(fn(*args)), daemon=True)
    worker.start()
    worker.join(timeout=30)
    assert not worker.is_alive(), f"{fn.__name__} blocked"
    return result[0]


def test_special_files_are_not_file_versions_and_never_opened(tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    (root / "plain.txt").write_text("p")
    os.mkfifo(root / "fifo")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(root / "sock"))
        (root / "loop").symlink_to("loop")  # a symlink loop
        (root / "dangling").symlink_to("nowhere")
        (root / "to-plain").symlink_to("plain.txt")
        (root / "dir-loop").symlink_to(".")
        snap = _bounded(scan, root)
        assert set(snap) == {"plain.txt"}
        # Names an inotify watch would report: looked at one by one, never opened.
        names = ["fifo", "sock", "loop", "dangling", "to-plain", "dir-loop", "gone"]
        change = _bounded(update, snap, root, names)
        assert (change.created, change.modified, change.deleted) == ({}, {}, {})


def test_a_fifo_put_in_place_of_a_file_after_its_stat_is_not_opened(tmp_path: Path) -> None:
    """The race: a file is stat-ed as regular, then replaced by a FIFO before its checksum
    is read. The checksum reader opens without blocking and checks what it opened."""
    path = tmp_path / "swapped"
    os.mkfifo(path)
    assert _bounded(snapshot_module._sha256, str(path)) is None
    (tmp_path / "link").symlink_to(path)
    assert _bounded(snapshot_module._sha256, str(tmp_path / "link")) is None
    (tmp_path / "real").write_bytes(b"abc")
    assert snapshot_module._sha256(str(tmp_path / "real")) == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )


def test_names_that_are_not_utf8_are_kept_exactly(tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    base = os.fsencode(root)
    watch = DirWatch(root)
    try:
        snap = scan(root)
        os.mkdir(os.path.join(base, b"d\xfe\n"))
        for raw in (b"bad\xffname.txt", b"new\nline", b"\xed\xa0\x80", b"d\xfe\n/in\x01side"):
            with open(os.path.join(base, raw), "wb") as f:
                f.write(raw)
        dirty = watch.dirty()
        assert dirty is not None
        before = dict(snap)
        change = update(snap, root, dirty.files, dirty.trees)
        expected = {
            os.fsdecode(raw)
            for raw in (b"bad\xffname.txt", b"new\nline", b"\xed\xa0\x80", b"d\xfe\n/in\x01side")
        }
        assert set(change.created) == expected == set(snap)
        assert snap == scan(root, before)
        assert {os.fsencode(name) for name in snap} == {
            b"bad\xffname.txt",
            b"new\nline",
            b"\xed\xa0\x80",
            b"d\xfe\n/in\x01side",
        }
    finally:
        watch.close()


# ------------------------------------------------------------------- unreadable directories


def unreadable_scenario(work: str) -> dict[str, object]:
    """Run without the power to read any directory (see the test): returns what was seen."""
    import logging

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    root = Path(work) / "data"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.txt").write_text("a")
    (root / "late").mkdir()
    (root / "late" / "b.txt").write_text("b")
    os.chmod(root / "late", 0)  # unreadable before the watch starts
    seen: dict[str, object] = {}
    watch = DirWatch(root)
    try:
        snap = scan(root)
        seen["first"] = sorted(snap)
        os.chmod(root / "sub", 0)  # unreadable mid-run
        (root / "top.txt").write_text("t")
        dirty = watch.dirty()
        assert dirty is not None
        change = update(snap, root, dirty.files, dirty.trees)
        seen["created"] = sorted(change.created)
        seen["deleted"] = sorted(change.deleted)
        seen["kept"] = sorted(snap)
        seen["full scan"] = sorted(scan(root, snap))
        os.chmod(root / "sub", 0o755)
        os.chmod(root / "late", 0o755)  # readable again: watched and scanned from now on
        before = dict(snap)
        dirty = watch.dirty()
        assert dirty is not None
        update(snap, root, dirty.files, dirty.trees)
        (root / "late" / "c.txt").write_text("c")  # only a watch on "late" sees this
        (root / "sub" / "a.txt").write_text("aa")
        dirty = watch.dirty()
        assert dirty is not None
        change = update(snap, root, dirty.files, dirty.trees)
        full = changes(before, scan(root, before))
        seen["after"] = sorted(snap)
        seen["agrees"] = sorted(snap) == sorted(scan(root, before))
        seen["created again"] = sorted(change.created)
        seen["modified again"] = sorted(change.modified)
        seen["full modified"] = sorted(full.modified)
    finally:
        watch.close()
    return seen


def test_an_unreadable_directory_keeps_what_was_seen_with_a_warning(tmp_path: Path) -> None:
    argv = [sys.executable, "-c", _CHILD, str(tmp_path)]
    if os.geteuid() == 0:  # root reads any directory: run without that power
        setpriv = shutil.which("setpriv")
        assert setpriv is not None, "setpriv (util-linux) is required by the test suite"
        drop = "-dac_override,-dac_read_search"
        argv = [setpriv, f"--inh-caps={drop}", f"--bounding-set={drop}", *argv]
    try:
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60)
    finally:
        for d in (tmp_path / "data" / "sub", tmp_path / "data" / "late"):
            if d.exists():
                d.chmod(0o755)  # so pytest can clean up
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["first"] == ["sub/a.txt"]  # "late" cannot be read yet
    assert seen["created"] == ["top.txt"]
    assert seen["deleted"] == []  # unknown is not deleted
    assert seen["kept"] == seen["full scan"] == ["sub/a.txt", "top.txt"]
    assert "cannot read directory" in done.stderr and "sub" in done.stderr
    assert "cannot watch" in done.stderr and "late" in done.stderr
    assert seen["after"] == ["late/b.txt", "late/c.txt", "sub/a.txt", "top.txt"]
    assert seen["agrees"] is True
    assert "late/c.txt" in seen["created again"]
    assert seen["modified again"] == ["sub/a.txt"] == seen["full modified"]


_CHILD = """
import json, sys
from tests.unit.test_snapshot_special_files import unreadable_scenario
print(json.dumps(unreadable_scenario(sys.argv[1])))
"""
