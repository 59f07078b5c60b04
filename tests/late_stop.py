"""What the tests of a stop or a timeout that comes too late share, on every runtime: an
activity that ends when the test says so, one that traps the stop and exits 0 (stopped, not
a success), and a bounded wait (tests/*/test_*_stop_too_late.py, *_timeout_too_late.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

# Ends (exit 0, its side effect once) when the test touches `go`.
ENDS_ON_GO = """\
touch started
while [ ! -e go ]; do sleep 0.02; done
echo ran >> side
"""

# Stopped, its trap exits 0: a stop that reached it, so never a success.
TRAPS_THE_STOP = """\
trap 'echo stopped >> side; exit 0' TERM
touch started
while :; do sleep 0.05; done
"""


async def until(check: Callable[[], object], seconds: float = 60.0, step: float = 0.02) -> None:
    """Wait until ``check()`` is true; fail the test after ``seconds``."""
    for _ in range(int(seconds / step)):
        if check():
            return
        await asyncio.sleep(step)
    raise AssertionError("timed out")
