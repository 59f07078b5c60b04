"""`akoflow` whose `run` gets SIGINT (a Ctrl-C; or the signal named by INTERRUPT_WITH)
right after it stored the run, before the engine's own handlers are set: the window in which
a KeyboardInterrupt left the stored run pending (a later `akoflow resume` ran all of it), and
a SIGHUP killed the process.

    python -m tests.e2e.interrupted_after_claim run WORKFLOW.yaml --state-dir DIR ...
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from akoflow import service
from akoflow.cli.main import main

_claim_run = service.claim_run


def _claim_then_interrupted(*args: Any, **kwargs: Any) -> Any:
    claim = _claim_run(*args, **kwargs)
    # delivered before the next line runs
    os.kill(os.getpid(), signal.Signals[os.environ.get("INTERRUPT_WITH", "SIGINT")])
    return claim


if __name__ == "__main__":
    service.claim_run = _claim_then_interrupted
    sys.argv = ["akoflow", *sys.argv[1:]]
    main()
