from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# The session's daemons and images, defined once for every directory (tests/daemons.py).
from tests.daemons import dockerd, images, k8s_dockerd, slurm_cluster  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

# What each directory's tests need (markers registered in pyproject.toml), so a contributor
# can leave a backend out: pytest -m "not slurm". Deselected only when asked: CI runs them
# all, and a backend missing there fails the tests (their fixtures never skip). Single tests
# elsewhere that need root carry @pytest.mark.needs_root themselves.
MARKERS_BY_DIRECTORY = {
    "hpc_runtime": ("slurm", "needs_root"),
    "docker_runtime": ("docker", "needs_root"),
    "k8s_runtime": ("k8s", "docker", "needs_root"),  # the emulated kubelet runs pods in dockerd
    "singularity_runtime": ("needs_root",),  # the test launcher mounts and sets cgroup limits
    "ui": ("browser",),
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    tests = ROOT / "tests"
    for item in items:
        path = item.path.resolve()
        if path.is_relative_to(tests):
            directory = path.relative_to(tests).parts[0]
            for marker in MARKERS_BY_DIRECTORY.get(directory, ()):
                item.add_marker(marker)


Akoflow = Callable[..., subprocess.CompletedProcess[str]]


@pytest.hookimpl(hookwrapper=True)
def pytest_timeout_set_timer(item: pytest.Item, settings: object) -> Iterator[None]:
    """On a timeout, print where each asyncio task waits before pytest-timeout fails the test:
    its own dump shows threads, and a coroutine that never resumes is on no thread's stack."""
    yield
    previous = signal.getsignal(signal.SIGALRM)
    if not callable(previous):
        return

    def dump_tasks_then_fail(signum: int, frame: object) -> None:
        loop = asyncio._get_running_loop()
        if loop is not None:
            print(f"~~~~~ asyncio tasks of {loop!r} ~~~~~", file=sys.stderr)
            for task in asyncio.all_tasks(loop):
                print(f"{task.get_name()}:", file=sys.stderr)
                for line in _awaiting(task.get_coro()):
                    print(f"  {line}", file=sys.stderr)
        previous(signum, frame)

    signal.signal(signal.SIGALRM, dump_tasks_then_fail)


def _awaiting(awaitable: object) -> Iterator[str]:
    """Each frame a suspended coroutine waits in, outermost first (``cr_await`` down)."""
    while awaitable is not None:
        frame = getattr(awaitable, "cr_frame", None) or getattr(awaitable, "gi_frame", None)
        if frame is not None:
            yield f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}"
        else:
            yield repr(awaitable)
        awaitable = getattr(awaitable, "cr_await", None) or getattr(awaitable, "gi_yieldfrom", None)


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AKOFLOW_")}
    env["COLUMNS"] = "200"
    env["AKOFLOW_RESIDENT"] = "0"  # a resident engine of the user's must not run them
    env.update(extra)
    return env


def wait_for(predicate: Callable[[], object], timeout: float = 30.0) -> None:
    """Poll ``predicate`` until it is true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def flat(text: str) -> str:
    """Output with its lines joined by one space (rich wraps a long message over lines)."""
    return " ".join(text.split())


def start_cli(
    args: list[str], env: dict[str, str] | None = None, stderr: Path | None = None
) -> subprocess.Popen[str]:
    """The real CLI in the background (e.g. an engine to SIGKILL mid-run); its stderr in the
    file ``stderr`` if given (to read while it runs), else a pipe."""
    if stderr is None:
        return subprocess.Popen(
            [sys.executable, "-m", "akoflow", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env or cli_env(),
        )
    with stderr.open("w") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "akoflow", *args],
            stdout=subprocess.DEVNULL,
            stderr=sink,
            text=True,
            env=env or cli_env(),
        )


@contextlib.contextmanager
def running_cli(
    args: list[str], env: dict[str, str] | None = None, stderr: Path | None = None
) -> Iterator[subprocess.Popen[str]]:
    """:func:`start_cli`, killed at the end if the test left it running."""
    proc = start_cli(args, env, stderr)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def akoflow(state_dir: Path) -> Akoflow:
    """Run the real CLI in a subprocess against this test's state dir."""

    def run(
        *args: str, timeout: float = 120, env: dict[str, str] | None = None, state: bool = True
    ) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "akoflow", *args]
        if state:
            argv += ["--state-dir", str(state_dir)]
        return subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, env=env or cli_env()
        )

    return run


@pytest.fixture(autouse=True)
def _collect_garbage_after_each_test() -> Iterator[None]:
    """Collect garbage as each test ends, so an unclosed socket or file is reported (as an
    error: filterwarnings = error) on the test that leaked it, not on whichever later test
    the collector happens to run in."""
    yield
    gc.collect()
    if gc.get_freeze_count() == 0:  # a test thawed what collection left (gc.unfreeze)
        gc.freeze()  # out of reach again (pytest_collection_finish), with what fixtures hold


def pytest_collection_finish(session: pytest.Session) -> None:
    """What collection left (every test module, the libraries they import: ~160,000 objects)
    lives as long as the session: moved out of the collector's reach (gc.freeze), so that the
    collection after each test walks only what tests made, which is all it is there to find
    (40-85 ms less per test: 368 pure tests took 42 s, now 11 s)."""
    gc.collect()
    gc.freeze()
