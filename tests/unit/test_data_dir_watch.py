"""The inotify watch of a data dir (akoflow.provenance.watch) and the incremental snapshot
update it drives must always agree with a full scan, whatever happens in the directory."""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import pytest

from akoflow.provenance.snapshot import Snapshot, changes, scan, update
from akoflow.provenance.watch import (
    NETWORK_FILE_SYSTEMS,
    DirWatch,
    WatchLimit,
    file_system_type,
)


def _look(watch: DirWatch, root: Path, snapshot: Snapshot, exclude: Path | None = None) -> None:
    """One engine wake-up: update in place from the watch, and check against a full scan."""
    before = dict(snapshot)
    dirty = watch.dirty()
    assert dirty is not None
    change = update(snapshot, root, dirty.files, dirty.trees, exclude)
    full = scan(root, before, exclude)
    assert snapshot == full
    expected = changes(before, full)
    assert (change.created, change.modified, change.deleted) == (
        expected.created,
        expected.modified,
        expected.deleted,
    )


def test_every_kind_of_change_is_seen(tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "keep").mkdir(parents=True)
    (root / "keep" / "old.txt").write_text("old")
    outside = tmp_path / "outside"
    (outside / "deep").mkdir(parents=True)
    (outside / "deep" / "moved-in.txt").write_text("m")
    watch = DirWatch(root)
    snapshot = scan(root)
    try:
        (root / "new.txt").write_text("n")  # create
        _look(watch, root, snapshot)
        with open(root / "keep" / "old.txt", "a") as f:  # append in place
            f.write("er")
        _look(watch, root, snapshot)
        os.utime(root / "new.txt", (1_600_000_000, 1_600_000_000))  # touch
        _look(watch, root, snapshot)
        # A new directory whose files appear before the watch can be added to it.
        (root / "a" / "b" / "c").mkdir(parents=True)
        (root / "a" / "b" / "c" / "x.bin").write_bytes(b"x" * 10)
        _look(watch, root, snapshot)
        (root / "a" / "b" / "c" / "y.bin").write_bytes(b"y")  # inside it, now watched
        _look(watch, root, snapshot)
        shutil.move(str(outside / "deep"), str(root / "deep"))  # a tree moved in
        _look(watch, root, snapshot)
        os.rename(root / "new.txt", root / "deep" / "renamed.txt")  # a file renamed
        _look(watch, root, snapshot)
        shutil.move(str(root / "a"), str(tmp_path / "a-out"))  # a tree moved out
        _look(watch, root, snapshot)
        (tmp_path / "a-out" / "b" / "late.txt").write_text("outside now")
        _look(watch, root, snapshot)
        shutil.rmtree(root / "keep")  # a tree deleted
        _look(watch, root, snapshot)
        (root / "link").symlink_to(root / "deep")  # symlinks are not files
        _look(watch, root, snapshot)
        assert set(snapshot) == {"deep/moved-in.txt", "deep/renamed.txt"}
    finally:
        watch.close()


