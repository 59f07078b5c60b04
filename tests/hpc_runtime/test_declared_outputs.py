"""Declared outputs on the HPC runtime, where files stay on the cluster: each job's own
listing after its command says whether they are there (not the engine's data dir), a declared
output found there is that attempt's, and one missing fails the attempt with its name, also
with provenance off (the listing is then made for the check alone). Against the private SLURM
cluster, through the engine; the lineage is read back from the ``akoflow prov`` export."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from akoflow.states import WorkflowState
from tests.e2e.test_engine_inprocess import engine_with
from tests.hpc_runtime.test_hpc_engine import states
from tests.hpc_runtime.test_remote_provenance import export_prov
from tests.prov_support import relations

DECLARED = """\
name: declared
spec:
  runtime: hpc
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


def run(tmp_path: Path) -> dict[str, tuple[str, str | None]]:
    async def scenario() -> dict[str, tuple[str, str | None]]:
        async with engine_with(tmp_path, DECLARED) as (repo, engine, wf_id):
            wf = await engine.attach(wf_id)
            state = await asyncio.wait_for(engine.wait(wf_id), timeout=90)
            assert state is WorkflowState.FAILED, states(wf)
            return {a.name: (str(a.state), a.reason) for a in repo.list_activities(wf_id)}

    return asyncio.run(scenario())


@pytest.mark.parametrize("provenance", ["on", "off"])
def test_declared_outputs_are_checked_in_the_jobs_listing(
    hpc_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, provenance: str
) -> None:
    monkeypatch.setenv("AKOFLOW_PROVENANCE", provenance)
    mount = Path(hpc_env["HPC_MOUNT_PATH"])
    # On the engine's side, under another name: it is copied to the cluster (the data plane)
    # and does not satisfy the declaration of report.txt.
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "report.text").write_text("local\n")

    found = run(tmp_path)
    assert found["maker"] == ("succeeded", None)
    assert found["partial"] == ("failed", "declared outputs missing: report.txt")
    # A failed attempt's files stay on the cluster (nothing of it is collected).
    assert not (tmp_path / "data" / "p.txt").exists()
    assert (tmp_path / "data" / "out" / "r.txt").read_text() == "r\n"  # the sink that passed
    assert (mount / "out" / "r.txt").read_text() == "r\n"
    if provenance == "on":
        _, generated = relations(export_prov(tmp_path / "state", "declared"))
        at = f"hpc:{mount}/"
        assert generated == {("maker", at + "out/r.txt"), ("partial", at + "p.txt")}
