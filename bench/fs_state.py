"""What the file system of a benchmark's state dir does to its numbers.

On ext4 without a journal (some VM images: this project's CI machines among them) the kernel
does not reuse an inode freed in the last 1 to 6 minutes (``recently_deleted`` in
fs/ext4/ialloc.c, only without a journal), and looks at each such one while it allocates:
after many deletions (a benchmark's state dir removed, ``akoflow gc``) every file created
costs up to ~0.4 ms of system time instead of ~0.02 ms, and a local attempt creates four.
Benchmarks print :func:`deletion_note` so that numbers taken then are read as such.
"""

from __future__ import annotations

import os
from pathlib import Path


def _ext4_device(path: Path) -> str | None:
    """The name under /sys/fs/ext4 of the file system holding ``path`` (None: not ext4)."""
    dev = os.stat(path).st_dev
    try:
        block = Path(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}").resolve().name
    except OSError:
        return None
    return block if Path("/sys/fs/ext4", block).is_dir() else None


def deletion_note(path: Path) -> str | None:
    """A line to print when ``path`` is on ext4 without a journal, else None."""
    name = _ext4_device(path)
    if name is None:
        return None
    try:
        task = Path("/sys/fs/ext4", name, "journal_task").read_text().strip()
    except OSError:
        return None
    if task not in ("", "<none>"):
        return None
    return (
        f"note: {path} is on ext4 without a journal ({name}): for 1-6 minutes after many "
        "files were deleted there, each file created costs up to 20x more (the kernel's "
        "recently_deleted scan); numbers taken then are slower (bench/fs_state.py)"
    )
