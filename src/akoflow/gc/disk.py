"""A deleted run's files on the engine host: what they take, and their removal.

Bytes are counted as a deletion frees them: each regular file's size once per inode, and
only when every one of its names is inside what is removed (a file hard-linked from
elsewhere, a cached result's copy, frees nothing). Links are never followed.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
from pathlib import Path


def freed_bytes(root: Path) -> int:
    """The bytes removing ``root`` (a directory tree) frees; 0 when it does not exist."""
    seen: dict[tuple[int, int], list[int]] = {}  # (dev, ino) -> [size, nlink, names seen]
    stack = [os.fsencode(root)]
    while stack:
        top = stack.pop()
        try:
            entries = list(os.scandir(top))
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        for entry in entries:
            try:
                info = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if stat.S_ISDIR(info.st_mode):
                stack.append(entry.path)
            elif stat.S_ISREG(info.st_mode):
                known = seen.setdefault(
                    (info.st_dev, info.st_ino), [info.st_size, info.st_nlink, 0]
                )
                known[2] += 1
    return sum(size for size, nlink, names in seen.values() if names >= nlink)


def remove_tree(root: Path) -> str | None:
    """Remove ``root`` (links inside are removed, never followed); None, or why some of it
    could not be removed."""
    problems: list[str] = []

    def failed(_func: object, path: str, exc: BaseException) -> None:
        if not isinstance(exc, FileNotFoundError):
            problems.append(f"{path}: {getattr(exc, 'strerror', None) or exc}")

    def failed_info(func: object, path: str, info: tuple[type, BaseException, object]) -> None:
        failed(func, path, info[1])

    if not os.path.lexists(root):
        return None
    if root.is_symlink() or not root.is_dir():
        root.unlink(missing_ok=True)
        return None
    if sys.version_info >= (3, 12):
        shutil.rmtree(root, onexc=failed)
    else:  # 3.11 has only onerror (deprecated since)
        shutil.rmtree(root, onerror=failed_info)
    return "; ".join(problems[:3]) or None


def inside(path: Path, parent: Path) -> bool:
    """``path`` is strictly beneath ``parent`` (both as given, made absolute: no link is
    resolved, so a link named like a run dir is removed, never what it points to)."""
    child, base = Path(os.path.abspath(path)), Path(os.path.abspath(parent))
    return child != base and child.is_relative_to(base)


__all__ = ["freed_bytes", "inside", "remove_tree"]
