"""Exact per-attempt reads and writes (akoflow.provenance.observe) with real processes: the
writers run at the same time (released together from a FIFO), exit at once, leave background
children behind; every access must go to the attempt whose process made it, none elsewhere."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from akoflow.provenance.observe import Access, Observer
from akoflow.runtimes import cgroups

pytestmark = pytest.mark.needs_root  # filesystem marks and process events

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def data(tmp_path: Path) -> Path:
    directory = tmp_path / "data"
    directory.mkdir()
    return directory


@pytest.fixture
def observer(data: Path) -> Iterator[Observer]:
    obs = Observer()
    obs.start()
    obs.watch(data)
    try:
        yield obs
    finally:
        obs.close()


class Gate:
    """Processes wait at ``wait`` (a read of a pipe they inherit) until :meth:`release`
    closes its write end: all of them go on at once, whenever each reached it."""

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()
        self.wait = f"read _ <&{self.read_fd}"

    def release(self) -> None:
        if self.write_fd >= 0:
            os.close(self.write_fd)
            self.write_fd = -1

    def close(self) -> None:
        self.release()
        os.close(self.read_fd)


class Spawner:
    def __init__(self, gate: Gate) -> None:
        self.gate = gate
        self.procs: list[subprocess.Popen[bytes]] = []

    def __call__(self, script: str, cwd: Path, **env: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            ["bash", "-c", script],
            cwd=cwd,
            env={**os.environ, **env},
            pass_fds=(self.gate.read_fd,),
        )
        self.procs.append(proc)
        return proc


@pytest.fixture
def gate() -> Iterator[Gate]:
    g = Gate()
    try:
        yield g
    finally:
        g.close()


@pytest.fixture
def sh(gate: Gate) -> Iterator[Spawner]:
    spawner = Spawner(gate)
    try:
        yield spawner
    finally:
        gate.release()
        for proc in spawner.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


def paths(accesses: list[Access], kind: str) -> set[bytes]:
    return {a.path for a in accesses if a.kind == kind}


def test_two_attempts_in_two_cgroups_writing_at_the_same_time(
    observer: Observer, data: Path, gate: Gate, sh: Spawner
) -> None:
    base = cgroups.usable_base()
    assert base is not None, "cgroup v2 with a writable engine cgroup is needed"
    groups = [os.path.join(base, f"akoflow-observe-test-{os.getpid()}-{n}") for n in (1, 2)]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for n, group in enumerate(groups, 1):
            os.mkdir(group)
            # Joins its cgroup, waits at the gate, then writes through short-lived children.
            procs.append(
                sh(
                    f'echo $$ > "$CG/cgroup.procs"; {gate.wait}; '
                    'for i in 1 2 3 4 5 6 7 8 9 10; do cp /etc/hostname "w$N-$i"; done',
                    data,
                    CG=group,
                    N=str(n),
                )
            )
        for proc, group in zip(procs, groups, strict=True):
            with open(os.path.join(group, "cgroup.procs")) as f:
                while str(proc.pid) not in f.read().split():  # joined (a bounded wait:
                    f.seek(0)  # the shell's first command)
                    assert proc.poll() is None
        for n, group in enumerate(groups, 1):
            observer.register(f"attempt-{n}", cgroup=group)
        gate.release()
        assert [p.wait(timeout=30) for p in procs] == [0, 0]
        for n in (1, 2):
            accesses = observer.take(f"attempt-{n}")
            expected = {f"w{n}-{i}".encode() for i in range(1, 11)}
            assert paths(accesses, "create") == expected
            assert paths(accesses, "write") == expected
            assert {a.key for a in accesses} == {f"attempt-{n}"}
        assert observer.take_unclaimed(now=True) == []
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for group in groups:
            cgroups.remove(group)


def test_two_attempts_by_pid_released_together(
    observer: Observer, data: Path, gate: Gate, sh: Spawner
) -> None:
    procs = [sh(f'{gate.wait}; echo "$N" > "out-$N.txt"', data, N=str(n)) for n in (1, 2)]
    for n, proc in enumerate(procs, 1):
        observer.register(n, pid=proc.pid)
    gate.release()
    assert [p.wait(timeout=30) for p in procs] == [0, 0]
    for n in (1, 2):
        accesses = observer.take(n)
        assert paths(accesses, "write") == {f"out-{n}.txt".encode()}
        assert all(a.key == n for a in accesses)


def test_a_reader_reads_only_the_file_it_reads(observer: Observer, data: Path, sh: Spawner) -> None:
    (data / "x.txt").write_text("x\n")  # by this process: not an attempt's access
    (data / "y.txt").write_text("y\n")
    proc = sh("cat x.txt > /dev/null; ls > /dev/null", data)
    observer.register("reader", pid=proc.pid)
    assert proc.wait(timeout=30) == 0
    accesses = observer.take("reader")
    assert {a.path for a in accesses if a.kind == "read" and not a.is_dir} == {b"x.txt"}
    # `ls` read the data dir's names (a listing, b"." the data dir itself): a read too.
    assert {a.path for a in accesses if a.kind == "read" and a.is_dir} == {b"."}
    assert not [a for a in accesses if a.kind != "read"]
    assert observer.take_unclaimed(now=True) == []  # the test's own writes are not claimed


def test_a_background_child_writes_after_its_parent_exited(
    observer: Observer, data: Path, gate: Gate
) -> None:
    done_r, done_w = os.pipe()
    try:
        proc = subprocess.Popen(
            ["bash", "-c", f"({gate.wait}; echo late > bg.txt) & exit 0"],
            cwd=data,
            pass_fds=(done_w, gate.read_fd),
        )
        observer.register("parent", pid=proc.pid)
        assert proc.wait(timeout=30) == 0  # the parent is gone (and reaped)
        os.close(done_w)
        done_w = -1
        gate.release()
        assert os.read(done_r, 1) == b""  # EOF: the child, last holder of the pipe, exited
    finally:
        os.close(done_r)
        if done_w >= 0:
            os.close(done_w)
    accesses = observer.take("parent")
    assert paths(accesses, "create") == {b"bg.txt"}
    assert paths(accesses, "write") == {b"bg.txt"}
    assert {a.pid for a in accesses} != {proc.pid}  # written by the child, not the parent


def test_short_lived_writers_are_all_attributed(
    observer: Observer, data: Path, sh: Spawner
) -> None:
    # 40 processes that write and exit at once (reaped by the shell before the engine reads
    # most of their events).
    proc = sh('i=0; while [ $i -lt 40 ]; do cp /etc/hostname "f$i"; i=$((i+1)); done', data)
    observer.register("many", pid=proc.pid)
    assert proc.wait(timeout=30) == 0
    accesses = observer.take("many")
    expected = {f"f{i}".encode() for i in range(40)}
    assert paths(accesses, "write") == expected
    assert len({a.pid for a in accesses if a.kind == "write"}) == 40
    assert observer.take_unclaimed(now=True) == []


def test_odd_bytes_in_names_renames_and_deletions(
    observer: Observer, data: Path, sh: Spawner
) -> None:
    script = (
        "printf a > \"$(printf 'bad\\377name')\"; "
        "mkdir -p 'sub dir'; printf b > 'sub dir/line\nbreak'; "
        "mv \"$(printf 'bad\\377name')\" 'sub dir/moved'; rm 'sub dir/line\nbreak'"
    )
    proc = sh(script, data)
    observer.register("odd", pid=proc.pid)
    assert proc.wait(timeout=30) == 0
    accesses = observer.take("odd")
    assert paths(accesses, "create") == {b"bad\xffname", b"sub dir", b"sub dir/line\nbreak"}
    assert [(a.old_path, a.path) for a in accesses if a.kind == "rename"] == [
        (b"bad\xffname", b"sub dir/moved")
    ]
    assert paths(accesses, "delete") == {b"sub dir/line\nbreak"}
    renamed = next(a for a in accesses if a.kind == "rename")
    created = next(a for a in accesses if a.path == b"bad\xffname" and a.kind == "create")
    assert renamed.file_id == created.file_id is not None  # the same file
    assert next(a for a in accesses if a.path == b"sub dir").is_dir


def test_an_unregistered_writer_is_unclaimed_not_attributed(
    observer: Observer, data: Path, sh: Spawner
) -> None:
    attempt = sh("echo mine > mine.txt", data)
    observer.register("attempt", pid=attempt.pid)
    stranger = sh("echo theirs > theirs.txt", data)  # never registered
    assert attempt.wait(timeout=30) == 0 and stranger.wait(timeout=30) == 0
    assert paths(observer.take("attempt"), "write") == {b"mine.txt"}
    unclaimed = observer.take_unclaimed(now=True)
    assert paths(unclaimed, "write") == {b"theirs.txt"}
    assert {a.key for a in unclaimed} == {None}


READ_IN_STEPS = """
import mmap, sys
def step(said):
    print(said, flush=True)
    sys.stdin.readline()
