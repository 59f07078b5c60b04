"""Pure parts: names, manifests (strictly valid against the Kubernetes schema), settings,
status readers."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import kubernetes_validate
import pytest

from akoflow.config import RuntimeConfig
from akoflow.runtimes.base import JobSpec
from akoflow.runtimes.kubernetes import manifests as mf
from akoflow.runtimes.kubernetes.listing import WRAPPER, files_token
from akoflow.runtimes.kubernetes.settings import ConfigError, read_settings
from akoflow.runtimes.kubernetes.status import job_view, outcome_of, pod_view
from akoflow.spec import Activity, StoragePolicy

K8S = "1.37"


def spec(name: str = "align", **act: object) -> JobSpec:
    activity = Activity(name=name, run="echo 'it''s' \"$X\"; exit 3", runtime="k8s", **act)  # type: ignore[arg-type]
    return JobSpec(
        key=f"wf7-{name}-a2",
        workflow_id=7,
        workflow_name="genomics",
        activity_id=70,
        activity=activity,
        attempt=2,
        data_dir=Path("/srv/data"),
        attempt_dir=Path("/srv/state/runs/7-genomics/attempts"),
        scope="5c0be5c0be5c",  # the run's, as the runtime resolves it (scope.scoped)
        env={"AKOFLOW_WORKFLOW_ID": "7", "AKOFLOW_DATA_DIR": "/srv/data"},
        storage_policy=StoragePolicy("standalone", "fast", "5Gi"),
    )


OPTS = mf.JobOptions(namespace="akoflow", service_account="akoflow-runner")


def test_every_manifest_is_valid_against_the_schema() -> None:
    job = spec(
        image="python:3.11",
        cpu_limit="500m",
        cpu_cores=0.5,
        memory_limit="256Mi",
        memory_bytes=256 << 20,
        node_selector={"disk": "ssd"},
        env={"X": "y"},
        mount_path="/work",
    )
    manifests = [
        mf.namespace_manifest("akoflow"),
        mf.service_account_manifest("akoflow-runner", "akoflow"),
        mf.pvc_manifest(
            "p",
            "akoflow",
            size="5Gi",
            storage_class="fast",
            access_mode="ReadWriteMany",
            labels=mf.labels_of(job),
        ),
        mf.job_manifest(job, OPTS, pvc="p", node="node-a"),
        mf.job_manifest(spec(), OPTS, pvc="p"),
    ]
    for m in manifests:
        kubernetes_validate.validate(m, K8S, strict=True)
    j = manifests[3]
    pod = j["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert j["spec"]["backoffLimit"] == 0 and j["spec"]["ttlSecondsAfterFinished"] == 86400
    # Provenance on: the constant wrapper, the script one argv element after it; every `$`
    # doubled, so that Kubernetes' $(VAR) expansion hands each over as written.
    assert c["command"] == mf.literal(
        [
            "sh",
            "-c",
            WRAPPER,
            "akoflow-align",
            job.activity.run,
            "sh",
            files_token(mf.job_name(job)),
        ]
    )
    assert mf.literal(["a $(B) $$ $c"]) == ["a $$(B) $$$$ $$c"]
    off = mf.job_manifest(replace(job, record_files=False), OPTS, pvc="p")
    kubernetes_validate.validate(off, K8S, strict=True)
    off_c = off["spec"]["template"]["spec"]["containers"][0]
    assert off_c["command"] == mf.literal(["sh", "-c", job.activity.run, "akoflow-align"])
    assert mf.claim_of(j) == "p"
    assert c["image"] == "python:3.11"
    assert c["resources"] == {
        "limits": {"cpu": "500m", "memory": "256Mi"},
        "requests": {"cpu": "500m", "memory": "256Mi"},
    }
    assert pod["nodeSelector"] == {"disk": "ssd", "kubernetes.io/hostname": "node-a"}
    assert pod["restartPolicy"] == "Never"
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["X"] == "y" and env["AKOFLOW_DATA_DIR"] == "/work"  # the container's path
    assert j["metadata"]["labels"][mf.L_ATTEMPT] == "2"
    assert j["metadata"]["labels"][mf.L_ACTIVITY] == "align"
    assert j["metadata"]["annotations"][mf.A_KEY] == "wf7-align-a2"
    # Its name as a label: the Jobs to delete are selected by name, in one request.
    assert j["metadata"]["labels"][mf.L_JOB] == j["metadata"]["name"] and mf.is_named(j)
    assert mf.L_JOB not in j["spec"]["template"]["metadata"]["labels"]  # the Job's only
    older = {"metadata": {"name": "wf7-a-a1-s", "labels": {mf.L_ATTEMPT: "1"}}}
    assert not mf.is_named(older)


def test_one_label_selector_names_the_jobs_to_delete() -> None:
    from tests.k8s_support.apiserver import parse_label_selector

    selector = mf.jobs_named(["wf1-b-a1-s", "wf1-a-a1-s", "wf1-b-a1-s"])
    assert selector == "akoflow.io/job in (wf1-a-a1-s,wf1-b-a1-s)"
    chosen = parse_label_selector(selector)
    assert chosen({mf.L_JOB: "wf1-a-a1-s"}) and chosen({mf.L_JOB: "wf1-b-a1-s"})
    assert not chosen({mf.L_JOB: "wf1-c-a1-s"}) and not chosen({})
    # A whole run's: its scope and workflow id together.
    job = mf.job_manifest(spec(), OPTS, pvc="p")
    run = parse_label_selector(mf.run_jobs("5c0be5c0be5c", "7"))
    assert run(job["metadata"]["labels"])
    assert not run({**job["metadata"]["labels"], mf.L_SCOPE: "other"})
    assert not run({**job["metadata"]["labels"], mf.L_WORKFLOW: "8"})


def test_an_upstream_style_manifest_is_rejected_by_the_schema() -> None:
    """The check has teeth: upstream put backoffLimit inside the pod spec."""
    bad = mf.job_manifest(spec(), OPTS, pvc="p")
    bad["spec"]["template"]["spec"]["backoffLimit"] = 0
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S, strict=True)


def test_names_are_deterministic_dns_labels_hash_truncated() -> None:
    long = "a" * 63
    job = spec(long)
    name = mf.job_name(job)
    assert name == mf.job_name(spec(long))
    assert len(name) <= 63 and name[0].isalnum() and name[-1].isalnum()
    assert mf.job_name(replace(job, key=job.key.replace("a2", "a3"))) != name
    short = mf.job_name(spec())
    assert short.startswith("wf7-align-a2-") and len(short) <= 63
    assert mf.dns_name("Wf_1") != "wf-1"  # changed text gets a hash: no collisions by case


def test_a_huge_script_is_refused_clearly() -> None:
    job = spec()
    job = replace(job, activity=replace(job.activity, run="x" * 200_000))
    with pytest.raises(ValueError, match="at most"):
        mf.job_manifest(job, OPTS, pvc="p")


def test_settings_verify_tls_by_default_and_never_show_the_token(
    caplog: pytest.LogCaptureFixture,
) -> None:
    env = {"K8S_AWS_API_SERVER_HOST": "10.0.0.1:6443", "K8S_AWS_API_SERVER_TOKEN": "s3cr3t"}
    settings, cfg = read_settings(RuntimeConfig.from_env("k8s-aws", env))
    assert settings.server == "https://10.0.0.1:6443"
    assert not cfg.cluster.insecure
    with caplog.at_level(logging.WARNING):
        _, cfg = read_settings(
            RuntimeConfig.from_env("k8s-aws", {**env, "K8S_AWS_INSECURE_SKIP_TLS_VERIFY": "true"})
        )
    assert cfg.cluster.insecure and "NOT verified" in caplog.text
    assert "s3cr3t" not in caplog.text
    with pytest.raises(ConfigError) as err:
        read_settings(RuntimeConfig.from_env("k8s-aws", {**env, "K8S_AWS_CLEANUP": "sometimes"}))
    assert "s3cr3t" not in str(err.value)
    with pytest.raises(ConfigError, match="https"):
        read_settings(
            RuntimeConfig.from_env("k8s-aws", {**env, "K8S_AWS_API_SERVER_HOST": "http://10.0.0.1"})
        )


def test_status_readers() -> None:
    pod = {
        "metadata": {"name": "p", "labels": {"batch.kubernetes.io/job-name": "j"}},
        "spec": {"nodeName": "n1"},
        "status": {
            "containerStatuses": [
                {"state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}
            ]
        },
    }
    v = pod_view(pod)
    assert (v.job, v.node, v.terminated, v.exit_code) == ("j", "n1", True, 137)
    o = outcome_of(
        complete=False, failed_reason="BackoffLimitExceeded", exit_code=137, term_reason="OOMKilled"
    )
    assert not o.succeeded and o.exit_code == 137 and "out of memory" in (o.reason or "")
    waiting = {
        "metadata": {"name": "p"},
        "status": {
            "containerStatuses": [
                {"state": {"waiting": {"reason": "ImagePullBackOff", "message": "no"}}}
            ]
        },
    }
    assert pod_view(waiting).stuck == "ImagePullBackOff: no"
    job = {
        "metadata": {"name": "j", "annotations": {mf.A_KEY: "k"}},
        "status": {"conditions": [{"type": "Complete", "status": "True"}]},
    }
    assert job_view(job).complete and job_view(job).key == "k"
    assert outcome_of(complete=True, failed_reason=None, exit_code=0, term_reason=None).succeeded
