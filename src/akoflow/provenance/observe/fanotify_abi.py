"""The fanotify ABI: constants and a pure decoder of the buffer ``read(2)`` returns.

A buffer holds events back to back. Each starts with ``struct fanotify_event_metadata``
(event_len, vers, reserved, metadata_len, mask, fd, pid: 24 bytes), followed, in the modes
used here, by info records: a header (type, pad, len) and then, for the FID kinds, the file
system id (8 bytes), a ``struct file_handle`` (handle_bytes, handle_type, the handle) and, for
DFID_NAME and the rename kinds, a NUL-terminated name; for PIDFD, a pidfd. Names are bytes:
any byte but ``/`` and NUL. Nothing here makes a system call, so it is tested on buffers the
kernel wrote (``tests/unit/test_fanotify_decode.py``).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from akoflow.errors import AkoflowError

# fanotify_init flags (linux/fanotify.h)
FAN_CLOEXEC = 0x1
FAN_NONBLOCK = 0x2
FAN_CLASS_NOTIF = 0x0
FAN_UNLIMITED_QUEUE = 0x10  # no 16,384-event bound on the queue (CAP_SYS_ADMIN)
FAN_REPORT_PIDFD = 0x80
FAN_REPORT_TID = 0x100
FAN_REPORT_FID = 0x200
FAN_REPORT_DIR_FID = 0x400
FAN_REPORT_NAME = 0x800
FAN_REPORT_DFID_NAME = FAN_REPORT_DIR_FID | FAN_REPORT_NAME
FAN_REPORT_TARGET_FID = 0x1000  # the child's own handle on creations, deletions, renames

# fanotify_mark flags
FAN_MARK_ADD = 0x1
FAN_MARK_REMOVE = 0x2
FAN_MARK_DONT_FOLLOW = 0x4
FAN_MARK_ONLYDIR = 0x8
FAN_MARK_MOUNT = 0x10
FAN_MARK_IGNORED_SURV_MODIFY = 0x40
FAN_MARK_FLUSH = 0x80
FAN_MARK_FILESYSTEM = 0x100
FAN_MARK_IGNORE = 0x400  # 6.0+: an ignore mask with the meaning of FAN_ONDIR/EVENT_ON_CHILD

# event mask bits
FAN_ACCESS = 0x1
FAN_MODIFY = 0x2
FAN_ATTRIB = 0x4
FAN_CLOSE_WRITE = 0x8
FAN_CLOSE_NOWRITE = 0x10
FAN_OPEN = 0x20
FAN_MOVED_FROM = 0x40
FAN_MOVED_TO = 0x80
FAN_CREATE = 0x100
FAN_DELETE = 0x200
FAN_DELETE_SELF = 0x400
FAN_MOVE_SELF = 0x800
FAN_Q_OVERFLOW = 0x4000
FAN_RENAME = 0x10000000
FAN_EVENT_ON_CHILD = 0x08000000
FAN_ONDIR = 0x40000000

# info record types
INFO_FID = 1
INFO_DFID_NAME = 2
INFO_DFID = 3
INFO_PIDFD = 4
INFO_OLD_DFID_NAME = 10
INFO_NEW_DFID_NAME = 12
_FID_KINDS = frozenset(
    {INFO_FID, INFO_DFID_NAME, INFO_DFID, INFO_OLD_DFID_NAME, INFO_NEW_DFID_NAME}
)

FAN_NOFD = -1  # no fd; also FAN_NOPIDFD: the process was reaped before the event was read
FAN_EPIDFD = -2
METADATA_VERSION = 3

_METADATA = struct.Struct("=IBBHQii")  # event_len vers reserved metadata_len mask fd pid
_INFO_HEADER = struct.Struct("=BBH")
_FID_HEAD = struct.Struct("=8sIi")  # fsid, handle_bytes, handle_type
_PIDFD = struct.Struct("=i")


class DecodeError(AkoflowError, ValueError):
    """The buffer is not a sequence of well-formed fanotify events."""


@dataclass(frozen=True, slots=True)
class FileId:
    """A FID-kind info record: which object (or which directory, plus a name)."""

    info_type: int
    fsid: bytes
    handle_type: int
    handle: bytes
    name: bytes | None = None  # for the DFID_NAME kinds


@dataclass(frozen=True, slots=True)
class RawEvent:
    """One fanotify event record, decoded (file handles, pidfd) and not yet resolved."""

    mask: int
    fd: int
    pid: int
    fids: tuple[FileId, ...] = ()
    pidfd: int | None = None  # with FAN_REPORT_PIDFD: a pidfd, FAN_NOFD or FAN_EPIDFD
    unknown: tuple[int, ...] = field(default=())  # info types this decoder does not know

    def fid(self, info_type: int) -> FileId | None:
        return next((f for f in self.fids if f.info_type == info_type), None)


def _fid(info_type: int, body: bytes) -> FileId:
    if len(body) < _FID_HEAD.size:
        raise DecodeError(f"fid record of {len(body)} bytes")
    fsid, handle_bytes, handle_type = _FID_HEAD.unpack_from(body)
    end = _FID_HEAD.size + handle_bytes
    if end > len(body):
        raise DecodeError(f"file handle of {handle_bytes} bytes overruns its record")
    name = None
    if info_type in (INFO_DFID_NAME, INFO_OLD_DFID_NAME, INFO_NEW_DFID_NAME):
        nul = body.find(b"\0", end)
        if nul < 0:
            raise DecodeError("name without its terminating NUL")
        name = body[end:nul]
    return FileId(info_type, fsid, handle_type, body[_FID_HEAD.size : end], name)


def decode(buf: bytes | bytearray | memoryview) -> list[RawEvent]:
    """The events in ``buf``, in order. Raises :class:`DecodeError` on a malformed buffer."""
    data = bytes(buf)
    events: list[RawEvent] = []
    offset = 0
    while offset < len(data):
        if offset + _METADATA.size > len(data):
            raise DecodeError(f"{len(data) - offset} trailing bytes")
        event_len, vers, _, metadata_len, mask, fd, pid = _METADATA.unpack_from(data, offset)
        if vers != METADATA_VERSION:
            raise DecodeError(f"metadata version {vers}, expected {METADATA_VERSION}")
        end = offset + event_len
        if metadata_len < _METADATA.size or event_len < metadata_len or end > len(data):
            raise DecodeError(f"event of {event_len} bytes (metadata {metadata_len})")
        fids: list[FileId] = []
        unknown: list[int] = []
        pidfd: int | None = None
        record = offset + metadata_len
        while record < end:
            if record + _INFO_HEADER.size > end:
                raise DecodeError("truncated info record header")
            info_type, _, length = _INFO_HEADER.unpack_from(data, record)
            if length < _INFO_HEADER.size or record + length > end:
                raise DecodeError(f"info record of {length} bytes")
            body = data[record + _INFO_HEADER.size : record + length]
            if info_type in _FID_KINDS:
                fids.append(_fid(info_type, body))
            elif info_type == INFO_PIDFD:
                if len(body) < _PIDFD.size:
                    raise DecodeError("pidfd record too short")
                (pidfd,) = _PIDFD.unpack_from(body)
            else:
                unknown.append(info_type)
            record += length
        events.append(RawEvent(mask, fd, pid, tuple(fids), pidfd, tuple(unknown)))
        offset = end
    return events
