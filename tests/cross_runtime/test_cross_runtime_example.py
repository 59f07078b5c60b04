"""examples/cross-runtime.yaml, run as a user would (`akoflow validate`, `akoflow run`) with
only its runtimes' settings in the environment, against every backend of the suite at once:
laptop -> docker -> SLURM over SSH -> Kubernetes cluster A -> cluster B -> laptop, each step
reading the file the one before wrote. The files move by themselves (issue 17): what a remote
step reads reaches its location, what it wrote comes back when a later step elsewhere needs
it, each file once per place whatever number of steps read it, over one SSH login to the
SLURM cluster and, on each Kubernetes cluster, one Job and one transfer pod whose execs are
the copies."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import pytest

from akoflow import service
from tests.conftest import EXAMPLES, Akoflow, cli_env
from tests.docker_support.dockerd import PrivateDockerd
from tests.hpc_runtime.conftest import runtime_env
from tests.k8s_support.cluster import EmulatedCluster
from tests.slurm_support.cluster import SlurmCluster

pytestmark = [pytest.mark.slurm, pytest.mark.docker, pytest.mark.k8s, pytest.mark.needs_root]

EXAMPLE = EXAMPLES / "cross-runtime.yaml"
NS = "akoflow"  # the workflow's namespace (spec.namespace's default)
# Requests whose number depends on wall time (health, node and metrics listings, watches),
# not on the work: left out of the per-run counts.
PERIODIC = ("watch", "get healthz", "list nodes", "list metrics/", "list jobs", "list pods")


def per_run(before: Counter[str], after: Counter[str]) -> Counter[str]:
    delta = after - before
    return Counter({k: v for k, v in delta.items() if not k.startswith(PERIODIC)})


def requests_for(copies: int) -> Counter[str]:
    """A run's requests to a cluster where one Job ran and ``copies`` files crossed: its
    namespace, service account and PVC set up once, the Job made, its log read and the Job
    deleted (by one request for all the run's, when it ends), one transfer pod made and
    deleted, one exec in it per copy."""
    return Counter(
        {
            "create namespaces": 1,
            "create serviceaccounts": 1,
            "create persistentvolumeclaims": 1,
            "create jobs": 1,
            "log pods": 1,
            "deletecollection jobs": 1,
            "create pods": 1,
            "delete pods": 1,
            "exec pods": copies,
        }
    )


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_cross_runtime_example_moves_its_files_by_itself(
    akoflow: Akoflow,
    state_dir: Path,
    tmp_path: Path,
    daemon: PrivateDockerd,
    slurm: SlurmCluster,
    cluster_a: EmulatedCluster,
    cluster_b: EmulatedCluster,
) -> None:
    res = akoflow("validate", str(EXAMPLE), state=False)
    assert res.returncode == 0, res.stderr + res.stdout

    hpc = runtime_env(slurm, "hpc", "mount/cross-runtime")
    mount = Path(hpc["HPC_MOUNT_PATH"])
    mount.mkdir(parents=True)
    env = cli_env(
        DOCKER_HOST=daemon.host,
        DOCKER_PULL_POLICY="never",  # busybox:stable is the suite's image, tagged
        **hpc,
        **cluster_a.env("k8s-a"),
        **cluster_b.env("k8s-b"),
    )
    logins = slurm.sshd.connections()
    before_a, before_b = cluster_a.counts(), cluster_b.counts()
    data = tmp_path / "data"
    res = akoflow("run", str(EXAMPLE), "--json", "--data-dir", str(data), env=env, timeout=180)
    assert res.returncode == 0, res.stderr + res.stdout
    out = json.loads(res.stdout)
    assert [(a["name"], a["runtime"], a["state"]) for a in out["activities"]] == [
        ("prepare", "local", "succeeded"),
        ("clean", "docker", "succeeded"),
        ("simulate", "hpc", "succeeded"),
        ("summarise", "k8s-a", "succeeded"),
        ("verify", "k8s-b", "succeeded"),
        ("report", "local", "succeeded"),
    ]
    # Cluster B's checksums of the copies it was given match the laptop's files.
    assert (data / "report.txt").read_text() == (
        "summary.txt: OK\nsum.txt: OK\ntotal: 3862\nthousands: 3.862\n"
    )
    assert (data / "sum.txt").read_text() == "3862\n"  # 1..100 without the 7s, summed

    wf_id = out["workflow"]["id"]
    repo = service.open_repository(state_dir)
    try:
        names = {a.id: a.name for a in repo.list_activities(wf_id)}
        copies = repo.list_data_copies(wf_id)
    finally:
        repo.close()
    claims = [
        cluster.objects("v1/persistentvolumeclaims", NS) for cluster in (cluster_a, cluster_b)
    ]
    (claim_a,), (claim_b,) = claims
    at_hpc = f"hpc:{mount}"
    at_a = f"k8s-a:pvc/{claim_a['metadata']['name']}"
    at_b = f"k8s-b:pvc/{claim_b['metadata']['name']}"
    # Each file a step declared reading crossed to its runtime once, before that step; what a
    # step wrote came back once, before the first step elsewhere that needed it: sum.txt,
    # read on cluster A, cluster B and the laptop, left the SLURM cluster once; summary.txt,
    # read on cluster B and the laptop, left cluster A once. (In the order of the steps; any
    # order within one.)
    order = {name: i for i, name in enumerate(names[a] for a in sorted(names))}
    made = [(names[c.activity_id or 0], c.path, c.source, c.destination) for c in copies]
    assert [order[m[0]] for m in made] == sorted(order[m[0]] for m in made)
    assert sorted(made) == sorted(
        [
            ("simulate", "clean.txt", "", at_hpc),
            ("summarise", "sum.txt", at_hpc, ""),
            ("summarise", "sum.txt", "", at_a),
            ("verify", "summary.txt", at_a, ""),
            ("verify", "sum.txt", "", at_b),
            ("verify", "summary.txt", "", at_b),
            ("report", "checksums.txt", at_b, ""),
        ]
    )
    for c in copies:  # each recorded with the digest and size of what is on the laptop
        assert (sha256(data / c.path), (data / c.path).stat().st_size) == (c.sha256, c.bytes)
    # The remote locations hold those versions, and of the run's files only what their
    # steps read or wrote (numbers.txt never left the laptop).
    run_files = {p.name for p in data.iterdir() if p.is_file()}
    assert run_files >= {"numbers.txt", "clean.txt", "checksums.txt", "report.txt"}
    volume_a = cluster_a.kubelet.pvc_dir(NS, claim_a["metadata"]["name"])
    volume_b = cluster_b.kubelet.pvc_dir(NS, claim_b["metadata"]["name"])
    for where, files in (
        (mount, {"clean.txt", "sum.txt"}),
        (volume_a, {"sum.txt", "summary.txt"}),
        (volume_b, {"sum.txt", "summary.txt", "checksums.txt"}),
    ):
        assert {f for f in run_files if (where / f).exists()} == files, where
        assert all(sha256(where / f) == sha256(data / f) for f in files), where
    # One SSH login to the SLURM cluster for its step, its copies and its polls.
    assert slurm.sshd.connections() - logins == 1
    # Per cluster: one Job, one transfer pod, one exec per copy; no request refused.
    assert per_run(before_a, cluster_a.counts()) == requests_for(copies=2)
    assert per_run(before_b, cluster_b.counts()) == requests_for(copies=3)
