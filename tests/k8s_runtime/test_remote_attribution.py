"""Who generated a file that stays on a Kubernetes volume (issue 15): the pods' own listings
of the shared volume, before and after each command, are all the engine knows. Against the
emulated cluster (the pods really run in a private dockerd), through the engine; the lineage is
checked in the store and in the ``akoflow prov`` export read back with ``prov``.

- Two attempts that run at the same time both list what either wrote: a listing cannot tell
  who wrote, so such a version is ambiguous between them, unless exactly one declared it.
- A declared output present after the command is its attempt's; a missing one fails the
  attempt with the list of missing paths, also with provenance off (the listing is then made
  for the check alone)."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from prov.model import ProvDocument

from akoflow import service
from akoflow.states import WorkflowState
from tests.conftest import Akoflow, cli_env, start_cli, wait_for
from tests.k8s_runtime.conftest import IMAGE, engine_with, run
from tests.k8s_support.cluster import EmulatedCluster
from tests.prov_support import ambiguous, relations

# Wait (bounded) for a file of the other pod. The sync files live in .akoflow/, which the
# listings leave out, so they are no part of the lineage.
WAIT = 'i=0; until [ -e ".akoflow/sync/$1" ] || [ $i -ge 600 ]; do sleep 0.05; i=$((i+1)); done'

# Both pods are up (their first listings taken) before either writes, and both have written
# before either ends (its last listing): every file shows up between the listings of both.
# `left` writes a.txt (undeclared) and shared.txt; `right` writes shared.txt too, b.txt (only
# it declares it) and both.txt (both declare it).
OVERLAP = f"""\
name: overlap
spec:
  runtime: k8s-aws
  collect: none  # the lineage of the volume alone (the data plane: test_k8s_data_plane.py)
  image: {IMAGE}
  storagePolicy:
    type: standalone
  activities:
    - name: left
      outputs: [both.txt]
      run: |
        wait_for() {{ {WAIT}; }}
        mkdir -p .akoflow/sync && touch .akoflow/sync/left-up
        wait_for right-up
        echo a > a.txt
        echo left >> shared.txt
        touch .akoflow/sync/left-wrote
        wait_for right-wrote
    - name: right
      outputs: [b.txt, both.txt]
      run: |
        wait_for() {{ {WAIT}; }}
        mkdir -p .akoflow/sync && touch .akoflow/sync/right-up
        wait_for left-up
        echo b > b.txt
        echo both > both.txt
        echo right >> shared.txt
        touch .akoflow/sync/right-wrote
        wait_for left-wrote
"""

DECLARED = f"""\
name: declared
spec:
  runtime: k8s-aws
  image: {IMAGE}
  activities:
    - name: maker
      run: |
        mkdir -p out
        echo r > out/r.txt
      outputs: ["out/*.txt"]
    - name: partial
      run: echo p > p.txt
      outputs: [p.txt, report.txt]
