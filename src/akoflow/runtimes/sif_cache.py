"""Images of the singularity runtime: which ones are local, and one pull per reference.

An activity's image is either local (a SIF file or a sandbox directory, used in place) or a
reference that ``BINARY pull`` turns into a SIF file in a cache directory. Pulls are made
under an exclusive ``flock`` on a lock file per reference, so the activities of any number of
engines and runtimes that start at once pull each image once; the SIF appears under its final
name only when complete (pulled to a temporary name, then renamed).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from akoflow.errors import AkoflowError

# Sources ``apptainer pull``/``exec`` take with a single colon (``docker-archive:/x.tar``).
_COLON_SCHEMES = ("docker-archive:", "docker-daemon:", "oci-archive:", "oci:", "oci-sif:")
_LOCAL_SUFFIXES = (".sif", ".simg", ".img")
PULL_POLICIES = ("never", "if-missing", "always")
ERROR_TAIL = 2000  # characters of a failed pull's output kept in the error


class PullError(AkoflowError):
    """The image cannot be had; retrying the attempt will not fix it."""


@dataclass(frozen=True, slots=True)
class ImageRef:
    """``local`` is a path used as is; otherwise ``ref`` is pulled into the cache."""

    ref: str
    local: bool


def classify(image: str, cwd: str | None = None) -> ImageRef:
    """Tell a local image from a reference to pull (pure).

    ``docker://…``, ``oras://…``, ``library://…`` and other ``scheme://`` or
    ``docker-archive:``-style sources are references; a path (absolute, ``./``, ``~``, or
    ending in ``.sif``) is local; a bare name such as ``alpine:3.20`` means ``docker://`` as
    it does for ``apptainer pull``, so one ``spec.image`` can serve docker and singularity.
    """
    if "://" in image or image.startswith(_COLON_SCHEMES):
        return ImageRef(image, local=False)
    if image.startswith(("/", "./", "../", "~")) or image.endswith(_LOCAL_SUFFIXES):
        path = os.path.expanduser(image)
        return ImageRef(os.path.normpath(os.path.join(cwd or os.getcwd(), path)), local=True)
    return ImageRef("docker://" + image, local=False)


def cache_name(ref: str) -> str:
    """File name (without suffix) of a reference in the cache: stable and path-safe."""
    return hashlib.sha256(ref.encode()).hexdigest()[:32]


def pull_locked(
    binary: str,
    ref: str,
    cache_dir: Path,
    *,
    policy: str,
    timeout: float,
    env: Mapping[str, str] | None = None,
) -> Path:
    """The cached SIF of ``ref``, pulled first if needed (blocking; run it in a thread).

    ``if-missing`` pulls when the cache has no SIF for ``ref``, ``always`` pulls again (the
    caller asks once per image and runtime), ``never`` only uses the cache.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    name = cache_name(ref)
    target = cache_dir / f"{name}.sif"
    if policy != "always" and target.exists():
        return target  # complete: only a finished pull is renamed to this name
    if policy == "never":
        raise PullError(
            f"image {ref!r} is not in the cache {cache_dir} and the pull policy is never: "
            "pull it there first, or use a SIF path"
        )
    with open(cache_dir / f"{name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
        if policy != "always" and target.exists():
            return target  # another runtime or engine pulled it while we waited
        for stale in cache_dir.glob(f"{name}.*.tmp.sif"):  # of a puller killed mid-way: we
            stale.unlink(missing_ok=True)  # hold the lock, so no pull of it is running
        tmp = cache_dir / f"{name}.{os.getpid()}.tmp.sif"
        try:
            _pull(binary, ref, tmp, timeout, env)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()  # a partial file must not linger
            raise
        os.replace(tmp, target)
        (cache_dir / f"{name}.ref").write_text(ref + "\n")  # which reference this file is
    return target


def _pull(binary: str, ref: str, out: Path, timeout: float, env: Mapping[str, str] | None) -> None:
    try:
        proc = subprocess.run(
            [binary, "pull", "--force", str(out), ref],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            env=dict(env) if env is not None else None,
        )
    except subprocess.TimeoutExpired:
        raise PullError(f"pulling image {ref!r} took more than {timeout:g}s") from None
    except OSError as exc:
        raise PullError(f"cannot run {binary} pull: {exc}") from exc
    if proc.returncode != 0 or not out.exists():
        text = (proc.stderr or proc.stdout).decode(errors="replace").strip()[-ERROR_TAIL:]
        raise PullError(f"cannot pull image {ref!r} (exit {proc.returncode}): {text}")


__all__ = ["PULL_POLICIES", "ImageRef", "PullError", "cache_name", "classify", "pull_locked"]
