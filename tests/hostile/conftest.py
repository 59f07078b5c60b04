"""Hostile passes: the private SLURM cluster of tests/hpc_runtime, reused (its fixtures)."""

from tests.hpc_runtime.conftest import hpc_env, slurm_cluster  # noqa: F401
