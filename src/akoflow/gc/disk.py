"""A deleted run's files on the engine host: what they take, and their removal.

Bytes are counted as a deletion frees them: each regular file's size once per inode, and
only when every one of its names is inside what is removed (a file hard-linked from
elsewhere, a cached result's copy, frees nothing). Links are never followed.

Both take ``keep``: paths inside the tree that stay (another run's data dir that lies in the
deleted run's dir): neither counted nor removed, nor are the directories that lead to them.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
from collections.abc import Iterable
from pathlib import Path


def freed_bytes(root: Path, keep: Iterable[Path] = ()) -> int:
    """The bytes removing ``root`` (a directory tree) but ``keep`` frees; 0 when it does not
    exist."""
    kept = {os.fsencode(os.path.abspath(k)) for k in keep}
    if os.fsencode(os.path.abspath(root)) in kept:
        return 0
    seen: dict[tuple[int, int], list[int]] = {}  # (dev, ino) -> [size, nlink, names seen]
    stack = [os.fsencode(os.path.abspath(root))]
    while stack:
        top = stack.pop()
        try:
            entries = list(os.scandir(top))
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        for entry in entries:
            if entry.path in kept:
                continue
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


def remove_tree(root: Path, keep: Iterable[Path] = ()) -> str | None:
    """Remove ``root`` (links inside are removed, never followed) but the paths ``keep`` and
    the directories that hold them; None, or why some of it could not be removed."""
    kept = [Path(os.path.abspath(k)) for k in keep]
    base = Path(os.path.abspath(root))
    if any(k == base for k in kept):
        return None
    if any(k.is_relative_to(base) for k in kept):
        return _remove_around(base, kept)
    return _remove_whole(base)


def _remove_around(root: Path, kept: list[Path]) -> str | None:
    """Remove what ``root`` holds but the ``kept`` paths (each inside it) and their parents."""
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"{root}: {exc.strerror or exc}"
    problems = []
    for name in names:
        path = root / name
        inner = [k for k in kept if k == path or k.is_relative_to(path)]
        if path in inner:
            continue
        if inner and path.is_dir() and not path.is_symlink():
            problem = _remove_around(path, inner)
        else:  # a link on the way to a kept path is removed: what it points to is not kept
            problem = _remove_whole(path)
        if problem is not None:
            problems.append(problem)
    return "; ".join(problems[:3]) or None


def _remove_whole(root: Path) -> str | None:
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


def within(path: Path | str, parent: Path | str) -> bool:
    """``path`` is ``parent`` or beneath it (strings compared as given, made absolute)."""
    child, base = Path(os.path.abspath(path)), Path(os.path.abspath(parent))
    return child.is_relative_to(base)


def inside(path: Path, parent: Path) -> bool:
    """``path`` is strictly beneath ``parent`` (both as given, made absolute: no link is
    resolved, so a link named like a run dir is removed, never what it points to)."""
    child, base = Path(os.path.abspath(path)), Path(os.path.abspath(parent))
    return child != base and child.is_relative_to(base)


__all__ = ["freed_bytes", "inside", "remove_tree", "within"]
