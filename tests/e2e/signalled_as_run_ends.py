"""`akoflow` that gets signals in the loop turns between its run's end being stored and the
command learning it (the turns its ``done`` takes to reach :class:`AttachedRun`): each is
handled there, before the command goes on.

    python -m tests.e2e.signalled_as_run_ends INT,INT run WORKFLOW.yaml --state-dir DIR ...
"""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any

from akoflow.cli import attached
from akoflow.cli.main import main
from akoflow.states import WorkflowState

SIGNALS: list[signal.Signals] = []
RUNS: list[attached.AttachedRun] = []

_ended_or_stranded = attached.ended_or_stranded
_init = attached.AttachedRun.__init__


def _recorded(self: attached.AttachedRun, *args: Any, **kwargs: Any) -> None:
    _init(self, *args, **kwargs)
    RUNS.append(self)


async def _ended_then_signalled(engine: Any, wf_id: int) -> WorkflowState:
    state = await _ended_or_stranded(engine, wf_id)  # stored: the run's done is set
    [run] = RUNS
    interrupts = run.interrupts + sum(s is not signal.SIGHUP for s in SIGNALS)
    for sig in SIGNALS:
        signal.raise_signal(sig)  # this thread's: its wake-up byte is written on return
    while run.interrupts < interrupts:  # held until the loop handled them (or left)
        await asyncio.sleep(0)
    return state


if __name__ == "__main__":
    SIGNALS[:] = [signal.Signals["SIG" + name] for name in sys.argv[1].split(",")]
    attached.ended_or_stranded = _ended_then_signalled
    attached.AttachedRun.__init__ = _recorded  # type: ignore[method-assign]
    sys.argv = ["akoflow", *sys.argv[2:]]
    main()
