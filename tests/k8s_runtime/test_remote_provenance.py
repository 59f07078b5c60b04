"""Provenance of files that stay on the cluster's volumes, against the emulated cluster.

The pods really run (private dockerd) and list their PVC into their log; the engine records
what each attempt used and generated under ``k8s-aws:pvc/<claim>``, and ``akoflow prov``
exports it. The stored logs stay the scripts' own output.
"""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from prov.model import ProvDocument

from akoflow.config import RuntimeConfig
from akoflow.runtimes.base import Outcome
from akoflow.runtimes.kubernetes import KubernetesRuntime
from akoflow.runtimes.kubernetes.listing import WRAPPER
from akoflow.runtimes.kubernetes.manifests import literal
from akoflow.states import ActivityState, WorkflowState
from akoflow.store import Repository
from tests.conftest import cli_env
from tests.k8s_runtime.conftest import IMAGE, engine_with, run
from tests.k8s_support.cluster import EmulatedCluster
from tests.prov_support import relations
from tests.scenarios import direct_job

# left and right run at the same time: each one's listings may show the other's file appear
# (when its first listing came before that write), which no listing can tell from its own write;
# their declared outputs decide (tests/k8s_runtime/test_remote_attribution.py: without them).
FAN = f"""\
name: fan
spec:
  runtime: k8s-aws
  image: {IMAGE}
  storagePolicy:
    type: standalone
  activities:
    - name: prepare
      run: |
        echo seed > input.txt
        printf 'prepared'
    - name: left
      dependsOn: [prepare]
      outputs: [left.txt]
      run: |
        tr a-z A-Z < input.txt > left.txt
        echo "left's \\"done\\""
    - name: right
      dependsOn: [prepare]
      outputs: [right.txt]
      run: |
        sleep 2
        wc -c < input.txt > right.txt
        echo right warning >&2
    - name: join
      dependsOn: [left, right]
      run: |
        cat left.txt right.txt > result.txt
        cat result.txt
"""

PER_WORKFLOW = ("create namespaces", "create serviceaccounts", "create persistentvolumeclaims")
PERIODIC = ("watch", "get healthz", "list nodes", "list metrics/", "list jobs", "list pods")


def logs(repo: Repository, activity_id: int) -> str:
    return "".join(c.data for _, c in repo.read_logs(activity_id))


def rows(repo: Repository, wf_id: int, location: str) -> dict[str, dict[str, set[str]]]:
    """activity -> role -> paths, of the files recorded at ``location``."""
    found: dict[str, dict[str, set[str]]] = {}
    for r in repo.list_files(wf_id):
        if r.location == location:
            found.setdefault(r.activity, {"used": set(), "generated": set()})[r.role].add(r.path)
    return found


