"""A Ctrl-C in the first milliseconds of a command, while its modules import (before the
command has handlers of its own), leaves with exit code 130 and one line, not with a
KeyboardInterrupt traceback: the entry point (``akoflow.__main__``, the console script's and
``python -m akoflow``'s) imports the CLI inside its ``try`` (found by helper h79's hostile
pass). The SIGINT is raised as a given module starts to import, by a sitecustomize on
PYTHONPATH (tests/e2e/interrupted_at_import)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import cli_env

SHIM = Path(__file__).parent / "interrupted_at_import"
AKOFLOW = Path(sys.executable).parent / "akoflow"  # the console script

CASES = [
    (["--version"], "akoflow.cli.main"),  # the CLI's own import
    (["run", "{wf}"], "akoflow.secret_handoff"),  # imported by main(), before its handlers
    (["run", "{wf}"], "akoflow.cli.console"),
    (["status"], "akoflow.cli.commands"),  # typer's commands
]


@pytest.mark.parametrize("how", ["script", "module"])
@pytest.mark.parametrize(("args", "module"), CASES)
def test_a_ctrl_c_while_the_command_imports_leaves_with_130(
    tmp_path: Path, how: str, args: list[str], module: str
) -> None:
    wf = tmp_path / "w.yaml"
    wf.write_text("name: w\nspec:\n  activities:\n    - name: a\n      run: 'true'\n")
    command = [str(AKOFLOW)] if how == "script" else [sys.executable, "-m", "akoflow"]
    argv = [a.format(wf=wf) for a in args]
    if argv != ["--version"]:
        argv += ["--state-dir", str(tmp_path / "state")]
    env = cli_env(PYTHONPATH=str(SHIM), INTERRUPT_AT_IMPORT=module)
    res = subprocess.run(
        [*command, *argv],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert "Traceback" not in res.stderr, res.stderr
    assert res.returncode == 130, res.stderr
    assert res.stderr.strip().splitlines() == ["akoflow: interrupted"]
    assert not (tmp_path / "state").exists()  # nothing ran, nothing stored
