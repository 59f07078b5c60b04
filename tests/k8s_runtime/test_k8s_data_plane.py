"""The data plane between the engine host and a Kubernetes cluster (issue 17), through the
engine against the emulated cluster: a file a local activity wrote reaches the run's PVC
before the Kubernetes activity that reads it runs, what that one wrote comes back before a
later local activity needs it, unchanged files are not copied twice, the workflow's last
activities' files come back by themselves (``spec.collect``), odd bytes in names survive,
each copy is one ``pods/exec`` request through the API server (in a transfer pod the run
makes and deletes), and an engine SIGKILLed in the middle of a copy makes it again on
``resume``, never trusting the half it left."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import ssl
from pathlib import Path
from typing import Any

import httpx
import pytest

from akoflow.runtimes.kubernetes import transfer
from akoflow.runtimes.kubernetes.exec_stream import V4, ExecResult, exec_in_pod
from akoflow.states import WorkflowState
from akoflow.store import Repository
from tests.conftest import Akoflow, cli_env, start_cli, wait_for
from tests.hpc_runtime.test_hpc_engine import states
from tests.k8s_runtime.conftest import IMAGE, engine_with, run
from tests.k8s_support.cluster import EmulatedCluster

ODD = "odd\udcffname"  # the bytes b"odd\xffname": not UTF-8
RT = "k8s-aws"
NS = "akoflow"

PIPELINE = f"""\
name: plane
spec:
  activities:
    - name: prepare
      runtime: local
      run: |
        mkdir -p in
        seq 1 100 > in/numbers.txt
        printf 'x\\n' > "$(printf 'odd\\377name')"
    - name: total
      runtime: {RT}
      image: {IMAGE}
      dependsOn: [prepare]
      run: |
        awk '{{ s += $1 }} END {{ print s }}' in/numbers.txt > sum.txt
        cat "$(printf 'odd\\377name')" > odd-copy.txt
    - name: again
      runtime: {RT}
      image: {IMAGE}
      dependsOn: [total]
      run: wc -l < in/numbers.txt > lines.txt
    - name: report
      runtime: local
      dependsOn: [again]
      run: cat sum.txt lines.txt odd-copy.txt > report.txt
"""


def env_of(cluster: EmulatedCluster) -> dict[str, str]:
    return cluster.env(RT, TRANSFER_IMAGE=IMAGE)


def copies(repo: Repository, wf_id: int) -> list[tuple[str, str, str]]:
    return [(c.path, c.source, c.destination) for c in repo.list_data_copies(wf_id)]


def transfer_pods(cluster: EmulatedCluster) -> list[dict[str, Any]]:
    return [
        p
        for p in cluster.objects("v1/pods", NS)
        if p["metadata"]["labels"].get("akoflow.io/role") == "transfer"
    ]


def pvc_dir(cluster: EmulatedCluster) -> Path:
    (claim,) = cluster.objects("v1/persistentvolumeclaims", NS)
    return cluster.kubelet.pvc_dir(NS, claim["metadata"]["name"])


def test_files_follow_the_work_to_the_cluster_and_back(
    tmp_path: Path, cluster: EmulatedCluster
) -> None:
    data = tmp_path / "data"
    before = cluster.counts()

    async def scenario() -> tuple[list[tuple[str, str, str]], str]:
        async with engine_with(tmp_path, PIPELINE, env_of(cluster)) as (repo, engine, wf_id):
            wf = await engine.attach(wf_id)
            state = await asyncio.wait_for(engine.wait(wf_id), timeout=90)
            assert state is WorkflowState.SUCCEEDED, states(wf)
            made = copies(repo, wf_id)
            for c in repo.list_data_copies(wf_id):  # every copy recorded with its digest
                local = data / c.path
                assert hashlib.sha256(local.read_bytes()).hexdigest() == c.sha256
                assert local.stat().st_size == c.bytes
            (pvc,) = cluster.objects("v1/persistentvolumeclaims", NS)
            return made, f"{RT}:pvc/{pvc['metadata']['name']}"

    made, at = run(scenario())
    assert (data / "report.txt").read_text() == "5050\n100\nx\n"
    # The inputs reached the PVC byte for byte, the odd name too, through the API alone.
    volume = pvc_dir(cluster)
    assert (volume / "in" / "numbers.txt").read_bytes() == (data / "in/numbers.txt").read_bytes()
    assert (volume / os.fsdecode(b"odd\xffname")).read_bytes() == b"x\n"
    assert not list(volume.rglob("*.akoflow-part"))
    # Each needed file crossed once, though two activities there read it.
    assert made.count(("in/numbers.txt", "", at)) == 1
    assert made.count((ODD, "", at)) == 1
    assert {("sum.txt", at, ""), ("lines.txt", at, ""), ("odd-copy.txt", at, "")} <= set(made)
    assert len(made) == len(set(made))
    # One exec request per copy; each transfer pod made was deleted, none is left.
    delta = cluster.counts() - before
    assert delta["exec pods"] == len(made)
    assert delta["create pods"] >= 1 and delta["create pods"] == delta["delete pods"]
    assert transfer_pods(cluster) == []


SINK = f"""\
name: sink
spec:
  collect: {{collect}}
  activities:
    - name: make
      runtime: local
      run: echo seed > seed.txt
    - name: grow
      runtime: {RT}
      image: {IMAGE}
      dependsOn: [make]
      run: |
        mkdir -p out
        cat seed.txt seed.txt > out/result.txt
