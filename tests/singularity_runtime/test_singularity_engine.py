"""The singularity runtime in-process: with the engine (live logs and metrics, a launcher that
breaks mid-run) and on its own (cancel kills the tree, one pull per image under concurrency,
image and setting errors, health, nodes, idempotent submit)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
import signal
import socket
from pathlib import Path

import psutil
import pytest

from akoflow.config import RuntimeConfig
from akoflow.runtimes.base import JobSpec, RuntimeUnavailable, SubmitError
from akoflow.runtimes.singularity import SingularityRuntime
from akoflow.states import ActivityState, WorkflowState
from tests.docker_runtime.test_docker_engine import Recorder, until
from tests.e2e.test_engine_inprocess import engine_with
from tests.scenarios import busy_activity, direct_job, run_busy_workflow
from tests.singularity_runtime.conftest import LAUNCHER, Images

A = ActivityState


def attempt_pid(job: JobSpec) -> int:
    """The pid of the attempt's launcher, as its spawner recorded it ("pid C by S")."""
    return int(Path(f"{job.attempt_prefix}.exit").read_text().split()[1])


def runtime(events: Recorder, tmp_path: Path, **settings: str) -> SingularityRuntime:
    env = {
        "SINGULARITY_BINARY": str(LAUNCHER),
        "SINGULARITY_CACHE_DIR": str(tmp_path / "sif-cache"),
        **{f"SINGULARITY_{k}": v for k, v in settings.items()},
    }
    return SingularityRuntime("singularity", RuntimeConfig.from_env("singularity", env), events)


def job_spec(tmp_path: Path, name: str, run: str, image: str | None, attempt: int = 1) -> JobSpec:
    return direct_job(tmp_path, name, run, "singularity", image, attempt)


