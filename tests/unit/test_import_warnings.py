"""Loading akoflow's modules prints no warning to the user (a dependency's own included)."""

import subprocess
import sys

import pytest

MODULES = [
    "akoflow.cli",
    "akoflow.runtimes.hpc",
    "akoflow.runtimes.hpc.keys",
    "akoflow.runtimes.hpc.mover",
]


@pytest.mark.parametrize("module", MODULES)
def test_importing_prints_no_warning(module: str) -> None:
    # A fresh interpreter: this one has imported them already, under pytest's own filters.
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", f"import {module}"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
