"""The local attempt's ``.exit`` record is written over its claim in place (no new file per
end): whatever instant a reader catches, it reads the true exit code or none, never another."""

from __future__ import annotations

from akoflow.runtimes.local import _Record
from akoflow.runtimes.local_spawner import exit_line, shell_code

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
