"""The pure parts of deleting runs: which runs a gc chooses, the HPC paths a run may remove,
the Kubernetes claims that are a run's, and bytes freed with hard links."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from akoflow.gc.disk import freed_bytes
from akoflow.gc.options import GcOptions
from akoflow.gc.select import RunSummary, chosen
from akoflow.runtimes.base import RunTrace
from akoflow.runtimes.hpc.forget import beneath, du_total, found_paths, run_places
from akoflow.runtimes.kubernetes.forget import is_run_claim

DAY = 86400.0


def test_chosen_by_age_and_count() -> None:
    runs = [
        RunSummary(1, "a", True, 0.0),
        RunSummary(2, "a", True, 5 * DAY),
        RunSummary(3, "b", True, 1 * DAY),
        RunSummary(4, "a", False, 0.0),  # unfinished: never
        RunSummary(5, "a", True, 9 * DAY),
    ]
    now = 10 * DAY
    assert chosen(runs, now=now, older_than=None, keep_last=None) == []
    assert chosen(runs, now=now, older_than=3 * DAY, keep_last=None) == [1, 2, 3]
    assert chosen(runs, now=now, older_than=None, keep_last=1) == [1, 2]
    assert chosen(runs, now=now, older_than=3 * DAY, keep_last=2) == [1]
    assert chosen(runs, now=now, older_than=None, keep_last=0) == [1, 2, 3, 5]


def test_options_are_checked() -> None:
    assert GcOptions.parse("1d12h", 3).older_than == 1.5 * DAY
    for bad in ("0", "-1d", "soon", "1e10d"):
        with pytest.raises(ValueError):
            GcOptions.parse(bad, None)
    with pytest.raises(ValueError):
        GcOptions.parse(None, -1)


def test_hpc_paths_stay_beneath_mount_path() -> None:
    run = RunTrace(7, "0123456789ab")
    assert run_places("/scratch/me/", run) == (
        "/scratch/me/.akoflow/0123456789ab",
        "wf7-*",
        "/scratch/me/runs",
        "0123456789ab-wf7",
    )
    for scope in ("", "../../etc", "0123456789AB", "*"):
        with pytest.raises(ValueError):
            run_places("/scratch", RunTrace(7, scope))
    with pytest.raises(ValueError):
        run_places("relative", run)
    listing = (
        "/scratch/.akoflow/0123456789ab/wf7-a-a1\n/scratch/.akoflow/0123456789ab/x/../../y\n"
        "/elsewhere/wf7-a-a1\n/scratch/.akoflow/0123456789ab/wf7-b-a1/deeper\n"
    )
    assert found_paths(listing, "/scratch/.akoflow/0123456789ab", "/scratch") == [
        "/scratch/.akoflow/0123456789ab/wf7-a-a1"
    ]
    assert not beneath("/scratch", "/scratch") and not beneath("/scratch", "/scratchy/x")
    assert du_total("12\t/a\n30\t/b\n") == 42 and du_total("du: cannot access") is None


def test_kubernetes_claims_of_a_run() -> None:
    run = RunTrace(3, "0123456789ab", nodes=("node-a",))
    assert is_run_claim("akoflow-wf3-0123456789ab", run)
    assert is_run_claim("akoflow-wf3-node-a-0123456789ab", run)
    assert is_run_claim("akoflow-wf3-other-node-0123456789ab", run)
    assert not is_run_claim("akoflow-wf3-ba9876543210", run)  # another state dir's wf 3
    assert not is_run_claim("akoflow-wf31-0123456789ab", run)


def test_bytes_freed_count_an_inode_once_and_not_one_linked_from_outside(tmp_path: Path) -> None:
    tree = tmp_path / "run"
    (tree / "d").mkdir(parents=True)
    (tree / "a").write_bytes(b"x" * 100)
    os.link(tree / "a", tree / "d" / "a-again")  # both names inside: freed once
    (tree / "b").write_bytes(b"y" * 10)
    os.link(tree / "b", tmp_path / "b-outside")  # a name outside: not freed
    os.symlink("/etc/passwd", tree / "link")  # never followed
    assert freed_bytes(tree) == 100
    assert freed_bytes(tmp_path / "missing") == 0
