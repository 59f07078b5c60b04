"""The docker runtime takes over a container only if it is the attempt's in this run: the
same key left by another run (an old state dir at the same path) is never adopted, and a
container named as ours but labelled another run's is never started or tracked."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from akoflow import service
from akoflow.runtimes.base import SubmitError
from akoflow.runtimes.docker import container_name
from akoflow.runtimes.scope import SCOPE_FILE, scoped
from tests.conftest import Akoflow, start_cli, wait_for
from tests.docker_runtime.pre_token_engine import pre_token_scope
from tests.docker_runtime.test_docker_engine import Recorder, ended, job_spec, runtime
from tests.docker_support.dockerd import IMAGE, PrivateDockerd

REPO_ROOT = Path(__file__).resolve().parents[2]


def state_of(dockerd: PrivateDockerd, cid: str) -> dict[str, Any]:
    state: dict[str, Any] = dockerd.api.inspect_container(cid)["State"]
    return state


def test_a_state_dir_made_again_at_the_same_path_never_adopts_the_old_containers(
    dockerd: PrivateDockerd, tmp_path: Path
) -> None:
    data = tmp_path / "data"

    async def scenario() -> None:
        old_rt = runtime(dockerd.host, Recorder(), CLEANUP="never")
        await old_rt.start()
        try:
            old = await old_rt.submit(job_spec(tmp_path, "same", "echo old >> runs; sleep 60"))
            for _ in range(200):
                if (data / "runs").exists():
                    break
                await asyncio.sleep(0.05)
            assert (data / "runs").read_text() == "old\n"
        finally:
            await old_rt.stop()  # the engine goes; its container keeps running
        # The state dir is deleted and made again at the same path: run 1, the same key.
        shutil.rmtree(tmp_path / "attempts")
        events = Recorder()
        rt = runtime(dockerd.host, events, CLEANUP="never")
        await rt.start()
        try:
            job = job_spec(tmp_path, "same", "echo new >> runs")
            # After a crash before its submission was recorded: nothing of this run exists.
            assert (await rt.adopt(job, {})).kind == "never_started"
            new = await rt.submit(job)
            assert new["id"] != old["id"]
            await asyncio.wait_for(events.event.wait(), 10)
            assert {k: ended(o) for k, o in events.finished.items()} == {job.key: (True, 0)}
            assert (data / "runs").read_text() == "old\nnew\n"
            assert state_of(dockerd, old["id"])["Running"]  # the old one: left alone
        finally:
            await rt.stop()
            for handle in (old, locals().get("new")):
                if handle:
                    dockerd.api.remove_container(handle["id"], force=True)

    asyncio.run(scenario())


def test_a_container_with_our_name_but_another_runs_scope_is_not_taken_over(
    dockerd: PrivateDockerd, tmp_path: Path
) -> None:
    job = scoped(job_spec(tmp_path, "forged", "true"))
    name = container_name(job)
    labels = {"akoflow.key": job.key, "akoflow.scope": "000000000000"}
    cid = dockerd.api.create_container(IMAGE, command=["true"], name=name, labels=labels)["Id"]

    async def scenario() -> None:
        rt = runtime(dockerd.host, Recorder())
        await rt.start()
        try:
            with pytest.raises(SubmitError, match=f"{name} exists but is not attempt"):
                await rt.submit(job)
            adopted = await rt.adopt(job, {})
            assert adopted.kind == "finished" and adopted.outcome is not None
            assert not adopted.outcome.succeeded
            assert "is not attempt" in (adopted.outcome.reason or "")
        finally:
            await rt.stop()

    try:
        asyncio.run(scenario())
        assert state_of(dockerd, cid)["Status"] == "created"  # never started by us
    finally:
        dockerd.api.remove_container(cid, force=True)


def test_a_container_the_submission_recorded_is_adopted_under_its_older_name(
    dockerd: PrivateDockerd, tmp_path: Path
) -> None:
    """A run in flight across the upgrade: its container was named and labelled with the
    path hash older versions used. The id recorded at submission finds it."""
    job = job_spec(tmp_path, "upgraded", "sleep 60")
    legacy_name = f"akoflow-0123456789ab-{job.key}"
    labels = {"akoflow.key": job.key, "akoflow.scope": "0123456789ab"}
    cid = dockerd.api.create_container(
        IMAGE, command=["sleep", "60"], name=legacy_name, labels=labels
    )["Id"]
    dockerd.api.start(cid)
    handle = {"id": cid, "name": legacy_name, "prefix": str(job.attempt_prefix)}

    async def scenario() -> None:
        events = Recorder()
        rt = runtime(dockerd.host, events)
        await rt.start()
        try:
            adopted = await rt.adopt(job, handle)
            assert (adopted.kind, adopted.handle["id"]) == ("running", cid)
            await rt.cancel(job.key, adopted.handle)
            await asyncio.wait_for(events.event.wait(), 10)
            assert events.finished[job.key].reason == "cancelled"
        finally:
            await rt.stop()

    try:
        asyncio.run(scenario())
    finally:
        dockerd.api.remove_container(cid, force=True)


def attempt_handle(state_dir: Path, activity: str) -> dict[str, Any]:
    repo = service.open_repository(state_dir)
    try:
        act = repo.get_activity(1, activity)
        assert act is not None
        (first,) = repo.list_attempts(act.id)
        return first.handle
    finally:
        repo.close()


def test_a_run_started_before_scope_tokens_resumes_with_its_containers(
    akoflow: Akoflow,
    docker_env: dict[str, str],
    dockerd: PrivateDockerd,
    tmp_path: Path,
    state_dir: Path,
) -> None:
    """Upgrade: an engine of a version that named containers by a hash of the attempt dir's
    path was killed right after creating them (their handles never recorded). The upgraded
    `resume` finds them by that name: the one that ended is collected, the one running is
    adopted, the rest runs under the same scope, and none runs twice or stays behind."""
    wf = tmp_path / "upgraded.yaml"
    wf.write_text(
        f"name: upgraded\nspec:\n  image: {IMAGE}\n  runtime: docker\n  activities:\n"
        "    - name: a\n      run: echo run >> count.a\n"
        "    - name: b\n      run: |\n        echo run >> count.b\n"
        "        while [ ! -e release ]; do sleep 0.05; done\n"
        "    - name: c\n      dependsOn: [a, b]\n      run: echo run >> count.c\n"
    )
    data = tmp_path / "data"
    attempts = state_dir.resolve() / "runs" / "1-upgraded" / "attempts"
    old = pre_token_scope(attempts)
    ours = {"akoflow.scope": old}

    def listing(**labels: str) -> list[dict[str, Any]]:
        flt = [f"{k}={v}" for k, v in labels.items()]
        found: list[dict[str, Any]] = dockerd.api.containers(all=True, filters={"label": flt})
        return found

    def states() -> dict[str, str]:
        return {c["Labels"]["akoflow.activity"]: c["State"] for c in listing(**ours)}

    engine = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.docker_runtime.pre_token_engine",
            str(state_dir),
            str(data),
            str(wf),
        ],
        cwd=REPO_ROOT,
        env=docker_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(lambda: states() == {"a": "exited", "b": "running"})
        os.kill(engine.pid, signal.SIGKILL)
        engine.communicate(timeout=10)
        assert not (attempts / SCOPE_FILE).exists()  # as those versions left it
        assert attempt_handle(state_dir, "a") == attempt_handle(state_dir, "b") == {}
        names = sorted(c["Names"][0] for c in listing(**ours))
        assert names == [f"/akoflow-{old}-wf1-a-a1", f"/akoflow-{old}-wf1-b-a1"]

        resume = start_cli(["resume", "--state-dir", str(state_dir)], docker_env)
        try:
            # b is taken over while it runs, then let go.
            wait_for(lambda: attempt_handle(state_dir, "b").get("id"))
            (data / "release").touch()
            out, err = resume.communicate(timeout=60)
        finally:
            if resume.poll() is None:
                resume.kill()
                resume.communicate()
        assert resume.returncode == 0, out + err
        doc = json.loads(akoflow("status", "1", "--json", env=docker_env).stdout)
        got = {a["name"]: (a["state"], a["attempts"]) for a in doc["activities"]}
        assert got == {"a": ("succeeded", 1), "b": ("succeeded", 1), "c": ("succeeded", 1)}
        for name in "abc":
            assert (data / f"count.{name}").read_text() == "run\n"  # each ran once
        assert (attempts / SCOPE_FILE).read_text() == old + "\n"
        assert attempt_handle(state_dir, "c")["name"] == f"akoflow-{old}-wf1-c-a1"
        assert listing(**{"akoflow.workflow-name": "upgraded"}) == []  # released
    finally:
        if engine.poll() is None:
            engine.kill()
            engine.communicate()
        for c in listing(**{"akoflow.workflow-name": "upgraded"}):
            dockerd.api.remove_container(c["Id"], force=True)
