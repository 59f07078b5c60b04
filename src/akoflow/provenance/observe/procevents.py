"""Fork and exit of every process, from the kernel's process events connector.

fanotify names the process of an event by its pid, read when the engine reads the event: by
then a short-lived process (``cp a b`` in a script) has often exited and been reaped, and its
pid says nothing any more. The connector (``NETLINK_CONNECTOR``, ``CN_IDX_PROC``; root only)
reports each fork (parent, child) and exit as it happens, in order, so the observer knows every
process's ancestry and can follow it to the attempt that started it, also after it is gone.

The kernel queues a fork message before the child runs, so a child's fanotify events never
come before its fork: draining this socket before deciding an event's process is race-free.
"""

from __future__ import annotations

import errno
import socket
import struct
from dataclasses import dataclass

NETLINK_CONNECTOR = 11
CN_IDX_PROC = 1
CN_VAL_PROC = 1
PROC_CN_MCAST_LISTEN = 1
PROC_EVENT_FORK = 0x00000001
PROC_EVENT_EXIT = 0x80000000
NLMSG_DONE = 3

_NLMSGHDR = struct.Struct("=IHHII")  # len type flags seq pid
_CN_MSG = struct.Struct("=IIIIHH")  # idx val seq ack len flags
_PROC_EVENT = struct.Struct("=IIQ")  # what cpu timestamp_ns
_FORK = struct.Struct("=iiii")  # parent_pid parent_tgid child_pid child_tgid
_EXIT = struct.Struct("=ii")  # process_pid process_tgid (exit code etc. follow)


@dataclass(frozen=True, slots=True)
class Fork:
    """A process created a new process."""

    parent: int  # tgid
    child: int  # tgid of a new process (thread creations are left out)


@dataclass(frozen=True, slots=True)
class Exit:
    """A process ended."""

    pid: int  # tgid of a process whose last thread exited


ProcEvent = Fork | Exit


def decode(data: bytes) -> list[ProcEvent]:
    """Fork and exit events of processes (not threads) in one datagram; others are skipped."""
    events: list[ProcEvent] = []
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length = _NLMSGHDR.unpack_from(data, offset)[0]
        if length < _NLMSGHDR.size or offset + length > len(data):
            break
        event = offset + _NLMSGHDR.size + _CN_MSG.size
        if event + _PROC_EVENT.size <= offset + length:
            what = _PROC_EVENT.unpack_from(data, event)[0]
            body = event + _PROC_EVENT.size
            if what == PROC_EVENT_FORK and body + _FORK.size <= offset + length:
                _, parent_tgid, child_pid, child_tgid = _FORK.unpack_from(data, body)
                if child_pid == child_tgid:
                    events.append(Fork(parent_tgid, child_tgid))
            elif what == PROC_EVENT_EXIT and body + _EXIT.size <= offset + length:
                pid, tgid = _EXIT.unpack_from(data, body)
                if pid == tgid:
                    events.append(Exit(tgid))
        offset += (length + 3) & ~3
    return events


class ProcEvents:
    """A subscription to process events; :meth:`read` returns what happened since the last
    call (never blocks). ``lost`` turns true when the socket's buffer overflowed."""

    def __init__(self, buffer_bytes: int = 8 << 20) -> None:
        self.lost = False
        sock = socket.socket(
            socket.AF_NETLINK,
            socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC,
            NETLINK_CONNECTOR,
        )
        try:
            try:  # past the default limit when allowed (root): bursts of forks
                sock.setsockopt(socket.SOL_SOCKET, 33, buffer_bytes)  # SO_RCVBUFFORCE
            except OSError:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffer_bytes)
            sock.bind((0, CN_IDX_PROC))
            # Listen, asking (kernels 6.6+) for forks and exits only; older ones send all.
            payload = struct.pack("=II", PROC_CN_MCAST_LISTEN, PROC_EVENT_FORK | PROC_EVENT_EXIT)
            cn = _CN_MSG.pack(CN_IDX_PROC, CN_VAL_PROC, 0, 0, len(payload), 0) + payload
            header = _NLMSGHDR.pack(_NLMSGHDR.size + len(cn), NLMSG_DONE, 0, 0, 0)
            sock.send(header + cn)
        except BaseException:
            sock.close()
            raise
        self._sock: socket.socket | None = sock

    def fileno(self) -> int:
        assert self._sock is not None
        return self._sock.fileno()

    def read(self) -> list[ProcEvent]:
        if self._sock is None:
            return []
        events: list[ProcEvent] = []
        while True:
            try:
                data = self._sock.recv(1 << 16)
            except BlockingIOError:
                return events
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:  # messages were dropped: ancestry has gaps
                    self.lost = True
                    continue
                raise
            events.extend(decode(data))

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


__all__ = ["Exit", "Fork", "ProcEvent", "ProcEvents", "decode"]
