"""Every Python block of docs/python-api.md runs as written, in order, in a fresh Python with
a fresh state dir and a live server (the doc's last section)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, cli_env
from tests.server.conftest import Server

DOC = ROOT / "docs" / "python-api.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)

RUNNER = """
import sys
blocks = sys.argv[1:]
namespace = {"__name__": "__main__"}
for n, code in enumerate(blocks):
    line, _, body = code.partition("\\n")
    exec(compile(body, f"docs/python-api.md:{line}", "exec"), namespace)
    print(f"--- block {n} ran", flush=True)
"""


def python_blocks(text: str) -> list[str]:
    """Each block, prefixed with the line it starts on (for tracebacks)."""
    return [f"{text[: m.start(1)].count(chr(10)) + 1}\n{m.group(1)}" for m in BLOCK.finditer(text)]


def test_every_python_block_of_the_doc_runs(tmp_path: Path, server: Server) -> None:
    blocks = python_blocks(DOC.read_text())
    assert len(blocks) >= 8
    work = tmp_path / "work"
    shutil.copytree(ROOT / "examples", work / "examples")
    env = cli_env(
        AKOFLOW_HOME=str(tmp_path / "home"),
        AKOFLOW_SERVER=server.url,
        AKOFLOW_API_TOKEN=server.token,
    )
    done = subprocess.run(
        [sys.executable, "-c", RUNNER, *blocks],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.count("--- block") == len(blocks)
    out = done.stdout
    assert "spec.activities[0].memoryLimit -> invalid memory quantity 'lots'" in out
    assert "ALPHA\nBETA\nGAMMA\n" in out  # the report's output, locally and from the server
    assert "invalid workflow: 4 errors" in out and "401 invalid bearer token" in out
    assert server.token not in out + done.stderr


def test_the_docs_code_is_clean_for_mypy_strict(tmp_path: Path) -> None:
    """What users write against the API type-checks strictly (py.typed, lazy exports)."""
    code = "\n".join(block.partition("\n")[2] for block in python_blocks(DOC.read_text()))
    user = tmp_path / "user_code.py"
    user.write_text(code + "\nwrong: int = akoflow.load('x').name\n")
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path / "cache"), user],
        capture_output=True,
        text=True,
        timeout=240,
    )
    # Exactly the one planted error: the API's names and types are seen.
    assert done.stdout.count("error:") == 1, done.stdout
    assert 'expression has type "str", variable has type "int"' in done.stdout
