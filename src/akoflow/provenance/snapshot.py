"""Snapshots of a workflow's data dir, and what changed between two of them.

A snapshot maps each regular file's path (relative to the data dir, '/'-separated) to its size,
modification time and, where cheap, its SHA-256. Checksums are computed only for files up to
:data:`CHECKSUM_LIMIT` bytes, and only once per (size, mtime): a file that did not change keeps
the checksum of the previous snapshot, so a run does not re-read its data for every activity.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

CHECKSUM_LIMIT = 4 << 20  # bytes; bigger files are identified by size and mtime only


@dataclass(frozen=True, slots=True)
class FileState:
    size: int
    mtime: float
    sha256: str | None = None


Snapshot = dict[str, FileState]


def _sha256(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except OSError:
        return None  # vanished or unreadable between the stat and the read


def scan(
    root: Path,
    previous: Mapping[str, FileState] | None = None,
    exclude: Path | None = None,
) -> Snapshot:
    """Every regular file under ``root`` (symlinks are not followed), except under ``exclude``
    (AkôFlow's own state dir, when a user puts it inside the data dir)."""
    skip = str(exclude) if exclude is not None else None
    snapshot: Snapshot = {}
    stack = [(str(root.absolute()), "")]
    while stack:
        directory, prefix = stack.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue
        for entry in entries:
            name = prefix + entry.name
            try:
                if entry.is_dir(follow_symlinks=False):
                    if entry.path != skip:
                        stack.append((entry.path, name + "/"))
                    continue
                if not entry.is_file(follow_symlinks=False):
                    continue
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            old = previous.get(name) if previous else None
            if old is not None and old.size == st.st_size and old.mtime == st.st_mtime:
                snapshot[name] = old
                continue
            digest = _sha256(entry.path) if st.st_size <= CHECKSUM_LIMIT else None
            snapshot[name] = FileState(st.st_size, st.st_mtime, digest)
    return snapshot


@dataclass(frozen=True, slots=True)
class Change:
    created: dict[str, FileState]
    modified: dict[str, FileState]
    deleted: dict[str, FileState]


def changes(before: Mapping[str, FileState], after: Mapping[str, FileState]) -> Change:
    created = {p: s for p, s in after.items() if p not in before}
    modified = {
        p: s
        for p, s in after.items()
        if p in before
        and (before[p].size, before[p].mtime, before[p].sha256) != (s.size, s.mtime, s.sha256)
    }
    deleted = {p: s for p, s in before.items() if p not in after}
    return Change(created, modified, deleted)
