"""Provenance of files that stay on the cluster: each SLURM job lists MOUNT_PATH before and
after its command, the runtime reads both listings back over SFTP, and the engine records what
each attempt used and generated under the location ``hpc:<MOUNT_PATH>``, exported as W3C PROV.
Against the private SLURM cluster, through the engine and the ``akoflow prov`` CLI."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prov.model import ProvDocument, ProvGeneration, ProvMembership

from akoflow.states import WorkflowState
from akoflow.store.repository import FileRecord, InitialFile
from tests.conftest import Akoflow, cli_env, start_cli, wait_for
from tests.e2e.test_engine_inprocess import engine_with
from tests.hpc_runtime.conftest import runtime_env
from tests.hpc_runtime.test_hpc_engine import states
from tests.hpc_runtime.test_hpc_runtime import Recorder, job_spec, make, wait_finished
from tests.prov_support import INPUTS, ambiguous, paths_of, relations
from tests.slurm_support.cluster import SlurmCluster

# params.txt is on the cluster before the run. The steps read input.txt and each writes its
# own output as its last action; step-b starts its work a little later, as real steps do (see
# tests/e2e/test_provenance.py). step-a and step-b run at the same time: step-b's listings may
# show out-a.txt appear, which no listing tells from its own write; their declared outputs
# decide (tests/k8s_runtime/test_remote_attribution.py: without them, ambiguous).
FAN = """\
name: fan
spec:
  runtime: hpc
  activities:
    - name: prepare
      run: cat params.txt > input.txt
    - name: step-a
      dependsOn: [prepare]
      run: wc -c < input.txt > out-a.txt
      outputs: [out-a.txt]
    - name: step-b
      dependsOn: [prepare]
      outputs: [out-b.txt]
      run: |
        sleep 1
        cat input.txt input.txt > out-b.txt
    - name: join
      dependsOn: [step-a, step-b]
      run: cat out-a.txt out-b.txt > result.txt
"""


def rows(records: list[FileRecord]) -> set[tuple[str, str, str]]:
    return {(f.activity, f.role, f.path) for f in records}


def export_prov(state: Path, workflow: str) -> ProvDocument:
    done = subprocess.run(
        [sys.executable, "-m", "akoflow", "prov", workflow, "--state-dir", str(state)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    return ProvDocument.deserialize(io.StringIO(done.stdout), format="json")


def control_file(path: str) -> bool:
    """AkôFlow's own files on the cluster (relative or location-qualified path)."""
    return ".akoflow/" in path or "akoflow_finished_" in path


def test_fan_out_fan_in_on_the_cluster_is_in_the_provenance(
    hpc_env: dict[str, str], tmp_path: Path
) -> None:
    mount = Path(hpc_env["HPC_MOUNT_PATH"])
    location = f"hpc:{mount}"
    (mount / "params.txt").write_text("seed\n")

    async def scenario() -> tuple[list[FileRecord], list[InitialFile]]:
        async with engine_with(tmp_path, FAN) as (repo, engine, wf_id):
            wf = await engine.attach(wf_id)
            state = await asyncio.wait_for(engine.wait(wf_id), timeout=90)
            assert state is WorkflowState.SUCCEEDED, states(wf)
            return repo.list_files(wf_id), repo.list_initial_files(wf_id)

    records, initial = asyncio.run(scenario())
    # Everything stayed on the cluster but the last activity's file, which came back to the
    # engine's data dir (spec.collect's default: the data plane, tests/hpc_runtime/
    # test_data_plane.py).
    assert (mount / "result.txt").read_text() == "5\nseed\nseed\n"
    assert (tmp_path / "data" / "result.txt").read_text() == "5\nseed\nseed\n"
    assert not (tmp_path / "data" / "out-a.txt").exists()
    assert {f.location for f in records} == {location}
    assert rows(records) == {
        ("prepare", "generated", "input.txt"),
        ("step-a", "used", "input.txt"),
        ("step-a", "generated", "out-a.txt"),
        ("step-b", "used", "input.txt"),
        ("step-b", "generated", "out-b.txt"),
        ("join", "used", "out-a.txt"),
        ("join", "used", "out-b.txt"),
        ("join", "generated", "result.txt"),
    }
    sizes = {f.path: f.size for f in records if f.role == "generated"}
    assert sizes == {"input.txt": 5, "out-a.txt": 2, "out-b.txt": 10, "result.txt": 12}
    assert all(f.sha256 is None for f in records)  # remote files carry no checksum
    # What was on the cluster before the run: the run's inputs, at the cluster's location.
    assert [(f.location, f.path, f.size) for f in initial] == [(location, "params.txt", 5)]

    # The same relations in the W3C PROV export, each file an entity at the cluster location.
    doc = export_prov(tmp_path / "state", "fan")
    used, generated = relations(doc)  # remote files as "<location>/<path>"
    at = f"{location}/"
    assert generated == {
        ("prepare", at + "input.txt"),
        ("step-a", at + "out-a.txt"),
        ("step-b", at + "out-b.txt"),
        ("join", at + "result.txt"),
    }
    assert used == {
        ("prepare", INPUTS),
        ("step-a", INPUTS),
        ("step-a", at + "input.txt"),
        ("step-b", INPUTS),
        ("step-b", at + "input.txt"),
        ("join", INPUTS),
        ("join", at + "out-a.txt"),
        ("join", at + "out-b.txt"),
    }
    members = [
        paths_of(doc)[str(m.formal_attributes[1][1])] for m in doc.get_records(ProvMembership)
    ]
    assert members == [at + "params.txt"]
    entities = [e for e in doc.get_records() if e.is_element() and e.get_attribute("akoflow:path")]
    # The collected copy of result.txt on the engine host is the engine's copy of the
    # cluster's version, not a version of its own: generated by the copy alone, derived
    # from the cluster's version (tests/hpc_runtime/test_data_plane_prov.py), no ambiguity.
    (host,) = [e for e in entities if "remote/" not in str(e.identifier)]
    assert {str(v) for v in host.get_attribute("akoflow:path")} == {"result.txt"}
    assert not host.get_attribute("akoflow:attribution")
    makers = {
        str(g.formal_attributes[1][1])
        for g in doc.get_records(ProvGeneration)
        if g.formal_attributes[0][1] == host.identifier
    }
    assert [m.split(":", 1)[1].split("/")[0] for m in makers] == ["copy"]
    entities.remove(host)
    assert len(entities) == 5
    for entity in entities:
        assert {str(v) for v in entity.get_attribute("akoflow:location")} == {location}
        assert "remote/" in str(entity.identifier)
    assert not any(control_file(path) for _, path in used | generated)
    # The job's own files are there on the cluster, just never part of the provenance.
    assert list(mount.glob(".akoflow/*/wf1-join-a1/files.after"))
    assert list(mount.glob("akoflow_finished_*"))


