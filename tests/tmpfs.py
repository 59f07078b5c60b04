"""Small real file systems for the full-disk tests: a tmpfs mounted for one test (as root:
CI runs the tests as root), and a way to fill one."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def tmpfs(mount: Path, options: str) -> Iterator[Path]:
    """A tmpfs mounted at ``mount`` (made), unmounted at the end."""
    if os.geteuid() != 0:
        pytest.fail("this test mounts a tmpfs: run it as root (CI does)")
    mount.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "--lazy", str(mount)], check=False)


def fill_inodes(directory: Path) -> list[Path]:
    """Empty files in ``directory`` (made) until the file system has no inode left."""
    directory.mkdir()
    made: list[Path] = []
    while True:
        path = directory / str(len(made))
        try:
            path.touch(exist_ok=False)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
            return made
        made.append(path)


def fill_space(path: Path) -> None:
    """A file at ``path`` written until the file system has no block left."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        while True:
            os.write(fd, bytes(1 << 16))
    except OSError as exc:
        assert exc.errno == errno.ENOSPC, exc
    finally:
        os.close(fd)
    try:  # the last pages, smaller than a chunk
        with open(path, "ab", buffering=0) as tail:
            while True:
                tail.write(bytes(4096))
    except OSError as exc:
        assert exc.errno == errno.ENOSPC, exc
