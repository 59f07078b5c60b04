"""Hostile passes: the private SLURM cluster of tests/hpc_runtime and the emulated Kubernetes
cluster of tests/k8s_runtime, reused (their fixtures)."""

from tests.hpc_runtime.conftest import hpc_env, slurm_cluster  # noqa: F401
from tests.k8s_runtime.conftest import cluster, k8s_dockerd  # noqa: F401
