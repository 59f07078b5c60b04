"""The local attempt's ``.exit`` record is written over its claim in place (no new file per
end): whatever instant a reader catches, it reads the true exit code or none, never another."""

from __future__ import annotations

import collections
import os
import subprocess
import sys
from pathlib import Path

from akoflow.runtimes.local import _read_record, _Record
from akoflow.runtimes.local_spawner import claim_line, exit_line, shell_code, started_line

PIDS = (1, 42, 12345, 4194304, 99999999)
RECORDERS = (7, 31337, 4194303)


def test_every_exit_code_reads_back() -> None:
    codes = {shell_code(status) for status in range(-64, 256)}
    assert codes == set(range(256))
    for code in codes:
        assert _Record(exit_line(code).decode()).code == code


def test_an_end_caught_half_written_reads_as_no_code() -> None:
    """Every prefix of the exit line over the ``pid`` line it replaces (the write caught
    half done), then the whole line with the claim's stale tail (before the cut)."""
    for pid in PIDS:
        for recorder in RECORDERS:
            claim = f"pid {pid:>8} by {recorder}\n".encode()
            for code in (0, 1, 2, 9, 127, 137, 255):
                line = exit_line(code)
                for done in range(len(line)):
                    torn = _Record((line[:done] + claim[done:]).decode())
                    assert torn.code is None, line[:done] + claim[done:]
                uncut = _Record((line + claim[len(line) :]).decode())
                assert uncut.code == code
                assert _Record(line.decode()).code == code


def test_the_claims_read_as_before() -> None:
    assert _Record("spawning by 77\n").spawning
    started = _Record("pid    12345 by 77\n")
    assert (started.pid, started.recorder, started.code) == (12345, 77, None)
    legacy = _Record("pid 12345\n")  # an older engine's prelude
    assert (legacy.pid, legacy.recorder) == (12345, None)
    assert _Record("engine\n").engine


def test_a_start_caught_half_written_reads_as_neither_line() -> None:
    """The started line written over the claim in place (the same length: the file never
    grows): the head of one and the tail of the other is never a record (it is read again),
    nor is the claim cut short (its first write caught half done); the whole claim and the
    whole start read as themselves."""
    for pid in PIDS[:-1]:  # 8 digits at most: pid_max is 4,194,304
        for recorder in RECORDERS:
            claim, started = claim_line(recorder), started_line(pid, recorder)
            assert len(claim) == len(started)
            for done in range(len(started) + 1):
                for seen in (started[:done] + claim[done:], claim[:done]):
                    record = _Record(seen.decode())
                    if seen == claim:
                        assert record.whole and record.spawning and record.recorder == recorder
                    elif seen == started:
                        assert record.whole and (record.pid, record.recorder) == (pid, recorder)
                    else:
                        assert not record.whole, seen


def test_reads_racing_the_spawners_writes_never_see_a_torn_record(tmp_path: Path) -> None:
    """A process writes each record of an attempt's life in place, as the spawner does
    (claim, start, end), for attempt after attempt; every read in between is a whole record
    of that life, or no file."""
    prefix = str(tmp_path / "t1")
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, prefix],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        seen: collections.Counter[str] = collections.Counter()
        for _ in range(30_000):
            record = _read_record(prefix)
            if record.text is None:
                seen["none"] += 1
            elif record.text == "":  # made by the exclusive create, its claim not written yet
                seen["empty"] += 1
            elif record.spawning and record.recorder == 77:
                seen["claim"] += 1
            elif record.pid is not None and record.recorder == 77:
                assert 1000 <= record.pid < 4_000_000, record.text
                seen["start"] += 1
            else:
                assert record.code == 3, record.text
                seen["end"] += 1
        assert writer.poll() is None  # it wrote all along
        assert len(seen) >= 3, seen
    finally:
        writer.kill()
        writer.wait()


WRITER = """
import os, sys
from akoflow.runtimes.local_spawner import claim_line, record_end, started_line
exit_path = sys.argv[1] + ".exit"
for pid in range(1000, 4_000_000, 7):
    fd = os.open(exit_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, claim_line(77))
    os.pwrite(fd, started_line(pid, 77), 0)
    os.close(fd)
    record_end(exit_path, 3)
    os.unlink(exit_path)
"""
