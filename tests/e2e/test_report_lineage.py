"""`akoflow report` shows the files' lineage as `akoflow prov` exports it: who generated and
who used each file, and a version no activity can be said to have generated as ambiguous with
its candidates (never under one of them)."""

from __future__ import annotations

import html
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import cli_env

pytestmark = pytest.mark.needs_root  # observed with fanotify: two writers of one file

WORKFLOW = """\
name: reported
spec:
  activities:
    - name: one
      run: |
        echo 1 >> same.txt
        until grep -q 2 same.txt; do sleep 0.01; done
    - name: two
      run: |
        until [ -s same.txt ]; do sleep 0.01; done
        echo 2 >> same.txt
    - name: made
      run: echo m > <m&m>.txt
      dependsOn: [one]
    - name: reader
      run: cat '<m&m>.txt'
      dependsOn: [made]
"""


def rows(page: str) -> list[list[str]]:
    """The cells of every table row, as text."""
    found = []
    for row in re.findall(r"<tr[^>]*>(.*?)</tr>", page, re.S):
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        found.append([html.unescape(re.sub(r"<[^>]+>", "", c)) for c in cells])
    return found


def test_report_shows_generators_users_and_ambiguous_files(tmp_path: Path) -> None:
    (tmp_path / "wf.yaml").write_text(WORKFLOW.replace("<m&m>.txt", "'<m&m>.txt'", 1))
    state = ["--state-dir", str(tmp_path / "state")]
    base = [sys.executable, "-m", "akoflow"]
    data = ["--data-dir", str(tmp_path / "data")]
    done = subprocess.run(
        [*base, "run", str(tmp_path / "wf.yaml"), *state, *data, "-q"],
        capture_output=True, text=True, env=cli_env(), timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr + done.stdout
    out = tmp_path / "report.html"
    done = subprocess.run(
        [*base, "report", "reported", "-o", str(out), *state],
        capture_output=True, text=True, env=cli_env(),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    page = out.read_text()
    assert "<m&m>" not in page  # every value escaped
    table = rows(page)
    assert ["<m&m>.txt", "made", "reader"] in table
    assert [
        "same.txt",
        "ambiguous: one #1, two #1",
        "written by attempts that ran at the same time",
    ] in table
    assert not [r for r in table if r[:1] == ["same.txt"] and r[1] in ("one", "two")]
    assert "file accesses: observed (fanotify)" in page
