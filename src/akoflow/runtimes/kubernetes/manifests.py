"""Pure functions that build the Kubernetes objects of one attempt (plain dicts).

Everything here is deterministic: the same :class:`JobSpec` and settings give the same names,
labels and manifests, so an engine that restarts finds its objects again by name and label.
Every manifest is valid against the Kubernetes OpenAPI schema (the tests validate each one).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from akoflow.runtimes.base import JobSpec
from akoflow.runtimes.kubernetes.listing import WRAPPER, files_token

DEFAULT_MOUNT = "/data"
DEFAULT_NAMESPACE = "akoflow"  # a workflow's spec.namespace when it names none
MAX_NAME = 63  # DNS-1123 label: Job names also become a pod label value
CONTAINER = "activity"
DATA_VOLUME = "data"
MAX_SCRIPT_BYTES = 96 * 1024  # passed as one argv element; the kernel's limit is 128 KiB

GROUP = "akoflow.io"
L_SCOPE = f"{GROUP}/scope"
L_WORKFLOW = f"{GROUP}/workflow"
L_ACTIVITY = f"{GROUP}/activity"
L_ATTEMPT = f"{GROUP}/attempt"
L_ROLE = f"{GROUP}/role"
L_JOB = f"{GROUP}/job"  # on Jobs only: its own name, so that many are deleted in one request
L_MANAGED = "app.kubernetes.io/managed-by"
A_KEY = f"{GROUP}/key"
A_WORKFLOW_NAME = f"{GROUP}/workflow-name"
HOSTNAME_LABEL = "kubernetes.io/hostname"
TRANSFER_ROLE = "transfer"
TRANSFER_CONTAINER = "transfer"
TRANSFER_MOUNT = "/data"  # where the transfer pod mounts the run's PVC
TRANSFER_LIFETIME = 86400  # seconds: a transfer pod nobody deleted ends by itself

_NOT_DNS = re.compile(r"[^a-z0-9-]+")


def _scope(job: JobSpec) -> str:
    """The run's scope (see :mod:`akoflow.runtimes.scope`), which the runtime resolved: the
    builders stay pure, and the same key of another run gets other names."""
    if not job.scope:
        raise ValueError(f"attempt {job.key} has no scope: resolve it with scoped(job)")
    return job.scope


def dns_name(*parts: str, limit: int = MAX_NAME) -> str:
    """A DNS-1123 label from ``parts``; too long ones keep their head plus a hash of all."""
    raw = "-".join(p for p in parts if p)
    name = _NOT_DNS.sub("-", raw.lower()).strip("-") or "x"
    if len(name) <= limit and name == raw:
        return name
    digest = hashlib.sha256(raw.encode()).hexdigest()[:8]
    head = name[: limit - len(digest) - 1].rstrip("-")
    return f"{head}-{digest}"


def job_name(job: JobSpec) -> str:
    """``<key>-<scope>`` (e.g. ``wf3-align-a1-1f2e3d4c5b6a``), hash-truncated to 63 chars."""
    return dns_name(job.key, _scope(job))


def standalone_pvc_name(job: JobSpec) -> str:
    return dns_name("akoflow", f"wf{job.workflow_id}", _scope(job))


def node_pvc_name(job: JobSpec, node: str) -> str:
    return dns_name("akoflow", f"wf{job.workflow_id}", node, _scope(job))


def transfer_pod_name(job: JobSpec) -> str:
    """The run's transfer pod (one per run and namespace: see :mod:`.transfer`)."""
    return dns_name("akoflow-transfer", f"wf{job.workflow_id}", _scope(job))


def transfer_labels(job: JobSpec) -> dict[str, str]:
    """What finds a run's transfer pods again (after an engine restart): no activity label,
    so no Job's pod is ever taken for one."""
    return {
        L_MANAGED: "akoflow",
        L_SCOPE: _scope(job),
        L_WORKFLOW: str(job.workflow_id),
        L_ROLE: TRANSFER_ROLE,
    }


