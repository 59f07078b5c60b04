"""Hostile inputs for :func:`akoflow.dataplane.mover.wanted_files` (hostile pass on 2e24ffb):
each gives exactly what the full listing filtered by the declarations gives. A spec's
inputs are normalised when loaded; the function must not depend on it (a pattern that is
not, alone, was listed from its own spelling of a directory: './a.txt', 'd//x.csv', and
'../*' read the directory beside the data dir)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from akoflow.dataplane import plan
from akoflow.dataplane.mover import list_files, wanted_files
from tests.unit.test_wanted_files import _tree


def _listed(root: Path, inputs: list[str]) -> list[str]:
    return sorted(p for p in list_files(root) if plan.wanted(inputs, p))


CASES = [
    ["./a.txt"],
    ["d//x.csv"],
    ["d/../a.txt"],
    ["//a.txt"],
    ["./*.txt"],
    ["d//*.csv"],
    ["d/./*.csv"],
    ["d/e/../*.csv"],
    ["../*"],
    ["../outside/*"],
    ["d/../../*"],
    ["d/", "d/*/", "d/**/", "*/", "/*.txt", ""],
    ["./*.txt", "*.txt"],  # an unnormal pattern beside a normal one
    ["**", "**/**", "d/**/**/*.csv", "d/e/**"],
    ["[d]/*.csv", "d/[e]/*", "d/[/]*", "d/[!a]/*", "d/[e/*"],
    ["a.txt/x", "a.txt/*", "linked/**", "d/e/y.csv/"],
    ["d/nl\nname.csv", "d/nl*", "d/*\n*"],
]


@pytest.mark.parametrize("inputs", CASES, ids=[repr(c) for c in CASES])
def test_odd_inputs_give_what_the_full_listing_gives(tmp_path: Path, inputs: list[str]) -> None:
    root = tmp_path / "data"
    root.mkdir()
    _tree(root)
    (root / "d" / "nl\nname.csv").write_text("newline")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret").write_text("not the run's")
    (tmp_path / "beside.txt").write_text("not the run's")
    assert sorted(wanted_files(root, inputs)) == _listed(root, inputs)


def test_a_deep_tree_and_a_symlinked_parent(tmp_path: Path) -> None:
    root = tmp_path / "data"
    deep = root / "/".join(f"l{i}" for i in range(200))
    deep.mkdir(parents=True)
    (deep / "f.dat").write_text("deep")
    real = tmp_path / "real"
    (real / "x").mkdir(parents=True)
    (real / "x" / "f.dat").write_text("through a link")
    os.symlink(real, root / "via")
    rel = "/".join(f"l{i}" for i in range(200))
    for inputs in (
        [f"{rel}/f.dat"],
        [f"{rel}/*.dat"],
        ["l0/**/f.dat"],
        ["via/x/f.dat", "via/*/f.dat", "via/**"],
    ):
        assert sorted(wanted_files(root, inputs)) == _listed(root, inputs), inputs
