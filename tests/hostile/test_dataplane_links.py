"""Hostile pass on the data plane (issue 17): an activity that shares the engine host's data dir
(local here; a docker or singularity container does the same through its bind mount) plants a
symbolic link where a copy back from the cluster writes its temporary file
(``.NAME.akoflow-part``, a name anyone can predict). The copy must never write through it:
what a remote activity wrote would land on any file the engine's user can write."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Awaitable
from pathlib import Path

import pytest

from akoflow.states import WorkflowState
from tests.e2e.test_engine_inprocess import engine_with

pytestmark = [pytest.mark.slurm, pytest.mark.needs_root]


def test_a_link_planted_at_a_copys_temporary_name_is_never_written_through(
    hpc_env: dict[str, str], tmp_path: Path
) -> None:
    victim = tmp_path / "victim.txt"  # outside the data dir: ~/.bashrc, ~/.ssh/authorized_keys
    victim.write_text("precious\n")
    flow = f"""\
name: plant
spec:
  activities:
    - name: plant
      runtime: local
      run: ln -s {victim} .out.txt.akoflow-part
    - name: make
      runtime: hpc
      dependsOn: [plant]
      run: echo written by the cluster > out.txt
"""
    data = tmp_path / "data"

    async def scenario() -> WorkflowState:
        async with engine_with(tmp_path, flow) as (_, engine, wf_id):
            await engine.attach(wf_id)
            state = await asyncio.wait_for(engine.wait(wf_id), timeout=90)
            return state

    state = asyncio.run(scenario())
    assert victim.read_text() == "precious\n"  # never written through the link
    if state is WorkflowState.SUCCEEDED:
        assert (data / "out.txt").read_text() == "written by the cluster\n"
        assert not (data / "out.txt").is_symlink()


# Found by the hostile pass (fixed): the copy back opened its temporary name in the event
# loop, so a FIFO planted there stopped the whole engine until someone read it.


def free_fifo_later(fifo: Path, after: float, done: threading.Event) -> threading.Thread:
    """A thread that, from ``after`` seconds on and until ``done``, keeps opening ``fifo`` for
    reading (a blocked open for writing then returns), so a test of a frozen engine ends."""

    def watchdog() -> None:
        if done.wait(after):
            return
        while not done.is_set():
            with contextlib.suppress(OSError):
                fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
                done.wait(0.5)
                os.close(fd)
            done.wait(0.1)

    thread = threading.Thread(target=watchdog, daemon=True)
    thread.start()
    return thread


async def longest_stall(work: Awaitable[object]) -> float:
    """Run ``work``; the longest time the event loop did not run other tasks meanwhile."""
    gaps = [0.0]

    async def heartbeat() -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            await asyncio.sleep(0.05)
            gaps[0] = max(gaps[0], loop.time() - last - 0.05)
            last = loop.time()

    beat = asyncio.ensure_future(heartbeat())
    try:
        await work
    finally:
        beat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beat
    return gaps[0]


def test_a_fifo_planted_at_a_copys_temporary_name_does_not_freeze_the_engine(
    hpc_env: dict[str, str], tmp_path: Path
) -> None:
    """A FIFO where the copy back writes: opening it for writing blocks until someone reads.
    The engine's event loop must go on (other runs, the API, health checks); here a thread
    reads the FIFO after 6 s so that the test ends."""
    flow = """\
name: fifo
spec:
  activities:
    - name: plant
      runtime: local
      run: mkfifo .out.txt.akoflow-part
    - name: make
      runtime: hpc
      dependsOn: [plant]
      run: echo written by the cluster > out.txt
"""

    async def scenario() -> None:
        async with engine_with(tmp_path, flow) as (_, engine, wf_id):
            await engine.attach(wf_id)
            await asyncio.wait_for(engine.wait(wf_id), timeout=90)

    done = threading.Event()
    guard = free_fifo_later(tmp_path / "data" / ".out.txt.akoflow-part", 6, done)
    try:
        frozen = asyncio.run(longest_stall(scenario()))
    finally:
        done.set()
        guard.join()
    assert frozen < 3, f"the engine's event loop stood still for {frozen:.1f} s"
