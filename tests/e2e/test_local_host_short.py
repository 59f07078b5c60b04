"""A full disk under the state dir does not fail a run: the attempt that could not even be
claimed never started, costs no retry, the local runtime turns NOT_READY with the reason, and
the activity runs (once) when there is room again.

The state dir is a real tmpfs with few inodes (mounted here, as root: CI runs the tests as
root), filled with empty files while the first activity runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from akoflow.runtimes.base import Adopted, RuntimeUnavailable
from tests.conftest import cli_env, running_cli, wait_for
from tests.e2e.test_local_trust import started_runtime
from tests.scenarios import attempt_rows, direct_job
from tests.tmpfs import fill_inodes, fill_space, tmpfs


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of 2,000 inodes (and 64 MiB)."""
    with tmpfs(tmp_path / "small", "size=64m,nr_inodes=2000,mode=0700"):
        yield tmp_path / "small"


def test_a_full_disk_holds_the_activity_instead_of_failing_it(
    tmp_path: Path, small_disk: Path
) -> None:
    side = tmp_path / "side"
    side.mkdir()
    wf = tmp_path / "wf.yaml"
    wf.write_text(
        "name: full-disk\n"
        "spec:\n"
        "  activities:\n"
        "    - name: first\n"
        f"      run: 'touch {side}/first-started; sleep 2'\n"
        "    - name: second\n"  # no retries: a spent one would fail the run
        f"      run: 'echo $$ >> {side}/second'\n"
        "      dependsOn: [first]\n"
    )
    state = small_disk / "state"
    with running_cli(["run", str(wf), "--quiet", "--state-dir", str(state)]) as proc:
        wait_for(lambda: (side / "first-started").exists() or proc.poll() is not None, 60)
        assert proc.poll() is None, proc.communicate()
        filler = fill_inodes(small_disk / "fill")
        assert filler, "the file system had no inode left before the fill"
        # The second's claim finds no room: lost (no retry spent), the run goes on waiting.
        wait_for(lambda: any(s == "lost" for _, s, _ in attempt_rows(state, "second")), 60)
        lost = attempt_rows(state, "second")
        assert [(n, s) for n, s, _ in lost] == [(1, "lost")], lost
        assert "No space left on device" in (lost[0][2] or ""), lost
        assert proc.poll() is None, proc.communicate()
        assert not (side / "second").exists()
        for path in filler:  # room again: the next health check lets it start
            path.unlink()
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, (out, err)
    assert (side / "second").read_text().count("\n") == 1  # it ran, once
    attempts = attempt_rows(state, "second")
    assert [(n, s) for n, s, _ in attempts] == [(1, "lost"), (2, "succeeded")], attempts
    assert "No space left on device" in err  # the user was told why it waited


@pytest.fixture
def small_runs(tmp_path: Path) -> Iterator[Path]:
    """A state dir whose runs (the attempts' files) are on a tmpfs of 2,000 inodes; the
    database is not."""
    state = tmp_path / "state"
    with tmpfs(state / "runs", "size=64m,nr_inodes=2000"):
        state.chmod(0o700)
        yield state


def test_room_for_one_file_is_not_room_for_a_start(tmp_path: Path, small_runs: Path) -> None:
    # Two inodes left: a start makes four files (claim, script, two outputs) and is lost each
    # time. The health check wrote one file: READY every 5 s, the held activity lost again at
    # once, for ever; the NOT_READY clock restarted each time, so LOCAL_READY_TIMEOUT never
    # failed it and the run never ended (and each lost start left its script's inode behind).
    side = tmp_path / "side"
    side.mkdir()
    wf = tmp_path / "wf.yaml"
    wf.write_text(
        "name: two-inodes\n"
        "spec:\n"
        "  activities:\n"
        "    - name: first\n"
        f"      run: 'touch {side}/first-started; while [ ! -e {side}/go ]; do sleep 0.05; done'\n"
        "    - name: second\n"
        f"      run: 'echo $$ >> {side}/second'\n"
        "      dependsOn: [first]\n"
    )
    with running_cli(
        ["run", str(wf), "--quiet", "--state-dir", str(small_runs)],
        env=cli_env(LOCAL_READY_TIMEOUT="5"),
    ) as proc:
        wait_for(lambda: (side / "first-started").exists() or proc.poll() is not None, 60)
        assert proc.poll() is None, proc.communicate()
        filler = fill_inodes(small_runs / "runs" / "fill")
        for path in filler[-2:]:
            path.unlink()
        (side / "go").touch()
        try:
            out, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            pytest.fail("the run never ended: the runtime turned READY with no room for a start")
    assert proc.returncode != 0, (out, err)
    assert not (side / "second").exists()
    attempts = attempt_rows(small_runs, "second")
    assert [(n, s) for n, s, _ in attempts] == [(1, "lost")], attempts
    assert "No space left on device" in (attempts[0][2] or ""), attempts
    assert "Traceback" not in out + err, (out, err)
    uri = f"file:{small_runs / 'akoflow.db'}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
        state, reason = db.execute(
            "SELECT state, reason FROM activities WHERE name = 'second'"
        ).fetchone()
    assert state == "failed" and "LOCAL_READY_TIMEOUT=5" in reason, reason
    (attempts_dir,) = (small_runs / "runs").glob("*/attempts")
    assert sorted(p.name for p in attempts_dir.glob("second.*")) == [], "a lost start's files"