def is_transfer_pod(pod: Mapping[str, Any]) -> bool:
    labels = (pod.get("metadata") or {}).get("labels") or {}
    return labels.get(L_ROLE) == TRANSFER_ROLE


def transfer_pod_manifest(
    job: JobSpec, *, namespace: str, pvc: str, image: str, service_account: str
) -> dict[str, Any]:
    """A bare Pod that mounts the run's PVC at :data:`TRANSFER_MOUNT` and waits, so files can
    be copied in and out through ``pods/exec``. It ends by itself after
    :data:`TRANSFER_LIFETIME` seconds even if nobody deletes it, and stops at once when
    deleted (its shell traps TERM)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": transfer_pod_name(job),
            "namespace": namespace,
            "labels": transfer_labels(job),
            "annotations": {A_WORKFLOW_NAME: job.workflow_name},
        },
        "spec": {
            "restartPolicy": "Never",
            "serviceAccountName": service_account,
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 5,
            "containers": [
                {
                    "name": TRANSFER_CONTAINER,
                    "image": image,
                    "imagePullPolicy": "IfNotPresent",
                    "command": [
                        "sh",
                        "-c",
                        f"trap 'exit 0' TERM; sleep {TRANSFER_LIFETIME} & wait",
                    ],
                    "workingDir": TRANSFER_MOUNT,
                    "volumeMounts": [{"name": DATA_VOLUME, "mountPath": TRANSFER_MOUNT}],
                }
            ],
            "volumes": [{"name": DATA_VOLUME, "persistentVolumeClaim": {"claimName": pvc}}],
        },
    }


def labels_of(job: JobSpec) -> dict[str, str]:
    return {
        L_MANAGED: "akoflow",
        L_SCOPE: _scope(job),
        L_WORKFLOW: str(job.workflow_id),
        L_ACTIVITY: job.activity.name,
        L_ATTEMPT: str(job.attempt),
    }


def jobs_named(names: Iterable[str]) -> str:
    """The label selector of the Jobs with these names (:data:`L_JOB`), for one request
    that deletes them all."""
    return f"{L_JOB} in ({','.join(sorted(set(names)))})"


def run_jobs(scope: str, workflow_id: str) -> str:
    """The label selector of one run's Jobs (its scope and workflow id together: another
    state dir's workflow of the same id is never chosen)."""
    return f"{L_MANAGED}=akoflow,{L_SCOPE}={scope},{L_WORKFLOW}={workflow_id}"


def is_named(job: Mapping[str, Any]) -> bool:
    """Whether a Job (as the API sent it) carries its name as :data:`L_JOB`."""
    meta = job.get("metadata") or {}
    return bool(meta.get("name")) and (meta.get("labels") or {}).get(L_JOB) == meta.get("name")


def namespace_manifest(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {L_MANAGED: "akoflow"}},
    }


def service_account_manifest(name: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": name, "namespace": namespace, "labels": {L_MANAGED: "akoflow"}},
        "automountServiceAccountToken": False,  # activities get no API credentials
    }


def pvc_manifest(
    name: str,
    namespace: str,
    *,
    size: str,
    storage_class: str | None,
    access_mode: str,
    labels: Mapping[str, str],
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "accessModes": [access_mode],
        "resources": {"requests": {"storage": size}},
    }
    if storage_class:
        spec["storageClassName"] = storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
        "spec": spec,
    }


@dataclass(frozen=True, slots=True)
class JobOptions:
    """Per-runtime settings that shape every Job."""

    namespace: str
    service_account: str
    shell: str = "sh"
    ttl_seconds: int = 86400
    default_image: str = "busybox:stable"