def test_random_operations_agree_with_full_scans(tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    rng = random.Random(7)
    watch = DirWatch(root)
    snapshot = scan(root)
    try:
        for step in range(300):
            dirs = [root] + [p for p in root.rglob("*") if p.is_dir()]
            files = [p for p in root.rglob("*") if p.is_file()]
            op = rng.choice(["write", "write", "append", "mkdir", "delete", "rename", "rmdir"])
            where = rng.choice(dirs)
            if op == "write":
                (where / f"f{step}").write_text("x" * rng.randint(0, 50))
            elif op == "append" and files:
                with open(rng.choice(files), "a") as f:
                    f.write("more")
            elif op == "mkdir":
                (where / f"d{step}").mkdir()
                (where / f"d{step}" / "inside").write_text("i")
            elif op == "delete" and files:
                rng.choice(files).unlink()
            elif op == "rename" and files:
                os.rename(rng.choice(files), where / f"r{step}")
            elif op == "rmdir" and len(dirs) > 1:
                shutil.rmtree(rng.choice(dirs[1:]))
            if rng.random() < 0.4:  # the engine does not look after every change
                _look(watch, root, snapshot)
        _look(watch, root, snapshot)
    finally:
        watch.close()


def test_the_state_dir_inside_the_data_dir_is_left_out(tmp_path: Path) -> None:
    root = tmp_path / "data"
    state = root / ".akoflow-state"
    state.mkdir(parents=True)
    watch = DirWatch(root, state)
    snapshot = scan(root, exclude=state)
    try:
        (state / "akoflow.db").write_text("db")
        (root / "result.txt").write_text("r")
        _look(watch, root, snapshot, exclude=state)
        assert set(snapshot) == {"result.txt"}
    finally:
        watch.close()


def test_copies_being_made_are_no_files_of_the_run(tmp_path: Path) -> None:
    """The data plane writes a fetched file under a temporary name and renames it into place
    when it is complete: that name is never a version to attribute (it was, seen mid-copy)."""
    root = tmp_path / "data"
    root.mkdir()
    watch = DirWatch(root, tmp_path / "state")
    snapshot = scan(root)
    try:
        part = root / ".result.txt.akoflow-part"
        part.write_bytes(b"half")
        (root / b"\xff.akoflow-part".decode("utf-8", "surrogateescape")).write_bytes(b"x")
        assert scan(root) == {}
        _look(watch, root, snapshot)
        assert snapshot == {}
        part.rename(root / "result.txt")
        _look(watch, root, snapshot)
        assert set(snapshot) == {"result.txt"}
    finally:
        watch.close()


def test_lost_events_ask_for_a_full_scan(tmp_path: Path) -> None:
    """More changes than the kernel's event queue holds: the watch says so (None) instead of
    a partial answer, and keeps working afterwards."""
    root = tmp_path / "data"
    root.mkdir()
    limit = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    watch = DirWatch(root)
    try:
        for i in range(limit // 2 + 10):  # CREATE + CLOSE_WRITE each (distinct: not merged)
            os.close(os.open(root / f"f{i}", os.O_CREAT | os.O_WRONLY))
        assert watch.dirty() is None
        (root / "after.txt").write_text("a")
        dirty = watch.dirty()
        assert dirty is not None and dirty.files == {"after.txt"}
    finally:
        watch.close()


def test_a_missing_data_dir_cannot_be_watched(tmp_path: Path) -> None:
    with pytest.raises(WatchLimit):
        DirWatch(tmp_path / "nowhere")


def test_a_data_dir_inside_the_state_dir_is_watched(tmp_path: Path) -> None:
    """The default layout: runs (and their data dirs) live under the state dir."""
    state = tmp_path / "state"
    root = state / "runs" / "1-wf" / "data"
    root.mkdir(parents=True)
    watch = DirWatch(root, state)
    snapshot = scan(root, exclude=state)
    try:
        (root / "out.txt").write_text("o")
        _look(watch, root, snapshot, exclude=state)
        assert set(snapshot) == {"out.txt"}
    finally:
        watch.close()


def test_file_systems_other_machines_write_to_are_not_watched(tmp_path: Path) -> None:
    """inotify sees only this machine's writes: on a network file system the engine keeps
    full scans. (Checked against the real mount table, with tmpfs standing in for NFS.)"""
    assert file_system_type(Path("/proc/self")) == "proc"
    shm = Path("/dev/shm") / f"akoflow-watch-{os.getpid()}"
    shm.mkdir()
    try:
        assert file_system_type(shm) == "tmpfs"
        with pytest.raises(WatchLimit, match="tmpfs"):
            DirWatch(shm, unwatchable=frozenset({"tmpfs"}))
        DirWatch(shm).close()  # tmpfs itself is local: watched
        assert "nfs" in NETWORK_FILE_SYSTEMS and "lustre" in NETWORK_FILE_SYSTEMS
    finally:
        shm.rmdir()