def test_attempts_in_the_runtimes_line_are_given_back_when_the_disk_is_full(
    tmp_path: Path, small_runs: Path
) -> None:
    # Short activities open the local runtime's own line (attempts handed over ahead of
    # MAX_PARALLEL). The disk fills mid-run and stays full: those in line must come back to
    # the engine (lost, never started) so that LOCAL_READY_TIMEOUT fails them with the rest;
    # kept in the line, the run ended failed with their attempts still recorded 'submitted'.
    side = tmp_path / "side"
    side.mkdir()
    wf = tmp_path / "wf.yaml"
    wf.write_text(
        "name: wide\nspec:\n  activities:\n"
        + "".join(
            f"    - name: t{i}\n      run: 'sleep 0.05; echo $$ >> {side}/t{i}'\n"
            for i in range(200)
        )
    )
    with running_cli(
        ["run", str(wf), "--quiet", "--state-dir", str(small_runs)],
        env=cli_env(LOCAL_READY_TIMEOUT="5"),
    ) as proc:
        wait_for(lambda: len(list(side.iterdir())) >= 40 or proc.poll() is not None, 120)
        assert proc.poll() is None, proc.communicate()
        fill_inodes(small_runs / "runs" / "fill")
        try:
            out, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            pytest.fail("the run never ended: attempts held in the runtime's line")
    assert proc.returncode == 1, (out, err)
    assert "Traceback" not in out + err, (out, err)
    ran = {p.name: p.read_text().count("\n") for p in side.iterdir()}
    assert set(ran.values()) == {1}, ran  # nothing ran twice
    states = {}
    for i in range(200):
        rows = attempt_rows(small_runs, f"t{i}")
        states[f"t{i}"] = [state for _, state, _ in rows]
        if f"t{i}" in ran:
            assert states[f"t{i}"][-1] == "succeeded", (i, rows)
        else:  # never started: each attempt lost, no retry spent, none failed
            assert set(states[f"t{i}"]) <= {"lost"}, (i, rows)
    assert any("lost" in s for s in states.values()), states


def test_an_engines_claim_it_cannot_write_is_given_up_and_made_once_there_is_room(
    tmp_path: Path,
) -> None:
    # A resumed engine claims an attempt that never started (its .exit file, "engine"). On a
    # disk with inodes but no block left the create passed and the write failed: the error
    # ended the attach ("cannot run workflow 1: : No space left on device") and the empty
    # file read later as an attempt whose end was lost (failed, a retry spent).
    with tmpfs(tmp_path / "small", "size=1m") as disk:
        spec = direct_job(disk, "never", "echo ran >> ran", "local", None)
        record = Path(str(spec.attempt_prefix) + ".exit")
        fill_space(disk / "fill")

        async def adopt() -> Adopted:
            runtime, _ = await started_runtime()
            try:
                return await runtime.adopt(spec, {"prefix": str(spec.attempt_prefix)})
            finally:
                await runtime.stop()

        with pytest.raises(RuntimeUnavailable, match="No space left on device"):
            asyncio.run(adopt())
        assert not record.exists()  # given up: no empty claim left behind
        (disk / "fill").unlink()
        assert asyncio.run(adopt()).kind == "never_started"
        assert record.read_text() == "engine\n"
        assert not (disk / "data" / "ran").exists()