"""


def export_prov(state: Path, workflow: str) -> ProvDocument:
    done = subprocess.run(
        [sys.executable, "-m", "akoflow", "prov", workflow, "--state-dir", str(state)],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return ProvDocument.deserialize(io.StringIO(done.stdout), format="json")


def pvc_location(cluster: EmulatedCluster) -> str:
    (pvc,) = cluster.objects("v1/persistentvolumeclaims", "akoflow")
    return f"k8s-aws:pvc/{pvc['metadata']['name']}"


def test_overlapping_pods_writing_the_volume_are_ambiguous_unless_one_declared(
    tmp_path: Path, cluster: EmulatedCluster
) -> None:
    async def scenario() -> tuple[set[tuple[str, str]], dict[str, tuple[set[str], str]]]:
        async with engine_with(tmp_path, OVERLAP, cluster.env("k8s-aws")) as (repo, engine, wf):
            run_ = await engine.attach(wf)
            state = await asyncio.wait_for(engine.wait(wf), 120)
            assert state is WorkflowState.SUCCEEDED, {
                a.name: a.reason for a in run_.activities.values()
            }
            generated = {(f.activity, f.path) for f in repo.list_files(wf) if f.role == "generated"}
            unsure = {
                f.path: ({c.activity for c in f.candidates}, f.reason)
                for f in repo.list_ambiguous_files(wf)
            }
            assert {f.location for f in repo.list_ambiguous_files(wf)} == {pvc_location(cluster)}
            return generated, unsure

    generated, unsure = run(scenario())
    # The store: b.txt is right's (it alone declared it); the rest is ambiguous.
    assert generated == {("right", "b.txt")}
    both = {"left", "right"}
    assert {path: names for path, (names, _) in unsure.items()} == {
        "a.txt": both,
        "shared.txt": both,
        "both.txt": both,
    }
    assert unsure["a.txt"][1] == unsure["shared.txt"][1]
    assert "listings" in unsure["a.txt"][1] and "declared" not in unsure["a.txt"][1]
    assert unsure["both.txt"][1].endswith("declared as an output by left, right")

    # The export: the same, the ambiguous versions with candidates and no wasGeneratedBy.
    doc = export_prov(tmp_path / "state", "overlap")
    _, exported = relations(doc)
    assert exported == {("right", f"{pvc_location(cluster)}/b.txt")}
    assert ambiguous(doc) == {"a.txt": both, "shared.txt": both, "both.txt": both}


@pytest.mark.parametrize("provenance", ["on", "off"])
def test_declared_outputs_are_checked_in_the_pods_listing(
    tmp_path: Path, cluster: EmulatedCluster, monkeypatch: pytest.MonkeyPatch, provenance: str
) -> None:
    monkeypatch.setenv("AKOFLOW_PROVENANCE", provenance)
    # On the engine's side, under another name: it is copied to the volume (the data plane)
    # and does not satisfy the declaration of report.txt.
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "report.text").write_text("local\n")

    async def scenario() -> dict[str, tuple[str, str | None]]:
        async with engine_with(tmp_path, DECLARED, cluster.env("k8s-aws")) as (repo, engine, wf):
            await engine.attach(wf)
            assert await asyncio.wait_for(engine.wait(wf), 120) is WorkflowState.FAILED
            return {a.name: (str(a.state), a.reason) for a in repo.list_activities(wf)}

    found = run(scenario())
    assert found["maker"] == ("succeeded", None)
    assert found["partial"] == ("failed", "declared outputs missing: report.txt")
    if provenance == "on":
        at = f"{pvc_location(cluster)}/"
        _, generated = relations(export_prov(tmp_path / "state", "declared"))
        assert generated == {("maker", at + "out/r.txt"), ("partial", at + "p.txt")}


# `right` is up before `left` writes a.txt, and holds until the test releases it.
ACROSS_A_RESTART = f"""\
name: restart
spec:
  runtime: k8s-aws
  collect: none  # the lineage of the volume alone
  image: {IMAGE}
  activities:
    - name: left
      run: |
        wait_for() {{ {WAIT}; }}
        wait_for right-up
        echo a > a.txt
    - name: right
      run: |
        wait_for() {{ {WAIT}; }}
        mkdir -p .akoflow/sync && touch .akoflow/sync/right-up
        wait_for release
        echo b > b.txt
"""


def test_a_version_recorded_before_a_restart_becomes_ambiguous_when_an_overlapping_pod_ends(
    akoflow: Akoflow, tmp_path: Path, state_dir: Path, cluster: EmulatedCluster
) -> None:
    """The engine records a.txt as `left`'s (the only listings that show it so far) and is
    killed; the resumed engine hears of `right`, whose listings show a.txt too: the stored
    record is taken back and a.txt is ambiguous between them."""
    (tmp_path / "wf.yaml").write_text(ACROSS_A_RESTART)
    env = cli_env(**cluster.env("k8s-aws"))
    argv = ["run", str(tmp_path / "wf.yaml"), "--quiet", "--state-dir", str(state_dir)]
    engine = start_cli([*argv, "--data-dir", str(tmp_path / "data")], env)

    def recorded() -> set[tuple[str, str]]:
        if engine.poll() is not None:
            raise AssertionError(engine.communicate())
        if not (state_dir / "akoflow.db").exists():
            return set()
        repo = service.open_repository(state_dir)
        try:
            return {(f.activity, f.path) for f in repo.list_files(1) if f.role == "generated"}
        finally:
            repo.close()

    try:
        wait_for(lambda: ("left", "a.txt") in recorded(), timeout=60)
    finally:
        os.kill(engine.pid, signal.SIGKILL)
        engine.communicate(timeout=10)
    (pvc,) = cluster.objects("v1/persistentvolumeclaims", "akoflow")
    volume = cluster.kubelet.pvc_dir("akoflow", pvc["metadata"]["name"])
    (volume / ".akoflow" / "sync" / "release").touch()

    res = akoflow("resume", "--json", env=env)
    assert res.returncode == 0, res.stderr + res.stdout
    repo = service.open_repository(state_dir)
    try:
        generated = {(f.activity, f.path) for f in repo.list_files(1) if f.role == "generated"}
        unsure = {f.path: {c.activity for c in f.candidates} for f in repo.list_ambiguous_files(1)}
    finally:
        repo.close()
    assert generated == {("right", "b.txt")}
    assert unsure == {"a.txt": {"left", "right"}}
    doc = export_prov(state_dir, "restart")
    assert relations(doc)[1] == {("right", f"{pvc_location(cluster)}/b.txt")}
    assert ambiguous(doc) == {"a.txt": {"left", "right"}}