"""


def run_sink(tmp_path: Path, cluster: EmulatedCluster, collect: str) -> list[tuple[str, str, str]]:
    async def scenario() -> list[tuple[str, str, str]]:
        text = SINK.format(collect=collect)
        async with engine_with(tmp_path, text, env_of(cluster)) as (repo, engine, wf_id):
            wf = await engine.attach(wf_id)
            state = await asyncio.wait_for(engine.wait(wf_id), timeout=90)
            assert state is WorkflowState.SUCCEEDED, states(wf)
            # The run's end waited for its last release: its transfer pod is already gone.
            assert transfer_pods(cluster) == []
            return copies(repo, wf_id)

    return list(run(scenario()))


def test_the_last_activitys_files_come_back_by_default(
    tmp_path: Path, cluster: EmulatedCluster
) -> None:
    made = run_sink(tmp_path, cluster, "outputs")
    assert (tmp_path / "data" / "out" / "result.txt").read_text() == "seed\nseed\n"
    (pvc,) = cluster.objects("v1/persistentvolumeclaims", NS)
    assert ("out/result.txt", f"{RT}:pvc/{pvc['metadata']['name']}", "") in made
    # One transfer pod for the run: made for the first copy, used for the last, deleted.
    assert cluster.counts()["create pods"] == 1 and cluster.counts()["delete pods"] == 1


def test_copies_work_over_v4_whose_stdin_cannot_be_closed(
    tmp_path: Path, cluster: EmulatedCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """API servers before 1.30 speak v4 only: the pod reads exactly the file's length."""
    used: list[str] = []

    async def v4_only(*args: Any, **kwargs: Any) -> ExecResult:
        result = await exec_in_pod(*args, **{**kwargs, "protocols": (V4,)})
        used.append(result.protocol)
        return result

    monkeypatch.setattr(transfer, "exec_in_pod", v4_only)
    made = run_sink(tmp_path, cluster, "outputs")
    assert (tmp_path / "data" / "out" / "result.txt").read_text() == "seed\nseed\n"
    assert (pvc_dir(cluster) / "seed.txt").read_text() == "seed\n"
    assert [m[0] for m in made] == ["seed.txt", "out/result.txt"]
    assert used == [V4, V4]


def test_collect_none_leaves_them_on_the_cluster(tmp_path: Path, cluster: EmulatedCluster) -> None:
    made = run_sink(tmp_path, cluster, "none")
    assert not (tmp_path / "data" / "out" / "result.txt").exists()
    assert (pvc_dir(cluster) / "out" / "result.txt").read_text() == "seed\nseed\n"
    assert [m for m in made if m[2] == ""] == []


BIG = 4 << 20