def test_provenance_off_adds_no_listing_to_the_job(
    hpc_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AKOFLOW_PROVENANCE", "off")
    mount = Path(hpc_env["HPC_MOUNT_PATH"])
    text = (
        # Nothing is brought back (collect: none): the data plane needs no listing either.
        "name: quiet\nspec:\n  runtime: hpc\n  collect: none\n  activities:\n"
        "    - name: one\n      run: echo 1 > one.txt\n"
    )

    async def scenario() -> None:
        async with engine_with(tmp_path, text) as (repo, engine, wf_id):
            wf = await engine.attach(wf_id)
            state = await asyncio.wait_for(engine.wait(wf_id), timeout=60)
            assert state is WorkflowState.SUCCEEDED, states(wf)
            assert repo.list_files(wf_id) == []

    asyncio.run(scenario())
    assert (mount / "one.txt").read_text() == "1\n"
    (attempt,) = mount.glob(".akoflow/*/wf1-one-a1")
    script = (attempt / "job.sbatch").read_text()
    assert "akf_list_files" not in script and "files.before" not in script
    assert "find" not in script
    assert sorted(p.name for p in attempt.iterdir()) == [
        "exit", "job.sbatch", "script.sh", "slurm.out", "started", "stderr", "stdout",
        "submitted",
    ]  # fmt: skip


def test_adoption_after_a_restart_delivers_the_listings_and_a_cancel_has_none(
    slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    """A job that ends while no runtime watches it is adopted by a new runtime (an engine
    restarted) with both listings; a job cancelled mid-command ends with ``files`` None."""
    env = runtime_env(slurm_cluster, "hpc", "mount/adopt-files")
    mount = Path(env["HPC_MOUNT_PATH"])
    mount.mkdir(parents=True, exist_ok=True)
    (mount / "given.txt").write_text("given\n")
    job = job_spec(
        tmp_path,
        "late",
        "cat given.txt > seen.txt\nwhile [ ! -e late.release ]; do sleep 0.1; done\n"
        "echo done > late.out\n",
    )
    killed = job_spec(tmp_path, "killed", "touch killed.started\nsleep 60\n")
    location = f"hpc:{mount}"

    async def scenario() -> None:
        first = make(env)
        await first.start()
        try:
            handle = await first.submit(job)
            assert handle["files"] is True
        finally:
            await first.stop()  # the job keeps running in SLURM
        _, paths = first._paths(job)
        while not (mount / "seen.txt").exists():
            await asyncio.sleep(0.05)
        (mount / "late.release").touch()
        while not Path(paths.exit).exists():
            await asyncio.sleep(0.05)

        events = Recorder()
        second = make(env, events)
        await second.start()
        try:
            adopted = await second.adopt(job, handle)
            assert adopted.kind == "finished" and adopted.outcome is not None
            assert adopted.outcome.succeeded and adopted.outcome.exit_code == 0
            files = adopted.outcome.files
            assert files is not None and files.location == location
            assert set(files.before) == {"given.txt"}
            assert set(files.after) == {"given.txt", "seen.txt", "late.release", "late.out"}
            assert files.after["late.out"].size == len("done\n")
            assert files.before_time is not None and files.after_time is not None
            assert files.before_time <= files.after_time

            # A job cancelled while its command runs has the first listing only: no files.
            await second.submit(killed)
            while not (mount / "killed.started").exists():
                await asyncio.sleep(0.05)
            await second.cancel(killed.key, {})
            outcome = await wait_finished(events, killed.key)
            assert not outcome.succeeded and outcome.files is None, outcome
            assert outcome.reason == "cancelled"
            _, killed_paths = second._paths(killed)
            assert Path(killed_paths.files_before).exists()
            assert not Path(killed_paths.files_after).exists()
        finally:
            await second.stop()

    asyncio.run(scenario())


def test_without_record_files_the_runtime_reads_no_listing(
    slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    env = runtime_env(slurm_cluster, "hpc", "mount/no-files")
    job = dataclasses.replace(job_spec(tmp_path, "plain", "echo x > x.txt"), record_files=False)

    async def scenario() -> None:
        events = Recorder()
        rt = make(env, events)
        await rt.start()
        try:
            handle = await rt.submit(job)
            assert handle["files"] is False
            outcome = await wait_finished(events, job.key)
            assert outcome.succeeded and outcome.files is None
            _, paths = rt._paths(job)
            assert not Path(paths.files_before).exists()
            assert "akf_list_files" not in Path(paths.sbatch).read_text()
        finally:
            await rt.stop()

    asyncio.run(scenario())


# h1 and h2 append to h.txt side by side (ambiguous between them); h3, after both, appends
# (h3's); h4 after it writes nothing; h5 after h4 waits for `go`, then appends: the engine is
# SIGKILLed while it waits, and `resume` adopts its end.
RESUMED = """\
name: resumed
spec:
  runtime: hpc
  activities:
    - name: h1
      run: |
        sleep 0.5
        echo h1 >> h.txt
        sleep 1.5
    - name: h2
      run: |
        sleep 0.7
        echo h2 >> h.txt
        sleep 1.5
    - name: h3
      dependsOn: [h1, h2]
      run: echo h3 >> h.txt
    - name: h4
      dependsOn: [h3]
      run: "true"
    - name: h5
      dependsOn: [h4]
      run: |
        while [ ! -e go ]; do sleep 0.1; done
        echo h5 >> h.txt
"""


def test_versions_read_back_after_a_restart_keep_a_later_rewrite_its_writers(
    slurm_cluster: SlurmCluster, akoflow: Akoflow, tmp_path: Path, state_dir: Path
) -> None:
    """After `resume`, the claims are read back from the store with no engine times: the
    latest version of h.txt is h3's (not the older ambiguous one), and h5's rewrite is h5's
    alone (h3, h1 and h2 are what it depends on, through h4, not attempts beside it). It was
    ambiguous between h1, h2 and h5, and h1 and h2's version was taken back."""
    env = cli_env(**runtime_env(slurm_cluster, "hpc", "mount/resumed"))
    mount = Path(env["HPC_MOUNT_PATH"])
    mount.mkdir(parents=True, exist_ok=True)
    wf = tmp_path / "resumed.yaml"
    wf.write_text(RESUMED)
    engine = start_cli(
        ["run", str(wf), "--quiet", "--state-dir", str(state_dir), "--data-dir",
         str(tmp_path / "data")],
        env,
    )  # fmt: skip
    wait_for(lambda: list(mount.glob(".akoflow/*/*-h5-a1/files.before")), timeout=60)
    time.sleep(1)
    os.kill(engine.pid, signal.SIGKILL)
    engine.communicate(timeout=10)
    (mount / "go").touch()
    res = akoflow("resume", "--json", env=env, timeout=120)
    assert res.returncode == 0, res.stderr + res.stdout
    assert (mount / "h.txt").read_text().split() == ["h1", "h2", "h3", "h5"]

    exported = akoflow("prov", "resumed", env=env)
    assert exported.returncode == 0, exported.stderr
    doc = ProvDocument.deserialize(io.StringIO(exported.stdout), format="json")
    _, generated = relations(doc)
    at = f"hpc:{mount}/"
    assert {g for g in generated if g[1] == at + "h.txt"} == {
        ("h3", at + "h.txt"),
        ("h5", at + "h.txt"),
    }
    assert ambiguous(doc) == {"h.txt": {"h1", "h2"}}