def _resources(job: JobSpec) -> dict[str, Any]:
    act = job.activity
    limits: dict[str, str] = {}
    if act.cpu_limit:
        limits["cpu"] = act.cpu_limit
    if act.memory_limit:
        limits["memory"] = act.memory_limit
    # requests = limits: the scheduler reserves what the activity may use (Guaranteed QoS)
    return {"limits": limits, "requests": dict(limits)} if limits else {}


def container_command(job: JobSpec, shell: str) -> list[str]:
    """``<shell> -c <script> akoflow-<name>``; with provenance on, the constant
    :data:`~akoflow.runtimes.kubernetes.listing.WRAPPER` runs the same script (same ``$0``)
    between two listings of the working directory, the script, shell and marker token being
    its positional arguments."""
    script, zero = job.activity.run, f"akoflow-{job.activity.name}"
    if not job.record_files:
        return literal([shell, "-c", script, zero])
    return literal([shell, "-c", WRAPPER, zero, script, shell, files_token(job_name(job))])


def literal(values: list[str]) -> list[str]:
    """Kubernetes expands ``$(NAME)`` in a container's command, args and env values, and reads
    ``$$`` as ``$``; doubling every ``$`` makes it hand each value over exactly as written
    (``echo $$`` or ``$(date)`` in a script stay shell syntax)."""
    return [v.replace("$", "$$") for v in values]


def claim_of(job: Mapping[str, Any]) -> str | None:
    """The PVC a Job's pod mounts (read back from the Job, e.g. after an engine restart)."""
    pod = ((job.get("spec") or {}).get("template") or {}).get("spec") or {}
    for volume in pod.get("volumes") or []:
        if volume.get("name") == DATA_VOLUME:
            claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
            return str(claim) if claim else None
    return None


def container_env(job: JobSpec, mount: str) -> list[dict[str, str]]:
    """AkôFlow's variables (paths as the container sees them), then the activity's own."""
    env = {**job.env, "AKOFLOW_DATA_DIR": mount, "ACTIVITY_MOUNT_PATH": mount, **job.activity.env}
    names = list(env)
    return [
        {"name": k, "value": v} for k, v in zip(names, literal(list(env.values())), strict=True)
    ]


def job_manifest(
    job: JobSpec,
    opts: JobOptions,
    *,
    pvc: str,
    node: str | None = None,
) -> dict[str, Any]:
    """The attempt's Job. The script is one argv element of ``sh -c`` (never pasted into a
    command line), so quotes cannot break it and its exit code is the container's (also with
    the listings of :func:`container_command`)."""
    act = job.activity
    script = act.run
    if len(script.encode()) > MAX_SCRIPT_BYTES:
        raise ValueError(
            f"activity {act.name!r}: the script is {len(script.encode())} bytes; the "
            f"Kubernetes runtime passes at most {MAX_SCRIPT_BYTES} bytes (put the rest in a "
            "file of the data volume)"
        )
    mount = act.mount_path or DEFAULT_MOUNT
    labels = labels_of(job)
    node_selector = dict(act.node_selector)
    if node is not None:
        node_selector[HOSTNAME_LABEL] = node
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": act.image or opts.default_image,
        "command": container_command(job, opts.shell),
        "workingDir": mount,
        "env": container_env(job, mount),
        "volumeMounts": [{"name": DATA_VOLUME, "mountPath": mount}],
    }
    resources = _resources(job)
    if resources:
        container["resources"] = resources
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "serviceAccountName": opts.service_account,
        "automountServiceAccountToken": False,
        "containers": [container],
        "volumes": [{"name": DATA_VOLUME, "persistentVolumeClaim": {"claimName": pvc}}],
    }
    if node_selector:
        pod_spec["nodeSelector"] = node_selector
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(job),
            "namespace": opts.namespace,
            "labels": {**labels, L_JOB: job_name(job)},
            "annotations": {A_KEY: job.key, A_WORKFLOW_NAME: job.workflow_name},
        },
        "spec": {
            "backoffLimit": 0,  # the engine owns retries
            "ttlSecondsAfterFinished": opts.ttl_seconds,
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }
