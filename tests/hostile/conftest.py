"""Hostile passes: the runtime settings of tests/hpc_runtime and the emulated Kubernetes
cluster of tests/k8s_runtime, reused (their fixtures; the daemons are the session's, from
tests/daemons.py)."""

from tests.hpc_runtime.conftest import hpc_env  # noqa: F401
from tests.k8s_runtime.conftest import cluster  # noqa: F401
