"""Quieted directories: the kernel drops the events of directories outside every data dir
that the system and the engine own (programs, libraries, locales, the state dir), so that a
`bash -c true` costs a few events instead of ~50; what happens in data dirs is still seen,
also when a quieted directory becomes part of a data dir."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from akoflow.provenance.observe import Access, Observer

pytestmark = pytest.mark.needs_root  # filesystem marks and process events


@pytest.fixture
def observer(tmp_path: Path) -> Iterator[Observer]:
    obs = Observer()
    obs.quiet(tmp_path / "quiet")
    obs.start()
    try:
        yield obs
    finally:
        obs.close()


def ignored_inodes() -> set[int]:
    """Inodes on which this process's fanotify groups hold an ignore mark (the kernel's own
    account, /proc/self/fdinfo: ``fanotify ino:<hex> ... ignored_mask:<hex>``)."""
    inodes: set[int] = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") != "anon_inode:[fanotify]":
                continue
            with open(f"/proc/self/fdinfo/{fd}") as f:
                lines = f.read().splitlines()
        except OSError:
            continue
        for line in lines:
            fields = dict(f.split(":", 1) for f in line.split()[1:] if ":" in f)
            if line.startswith("fanotify ino:") and int(fields["ignored_mask"], 16):
                inodes.add(int(fields["ino"], 16))
    return inodes


def run(script: str, cwd: Path, observer: Observer, key: str) -> list[Access]:
    proc = subprocess.Popen(["bash", "-c", script], cwd=cwd)
    observer.register(key, pid=proc.pid)
    assert proc.wait(timeout=30) == 0
    return observer.take(key)


def test_reads_in_system_directories_are_dropped_by_the_kernel(
    observer: Observer, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "x.txt").write_text("x\n")
    observer.watch(data)
    first = run("cat x.txt /etc/hostname > /dev/null", data, observer, "first")
    assert {a.path for a in first if a.kind == "read"} == {b"x.txt"}
    assert b"/etc" in observer.quieted

    assert os.stat("/etc").st_ino in ignored_inodes()  # the kernel holds the ignore mark
    run("for i in $(seq 20); do cat /etc/hostname; done > /dev/null", data, observer, "quiet")

    again = run("cat x.txt /etc/hostname > /dev/null; echo y > y.txt", data, observer, "again")
    assert {(a.kind, a.path) for a in again if a.kind in ("read", "write")} == {
        ("read", b"x.txt"),
        ("write", b"y.txt"),
    }


def test_a_quieted_directory_moved_into_the_data_dir_is_heard_again(
    observer: Observer, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    stage = tmp_path / "quiet" / "stage"
    stage.mkdir(parents=True)
    observer.watch(data)
    run("echo a > a.txt", stage, observer, "outside")
    assert os.fsencode(stage) in observer.quieted
    assert stage.stat().st_ino in ignored_inodes()
    gate_r, gate_w = os.pipe()
    try:
        proc = subprocess.Popen(
            ["bash", "-c", f'mv "$STAGE" stage && read _ <&{gate_r}; echo b > stage/b.txt'],
            cwd=data,
            env={**os.environ, "STAGE": str(stage)},
            pass_fds=(gate_r,),
        )
        observer.register("mover", pid=proc.pid)
        while not (data / "stage").exists():  # bounded by the process: it only moves
            assert proc.poll() is None
        moved = observer.take("mover")  # reads the rename: the quieted marks are removed
        os.close(gate_w)
        gate_w = -1
        assert proc.wait(timeout=30) == 0
    finally:
        os.close(gate_r)
        if gate_w >= 0:
            os.close(gate_w)
    assert [(a.kind, a.path) for a in moved if a.kind == "create"] == [("create", b"stage")]
    assert os.fsencode(stage) not in observer.quieted
    assert (data / "stage").stat().st_ino not in ignored_inodes()
    after = observer.take("mover")
    assert ("write", b"stage/b.txt") in {(a.kind, a.path) for a in after}


def test_a_data_dir_in_a_quieted_directory_is_heard(observer: Observer, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    observer.watch(other)  # a group on this file system, as another run's data dir would
    place = tmp_path / "quiet" / "place"
    place.mkdir(parents=True)
    run("echo a > a.txt", place, observer, "outside")
    assert os.fsencode(place) in observer.quieted
    observer.watch(place)  # a new run's data dir, where a quieted directory was
    assert os.fsencode(place) not in observer.quieted
    assert place.stat().st_ino not in ignored_inodes()
    accesses = run("cat a.txt > /dev/null; echo b > b.txt", place, observer, "inside")
    assert {(a.kind, a.path) for a in accesses if a.kind in ("read", "write")} == {
        ("read", b"a.txt"),
        ("write", b"b.txt"),
    }
