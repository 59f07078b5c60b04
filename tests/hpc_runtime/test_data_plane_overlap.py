"""Two SLURM jobs of one run at once on one MOUNT_PATH, without declared outputs (issue 17):
each job's listings show what either wrote, so the first to end cannot tell its files from
the other's. What the other wrote must still reach the other's dependents on the host, and a
file still being written when the first ends is not brought back (half) at that end: it
comes back, whole, at the end of the last job that ran while it was recorded."""

from __future__ import annotations

from pathlib import Path

from akoflow.store import Repository
from tests.e2e.test_engine_inprocess import run_to_end

# Wait (bounded: 30 s) until a glob of MOUNT_PATH matches: another job's sync file, or the
# listing its job takes right after its command (the engine records what that one shows).
WAIT = "i=0; until ls $1 >/dev/null 2>&1 || [ $i -ge 600 ]; do sleep 0.05; i=$((i+1)); done"
FAST_LISTED = ".akoflow/*/*-fast-a1/files.after"

# `slow` writes big.txt whole, then outlives `fast`'s listing (which shows big.txt too, and
# is recorded first: `fast`'s to the engine).
WHOSE = f"""\
name: whose
spec:
  runtime: hpc
  collect: none  # nothing of `fast` comes back by itself (it would bring big.txt along)
  activities:
    - name: slow
      run: |
        wait_for() {{ {WAIT}; }}
        seq 1 1000 > big.txt
        mkdir -p .akoflow/sync && touch .akoflow/sync/slow-wrote
        wait_for '{FAST_LISTED}'
        sleep 3  # the engine learns of fast's end first
    - name: fast
      run: |
        wait_for() {{ {WAIT}; }}
        wait_for .akoflow/sync/slow-wrote
        echo fast > fast.txt
    - name: use-slow
      runtime: local
      dependsOn: [slow]
      run: wc -l < big.txt > counted.txt
"""


def test_a_file_listed_by_another_job_still_reaches_its_writers_dependents(
    hpc_env: dict[str, str], tmp_path: Path
) -> None:
    data = tmp_path / "data"

    run_to_end(tmp_path, WHOSE)
    assert (data / "counted.txt").read_text().strip() == "1000"


# `slow` is still writing big.txt (appending for ~3 s) when `fast` ends: both are sinks.
STILL_WRITING = f"""\
name: still-writing
spec:
  runtime: hpc
  activities:
    - name: slow
      run: |
        wait_for() {{ {WAIT}; }}
        echo start > big.txt
        mkdir -p .akoflow/sync && touch .akoflow/sync/slow-started
        wait_for '{FAST_LISTED}'
        i=0; while [ $i -lt 60 ]; do seq 1 200 >> big.txt; sleep 0.05; i=$((i+1)); done
        echo end >> big.txt
    - name: fast
      run: |
        wait_for() {{ {WAIT}; }}
        wait_for .akoflow/sync/slow-started
        echo fast > fast.txt
"""


def test_a_file_another_job_is_still_writing_comes_back_whole_at_its_end(
    hpc_env: dict[str, str], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    mount = Path(hpc_env["HPC_MOUNT_PATH"])

    made = run_to_end(
        tmp_path,
        STILL_WRITING,
        read=lambda repo, wf_id: [(c.path, c.destination) for c in repo.list_data_copies(wf_id)],
    )
    whole = (mount / "big.txt").read_bytes()
    assert whole.endswith(b"end\n") and whole.count(b"\n200\n") == 60
    assert (data / "big.txt").read_bytes() == whole  # not the half `fast`'s listing showed
    assert (data / "fast.txt").read_text() == "fast\n"
    assert made.count(("big.txt", "")) == 1  # brought back once, at the end of `slow`


# Found by bench/dataplane.py (more copies back than files).
SINKS = f"""\
name: overlap
spec:
  runtime: hpc
  activities:
    - name: first
      run: |
        wait_for() {{ {WAIT}; }}
        wait_for second.started
        echo A > first.out
    - name: second
      run: |
        wait_for() {{ {WAIT}; }}
        touch second.started
        wait_for '.akoflow/*/*-first-a1/files.after'
        echo B > second.out
"""


def test_a_file_two_overlapping_sinks_listed_comes_back_once(
    hpc_env: dict[str, str], tmp_path: Path
) -> None:
    """Two HPC sinks run at once: ``first`` writes first.out and ends; ``second``'s listings
    (on the same MOUNT_PATH) show first.out as changed while it ran too. first.out comes back
    once (at the end of the last of them: it may have been second's, being written), and the
    version stays recorded as first's."""
    data = tmp_path / "data"

    def read(repo: Repository, wf_id: int) -> None:
        ids = {a.name: a.id for a in repo.list_activities(wf_id)}
        back = [c.path for c in repo.list_data_copies(wf_id)]
        assert sorted(back) == ["first.out", "second.out", "second.started"], back
        held = repo.data_replicas(wf_id)[(f"hpc:{hpc_env['HPC_MOUNT_PATH']}", "first.out")]
        assert held.activity_id == ids["first"]

    run_to_end(tmp_path, SINKS, read=read)
    assert (data / "first.out").read_text() == "A\n"
    assert (data / "second.out").read_text() == "B\n"


# `maker` writes its result under a temporary name, renamed into place once whole (and a
# scratch file it removes); `other`'s listing, taken in between, shows both.
RENAMED = f"""\
name: renamed
spec:
  runtime: hpc
  activities:
    - name: maker
      run: |
        wait_for() {{ {WAIT}; }}
        echo result > result.txt.part
        echo scratch > scratch.tmp
        mkdir -p .akoflow/sync && touch .akoflow/sync/maker-wrote
        wait_for '.akoflow/*/*-other-a1/files.after'
        mv result.txt.part result.txt
        rm scratch.tmp
    - name: other
      run: |
        wait_for() {{ {WAIT}; }}
        wait_for .akoflow/sync/maker-wrote
        echo other > other.txt
"""


def test_a_file_another_jobs_listing_caught_and_that_is_gone_is_not_brought_back(
    hpc_env: dict[str, str], tmp_path: Path
) -> None:
    """Collected at ``maker``'s end (the last job that ran while ``other``'s listing was
    recorded), result.txt.part and scratch.tmp are gone: ``maker`` failed ("collecting its
    files failed: copying scratch.tmp ...: No such file"). Now they are left out."""
    data = tmp_path / "data"

    run_to_end(tmp_path, RENAMED)
    assert (data / "result.txt").read_text() == "result\n"
    assert (data / "other.txt").read_text() == "other\n"
    assert not (data / "result.txt.part").exists() and not (data / "scratch.tmp").exists()
