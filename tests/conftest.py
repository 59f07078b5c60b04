from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

Akoflow = Callable[..., subprocess.CompletedProcess[str]]


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AKOFLOW_")}
    env["COLUMNS"] = "200"
    env.update(extra)
    return env


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
