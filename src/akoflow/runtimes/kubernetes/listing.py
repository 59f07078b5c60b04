"""Remote provenance on Kubernetes: the pod lists its volume into its own log.

The engine cannot read a PVC, and the pod's log is the runtime's only channel back. So when
provenance is on, the container runs :data:`WRAPPER`, a constant script (the user's script,
the shell and a token are positional arguments, never pasted into it)::

    <shell> -c WRAPPER akoflow-<name> <script> <shell> <token>

It prints a block with the listing of its working directory (the volume's mount), runs the
script as ``<shell> -c <script> akoflow-<name>`` (same ``$0`` as without the wrapper), keeps
its exit code, prints a second block, and exits with the script's code. A block is::

    \\x1eakoflow-files <token> before|after\\n
    # akoflow-files 1 <epoch>\\n
    <size>\\t<mtime>\\t<path>\\n ...
    \\x1eakoflow-files <token> end\\n

The opening marker may start in the middle of a line (the script's output need not end with a
newline); the token (:func:`files_token`, from the Job name, so an engine that restarts knows
it again) keeps the script's own output from being taken for a marker by accident. An image
without ``find`` (or without ``stat`` when ``find`` has no ``-printf``) prints no block: the
activity runs as usual and has no remote provenance.

:class:`LogFilter` takes the blocks out of the log (the stored log is the script's output,
byte for byte) and keeps their listings. It is deterministic and independent of how the log
is cut into chunks, so a stream that is read again from its start after a cut can skip as
many *filtered* bytes as are already stored (:class:`LogCopy`).
"""

from __future__ import annotations

import hashlib
import re

from akoflow.provenance.remote import HEADER, LIST_FUNCTION

MARK = b"\x1eakoflow-files "  # ASCII record separator: never the start of ordinary output

# $1: the user's script, $2: the shell, $3: the token; $0 is passed on to the script. The
# functions and akf_* variables are not exported: the script sees the environment it saw
# without the wrapper. The wrapper is the container's PID 1, which the kernel shields from
# signals it has no handler for: it passes the kubelet's SIGTERM (pod deleted, cancel) on
# to the script, whose own traps then run as without the wrapper; `wait` returns
# early when a signal arrives, so it waits again until the script has really ended. (Every
# `$` is doubled in the Job, see manifests.literal: Kubernetes' expansion leaves it as is.)
WRAPPER = (
    LIST_FUNCTION
    + r"""
akf_listing() {
  command -v find >/dev/null 2>&1 || return 0
  { find . -maxdepth 0 -printf '' || command -v stat; } >/dev/null 2>&1 || return 0
  printf '\036akoflow-files %s %s\n' "$2" "$1"
  akf_list_files 2>/dev/null
  printf '\036akoflow-files %s end\n' "$2"
}
akf_listing before "$3"
"$2" -c "$1" "$0" &
akf_child=$!
trap 'kill -TERM "$akf_child" 2>/dev/null' TERM
wait "$akf_child"
akf_code=$?
while kill -0 "$akf_child" 2>/dev/null; do
  wait "$akf_child"
  akf_code=$?
done
trap - TERM
akf_listing after "$3"
exit "$akf_code"
"""
)

_HEADER = HEADER.encode()
_ENTRY = re.compile(rb"[0-9]+\t-?[0-9]+(\.[0-9]*)?\t")
# Whole lines of a listing (header or entries), checked at once: the common case, fast.
_LINES = re.compile(
    rb"(?:(?:[0-9]+\t-?[0-9]+(?:\.[0-9]*)?\t[^\n]*|" + re.escape(_HEADER) + rb"[^\n]*)\n)*"
)


def files_token(job_name: str) -> str:
    """The marker token of one attempt (its Job name is deterministic, hence so is this)."""
    return hashlib.sha256(b"akoflow-files\0" + job_name.encode()).hexdigest()[:16]