def group_members(pgid: int) -> list[int]:
    found = []
    for proc in psutil.process_iter(["status"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                found.append(proc.pid)
        except (ProcessLookupError, PermissionError):
            continue
    return found


def test_cancel_kills_the_whole_tree(images: Images, tmp_path: Path) -> None:
    async def scenario() -> None:
        events = Recorder()
        rt = runtime(events, tmp_path)
        await rt.start()
        pgid = 0
        try:
            job = job_spec(
                tmp_path,
                "tree",
                "sleep 300 &\nsleep 300 &\necho started > started\nwait\n",
                str(images.sif),
            )
            handle = await rt.submit(job)
            await until(lambda: (tmp_path / "data" / "started").exists(), what="started")
            pgid = attempt_pid(job)
            names = {psutil.Process(p).name() for p in group_members(pgid)}
            # The launcher, the image mount, bwrap and the container's shell and sleeps.
            assert {"squashfuse", "bwrap", "sleep"} <= names, names
            await rt.cancel(job.key, handle)
            await asyncio.wait_for(events.event.wait(), 15)
            outcome = events.finished[job.key]
            assert (outcome.succeeded, outcome.exit_code) == (False, 128 + signal.SIGTERM)
            await until(lambda: group_members(pgid) == [], what="the tree gone")
            await rt.release(job.key, handle, succeeded=False)
        except BaseException:
            if pgid:  # a failed check must not leave the tree running
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pgid, signal.SIGKILL)
            raise
        finally:
            await rt.stop()

    asyncio.run(scenario())


def test_concurrent_submits_pull_each_image_once(
    images: Images, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two runtimes (as two engines would) start three activities each on one reference: one
    pull in all (in-process dedupe plus the cache's file lock), and all six run from it."""
    log = tmp_path / "pulls.log"
    monkeypatch.setenv("APPTAINER_SHIM_PULL_LOG", str(log))
    monkeypatch.setenv("APPTAINER_SHIM_PULL_DELAY", "1.0")  # the pulls surely overlap

    async def scenario() -> None:
        events = Recorder()
        runtimes = [runtime(events, tmp_path), runtime(events, tmp_path)]
        for rt in runtimes:
            await rt.start()
        try:
            jobs = [
                (rt, job_spec(tmp_path, f"p{i}-{j}", f"echo {i}{j} > out{i}{j}", images.ref))
                for i, rt in enumerate(runtimes)
                for j in range(3)
            ]
            await asyncio.gather(*(rt.submit(job) for rt, job in jobs))
            await until(lambda: len(events.finished) == len(jobs), what="all finished")
            assert {(o.succeeded, o.exit_code) for o in events.finished.values()} == {(True, 0)}
            assert len(log.read_text().splitlines()) == 1
            assert len(list((tmp_path / "sif-cache").glob("*.sif"))) == 1
            assert len(list((tmp_path / "data").glob("out*"))) == len(jobs)
        finally:
            for rt in runtimes:
                await rt.stop()

    asyncio.run(scenario())


def test_image_problems_fail_the_attempt_with_a_clear_message(
    images: Images, tmp_path: Path
) -> None:
    async def scenario() -> None:
        rt = runtime(Recorder(), tmp_path, PULL_POLICY="never")
        await rt.start()
        try:
            cases = {
                None: "needs an image: set spec.image",
                str(tmp_path / "missing.sif"): f"image {tmp_path / 'missing.sif'} does not exist",
                images.ref: "is not in the cache",  # policy never
            }
            for image, message in cases.items():
                with pytest.raises(SubmitError, match=message.replace("(", r"\(")):
                    await rt.submit(job_spec(tmp_path, "bad", "true", image))
        finally:
            await rt.stop()
        rt = runtime(Recorder(), tmp_path)
        await rt.start()
        try:
            bad = f"docker-archive:{tmp_path / 'no-such.tar'}"
            with pytest.raises(SubmitError, match="cannot pull image .*no-such.tar"):
                await rt.submit(job_spec(tmp_path, "bad2", "true", bad))
            assert not list((tmp_path / "sif-cache").glob("*.sif"))  # nothing half-pulled
        finally:
            await rt.stop()

    asyncio.run(scenario())


def test_health_nodes_settings_and_idempotent_submit(images: Images, tmp_path: Path) -> None:
    async def scenario() -> None:
        events = Recorder()
        rt = runtime(events, tmp_path)
        await rt.start()
        try:
            assert (await rt.health()).ready
            (node,) = await rt.nodes()
            assert node.name == socket.gethostname() and node.cpu_capacity == os.cpu_count()
            job = job_spec(tmp_path, "twice", "echo once >> count", str(images.sif))
            first = await rt.submit(job)
            assert await rt.submit(job) == first  # the engine asking twice: one process
            await asyncio.wait_for(events.event.wait(), 15)
            assert events.finished[job.key].exit_code == 0
            with pytest.raises(SubmitError, match="already launched once"):
                await runtime(events, tmp_path).submit(job)  # e.g. another engine
            assert (tmp_path / "data" / "count").read_text() == "once\n"
        finally:
            await rt.stop()
        for settings, reason in (
            ({"BINARY": str(tmp_path / "nope")}, f"{tmp_path / 'nope'} not found"),
            ({"PULL_POLICY": "sometimes"}, "SINGULARITY_PULL_POLICY must be one of"),
            ({"LIMITS": "maybe"}, "SINGULARITY_LIMITS must be one of"),
        ):
            bad = runtime(events, tmp_path, **settings)
            await bad.start()
            health = await bad.health()
            assert not health.ready and reason in (health.reason or ""), health
        missing = runtime(events, tmp_path, BINARY=str(tmp_path / "nope"))
        await missing.start()
        with pytest.raises(RuntimeUnavailable):  # transient: the activity waits
            await missing.submit(job_spec(tmp_path, "later", "true", str(images.sif)))

    asyncio.run(scenario())


def test_live_logs_and_metrics_of_the_container_tree(
    images: Images, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SINGULARITY_BINARY", str(LAUNCHER))
    text = (
        f"name: busy\nspec:\n  image: {images.sif}\n  runtime: singularity\n  activities:\n"
        + busy_activity()
    )

    asyncio.run(run_busy_workflow(tmp_path, text))


def test_launcher_broken_mid_run_holds_work_then_completes(
    images: Images, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The launcher breaks (then disappears) while an activity runs: the runtime turns
    NOT_READY, an activity that becomes ready meanwhile waits instead of failing, the running
    one completes, and once the launcher is back everything completes."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    binary = bin_dir / "apptainer"
    binary.symlink_to(LAUNCHER)
    monkeypatch.setenv("SINGULARITY_BINARY", str(binary))
    monkeypatch.setenv("SINGULARITY_CACHE_DIR", str(tmp_path / "sif-cache"))
    data = tmp_path / "data"
    text = (
        f"name: outage\nspec:\n  image: {images.sif}\n  activities:\n"
        "    - name: gate\n      runtime: local\n"
        "      run: while [ ! -e release ]; do sleep 0.05; done\n"
        "    - name: held\n      runtime: singularity\n      dependsOn: [gate]\n"
        "      run: echo held ran > held.txt\n"
        "    - name: running\n      runtime: singularity\n      run: |\n"
        "        echo run >> running.runs\n"
        "        while [ ! -e finish ]; do sleep 0.05; done\n"
    )

    async def scenario() -> None:
        async with engine_with(tmp_path, text, health_interval=0.2) as (repo, engine, wf_id):
            wf = await engine.attach(wf_id)
            held = wf.activities["held"]
            await until(lambda: (data / "running.runs").exists(), what="running started")
            broken = bin_dir / "broken"
            broken.write_text("#!/bin/sh\necho 'launcher: broken' >&2\nexit 1\n")
            broken.chmod(0o755)
            broken.replace(binary)  # atomic: a health check never sees half a file
            # (A health check racing the swap may see neither launcher whole: wait for the
            # broken one's own message.)
            await until(
                lambda: (
                    "version failed (exit 1): launcher: broken"
                    in (engine.runtime_status()["singularity"][1] or "")
                ),
                what="NOT_READY with the launcher's message",
            )
            assert not engine.runtime_status()["singularity"][0]
            binary.unlink()
            await until(
                lambda: "not found" in (engine.runtime_status()["singularity"][1] or ""),
                what="reported missing",
            )
            (data / "release").touch()
            (data / "finish").touch()  # the running container ends while the launcher is gone
            await until(lambda: wf.activities["gate"].state is A.SUCCEEDED, what="gate done")
            await until(lambda: wf.activities["running"].state is A.SUCCEEDED, what="running done")
            await asyncio.sleep(0.6)  # a few health periods: held must still wait
            assert held.state is A.READY
            assert {r.name: r for r in repo.list_runtimes()}["singularity"].status == "NOT_READY"
            binary.symlink_to(LAUNCHER)
            state = await asyncio.wait_for(engine.wait(wf_id), timeout=30)
            assert state is WorkflowState.SUCCEEDED, [
                (a.name, a.state, a.reason) for a in wf.activities.values()
            ]
            assert (data / "held.txt").read_text() == "held ran\n"
            assert (data / "running.runs").read_text() == "run\n"
            assert len(repo.list_attempts(held.id)) == 1  # it waited; it never failed
            assert {r.name: r for r in repo.list_runtimes()}["singularity"].status == "READY"

    try:
        asyncio.run(scenario())
    finally:  # a failed check must not leave a container waiting forever
        (data / "release").touch()
        (data / "finish").touch()


def test_default_binary_is_found_on_path_and_singularity_gets_its_env_prefix(
    images: Images, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without ``{NAME}_BINARY``: apptainer, else singularity, from PATH (a clear NOT_READY
    when neither is there); a ``singularity`` binary gets ``SINGULARITYENV_`` variables."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    assert shutil.which("apptainer") is None and shutil.which("singularity") is None
    config = RuntimeConfig.from_env(
        "singularity-hpc", {"SINGULARITY_HPC_CACHE_DIR": str(tmp_path / "c")}
    )

    async def scenario() -> None:
        events = Recorder()
        rt = SingularityRuntime("singularity-hpc", config, events)
        await rt.start()
        try:
            health = await rt.health()
            assert (health.ready, health.reason) == (
                False,
                "apptainer or singularity not found (set SINGULARITY_HPC_BINARY or PATH)",
            )
            (bin_dir / "singularity").symlink_to(LAUNCHER)
            assert (await rt.health()).ready
            job = job_spec(
                tmp_path,
                "prefixed",
                'printf "%s" "$AKOFLOW_ATTEMPT" > a\nwhile [ ! -e go ]; do sleep 0.05; done\n',
                str(images.sif),
            )
            job = dataclasses.replace(job, env={"AKOFLOW_ATTEMPT": "1"})
            await rt.submit(job)
            await until(lambda: (tmp_path / "data" / "a").exists(), what="started")
            launcher_env = psutil.Process(attempt_pid(job)).environ()
            assert launcher_env.get("SINGULARITYENV_AKOFLOW_ATTEMPT") == "1"
            assert not any(k.startswith("APPTAINERENV_") for k in launcher_env)
            (tmp_path / "data" / "go").touch()
            await asyncio.wait_for(events.event.wait(), 15)
            assert events.finished[job.key].exit_code == 0
            assert (tmp_path / "data" / "a").read_text() == "1"
        finally:
            await rt.stop()

    try:
        asyncio.run(scenario())
    finally:  # a failed check must not leave a container waiting forever
        (tmp_path / "data" / "go").touch()
