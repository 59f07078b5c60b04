"""The engine logs while it holds the store's write lock: a stderr nobody reads now (a paused
pager, a parent reading another pipe first) must not hold it there, or every other command on
the state dir waits for the lock and fails "database is locked". The CLI's log handler hands
records to a thread: the logging call returns, and every line is written once stderr is read
(found by helper h79)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import cli_env, wait_for

LINES = 3000  # ~250 KB: several times a pipe's buffer

EMIT = f"""
import logging, sys
from akoflow.cli.local_run import _setup_logging
_setup_logging(True)
log = logging.getLogger("akoflow.test")
for i in range({LINES}):
    log.info("line %d of the log %s", i, "x" * 60)
open(sys.argv[1], "w").write("emitted")
logging.shutdown()
"""


def test_logging_returns_while_stderr_is_not_read(tmp_path: Path) -> None:
    marker = tmp_path / "emitted"
    proc = subprocess.Popen(
        [sys.executable, "-c", EMIT, str(marker)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
    )
    try:
        # Nobody reads stderr yet: every logging call has returned all the same.
        wait_for(marker.exists, timeout=60)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err[-2000:]
    seen = {int(n) for n in re.findall(r"line (\d+) of the log", err)}
    assert seen == set(range(LINES))  # none lost: written once stderr was read
