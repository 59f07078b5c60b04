"""A run's scope: which run of which state dir a backend object belongs to.

Backend objects (docker containers, Kubernetes Jobs and volumes, SLURM jobs and their remote
dirs) are named and labelled with the attempt key plus the run's scope. The key alone repeats:
every state dir's first run has keys ``wf1-...``, so do two users' on one daemon, and so does a
state dir deleted and made again at the same path. The scope is a random token made the first
time one of the run's objects is named and kept in the run's attempt dir, so it survives
engine restarts and dies with the run's files: a hash of the path would not tell a re-created
state dir from the old one, whose containers and jobs may still be on the backend.

A run started by a version before the token keeps the scope that version named its docker
containers by, a hash of the attempt dir's path (:func:`legacy_scope`), so a resume after the
upgrade finds them by name, label and listing. Only such a run: the proof is an attempt
prepared for a container (its script ``<x>.sh`` beside its output dir ``<x>.out/``) while the
run had no scope, which this version never leaves (the docker and Kubernetes runtimes make
the scope before an attempt's files; the others make no ``.out`` dir). A state dir made again
at the same path has no such attempt when its scope is made, so it never takes the old one's
hash.
"""

from __future__ import annotations

import dataclasses
import hashlib
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
    on first use: a random token, or the path hash for a run an older version started.
    Concurrent first calls agree: the token is published by an atomic link."""
    token = _recorded(attempt_dir)
    if token is not None:
        return token
    attempt_dir.mkdir(parents=True, exist_ok=True)
    # Written even when derived: the run keeps it if its attempt files are ever removed.
    token = legacy_scope(attempt_dir) if started_before_tokens(attempt_dir) else None
    token = token or secrets.token_hex(6)
    draft = attempt_dir / f"{SCOPE_FILE}.{secrets.token_hex(6)}"  # unique per call
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
    _sync_dir(attempt_dir)  # the link too: an attempt's files never outlive their scope
    return token


def legacy_scope(attempt_dir: Path) -> str:
    """The scope versions before the token gave a run's docker containers (in their names
    and ``akoflow.scope`` label): 12 hex digits of the SHA-256 of the attempt dir's path."""
    return hashlib.sha256(os.fsencode(os.path.abspath(attempt_dir))).hexdigest()[:12]


def started_before_tokens(attempt_dir: Path) -> bool:
    """An attempt of the run was prepared for a container while it had no scope: only a
    version before scope tokens did that (see the module's docstring)."""
    try:
        names = set(os.listdir(attempt_dir))
    except (FileNotFoundError, NotADirectoryError):
        return False
    return any(
        name.endswith(".sh") and (attempt_dir / (name[: -len(".sh")] + ".out")).is_dir()
        for name in names
    )


def existing_scope(attempt_dir: Path) -> str | None:
    """The run's scope if one was made, without making one: for looking, not naming (a
    listing of what a run left, a test watching a run it did not start)."""
    token = _recorded(attempt_dir)
    if token is None and started_before_tokens(attempt_dir):
        token = legacy_scope(attempt_dir)
    return token


def _recorded(attempt_dir: Path) -> str | None:
    for name in (SCOPE_FILE, *LEGACY_SCOPE_FILES):
        token = _read(attempt_dir / name)
        if token is not None:
            return token
    return None


def scoped(job: JobSpec) -> JobSpec:
    """``job`` with :attr:`JobSpec.scope` filled in from its run's attempt dir."""
    return job if job.scope else dataclasses.replace(job, scope=scope_of(job.attempt_dir))


def _sync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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


__all__ = [
    "SCOPE_FILE",
    "existing_scope",
    "legacy_scope",
    "scope_of",
    "scoped",
    "started_before_tokens",
]
