"""The fanotify event decoder (akoflow.provenance.observe.fanotify_abi) on a buffer the kernel
wrote (kernel 6.18, ext4, FID + DFID_NAME + TARGET_FID + PIDFD; the writer was reaped before
the read, so every pidfd is FAN_NOPIDFD), and on malformed variants of it."""

from __future__ import annotations

import struct

import pytest

from akoflow.provenance.observe import fanotify_abi as abi

# bash -c 'printf x > $'"'"'bad\xffname'"'"'; mkdir sub; mv $'"'"'bad\xffname'"'"' sub/moved;
#          cat sub/moved; rm sub/moved'   (only the events in that directory kept)
REAL = bytes.fromhex(
    "64000000030018000201000000000000ffffffff7c25000002002800f5c478229d0f08ba0800000001000000"
    "57e02d00f9bfd4cb626164ff6e616d650000000001001c00f5c478229d0f08ba080000000100000058e02d00"
    "95ffbd3404000800ffffffff5c000000030018000001004000000000ffffffff7d25000002002000f5c47822"
    "9d0f08ba080000000100000057e02d00f9bfd4cb7375620001001c00f5c478229d0f08ba0800000001000000"
    "23ea2e00c1e52c1a04000800ffffffff88000000030018000000001000000000ffffffff7e2500000a002800"
    "f5c478229d0f08ba080000000100000057e02d00f9bfd4cb626164ff6e616d65000000000c002400f5c47822"
    "9d0f08ba080000000100000023ea2e00c1e52c1a6d6f76656400000001001c00f5c478229d0f08ba08000000"
    "0100000058e02d0095ffbd3404000800ffffffff60000000030018000100000000000000ffffffff7f250000"
    "02002400f5c478229d0f08ba080000000100000023ea2e00c1e52c1a6d6f76656400000001001c00f5c47822"
    "9d0f08ba080000000100000058e02d0095ffbd3404000800ffffffff60000000030018000002000000000000"
    "ffffffff7c25000002002400f5c478229d0f08ba080000000100000023ea2e00c1e52c1a6d6f766564000000"
    "01001c00f5c478229d0f08ba080000000100000058e02d0095ffbd3404000800ffffffff"
)
DATA_DIR = bytes.fromhex("57e02d00f9bfd4cb")  # handles (ext4 FILEID_INO32_GEN) seen below
SUB = bytes.fromhex("23ea2e00c1e52c1a")
FILE = bytes.fromhex("58e02d0095ffbd34")


def test_real_buffer_decodes_to_the_events_that_happened() -> None:
    events = abi.decode(REAL)
    assert [e.mask for e in events] == [
        abi.FAN_CREATE | abi.FAN_MODIFY,  # merged: one process, one name
        abi.FAN_CREATE | abi.FAN_ONDIR,
        abi.FAN_RENAME,
        abi.FAN_ACCESS,
        abi.FAN_DELETE,
    ]
    assert all(e.fd == abi.FAN_NOFD and e.pidfd == abi.FAN_NOFD for e in events)
    assert len({e.pid for e in events}) == 4  # bash (printf, rm), mkdir, mv, cat
    create, mkdir, rename, read, delete = events
    name = create.fid(abi.INFO_DFID_NAME)
    assert name is not None and name.name == b"bad\xffname" and name.handle == DATA_DIR
    target = create.fid(abi.INFO_FID)
    assert target is not None and target.handle == FILE and target.name is None
    sub = mkdir.fid(abi.INFO_FID)
    assert sub is not None and sub.handle == SUB
    old, new = rename.fid(abi.INFO_OLD_DFID_NAME), rename.fid(abi.INFO_NEW_DFID_NAME)
    assert old is not None and (old.handle, old.name) == (DATA_DIR, b"bad\xffname")
    assert new is not None and (new.handle, new.name) == (SUB, b"moved")
    for event in (read, delete):
        where = event.fid(abi.INFO_DFID_NAME)
        assert where is not None and (where.handle, where.name) == (SUB, b"moved")
        same = event.fid(abi.INFO_FID)
        assert same is not None and same.handle == FILE  # one file across the rename
    assert {f.fsid for e in events for f in e.fids} == {REAL[28:36]}


def test_events_are_cut_at_their_own_lengths() -> None:
    first_len = struct.unpack_from("=I", REAL)[0]
    assert abi.decode(REAL[:first_len]) == abi.decode(REAL)[:1]
    assert abi.decode(b"") == []


@pytest.mark.parametrize(
    "mangle",
    [
        lambda b: b[:-1],  # truncated inside the last event
        lambda b: b + b"\0" * 10,  # trailing bytes that cannot hold a metadata
        lambda b: b[:4] + bytes([2]) + b[5:],  # metadata version 2
        lambda b: struct.pack("=I", 10) + b[4:],  # event shorter than its metadata
        lambda b: struct.pack("=I", len(b) + 8) + b[4:],  # event longer than the buffer
        lambda b: b[:26] + struct.pack("=H", 2) + b[28:],  # info record shorter than its header
        lambda b: b[:26] + struct.pack("=H", 0xFFF0) + b[28:],  # info record past the event
        lambda b: b[:36] + struct.pack("=I", 200) + b[40:],  # handle overruns its record
    ],
)
def test_malformed_buffers_are_refused(mangle: object) -> None:
    assert callable(mangle)
    with pytest.raises(abi.DecodeError):
        abi.decode(mangle(REAL))


def test_name_without_its_nul_is_refused() -> None:
    first_len = struct.unpack_from("=I", REAL)[0]
    event = bytearray(REAL[:first_len])
    name_at = event.index(b"bad\xffname")
    event[name_at : name_at + 12] = b"x" * 12  # the name and its NUL and padding
    with pytest.raises(abi.DecodeError, match="NUL"):
        abi.decode(bytes(event))


def test_unknown_info_records_are_kept_aside() -> None:
    first_len = struct.unpack_from("=I", REAL)[0]
    extra = struct.pack("=BBH", 99, 0, 8) + b"\0" * 4
    event = struct.pack("=I", first_len + 8) + REAL[4:first_len] + extra
    (decoded,) = abi.decode(event)
    assert decoded.unknown == (99,) and len(decoded.fids) == 2
