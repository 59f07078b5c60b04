"""HPC runtime: activities become SLURM batch jobs, submitted through a login node over SSH
(or on the login node itself, ``{NAME}_TRANSPORT=local``).

Modules, one job each: :mod:`.settings` (``{NAME}_{KEY}`` configuration, checked up front),
:mod:`.transport` (how the adapter reaches the cluster) with its two sides :mod:`.ssh` (the one
SSH connection per cluster) and :mod:`.local` (this host), :mod:`.sbatch` (the job script,
rendered by a pure function), :mod:`.slurm` (squeue/sacct/sinfo/sstat output parsing, pure),
:mod:`.staging` (rsync of ``spec.volumes``) and :mod:`.runtime` (the adapter that ties them
together).
"""

# First: asyncssh without the warning cryptography prints on its import (see the module).
from akoflow.runtimes.hpc import asyncssh_import  # noqa: F401
from akoflow.runtimes.hpc.runtime import HpcRuntime

__all__ = ["HpcRuntime"]
