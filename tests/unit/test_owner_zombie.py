"""An engine that died but was never reaped (a zombie: its parent does not wait, or an init
that never reaps, as in many containers) owns no run: `akoflow resume` may take it over."""

from __future__ import annotations

import subprocess
import time

import psutil

from akoflow.engine.ownership import owner_alive


def test_a_zombie_owns_nothing_a_live_process_does() -> None:
    live = subprocess.Popen(["sleep", "30"])
    dead = subprocess.Popen(["true"])
    try:
        started = {p.pid: psutil.Process(p.pid).create_time() for p in (live, dead)}
        deadline = time.monotonic() + 10
        while psutil.Process(dead.pid).status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert owner_alive(live.pid, started[live.pid])
        assert not owner_alive(dead.pid, started[dead.pid])
        assert not owner_alive(live.pid, started[live.pid] - 5)  # a reused pid
    finally:
        live.kill()
        live.wait()
        dead.wait()
