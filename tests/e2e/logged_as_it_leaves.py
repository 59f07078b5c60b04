"""`akoflow` that logs LINES lines in the turn a second Ctrl-C (or SIGTERM) leaves at once:
lines logged just before the exit, still queued for the log handler's thread.

    python -m tests.e2e.logged_as_it_leaves LINES run WORKFLOW.yaml --state-dir DIR ...
"""

from __future__ import annotations

import logging
import sys

from akoflow.cli import attached
from akoflow.cli.main import main

LINES = 0
_leave = attached.AttachedRun.leave


def _logged_then_left(self: attached.AttachedRun, code: int) -> None:
    log = logging.getLogger("akoflow.test")
    for i in range(LINES):
        log.warning("line %d of %d, logged as the command leaves %s", i, LINES, "x" * 40)
    _leave(self, code)


if __name__ == "__main__":
    LINES = int(sys.argv[1])
    attached.AttachedRun.leave = _logged_then_left  # type: ignore[method-assign]
    sys.argv = ["akoflow", *sys.argv[2:]]
    main()
