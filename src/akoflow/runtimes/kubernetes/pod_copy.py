"""Files into and out of a pod through the API server, as ``kubectl cp`` moves them.

:func:`copy_to_pod` streams a tar archive of local files into ``tar -x`` in the pod;
:func:`copy_from_pod` streams ``tar -c`` out of the pod into a local extraction. Both then run
a second command in the pod that prints the size and SHA-256 of every file copied, compared
with what was sent or received (hashed on the fly on this side): a copy that differs fails
with :class:`CopyError`, and a copy out of the pod only moves its files to their names once
they match. Names are bytes end to end: never part of a URL or a command line as text, they
travel inside the archive or, escaped to ASCII (``\\0ooo`` for any other byte, decoded in the
pod by ``printf %b``), on the command's stdin, so any name the file system allows survives.
The scripts run by ``sh`` in the pod are constants (the image needs ``sh``, ``tar``, ``head``,
``printf``, ``wc`` and ``sha256sum``: busybox has them); values reach them only as data. No
command waits for the end of its stdin, so the copies work over v4 too (whose stdin cannot
be closed): name lists end with an empty line, and ``tar -x`` reads the archive's length,
known before it is sent.

Errors: :class:`~.exec_stream.ExecTransportError` (the API server went away: retry later),
:class:`~.exec_stream.ExecRefused` (no such pod, not running, forbidden), :class:`CopyError`
(the copy itself failed, with the reason and the pod's stderr).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lightkube.config.kubeconfig import SingleConfig

from akoflow.runtimes.kubernetes.exec_stream import (
    V4,
    V5,
    ExecFailed,
    ExecTimeouts,
    exec_in_pod,
)
from akoflow.runtimes.kubernetes.tarstream import (
    CopyError,
    Digest,
    TarReceiver,
    clean_name,
    plan_tar,
    tar_chunks,
)

__all__ = ["CopyError", "CopyReport", "Digest", "PodTarget", "copy_from_pod", "copy_to_pod"]

_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-/+,:=@")

# $1: the directory, escaped. Reads escaped names (one a line, an empty line ends the list).
_DECODE = 'd() { printf "%bx" "$1"; }\ndir=$(d "$1"); dir=${dir%x}\n'
# $2: the archive's length; tar reads exactly that (with v4, stdin never ends).
RECEIVE = _DECODE + 'mkdir -p -- "$dir" && cd -- "$dir" && head -c "$2" | tar -x -o -f -\n'
SEND = (
    _DECODE
    + 'cd -- "$dir" || exit\nset --\n'
    + 'while IFS= read -r a && [ -n "$a" ]; do n=$(d "$a"); set -- "$@" "./${n%x}"; done\n'
    + '[ $# -gt 0 ] || exit 0\nexec tar -c -f - -- "$@"\n'
)
# One "SIZE SHA256" line per name read, in order; "- -" for what is not a regular file.
SUMS = (
    _DECODE
    + 'cd -- "$dir" || exit\n'
    + 'while IFS= read -r a && [ -n "$a" ]; do\n'
    + '  n=$(d "$a"); n="./${n%x}"\n'
    + '  if [ -f "$n" ] && [ ! -L "$n" ]; then\n'
    + '    s=$(wc -c < "$n") && h=$(sha256sum < "$n") || exit\n'
    + '    echo "$((s)) ${h%% *}"\n'
    + '  else echo "- -"; fi\n'
    + "done\n"
)


def escape(name: bytes) -> str:
    """``name`` in ASCII for ``printf %b``: bytes outside a safe set as ``\\0ooo``; the empty
    name (the directory itself) as ``.``."""
    if not name:
        return "."
    return "".join(chr(b) if b in _SAFE else f"\\0{b:03o}" for b in name)


@dataclass(frozen=True)
class PodTarget:
    """Where a copy goes: a pod (and its container) of the cluster the runtime talks to."""

    cluster: SingleConfig
    namespace: str
    pod: str
    container: str | None = None
    timeouts: ExecTimeouts = field(default_factory=ExecTimeouts)
    protocols: Sequence[str] = (V5, V4)  # offered, in order of preference


@dataclass(frozen=True)
class CopyReport:
    files: dict[bytes, Digest]  # relative name -> size and SHA-256, verified on both sides

    @property
    def bytes(self) -> int:
        return sum(d.size for d in self.files.values())


def _as_bytes(name: bytes | str) -> bytes:
    return name if isinstance(name, bytes) else os.fsencode(name)


async def _lines(names: Sequence[bytes]) -> AsyncIterator[bytes]:
    batch: list[str] = []
    for name in names:
        batch.append(escape(name))
        if len(batch) >= 512:
            yield ("\n".join(batch) + "\n").encode()
            batch = []
    yield ("\n".join(batch) + "\n\n").encode() if batch else b"\n"


async def _run(
    target: PodTarget,
    script: str,
    remote_dir: bytes,
    what: str,
    *,
    stdin: AsyncIterator[bytes] | None = None,
    stdout: list[bytes] | TarReceiver | None = None,
    args: Sequence[str] = (),
) -> None:
    async def collect(data: bytes) -> None:
        assert isinstance(stdout, list)
        stdout.append(data)

    sink = None
    if isinstance(stdout, TarReceiver):
        sink = stdout.feed
    elif stdout is not None:
        sink = collect
    try:
        await exec_in_pod(
            target.cluster,
            target.namespace,
            target.pod,
            ["sh", "-c", script, "sh", escape(remote_dir), *args],
            container=target.container,
            stdin=stdin,
            stdout=sink,
            timeouts=target.timeouts,
            protocols=target.protocols,
        )
    except ExecFailed as exc:
        raise CopyError(f"{what} in pod {target.namespace}/{target.pod} failed: {exc}") from None


async def _pod_sums(
    target: PodTarget, remote_dir: bytes, names: Sequence[bytes]
) -> list[Digest | None]:
    out: list[bytes] = []
    await _run(target, SUMS, remote_dir, "checking the copy", stdin=_lines(names), stdout=out)
    rows = b"".join(out).decode("ascii", "replace").splitlines()
    if len(rows) != len(names):
        raise CopyError(f"the pod listed {len(rows)} checksums for {len(names)} files")
    sums: list[Digest | None] = []
    for row in rows:
        size, _, sha = row.partition(" ")
        sums.append(None if size == "-" else Digest(int(size), sha))
    return sums


def _compare(
    expected: dict[bytes, Digest], got: list[Digest | None], where: str, remote_dir: bytes
) -> None:
    for (name, mine), theirs in zip(expected.items(), got, strict=True):
        if theirs != mine:
            shown = os.fsdecode(os.path.join(remote_dir, name))
            found = "missing" if theirs is None else f"{theirs.size} bytes, sha256 {theirs.sha256}"
            raise CopyError(
                f"{shown} differs after the copy {where}: expected {mine.size} bytes, "
                f"sha256 {mine.sha256}; found {found}"
            )


async def copy_to_pod(
    target: PodTarget,
    local_dir: Path,
    names: Sequence[bytes | str],
    remote_dir: bytes | str,
) -> CopyReport:
    """``local_dir/NAME`` to ``remote_dir/NAME`` in the pod for each name (a directory with
    everything in it; ``.``: all of ``local_dir``), then checked there file by file."""
    rdir = _as_bytes(remote_dir)
    digests: dict[bytes, Digest] = {}
    plan = await asyncio.to_thread(plan_tar, local_dir, [_as_bytes(n) for n in names])
    archive = tar_chunks(plan, digests)
    try:
        await _run(target, RECEIVE, rdir, "tar -x", stdin=archive, args=[str(plan.length)])
    finally:
        await archive.aclose()
    if digests:
        _compare(digests, await _pod_sums(target, rdir, list(digests)), "into the pod", rdir)
    return CopyReport(digests)


async def copy_from_pod(
    target: PodTarget,
    remote_dir: bytes | str,
    names: Sequence[bytes | str],
    local_dir: Path,
) -> CopyReport:
    """``remote_dir/NAME`` in the pod to ``local_dir/NAME`` for each name (a directory with
    everything in it; ``.``: all of ``remote_dir``); the files get their names only once
    checked against the pod's."""
    rdir = _as_bytes(remote_dir)
    wanted = [clean_name(_as_bytes(n)) for n in names]
    local_dir.mkdir(parents=True, exist_ok=True)
    receiver = TarReceiver(local_dir, wanted)
    try:
        await _run(target, SEND, rdir, "tar -c", stdin=_lines(wanted), stdout=receiver)
        receiver.check_complete()
        if receiver.digests:
            got = await _pod_sums(target, rdir, list(receiver.digests))
            _compare(receiver.digests, got, "out of the pod", rdir)
        receiver.commit()
    finally:
        with contextlib.suppress(OSError):
            receiver.discard()
    return CopyReport(receiver.digests)
