"""An activity's stage-in to a remote runtime finds the files its inputs declare without
listing the whole data dir (:func:`akoflow.dataplane.mover.wanted_files`): exactly what the
full listing filtered by the declarations gives, on a tree with what a run can hold."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from akoflow.dataplane import plan
from akoflow.dataplane.mover import PART_SUFFIX, list_files, wanted_files
from akoflow.provenance.names import from_bytes

ODD = b"caf\xe9-\xff.dat"  # not UTF-8


def _tree(root: Path) -> None:
    for rel in ("a.txt", "b.txt", "d/x.csv", "d/e/y.csv", "d/e/z.txt", "other/w.csv"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(rel)
    (root / ("a.txt" + PART_SUFFIX)).write_text("a copy being made")
    (root / "sub").mkdir()
    os.symlink(root / "d", root / "linked")  # a directory through a link: not listed
    os.symlink(root / "a.txt", root / "alias.txt")  # a link: not a regular file
    os.mkfifo(root / "fifo")
    with open(os.fsencode(root / "d") + b"/" + ODD, "wb") as f:
        f.write(b"odd")


def _listed(root: Path, inputs: list[str]) -> list[str]:
    return [p for p in list_files(root) if plan.wanted(inputs, p)]


CASES = [
    [],
    ["a.txt"],
    ["a.txt", "a.txt", "missing.txt"],
    ["d/x.csv", "d/e/y.csv"],
    ["d"],  # a directory named as a file: nothing
    ["sub"],
    ["alias.txt", "fifo", "linked/x.csv", "a.txt" + PART_SUFFIX],
    ["./a.txt", "d//x.csv", "d/../a.txt", "/a.txt", ""],
    ["*.txt"],
    ["d/*.csv"],
    ["d/**"],
    ["d/**/*.csv", "d/e/*.txt"],
    ["**/*.csv", "d/x.csv"],
    ["linked/*.csv", "missing/*", "a.txt/*"],
    ["d/?/*.csv", "d/[ab]*"],
    ["d/" + from_bytes(ODD), "d/caf*"],
]


@pytest.mark.parametrize("inputs", CASES, ids=[",".join(c) or "none" for c in CASES])
def test_what_the_declared_inputs_name_is_what_the_full_listing_gives(
    tmp_path: Path, inputs: list[str]
) -> None:
    _tree(tmp_path)
    assert sorted(wanted_files(tmp_path, inputs)) == sorted(_listed(tmp_path, inputs))


def test_only_the_directories_globs_start_in_are_listed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The point of it: named files are looked up, and a glob lists from its first fixed
    directories down, never the whole data dir (a spy on ``os.scandir``, the real one)."""
    _tree(tmp_path)
    listed: list[bytes] = []
    real = os.scandir

    def spy(path: bytes) -> object:
        listed.append(path)
        return real(path)

    monkeypatch.setattr(os, "scandir", spy)
    assert wanted_files(tmp_path, ["a.txt", "d/x.csv"]) == ["a.txt", "d/x.csv"]
    assert listed == []
    assert sorted(wanted_files(tmp_path, ["d/e/*.csv", "d/**/z.txt"])) == ["d/e/y.csv", "d/e/z.txt"]
    root = os.fsencode(tmp_path)
    assert sorted(listed) == [root + b"/d", root + b"/d/e"]  # d once (it holds d/e)
