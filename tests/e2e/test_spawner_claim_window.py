"""A spawner stopped between the exclusive create of an attempt's ``.exit`` and the write of
its claim (hostile pass on 344ea71): the file is there, empty. A resumed engine that adopts
the attempt then must not count it lost while that spawner can still start it (its retry
would run beside it): the attempt runs at most once, whatever the adoption said.

The stop is placed by a wrapper of the real spawner (its ``claim_line`` SIGSTOPs the process
first): a real spawner, a real SIGSTOP, at the one instant a preempted or stopped spawner
can be caught in on a loaded box.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path

import psutil
import pytest

from akoflow.runtimes import local as local_module
from akoflow.runtimes import spawner_link, spawner_start
from akoflow.runtimes.base import Adopted
from tests.e2e.test_local_trust import started_runtime
from tests.scenarios import direct_job

WRAPPER = """\
import importlib.util, os, signal, sys
spec = importlib.util.spec_from_file_location("local_spawner", {real!r})
module = importlib.util.module_from_spec(spec)
sys.modules["local_spawner"] = module
spec.loader.exec_module(module)
real_claim_line = module.claim_line

def claim_line(me):
    if os.path.exists({flag!r}):
        os.kill(os.getpid(), signal.SIGSTOP)
    return real_claim_line(me)

module.claim_line = claim_line
module.main()
"""


def _stopped_spawners(wrapper: Path) -> list[int]:
    found = []
    for proc in psutil.Process().children():
        with contextlib.suppress(psutil.Error):
            if str(wrapper) in proc.cmdline() and proc.status() == psutil.STATUS_STOPPED:
                found.append(proc.pid)
    return found


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_spawner_stopped_before_writing_its_claim_never_runs_the_attempt_beside_a_retry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrapper = tmp_path / "spawner" / "local_spawner.py"
    wrapper.parent.mkdir()
    flag = tmp_path / "stop-at-claim"
    wrapper.write_text(WRAPPER.format(real=str(spawner_start.SPAWNER), flag=str(flag)))
    monkeypatch.setattr(spawner_start, "SPAWNER", wrapper)
    monkeypatch.setattr(local_module, "RECORD_WAIT", 0.3)
    spec = direct_job(tmp_path, "window", "echo ran >> ran", "local", None)
    flag.touch()
    stopped: list[int] = []

    async def scenario() -> Adopted:
        first, _ = await started_runtime()
        await first.submit(spec)
        for _ in range(600):
            stopped[:] = _stopped_spawners(wrapper)
            if stopped:
                break
            await asyncio.sleep(0.05)
        assert stopped, "the spawner did not reach its claim"
        await first.stop()  # the engine is gone; its spawner stays, stopped
        second, _ = await started_runtime()
        try:
            return await second.adopt(spec, {"prefix": str(spec.attempt_prefix)})
        finally:
            await second.stop()

    try:
        adopted = asyncio.run(scenario())
        # Whatever it was told, the stopped spawner goes on now (SIGCONT, the end of a
        # preemption): it finishes what it was doing and leaves (its engine is gone).
        flag.unlink()
        for pid in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        for _ in range(600):
            spawner_link.reap_left()
            if not any(_alive(pid) for pid in stopped):
                break
            with contextlib.suppress(ChildProcessError):
                for pid in stopped:
                    os.waitpid(pid, os.WNOHANG)
            asyncio.run(asyncio.sleep(0.05))
        assert not any(_alive(pid) for pid in stopped)
        ran = (tmp_path / "data" / "ran").exists()
        # Given up (lost, or never started): a retry may run it, so this attempt never does.
        assert adopted.kind in ("finished", "never_started")
        assert not ran, f"adopted as {adopted.kind}, then run by its spawner anyway"
    finally:
        for pid in stopped:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        spawner_link.reap_left()