with open("early.txt", "w") as f:
    f.write("1")
step("wrote")
plain = open("b.txt", "rb")
plain.read()
mapped = open("c.txt", "rb")
with mmap.mmap(mapped.fileno(), 0, prot=mmap.PROT_READ) as m:
    m[:]  # a read through a mapping: no read event, only the close says it
step("read")
plain.close()
mapped.close()
"""


def test_a_read_whose_close_comes_apart_is_no_earlier_than_its_open(
    observer: Observer, data: Path
) -> None:
    """The engine reads the kernel's queue between a read and its close (found by CI on a
    loaded machine): the close alone must not date the read before everything (a version
    written earlier would be taken for derived from it)."""
    (data / "b.txt").write_text("b\n")
    (data / "c.txt").write_text("c\n")
    proc = subprocess.Popen(
        [sys.executable, "-c", READ_IN_STEPS],
        cwd=data,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None
    observer.register("steps", pid=proc.pid)

    def drained() -> None:
        while not observer.pump():
            pass

    try:
        assert proc.stdout.readline() == b"wrote\n"
        drained()  # early.txt's write is in an epoch of its own
        proc.stdin.write(b"\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == b"read\n"
        drained()  # the opens (and b.txt's read) are read before their closes
        proc.stdin.write(b"\n")
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        if not proc.stdin.closed:
            proc.stdin.close()
    accesses = observer.take("steps")
    written = max(a.epoch for a in accesses if a.path == b"early.txt" and a.kind == "write")
    reads = [a for a in accesses if a.kind == "read" and a.path in (b"b.txt", b"c.txt")]
    assert {a.path for a in reads} == {b"b.txt", b"c.txt"}
    assert min(a.epoch for a in reads) > written, [(a.path, a.epoch) for a in reads]


def test_without_privilege_it_says_so() -> None:
    data = Path(tempfile.mkdtemp(prefix="akoflow-observe-"))  # where nobody can look
    os.chmod(data, 0o755)
    program = (
        "from akoflow.provenance.observe import ObservationUnavailable, Observer\n"
        "obs = Observer()\n"
        "try:\n"
        "    obs.start()\n"
        f"    obs.watch({str(data)!r})\n"
        "except ObservationUnavailable as exc:\n"
        "    print('unavailable:', exc)\n"
        "finally:\n"
        "    obs.close()\n"
    )
    try:
        result = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable]
            + ["-c", program],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
            timeout=60,
        )
    finally:
        data.rmdir()
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("unavailable: ") and "CAP_SYS_ADMIN" in result.stdout
    assert "Traceback" not in result.stderr
