"""`akoflow status ID` of a big run: counts by state and the rows that matter, not a table of
every activity (which took a terminal 20-30 s at 20,000); `--all` and `--json` keep
everything."""

from __future__ import annotations

import json
from pathlib import Path

from akoflow.cli.progress import STATUS_ROWS
from tests.conftest import Akoflow

WIDE = 150  # over STATUS_ROWS


def test_status_of_a_big_run_shows_counts_and_the_activities_not_succeeded(
    akoflow: Akoflow, tmp_path: Path
) -> None:
    assert WIDE > STATUS_ROWS
    lines = ["name: big", "spec:", "  activities:"]
    for i in range(WIDE):
        run = "exit 3" if i == WIDE - 1 else "true"  # the last one fails
        lines += [f"    - name: t{i:03d}", f"      run: '{run}'"]
    wf = tmp_path / "big.yaml"
    wf.write_text("\n".join(lines) + "\n")
    assert akoflow("run", str(wf), "--quiet").returncode == 1

    res = akoflow("status", "1")
    assert res.returncode == 0, res.stderr
    rows = [line for line in res.stdout.splitlines() if line.lstrip().startswith("t")]
    assert len(rows) == STATUS_ROWS
    assert any(row.split()[0] == f"t{WIDE - 1:03d}" and "failed" in row for row in rows)
    assert "succeeded 149" in res.stdout and "failed 1" in res.stdout
    assert f"... {WIDE - STATUS_ROWS} more activities not shown" in res.stdout
    names = [row.split()[0] for row in rows]
    assert names == sorted(names)  # in the run's order

    every = akoflow("status", "1", "--all")
    assert every.returncode == 0, every.stderr
    assert sum(1 for line in every.stdout.splitlines() if line.lstrip().startswith("t")) == WIDE
    assert "more activities not shown" not in every.stdout

    doc = json.loads(akoflow("status", "1", "--json").stdout)
    assert len(doc["activities"]) == WIDE
