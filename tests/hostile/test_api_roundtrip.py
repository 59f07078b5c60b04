"""Hostile pass on the Python API (issue 18): values a shell would interpret, odd bytes and
every caching field survive `to_yaml()` and reach the activity as they were written; the file
it writes, run by the CLI, reuses the in-code run's results (the same fingerprints)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import akoflow
from tests.conftest import cli_env

NASTY = "$(touch pwned) `touch pwned2`; ' \" \\ \n second line \t✓ ünï\u2028end"


def build(counters: Path) -> akoflow.Workflow:
    wf = akoflow.Workflow("round-trip", runtime="local", env={"SHARED": "  spaces  "})
    make = wf.activity(
        "make-1",
        run=f'echo ran >> {counters}/make\nprintf %s "$X" > x.bin\nprintf %s "$SHARED" > s.bin\n',
        env={"X": NASTY},
        outputs=["x.bin", "s.bin"],
    )
    wf.activity(
        "use-2",
        run=f"echo ran >> {counters}/use\ncat x.bin s.bin > both.bin\n",
        depends_on=[make],
        inputs=["x.bin", "s.bin"],
        outputs="both.bin",
    )
    wf.activity("always", run=f"echo ran >> {counters}/always\n", cache=False)
    return wf


def test_a_built_workflow_written_as_yaml_is_the_same_run_for_the_cache(tmp_path: Path) -> None:
    counters, state = tmp_path / "counters", tmp_path / "state"
    counters.mkdir()
    wf = build(counters)
    first = akoflow.run(wf, state_dir=state)
    assert first.ok
    assert (first.data_dir / "x.bin").read_text() == NASTY
    assert (first.data_dir / "both.bin").read_text() == NASTY + "  spaces  "
    assert not any(first.data_dir.glob("pwned*")) and not list(tmp_path.glob("pwned*"))
    back = akoflow.load(wf.to_yaml())
    assert back.to_dict() == wf.to_dict()
    assert back["always"].cache is False and back["use-2"].inputs == ["x.bin", "s.bin"]
    written = tmp_path / "rt.yaml"
    written.write_text(wf.to_yaml())
    cli = [sys.executable, "-m", "akoflow", "run", str(written), "--quiet"]
    res = subprocess.run(
        [*cli, "--state-dir", str(state)], capture_output=True, text=True, env=cli_env()
    )
    assert res.returncode == 0, res.stderr
    status = subprocess.run(
        [sys.executable, "-m", "akoflow", "status", "2", "--json", "--state-dir", str(state)],
        capture_output=True,
        text=True,
        env=cli_env(),
    )
    got = {a["name"]: a["state"] for a in json.loads(status.stdout)["activities"]}
    assert got == {"make-1": "cached", "use-2": "cached", "always": "succeeded"}
    ran = {p.name: len(p.read_text().splitlines()) for p in counters.iterdir()}
    assert ran == {"make": 1, "use": 1, "always": 2}
