"""Declared data (issue 15, item 2): an activity's ``inputs:`` and ``outputs:``, through the
real CLI on the local runtime. A declared output missing after a successful attempt fails
it with the missing paths; a declared input missing at dispatch fails the activity without a
run; a declared output decides the attribution where nothing observed says otherwise
(tests/e2e/test_timing_attribution.py). Every lineage check reads the exported PROV back."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
from prov.model import ProvActivity, ProvDocument

from akoflow import service
from tests.conftest import cli_env
from tests.prov_support import ambiguous, relations


def run(
    tmp_path: Path, yaml: str, *, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    (tmp_path / "wf.yaml").write_text(yaml)
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    argv = [sys.executable, "-m", "akoflow", "run", str(tmp_path / "wf.yaml")]
    argv += ["--state-dir", str(tmp_path / "state"), "--data-dir", str(data), "-q"]
    return subprocess.run(argv, capture_output=True, text=True, env=env or cli_env(), timeout=120)


def outcomes(tmp_path: Path) -> dict[str, tuple[str, str | None, int]]:
    """Activity -> (state, reason, attempts made) as stored."""
    repo = service.open_repository(tmp_path / "state")
    try:
        return {
            a.name: (str(a.state), a.reason, len(repo.list_attempts(a.id)))
            for a in repo.list_activities(1)
        }
    finally:
        repo.close()


def prov(tmp_path: Path, env: dict[str, str] | None = None) -> ProvDocument:
    done = subprocess.run(
        [sys.executable, "-m", "akoflow", "prov", "1", "--state-dir", str(tmp_path / "state")],
        capture_output=True,
        text=True,
        env=env or cli_env(),
    )
    assert done.returncode == 0, done.stderr
    return ProvDocument.deserialize(io.StringIO(done.stdout), format="json")


def test_a_missing_declared_output_fails_the_attempt_with_its_name(tmp_path: Path) -> None:
    done = run(
        tmp_path,
        """name: declared
spec:
  activities:
    - name: partial
      run: echo a > a.txt
      outputs: [a.txt, b.txt, "plots/*.png"]
    - name: after
      run: cat a.txt
      dependsOn: partial
""",
    )
    assert done.returncode != 0
    found = outcomes(tmp_path)
    state, reason, attempts = found["partial"]
    assert state == "failed" and attempts == 1
    assert reason == "declared outputs missing: b.txt, plots/*.png"
    assert found["after"][0] == "skipped"
    # What it did write is still its own.
    _, generated = relations(prov(tmp_path))
    assert generated == {("partial", "a.txt")}


def test_glob_outputs_are_satisfied_and_attributed(tmp_path: Path) -> None:
    done = run(
        tmp_path,
        """name: declared
spec:
  activities:
    - name: plot
      run: |
        mkdir -p plots/2024
        echo 1 > plots/2024/one.png
        echo 2 > plots/two.png
      outputs: ["plots/**/*.png", "plots/t?o.png"]
""",
    )
    assert done.returncode == 0, done.stderr + done.stdout
    assert outcomes(tmp_path)["plot"][0] == "succeeded"
    doc = prov(tmp_path)
    _, generated = relations(doc)
    assert generated == {("plot", "plots/2024/one.png"), ("plot", "plots/two.png")}
    # The declaration is in the export, with the attempt.
    (attempt,) = [
        r for r in doc.get_records(ProvActivity) if "activity/plot/1" in str(r.identifier)
    ]
    declared = {str(v) for v in attempt.get_attribute("akoflow:declaredOutput")}
    assert declared == {"plots/**/*.png", "plots/t?o.png"}


def test_a_missing_declared_input_fails_without_a_run(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "present.csv").write_text("x\n")
    done = run(
        tmp_path,
        """name: declared
spec:
  activities:
    - name: reader
      run: touch ran.txt
      inputs: [present.csv, "raw/*.csv", absent.txt]
""",
    )
    assert done.returncode != 0
    state, reason, attempts = outcomes(tmp_path)["reader"]
    assert state == "failed" and attempts == 0
    assert reason == "declared inputs missing in the data dir: raw/*.csv, absent.txt"
    assert not (data / "ran.txt").exists()


def test_a_declared_output_decides_between_overlapping_activities_under_timing(
    tmp_path: Path,
) -> None:
    """Without observation, a file changed while two activities ran is the one's that
    declared it (timing sees nobody's writes: the declaration is the workflow's word, as on
    HPC and Kubernetes); a file neither declared is ambiguous between both."""
    env = cli_env(AKOFLOW_OBSERVE="off")
    done = run(
        tmp_path,
        """name: declared
spec:
  activities:
    - name: maker
      run: |
        until [ -e go ]; do sleep 0.01; done
        echo made > made.txt
        echo side > side.txt
        sleep 0.3
      outputs: [made.txt]
    - name: bystander
      run: |
        touch go
        sleep 0.6
""",
        env=env,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    doc = prov(tmp_path, env)
    _, generated = relations(doc)
    assert generated == {("maker", "made.txt")}
    assert ambiguous(doc) == {
        "go": {"maker", "bystander"},
        "side.txt": {"maker", "bystander"},
    }
    repo = service.open_repository(tmp_path / "state")
    try:
        reasons = {f.path: f.reason for f in repo.list_ambiguous_files(1)}
        files = {(f.activity, f.role, f.path) for f in repo.list_files(1)}
    finally:
        repo.close()
    assert files == {("maker", "generated", "made.txt")}
    assert reasons["side.txt"].startswith("inferred from timing: changed while several")
    assert "declared" not in reasons["side.txt"]


@pytest.mark.needs_root  # observed with fanotify
def test_two_observed_writers_of_a_declared_output(tmp_path: Path) -> None:
    """Both append to ``same.txt`` while both run: observed, both wrote it, so it stays
    ambiguous though ``one`` declared it (``two``'s write may be the last); the reason names
    the declarer."""
    done = run(
        tmp_path,
        """name: declared
spec:
  activities:
    - name: one
      run: |
        echo 1 >> same.txt
        until grep -q 2 same.txt; do sleep 0.01; done
      outputs: [same.txt]
    - name: two
      run: |
        until [ -s same.txt ]; do sleep 0.01; done
        echo 2 >> same.txt
""",
    )
    assert done.returncode == 0, done.stderr + done.stdout
    doc = prov(tmp_path)
    _, generated = relations(doc)
    assert generated == set()
    assert ambiguous(doc) == {"same.txt": {"one", "two"}}
    repo = service.open_repository(tmp_path / "state")
    try:
        (same,) = repo.list_ambiguous_files(1)
    finally:
        repo.close()
    assert same.reason.endswith("; declared as an output by one")
