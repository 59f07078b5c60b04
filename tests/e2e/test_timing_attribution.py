"""Lineage inferred from timing (``AKOFLOW_OBSERVE=off``, as without CAP_SYS_ADMIN) never
claims a writer it cannot know (issue 15, item 3). Timing says which activities ran when a
file changed, never who wrote it: a process of no activity (here the test itself, as a user's
shell would) writing into the data dir while one activity runs is indistinguishable from that
activity. So every change is ambiguous, with the activities that ran then as candidates, unless
exactly one ran then and declared the file as an output. Checked in the store, in the exported
PROV read back with ``prov``, in ``akoflow prov``'s message and in the report."""

from __future__ import annotations

import html
import io
import re
import subprocess
import sys
from pathlib import Path

from prov.model import ProvDocument

from akoflow import service
from tests.conftest import cli_env, wait_for
from tests.prov_support import ambiguous, mechanism, relations

TIMING = "inferred from timing (AKOFLOW_OBSERVE=off)"
ONE_RAN = (
    "inferred from timing: changed while only its candidate ran, which timing cannot tell "
    "from a write by another process"
)

# `solo` runs alone; while it waits, the test writes stranger.txt into the data dir. Then it
# writes its declared output and a file it did not declare; `reader` (after it) reads both.
WORKFLOW = """\
name: timing
spec:
  activities:
    - name: solo
      run: |
        touch started
        i=0
        until [ -e stranger.txt ] || [ $i -ge 3000 ]; do sleep 0.01; i=$((i+1)); done
        echo mine > mine.txt
        echo other > undeclared.txt
      outputs: [mine.txt]
    - name: reader
      dependsOn: [solo]
      run: cat mine.txt undeclared.txt > copy.txt
      outputs: [copy.txt]
"""


def test_a_write_by_no_activity_is_never_given_to_the_one_running(tmp_path: Path) -> None:
    env = cli_env(AKOFLOW_OBSERVE="off")
    (tmp_path / "wf.yaml").write_text(WORKFLOW)
    data = tmp_path / "data"
    data.mkdir()
    base = [sys.executable, "-m", "akoflow"]
    state = ["--state-dir", str(tmp_path / "state")]
    engine = subprocess.Popen(
        [*base, "run", str(tmp_path / "wf.yaml"), *state, "--data-dir", str(data), "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        wait_for(lambda: (data / "started").exists() or engine.poll() is not None)
        (data / "stranger.txt").write_text("not solo's\n")  # while only solo runs
    finally:
        out, err = engine.communicate(timeout=120)
    assert engine.returncode == 0, err + out

    # The store: only the declared output has a generator; the rest has solo as its one
    # candidate, with a reason that says it was inferred from timing.
    repo = service.open_repository(tmp_path / "state")
    try:
        files = {(f.activity, f.role, f.path) for f in repo.list_files(1)}
        unsure = {
            f.path: ([c.activity for c in f.candidates], f.reason)
            for f in repo.list_ambiguous_files(1)
        }
        stored_mechanism = repo.provenance_mechanism(1)
    finally:
        repo.close()
    assert stored_mechanism == TIMING
    assert {f for f in files if f[1] == "generated"} == {
        ("solo", "generated", "mine.txt"),
        ("reader", "generated", "copy.txt"),
    }
    assert unsure == {
        "started": (["solo"], ONE_RAN),
        "stranger.txt": (["solo"], ONE_RAN),
        "undeclared.txt": (["solo"], ONE_RAN),
    }
    # Used, by timing: what its dependency generated or alone may have (not what it read).
    assert {("reader", "used", "mine.txt"), ("reader", "used", "undeclared.txt")} <= files

    # The export: the same, with no wasGeneratedBy for the ambiguous versions.
    prov = subprocess.run([*base, "prov", "1", *state], capture_output=True, text=True, env=env)
    assert prov.returncode == 0, prov.stderr
    assert prov.stderr == (
        f"file accesses of run 1: {TIMING}\n"
        "3 file versions ambiguous: candidates but no generator (akoflow:candidate, "
        "akoflow:ambiguity says why)\n"
    )
    doc = ProvDocument.deserialize(io.StringIO(prov.stdout), format="json")
    assert mechanism(doc) == TIMING
    used, generated = relations(doc)
    assert generated == {("solo", "mine.txt"), ("reader", "copy.txt")}
    assert ambiguous(doc) == {
        "started": {"solo"},
        "stranger.txt": {"solo"},
        "undeclared.txt": {"solo"},
    }
    assert {("reader", "mine.txt"), ("reader", "undeclared.txt")} <= used

    # The report says how the accesses were known and why each version is ambiguous.
    report = tmp_path / "report.html"
    done = subprocess.run(
        [*base, "report", "1", "-o", str(report), *state], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr
    page = report.read_text()
    assert f"file accesses: {TIMING}" in html.unescape(page)
    cells = [
        [html.unescape(re.sub(r"<[^>]+>", "", c)) for c in re.findall(r"<td[^>]*>(.*?)</td>", r)]
        for r in re.findall(r"<tr[^>]*>(.*?)</tr>", page, re.S)
    ]
    assert ["stranger.txt", "ambiguous: solo #1", ONE_RAN] in cells
    assert not [c for c in cells if c[:2] == ["stranger.txt", "solo"]]