CRASH = f"""\
name: crashcopy
spec:
  activities:
    - name: make
      runtime: local
      run: |
        echo run >> count.make
        head -c {BIG} /dev/urandom > big.bin
    - name: use
      runtime: {RT}
      image: {IMAGE}
      dependsOn: [make]
      run: |
        echo run >> count.use
        sha256sum big.bin > digest.txt
"""


def test_engine_killed_during_a_copy_makes_it_again_on_resume(
    akoflow: Akoflow, tmp_path: Path, state_dir: Path, cluster: EmulatedCluster
) -> None:
    wf = tmp_path / "crash.yaml"
    wf.write_text(CRASH)
    data = tmp_path / "data"
    env = cli_env(**env_of(cluster))
    cluster.hold_exec_stdin(after=1 << 20)  # copies pass 1 MiB, then wait (cut there once released)
    args = ["run", str(wf), "--quiet", "--state-dir", str(state_dir), "--data-dir", str(data)]
    engine = start_cli(args, env)
    part: list[Path] = []

    def half_copied() -> bool:
        assert engine.poll() is None, engine.communicate()
        claims = cluster.objects("v1/persistentvolumeclaims", NS)
        if not claims:
            return False
        found = cluster.kubelet.pvc_dir(NS, claims[0]["metadata"]["name"]) / ".big.bin.akoflow-part"
        part[:] = [found]
        return found.exists() and found.stat().st_size >= 1 << 19  # head -c buffers a bit

    try:
        wait_for(half_copied, timeout=60)
    finally:
        os.kill(engine.pid, signal.SIGKILL)
        engine.communicate(timeout=10)
    volume = part[0].parent
    assert not (volume / "big.bin").exists()  # the half copy never got the file's name
    execs_before = cluster.counts()["exec pods"]
    cluster.release_exec_stdin()
    # The dead engine's copy ends in the pod (its stream is gone): its half fails the check
    # there and is removed, never renamed into place.
    wait_for(lambda: not part[0].exists(), timeout=30)
    assert not (volume / "big.bin").exists()

    res = akoflow("resume", "--json", env=env)
    assert res.returncode == 0, res.stderr + res.stdout
    doc = json.loads(res.stdout)
    assert {a["state"] for a in doc["activities"]} == {"succeeded"}, doc["activities"]
    # Copied again in full and checked: the pod read exactly the host's bytes.
    want = hashlib.sha256((data / "big.bin").read_bytes()).hexdigest()
    assert (volume / "big.bin").stat().st_size == BIG
    assert (data / "digest.txt").read_text().split()[0] == want  # collected back
    assert cluster.counts()["exec pods"] > execs_before
    # Nothing ran twice: the local activity before the kill, the pod's once after.
    assert (data / "count.make").read_text() == "run\n"
    assert (volume / "count.use").read_text() == "run\n"
    creates = [r for r in cluster.requests() if r[:2] == ("create", "jobs")]
    assert len(creates) == 1
    # The transfer pod of the dead engine and the resumed one's: none is left.
    assert transfer_pods(cluster) == []
    assert not list(volume.rglob("*.akoflow-part"))


CLASH = f"""\
name: clash
spec:
  activities:
    - name: dir
      runtime: {RT}
      image: {IMAGE}
      run: mkdir clash
    - name: file
      runtime: local
      dependsOn: [dir]
      run: echo text > clash
    - name: read
      runtime: {RT}
      image: {IMAGE}
      dependsOn: [file]
      run: cat clash
"""


def test_a_copy_the_pod_refuses_fails_the_attempt_with_the_reason(
    tmp_path: Path, cluster: EmulatedCluster
) -> None:
    async def scenario() -> None:
        async with engine_with(tmp_path, CLASH, env_of(cluster)) as (repo, engine, wf_id):
            wf = await engine.attach(wf_id)
            state = await asyncio.wait_for(engine.wait(wf_id), timeout=90)
            assert state is WorkflowState.FAILED, states(wf)
            read = wf.activities["read"]
            assert read.reason is not None and "a directory has that name there" in read.reason
            assert "clash" in read.reason
            assert [c.path for c in repo.list_data_copies(wf_id)] == []

    run(scenario())
    assert (pvc_dir(cluster) / "clash").is_dir()
    creates = [r for r in cluster.requests() if r[:2] == ("create", "jobs")]
    assert len(creates) == 1  # the reader never ran
    assert transfer_pods(cluster) == []


