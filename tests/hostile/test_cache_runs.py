"""Hostile pass on result caching (issue 18): --dry-run against the real run, restored files
that must not alias an earlier run's, two `akoflow run` of one file at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Akoflow, cli_env


def ran(counters: Path, name: str) -> int:
    path = counters / name
    return len(path.read_text().splitlines()) if path.exists() else 0


def states(akoflow: Akoflow, run: int) -> dict[str, str]:
    res = akoflow("status", str(run), "--json")
    assert res.returncode == 0, res.stderr
    return {a["name"]: a["state"] for a in json.loads(res.stdout)["activities"]}


@pytest.fixture
def counters(tmp_path: Path) -> Path:
    path = tmp_path / "counters"
    path.mkdir()
    return path


UNCACHED_UPSTREAM = """\
name: stamp
spec:
  runtime: local
  activities:
    - name: fetch
      cache: false
      run: echo same > fetched.txt
    - name: use
      dependsOn: [fetch]
      run: |
        echo ran >> {counters}/use
        tr a-z A-Z < fetched.txt > used.txt
"""


def test_dry_run_tells_what_the_run_then_does_below_a_cache_false_activity(
    akoflow: Akoflow, tmp_path: Path, counters: Path
) -> None:
    wf = tmp_path / "stamp.yaml"
    wf.write_text(UNCACHED_UPSTREAM.format(counters=counters))
    assert akoflow("run", str(wf), "--quiet").returncode == 0
    planned = akoflow("run", str(wf), "--dry-run", "--json")
    assert planned.returncode == 0, planned.stderr
    would = {a["name"]: (a["would"], a["reason"]) for a in json.loads(planned.stdout)["activities"]}
    assert akoflow("run", str(wf), "--quiet").returncode == 0
    did = states(akoflow, 2)
    assert ran(counters, "use") == 1 and did == {"fetch": "succeeded", "use": "cached"}
    # What `fetch` writes is known once it ran: the dry run cannot say `use` runs (it does
    # not) nor that it is reused (it is only when fetch writes the same again).
    assert would == {
        "fetch": ("run", "cache: false"),
        "use": ("undecided", "decided after fetch runs"),
    }


APPENDER = """\
name: alias
spec:
  runtime: local
  activities:
    - name: make
      run: |
        echo ran >> {counters}/make
        head -c 300000 /dev/urandom > blob.bin
        echo header > log.txt
    - name: extend
      dependsOn: [make]
      run: |
        echo ran >> {counters}/extend
        echo "{line}" >> log.txt
        head -c 10 /dev/zero >> blob.bin
"""


def test_a_restored_output_appended_to_leaves_the_earlier_runs_file_alone(
    akoflow: Akoflow, tmp_path: Path, state_dir: Path, counters: Path
) -> None:
    """Run 2 restores `make`'s files and a changed `extend` appends to them: run 1's files
    (the source of later restores) must not change, and run 3 restores run 1's bytes."""
    wf = tmp_path / "alias.yaml"
    wf.write_text(APPENDER.format(counters=counters, line="first"))
    assert akoflow("run", str(wf), "--quiet").returncode == 0
    one = state_dir / "runs" / "1-alias" / "data"
    # What `make` wrote, before `extend` appended (its lineage records that version).
    blob_made = (one / "blob.bin").read_bytes()[:300000]
    log_one, blob_one = (one / "log.txt").read_bytes(), (one / "blob.bin").read_bytes()
    wf.write_text(APPENDER.format(counters=counters, line="second"))
    assert akoflow("run", str(wf), "--quiet").returncode == 0
    two = state_dir / "runs" / "2-alias" / "data"
    assert (one / "log.txt").read_bytes() == log_one
    assert (one / "blob.bin").read_bytes() == blob_one
    assert (two / "log.txt").read_text() == "header\nsecond\n"
    for name in ("log.txt", "blob.bin"):
        assert os.stat(two / name).st_ino != os.stat(one / name).st_ino
        assert os.stat(two / name).st_nlink == 1
    # make's output in run 1 was appended to by run 1's extend: it cannot be restored from
    # there as make made it, so make runs (or is restored from run 2, if that kept it).
    wf.write_text(APPENDER.format(counters=counters, line="third"))
    assert akoflow("run", str(wf), "--quiet").returncode == 0
    three = state_dir / "runs" / "3-alias" / "data"
    assert (three / "log.txt").read_text() == "header\nthird\n"
    blob = (three / "blob.bin").read_bytes()
    assert len(blob) == 300010 and blob[-10:] == b"\0" * 10
    if states(akoflow, 3)["make"] == "cached":
        assert blob[:300000] in (blob_made, (two / "blob.bin").read_bytes()[:300000])
    assert ran(counters, "extend") == 3


def test_two_runs_of_one_file_at_once_run_nothing_twice(
    akoflow: Akoflow, tmp_path: Path, state_dir: Path, counters: Path
) -> None:
    """After a first run, the same file is run twice at once in the one state dir: every
    activity is reused or runs once; the loser fails with a clear message (no traceback)."""
    lines = ["name: twice", "spec:", "  runtime: local", "  activities:"]
    for i in range(6):
        lines += [
            f"    - name: t{i}",
            "      run: |",
            f"        echo ran $AKOFLOW_WORKFLOW_ID >> {counters}/t{i}",
            f"        echo {i} > t{i}.txt",
        ]
    wf = tmp_path / "twice.yaml"
    wf.write_text("\n".join(lines) + "\n")
    assert akoflow("run", str(wf), "--quiet").returncode == 0
    lines += [
        "    - name: extra",
        "      run: |",
        f"        echo ran $AKOFLOW_WORKFLOW_ID >> {counters}/extra",
    ]
    wf.write_text("\n".join(lines) + "\n")
    argv = [sys.executable, "-m", "akoflow", "run", str(wf), "--quiet"]
    argv += ["--state-dir", str(state_dir)]
    both = [
        subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env()
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in both]
    codes = sorted(p.returncode for p in both)
    assert codes[0] == 0, outs
    for (out, err), p in zip(outs, both, strict=True):
        assert "Traceback" not in out + err
        if p.returncode:
            assert "is being run by process" in err
    # No activity ran twice in one run; each run that ended has every file, right.
    for name in [*(f"t{i}" for i in range(6)), "extra"]:
        runs = (counters / name).read_text().split()[1::2]
        assert len(runs) == len(set(runs)), (name, runs)
    listed = json.loads(akoflow("status", "--json").stdout)
    assert {w["state"] for w in listed} == {"succeeded"}
    for w in listed:
        data = state_dir / "runs" / f"{w['id']}-twice" / "data"
        assert {i: (data / f"t{i}.txt").read_text() for i in range(6)} == {
            i: f"{i}\n" for i in range(6)
        }