def prov_relations(state: Path, name: str) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """(activity, location/path) pairs for used and wasGeneratedBy, read back with ``prov``."""
    done = subprocess.run(
        [sys.executable, "-m", "akoflow", "prov", name, "--state-dir", str(state)],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return relations(ProvDocument.deserialize(io.StringIO(done.stdout), format="json"))


def test_fan_out_fan_in_on_the_shared_volume_has_remote_provenance(
    tmp_path: Path, cluster: EmulatedCluster
) -> None:
    before = cluster.counts()

    async def scenario() -> None:
        async with engine_with(tmp_path, FAN, cluster.env("k8s-aws")) as (repo, engine, wf_id):
            wf = await engine.attach(wf_id)
            state = await asyncio.wait_for(engine.wait(wf_id), 120)
            reasons = {a.name: a.reason for a in wf.activities.values()}
            assert state is WorkflowState.SUCCEEDED, reasons
            # The stored logs are the scripts' output, byte for byte: no marker, no listing.
            out = {name: logs(repo, a.id) for name, a in wf.activities.items()}
            assert out == {
                "prepare": "prepared",
                "left": 'left\'s "done"\n',
                "right": "right warning\n",
                "join": "SEED\n5\n",
            }
            (pvc,) = cluster.objects("v1/persistentvolumeclaims", "akoflow")
            loc = f"k8s-aws:pvc/{pvc['metadata']['name']}"
            assert {r.location for r in repo.list_files(wf_id)} == {loc}  # the data dir: none
            assert rows(repo, wf_id, loc) == {
                "prepare": {"used": set(), "generated": {"input.txt"}},
                "left": {"used": {"input.txt"}, "generated": {"left.txt"}},
                "right": {"used": {"input.txt"}, "generated": {"right.txt"}},
                # input.txt is prepare's, which join does not depend on directly
                "join": {"used": {"left.txt", "right.txt"}, "generated": {"result.txt"}},
            }
            sizes = {r.path: r.size for r in repo.list_files(wf_id) if r.role == "generated"}
            assert sizes == {"input.txt": 5, "left.txt": 5, "right.txt": 2, "result.txt": 7}

    run(scenario())
    pvc_name = cluster.objects("v1/persistentvolumeclaims", "akoflow")[0]["metadata"]["name"]
    loc = f"k8s-aws:pvc/{pvc_name}"
    used, generated = prov_relations(tmp_path / "state", "fan")
    assert generated == {
        ("prepare", f"{loc}/input.txt"),
        ("left", f"{loc}/left.txt"),
        ("right", f"{loc}/right.txt"),
        ("join", f"{loc}/result.txt"),
    }
    assert used == {
        ("left", f"{loc}/input.txt"),
        ("right", f"{loc}/input.txt"),
        ("join", f"{loc}/left.txt"),
        ("join", f"{loc}/right.txt"),
    }
    # The last activity's file came back to the engine's data dir (spec.collect's default:
    # the data plane, tests/k8s_runtime/test_k8s_data_plane.py), nothing else.
    assert (tmp_path / "data" / "result.txt").read_text() == "SEED\n5\n"
    assert not (tmp_path / "data" / "left.txt").exists()
    # Provenance added no request: per activity, its Job create and its log stream, the
    # Jobs deleted together at the end; the copy back was one exec in a transfer pod made
    # and deleted for it.
    delta = cluster.counts() - before
    per_activity = Counter(
        {k: v for k, v in delta.items() if not k.startswith(PERIODIC + PER_WORKFLOW)}
    )
    assert per_activity == Counter(
        {"create jobs": 4, "log pods": 4, "deletecollection jobs": 1}
        | {"create pods": 1, "exec pods": 1, "delete pods": 1}
    )


def test_a_failing_script_keeps_its_exit_code_and_records_what_it_wrote(
    tmp_path: Path, cluster: EmulatedCluster
) -> None:
    text = (
        f"name: boom\nspec:\n  runtime: k8s-aws\n  image: {IMAGE}\n  activities:\n"
        "    - name: boom\n      run: |\n        echo half > partial.txt\n"
        "        echo about to fail\n        exit 3\n"
    )

    async def scenario() -> None:
        async with engine_with(tmp_path, text, cluster.env("k8s-aws")) as (repo, engine, wf_id):
            wf = await engine.attach(wf_id)
            assert await asyncio.wait_for(engine.wait(wf_id), 60) is WorkflowState.FAILED
            act = wf.activities["boom"]
            assert act.state is ActivityState.FAILED
            assert (act.exit_code, act.reason) == (3, "exit code 3")
            assert logs(repo, act.id) == "about to fail\n"
            (pvc,) = cluster.objects("v1/persistentvolumeclaims", "akoflow")
            loc = f"k8s-aws:pvc/{pvc['metadata']['name']}"
            assert rows(repo, wf_id, loc) == {"boom": {"used": set(), "generated": {"partial.txt"}}}

    run(scenario())


def test_provenance_off_leaves_the_command_as_before_and_records_nothing(
    tmp_path: Path, cluster: EmulatedCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AKOFLOW_PROVENANCE", "off")
    script = "echo x > plain.txt\necho plain"
    text = (
        # Nothing is brought back (collect: none): the data plane needs no listing either.
        f"name: noprov\nspec:\n  runtime: k8s-aws\n  collect: none\n  image: {IMAGE}\n"
        "  activities:\n"
        "    - name: plain\n      run: |\n        echo x > plain.txt\n        echo plain\n"
    )

    async def scenario() -> None:
        env = cluster.env("k8s-aws", CLEANUP="never")
        async with engine_with(tmp_path, text, env) as (repo, engine, wf_id):
            wf = await engine.attach(wf_id)
            assert await asyncio.wait_for(engine.wait(wf_id), 60) is WorkflowState.SUCCEEDED
            assert logs(repo, wf.activities["plain"].id) == "plain\n"
            assert repo.list_files(wf_id) == []

    run(scenario())
    (job,) = cluster.objects("batch/v1/jobs", "akoflow")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["command"] == literal(["sh", "-c", script + "\n", "akoflow-plain"])
    assert literal([WRAPPER])[0] not in container["command"]


def test_distributed_storage_records_each_node_volume_apart(
    tmp_path: Path, cluster: EmulatedCluster
) -> None:
    text = (
        f"name: dist\nspec:\n  runtime: k8s-aws\n  image: {IMAGE}\n"
        "  storagePolicy:\n    type: distributed\n  activities:\n"
        "    - name: a\n      run: echo a > a.txt\n"
        "    - name: b\n      run: echo b > b.txt\n"
        "    - name: c\n      dependsOn: [a]\n      run: cat a.txt > c.txt\n"
    )

    async def scenario() -> None:
        env = cluster.env("k8s-aws", CLEANUP="never")
        async with engine_with(tmp_path, text, env) as (repo, engine, wf_id):
            await engine.attach(wf_id)
            assert await asyncio.wait_for(engine.wait(wf_id), 60) is WorkflowState.SUCCEEDED
            claims = {
                j["metadata"]["labels"]["akoflow.io/activity"]: j["spec"]["template"]["spec"][
                    "volumes"
                ][0]["persistentVolumeClaim"]["claimName"]
                for j in cluster.objects("batch/v1/jobs", "akoflow")
            }
            assert claims["a"] == claims["c"] != claims["b"]
            where_a, where_b = (f"k8s-aws:pvc/{claims[x]}" for x in "ab")
            assert rows(repo, wf_id, where_a) == {
                "a": {"used": set(), "generated": {"a.txt"}},
                "c": {"used": {"a.txt"}, "generated": {"c.txt"}},
            }
            assert rows(repo, wf_id, where_b) == {"b": {"used": set(), "generated": {"b.txt"}}}

    run(scenario())


class _Events:
    def __init__(self) -> None:
        self.finished: dict[str, Outcome] = {}

    def job_running(self, key: str, node: str | None) -> None:
        pass

    def job_finished(self, key: str, outcome: Outcome) -> None:
        self.finished[key] = outcome


def test_a_restarted_runtime_still_delivers_the_listings(
    tmp_path: Path, cluster: EmulatedCluster
) -> None:
    """The engine's runtime goes away mid-run; a new one adopts a running Job (its log read
    again from the start, what is stored skipped) and a finished one (one full read)."""
    cfg = RuntimeConfig.from_env("k8s-aws", cluster.env("k8s-aws", CLEANUP="never"))
    slow = direct_job(
        tmp_path, "slow", "echo start\nsleep 3\necho s > slow.txt\necho end", "k8s-aws", IMAGE
    )
    quick = direct_job(tmp_path, "quick", "echo q > quick.txt\necho quick", "k8s-aws", IMAGE)
    slow_log = Path(f"{slow.attempt_prefix}.out/stdout")

    async def scenario() -> None:
        first = KubernetesRuntime("k8s-aws", cfg, _Events())
        await first.start()
        try:
            handles = {job.key: await first.submit(job) for job in (slow, quick)}
            while not (slow_log.exists() and slow_log.read_bytes() == b"start\n"):
                await asyncio.sleep(0.05)
        finally:
            await first.stop()  # as if the engine died: the Jobs run on
        while not any(
            c.get("type") == "Complete"
            for j in cluster.objects("batch/v1/jobs", "akoflow")
            if j["metadata"]["labels"]["akoflow.io/activity"] == "quick"
            for c in (j.get("status") or {}).get("conditions") or []
        ):
            await asyncio.sleep(0.05)
        events = _Events()
        second = KubernetesRuntime("k8s-aws", cfg, events)
        await second.start()
        try:
            done = await second.adopt(quick, handles[quick.key])
            assert done.kind == "finished" and done.outcome is not None
            assert done.outcome.succeeded and done.outcome.files is not None
            (pvc,) = cluster.objects("v1/persistentvolumeclaims", "akoflow")
            loc = f"k8s-aws:pvc/{pvc['metadata']['name']}"
            assert done.outcome.files.location == loc
            assert "quick.txt" in done.outcome.files.after
            assert "quick.txt" not in done.outcome.files.before
            assert Path(f"{quick.attempt_prefix}.out/stdout").read_bytes() == b"quick\n"
            running = await second.adopt(slow, handles[slow.key])
            assert running.kind == "running"
            while slow.key not in events.finished:
                await asyncio.sleep(0.05)
            outcome = events.finished[slow.key]
            assert outcome.succeeded and outcome.files is not None
            assert outcome.files.location == loc
            assert "slow.txt" in outcome.files.after and "slow.txt" not in outcome.files.before
            assert slow_log.read_bytes() == b"start\nend\n"  # nothing lost, nothing twice
        finally:
            await second.stop()

    run(asyncio.wait_for(scenario(), 120))
