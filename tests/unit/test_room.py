"""The room probe (akoflow.room.has_room) on a real, nearly full tmpfs (mounted here, as
root: CI runs the tests as root)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from akoflow.room import has_room
from tests.tmpfs import tmpfs


@pytest.mark.needs_root  # a tmpfs mount
def test_a_disk_that_takes_only_part_of_the_probe_has_no_room(tmp_path: Path) -> None:
    # 2 MiB left: one write of 4 MiB takes 2 MiB without an error (a short write); only the
    # next write fails. Counting that as room started an engine that stopped again at once.
    with tmpfs(tmp_path / "small", "size=8m") as disk:
        (disk / "fill").write_bytes(bytes(6 << 20))
        assert not has_room(str(disk), ("",), 4 << 20)
        assert has_room(str(disk), ("", ".b", ".c"), 1 << 20)
        assert os.listdir(disk) == ["fill"]  # the probes removed


@pytest.mark.needs_root  # a tmpfs mount
def test_no_inode_left_is_no_room_for_a_second_file(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "small", "size=8m,nr_inodes=4") as disk:
        (disk / "a").touch()
        (disk / "b").touch()  # with the root directory: one inode left
        assert has_room(str(disk), ("",), 4096)
        assert not has_room(str(disk), ("", ".second"), 4096)
        assert sorted(os.listdir(disk)) == ["a", "b"]
