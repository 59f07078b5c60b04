"""A run's scope: which run of which state dir a backend object belongs to.

Backend objects (docker containers, Kubernetes Jobs and volumes, SLURM jobs and their remote
dirs) are named and labelled with the attempt key plus the run's scope. The key alone repeats:
every state dir's first run has keys ``wf1-...``, so do two users' on one daemon, and so does a
state dir deleted and made again at the same path. The scope is a random token made the first
time one of the run's objects is named and kept in the run's attempt dir, so it survives
engine restarts and dies with the run's files: a hash of the path would not tell a re-created
state dir from the old one, whose containers and jobs may still be on the backend.
"""

from __future__ import annotations

import dataclasses
import os
import re
import secrets
from pathlib import Path

from akoflow.runtimes.base import JobSpec, RuntimeFailure

SCOPE_FILE = ".scope"
# The HPC runtime kept the same token under this name before it was shared: its runs keep it.
LEGACY_SCOPE_FILES = (".hpc-scope",)
_TOKEN = re.compile(r"[0-9a-f]{12}")


def scope_of(attempt_dir: Path) -> str:
    """The scope of the run whose attempt files are in ``attempt_dir`` (12 hex digits), made
    on first use. Concurrent first calls agree: the token is published by an atomic link."""
    token = existing_scope(attempt_dir)
    if token is not None:
        return token
    attempt_dir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(6)
    draft = attempt_dir / f"{SCOPE_FILE}.{token}"
    try:
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
            f.flush()
            os.fsync(f.fileno())  # never an empty scope file after a power loss
        os.link(draft, attempt_dir / SCOPE_FILE)  # fails if another call published first
    except FileExistsError:
        published = _read(attempt_dir / SCOPE_FILE)
        if published is None:
            raise
        return published
    finally:
        draft.unlink(missing_ok=True)
    return token


def existing_scope(attempt_dir: Path) -> str | None:
    """The run's scope if one was made, without making one: for looking, not naming (a
    listing of what a run left, a test watching a run it did not start)."""
    for name in (SCOPE_FILE, *LEGACY_SCOPE_FILES):
        token = _read(attempt_dir / name)
        if token is not None:
            return token
    return None


def scoped(job: JobSpec) -> JobSpec:
    """``job`` with :attr:`JobSpec.scope` filled in from its run's attempt dir."""
    return job if job.scope else dataclasses.replace(job, scope=scope_of(job.attempt_dir))


def _read(path: Path) -> str | None:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return None
    token = text.strip()
    if not _TOKEN.fullmatch(token):
        # Never replaced by a new token: the run's objects on the backend would become
        # strangers, and a guessed token could name another run's.
        raise RuntimeFailure(
            f"the run's scope file {path} is damaged (expected 12 hex digits): restore it, "
            "or its containers and jobs cannot be told from another run's"
        )
    return token


__all__ = ["SCOPE_FILE", "existing_scope", "scope_of", "scoped"]