class LogFilter:
    """Splits a pod's log into the script's output and the listing blocks.

    :meth:`feed` returns the output bytes known so far (at most a partial marker is held
    back); :meth:`close` ends the log. Completed blocks are in :attr:`listings` (``before``,
    ``after``). Inside a block, a line that is neither the header nor a listing entry (the
    script's stderr racing with the listing in the container runtime's log) goes to the
    output, not to the listing.
    """

    def __init__(self, token: str) -> None:
        self._open = MARK + token.encode() + b" "
        self._end = self._open + b"end"
        self._pending = b""
        self._in_block = False
        self._label: str | None = None
        self._lines: list[bytes] = []
        self.listings: dict[str, str] = {}

    def feed(self, data: bytes) -> bytes:
        buf = self._pending + data if self._pending else data
        out = bytearray()
        i = 0
        n = len(buf)
        while i < n:
            if not self._in_block:
                j = buf.find(self._open, i)
                if j < 0:
                    keep = _partial_tail(buf, i, self._open)
                    out += buf[i : n - keep]
                    i = n - keep
                    break
                out += buf[i:j]
                i = j
                self._in_block, self._label, self._lines = True, None, []
                continue
            k = buf.rfind(b"\n", i)
            if k < 0:
                break
            # Listing lines go in one piece, up to the next line that may be a marker or is
            # not a listing line; those go one at a time.
            m = buf.find(self._open, i, k)
            stop = k + 1 if m < 0 else buf.rfind(b"\n", i, m) + 1
            if stop > i:
                got = _LINES.match(buf, i, stop)  # (always: it may match no line)
                end = got.end() if got else i
                if end > i:
                    self._lines.append(buf[i:end])
                    i = end
                    continue
            k = buf.find(b"\n", i)
            line = buf[i:k]
            i = k + 1
            self._block_line(line, out)
        self._pending = buf[i:]
        return bytes(out)

    def _block_line(self, line: bytes, out: bytearray) -> None:
        if line.startswith(self._open):
            if self._label is not None and line == self._end:
                text = b"".join(self._lines).decode("utf-8", errors="replace")
                self.listings[self._label] = text
                self._in_block = False
            elif line == self._end:  # an end without a beginning: nothing to keep
                self._in_block = False
            else:  # a (new) beginning
                self._label = line[len(self._open) :].decode("utf-8", errors="replace")
                self._lines = []
        elif line.startswith(_HEADER) or _ENTRY.match(line):
            self._lines.append(line + b"\n")
        else:
            out += line + b"\n"

    def close(self) -> bytes:
        """The log ended: the rest of the output. An unfinished block (the pod was killed
        while listing) is dropped, and its listing is missing."""
        rest, self._pending = self._pending, b""
        if self._in_block:
            self._in_block = False
            return b""
        return rest


def _partial_tail(buf: bytes, start: int, pattern: bytes) -> int:
    """Length of the longest tail of ``buf[start:]`` that is a proper prefix of ``pattern``."""
    first = pattern[:1]
    pos = max(start, len(buf) - len(pattern) + 1)
    while True:
        pos = buf.find(first, pos)
        if pos < 0:
            return 0
        if pattern.startswith(buf[pos:]):
            return len(buf) - pos
        pos += 1


class LogCopy:
    """One read of a pod's log from its start, of which ``stored`` filtered bytes are already
    in the attempt's file: :meth:`feed` and :meth:`close` return only what is new."""

    def __init__(self, token: str, stored: int) -> None:
        self.filter = LogFilter(token)
        self._skip = stored

    def _new(self, data: bytes) -> bytes:
        if self._skip:
            cut = min(self._skip, len(data))
            data, self._skip = data[cut:], self._skip - cut
        return data

    def feed(self, chunk: bytes) -> bytes:
        return self._new(self.filter.feed(chunk))

    def close(self) -> bytes:
        return self._new(self.filter.close())

    @property
    def listings(self) -> dict[str, str]:
        return self.filter.listings
