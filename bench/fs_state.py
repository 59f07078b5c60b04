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
import tempfile
import time
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


PROBE_CREATES = 500
QUIET_CREATE = 60e-6  # seconds per create: this VM's ext4 costs ~20 us when it is quiet


def create_cost(directory: Path) -> float:
    """Seconds per file created (empty, exclusive) in a new directory under ``directory``.
    The files are kept: deleting them would slow the next creates (see above)."""
    directory.mkdir(parents=True, exist_ok=True)
    probe = Path(tempfile.mkdtemp(prefix="create-probe-", dir=directory))
    start = time.perf_counter()
    for i in range(PROBE_CREATES):
        os.close(os.open(probe / str(i), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    return (time.perf_counter() - start) / PROBE_CREATES


def settle(directory: Path, *, wait: float = 420.0) -> float:
    """Wait (at most ``wait`` seconds) until creating a file in ``directory`` costs what it
    does on a quiet file system, saying so; the last cost measured."""
    cost = create_cost(directory)
    deadline = time.monotonic() + wait
    if cost > QUIET_CREATE:
        print(
            f"waiting for the file system to settle: a create costs {cost * 1e6:.0f} us "
            f"(quiet: < {QUIET_CREATE * 1e6:.0f} us)",
            flush=True,
        )
    while cost > QUIET_CREATE and time.monotonic() < deadline:
        time.sleep(10)
        cost = create_cost(directory)
    return cost