def test_a_transfer_image_that_cannot_be_pulled_fails_the_attempt(
    tmp_path: Path, cluster: EmulatedCluster
) -> None:
    env = cluster.env(RT, TRANSFER_IMAGE="akoflow-test/no-such-image:1", FAIL_FAST_GRACE="1")

    async def scenario() -> None:
        async with engine_with(tmp_path, SINK.format(collect="outputs"), env) as (_, engine, i):
            wf = await engine.attach(i)
            assert await asyncio.wait_for(engine.wait(i), timeout=60) is WorkflowState.FAILED
            grow = wf.activities["grow"]
            assert grow.reason is not None and "could not start" in grow.reason, states(wf)
            assert "transfer pod" in grow.reason and "no-such-image" in grow.reason

    run(scenario())
    assert [r for r in cluster.requests() if r[:2] == ("create", "jobs")] == []
    assert transfer_pods(cluster) == []


def test_an_api_outage_during_a_copy_holds_the_work_then_copies_again(
    tmp_path: Path, cluster: EmulatedCluster
) -> None:
    data = tmp_path / "data"

    async def scenario() -> None:
        async with engine_with(tmp_path, CRASH, env_of(cluster)) as (repo, engine, wf_id):
            wf = await engine.attach(wf_id)
            cluster.hold_exec_stdin(after=1 << 20)
            part = None

            def half_copied() -> bool:
                nonlocal part
                claims = cluster.objects("v1/persistentvolumeclaims", NS)
                if not claims:
                    return False
                name = claims[0]["metadata"]["name"]
                part = cluster.kubelet.pvc_dir(NS, name) / ".big.bin.akoflow-part"
                return part.exists() and part.stat().st_size >= 1 << 19

            await asyncio.to_thread(wait_for, half_copied, 60)
            assert part is not None
            await asyncio.to_thread(cluster.stop_api)  # the stream breaks mid-copy
            cluster.release_exec_stdin()
            slot = engine._slots[RT]
            await asyncio.to_thread(wait_for, lambda: not slot.ready, 30)
            assert "not reachable" in (slot.reason or "") or "broke" in (slot.reason or "")
            assert wf.activities["use"].state.is_final is False  # held, not failed
            await asyncio.to_thread(cluster.start_api)
            state = await asyncio.wait_for(engine.wait(wf_id), timeout=90)
            assert state is WorkflowState.SUCCEEDED, states(wf)
            made = [c.path for c in repo.list_data_copies(wf_id)]
            assert made.count("big.bin") == 1  # recorded once: the copy that arrived whole
            volume = part.parent
            assert (volume / "big.bin").read_bytes() == (data / "big.bin").read_bytes()
            assert (volume / "count.use").read_text() == "run\n"

    run(scenario())
    assert transfer_pods(cluster) == []


def fan_out(width: int) -> str:
    """``split`` writes part0..part<width-1> (1000, 2000, ... bytes); reader i declares and
    reads part<i> only."""
    readers = "".join(
        f"    - name: read{i}\n      runtime: {RT}\n      image: {IMAGE}\n"
        f"      dependsOn: [split]\n      inputs: [part{i}.txt]\n"
        f"      run: wc -c < part{i}.txt > size{i}.txt\n"
        for i in range(width)
    )
    split = (
        "    - name: split\n      runtime: local\n      run: |\n"
        f"        for i in $(seq 0 {width - 1}); do\n"
        "          head -c $((1000 * (i + 1))) /dev/zero > part$i.txt\n"
        "        done\n"
    )
    return "name: fan\nspec:\n  collect: none\n  activities:\n" + split + readers


def test_a_fan_out_moves_each_file_once_to_the_reader_that_declared_it(
    tmp_path: Path, cluster: EmulatedCluster
) -> None:
    width = 6

    async def scenario() -> list[tuple[str, int]]:
        text = fan_out(width)
        async with engine_with(tmp_path, text, env_of(cluster)) as (repo, engine, wf_id):
            wf = await engine.attach(wf_id)
            state = await asyncio.wait_for(engine.wait(wf_id), timeout=90)
            assert state is WorkflowState.SUCCEEDED, states(wf)
            return [(c.path, c.bytes) for c in repo.list_data_copies(wf_id)]

    made = run(scenario())
    # Bytes moved are the bytes needed: each reader's one file, once, not every file to all.
    assert sorted(made) == sorted((f"part{i}.txt", 1000 * (i + 1)) for i in range(width))
    volume = pvc_dir(cluster)
    assert {(volume / f"size{i}.txt").read_text().strip() for i in range(width)} == {
        str(1000 * (i + 1)) for i in range(width)
    }
    # The readers' copies, run at the same time, shared the run's one transfer pod.
    assert cluster.counts()["create pods"] == 1 and transfer_pods(cluster) == []


def test_a_transfer_pod_deleted_during_a_copy_is_made_again_and_the_copy_too(
    tmp_path: Path, cluster: EmulatedCluster
) -> None:
    """Someone deletes the run's transfer pod (``kubectl delete pod``) while a file is copied
    into it: the copy's shell is killed (exit 137), which is no fault of the file nor of the
    activity; the runtime holds the work, a new transfer pod is made and the copy made again
    in it, whole (before cf6333c the attempt failed with exit 137)."""
    data = tmp_path / "data"

    def part_files() -> list[Path]:
        claims = cluster.objects("v1/persistentvolumeclaims", NS)
        if not claims:
            return []
        volume = cluster.kubelet.pvc_dir(NS, claims[0]["metadata"]["name"])
        return [p for p in volume.glob(".big.bin*") if p.name.endswith(".akoflow-part")]

    def half_copied() -> bool:
        return any(p.stat().st_size >= 1 << 19 for p in part_files() if p.exists())

    def forget_the_gate() -> None:
        # Sessions started from now on pass whole; the held one stays held until killed.
        cluster.call(lambda: setattr(cluster.api, "stdin_gate", None))

    async def scenario() -> None:
        async with engine_with(tmp_path, CRASH, env_of(cluster)) as (repo, engine, wf_id):
            wf = await engine.attach(wf_id)
            cluster.hold_exec_stdin(after=1 << 20)
            await asyncio.to_thread(wait_for, half_copied, 60)
            forget_the_gate()
            (pod,) = transfer_pods(cluster)
            name = pod["metadata"]["name"]
            async with httpx.AsyncClient(
                verify=ssl.create_default_context(cafile=str(cluster.ca_file)),
                headers={"Authorization": f"Bearer {cluster.token}"},
            ) as client:
                r = await client.delete(f"{cluster.url}/api/v1/namespaces/{NS}/pods/{name}")
                assert r.status_code == 200, r.text
            state = await asyncio.wait_for(engine.wait(wf_id), timeout=90)
            assert state is WorkflowState.SUCCEEDED, states(wf)
            sent = [(c.path, c.bytes, c.sha256) for c in repo.list_data_copies(wf_id)]
            want = hashlib.sha256((data / "big.bin").read_bytes()).hexdigest()
            # Recorded once: the copy that arrived whole, not the one the kill cut.
            assert [s for s in sent if s[0] == "big.bin"] == [("big.bin", BIG, want)]
            use = wf.activities["use"]
            tried = repo.list_attempts(use.id)
            assert [a.state for a in tried] == ["lost", "succeeded"], [
                (a.state, a.reason) for a in tried
            ]
            assert "transfer pod was stopped" in (tried[0].reason or ""), tried[0].reason

    run(scenario())
    volume = pvc_dir(cluster)
    assert (volume / "big.bin").read_bytes() == (data / "big.bin").read_bytes()
    want = hashlib.sha256((data / "big.bin").read_bytes()).hexdigest()
    assert (data / "digest.txt").read_text().split()[0] == want  # the pod read it whole
    assert (volume / "count.use").read_text() == "run\n"
    assert len([r for r in cluster.requests() if r[:2] == ("create", "jobs")]) == 1
    # The deleted transfer pod was made again (a second one), and that one deleted at the end.
    assert cluster.counts()["create pods"] == 2
    assert transfer_pods(cluster) == []
    assert not list(volume.rglob("*.akoflow-part"))
