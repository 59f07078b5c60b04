"""One notion of a run's scope for every runtime's backend object names: a token kept with
the run's attempt files, so the same attempt key of another run (another state dir, or a
state dir deleted and made again at the same path) never gets the same names."""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
from pathlib import Path

import pytest

from akoflow.errors import AkoflowError
from akoflow.runtimes import scope as run_scope
from akoflow.runtimes.docker import container_name
from akoflow.runtimes.hpc import sbatch
from akoflow.runtimes.kubernetes import manifests as mf
from akoflow.runtimes.scope import existing_scope, scope_of, scoped
from tests.scenarios import direct_job


def test_stable_per_run_and_new_for_a_state_dir_made_again(tmp_path: Path) -> None:
    attempts = tmp_path / "state" / "runs" / "1-w" / "attempts"
    first = scope_of(attempts)
    assert len(first) == 12 and int(first, 16) >= 0
    assert scope_of(attempts) == first  # an engine restart finds its objects again
    assert (attempts / run_scope.SCOPE_FILE).read_text() == first + "\n"
    shutil.rmtree(tmp_path / "state")  # `rm -rf ~/.akoflow`, then run 1 again
    assert scope_of(attempts) != first


def test_looking_never_makes_one(tmp_path: Path) -> None:
    attempts = tmp_path / "runs" / "1-w" / "attempts"
    assert existing_scope(attempts) is None
    assert not (tmp_path / "runs").exists()  # a run dir made here would shift the run's id
    assert existing_scope(attempts) is None
    made = scope_of(attempts)
    assert existing_scope(attempts) == made


def test_concurrent_first_calls_agree(tmp_path: Path) -> None:
    attempts = tmp_path / "attempts"
    start = threading.Barrier(8)
    seen: list[str] = []

    def first_call() -> None:
        start.wait()
        seen.append(scope_of(attempts))

    threads = [threading.Thread(target=first_call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 8 and len(set(seen)) == 1
    assert sorted(p.name for p in attempts.iterdir()) == [run_scope.SCOPE_FILE]  # no drafts


def test_the_hpc_runtimes_earlier_token_is_kept(tmp_path: Path) -> None:
    """Runs started when only the HPC runtime had a token keep theirs: their SLURM jobs and
    remote dirs are found under the same names."""
    (tmp_path / ".hpc-scope").write_text("0123456789ab\n")
    assert scope_of(tmp_path) == "0123456789ab"


def path_hash(attempt_dir: Path) -> str:
    """How versions before scope tokens named a run's docker containers."""
    return hashlib.sha256(os.fsencode(os.path.abspath(attempt_dir))).hexdigest()[:12]


def prepared_for_a_container(attempt_dir: Path, prefix: str) -> None:
    """The files the docker runtime writes before it creates an attempt's container."""
    attempt_dir.mkdir(parents=True, exist_ok=True)
    (attempt_dir / f"{prefix}.sh").write_text("true")
    (attempt_dir / f"{prefix}.out").mkdir()


def test_a_run_started_before_tokens_keeps_the_path_hash_its_containers_carry(
    tmp_path: Path,
) -> None:
    attempts = tmp_path / "state" / "runs" / "1-w" / "attempts"
    prepared_for_a_container(attempts, "a.1")
    assert existing_scope(attempts) == path_hash(attempts)  # leftovers find them too
    assert not (attempts / run_scope.SCOPE_FILE).exists()  # looking still makes nothing
    assert scope_of(attempts) == path_hash(attempts)
    assert (attempts / run_scope.SCOPE_FILE).read_text() == path_hash(attempts) + "\n"
    shutil.rmtree(attempts / "a.1.out")  # kept once written: the files may go
    assert scope_of(attempts) == path_hash(attempts)


def test_a_state_dir_made_again_never_takes_the_old_ones_path_hash(tmp_path: Path) -> None:
    """The same path, a new run: its scope is made before any attempt of a container is
    prepared, and the other runtimes' attempt files are no proof of an older version."""
    attempts = tmp_path / "state" / "runs" / "1-w" / "attempts"
    attempts.mkdir(parents=True)
    for name in ("a.1.sh", "a.1.stdout", "a.1.stderr", "a.1.exit", "b.1.launch.sh"):
        (attempts / name).write_text("")  # the local and singularity runtimes' files
    (attempts / "a.1.sh.out").mkdir()
    assert existing_scope(attempts) is None
    made = scope_of(attempts)
    assert made != path_hash(attempts)
    prepared_for_a_container(attempts, "c.1")  # after the scope: this version's order
    assert scope_of(attempts) == existing_scope(attempts) == made


def test_a_recorded_scope_wins_over_the_path_hash(tmp_path: Path) -> None:
    prepared_for_a_container(tmp_path, "a.1")
    (tmp_path / ".hpc-scope").write_text("0123456789ab\n")
    assert scope_of(tmp_path) == existing_scope(tmp_path) == "0123456789ab"


@pytest.mark.parametrize("damaged", ["", "0123\n", "../../etc\n", "0123456789AB\n"])
def test_a_damaged_scope_is_refused_not_replaced(tmp_path: Path, damaged: str) -> None:
    (tmp_path / run_scope.SCOPE_FILE).write_text(damaged)
    with pytest.raises(AkoflowError, match="scope file .* is damaged"):
        scope_of(tmp_path)
    assert (tmp_path / run_scope.SCOPE_FILE).read_text() == damaged


def test_every_runtime_names_by_the_same_scope(tmp_path: Path) -> None:
    """The same key in two runs (two state dirs at one time, or one after the other at the
    same path): other names on every backend."""
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    one = scoped(direct_job(tmp_path / "one", "align", "true", "docker", "img"))
    two = scoped(direct_job(tmp_path / "two", "align", "true", "docker", "img"))
    assert one.key == two.key and one.scope != two.scope
    assert one.scope == scope_of(one.attempt_dir) and scoped(one) is one
    assert container_name(one) == f"akoflow-{one.scope}-{one.key}"
    assert container_name(one) != container_name(two)
    assert one.scope in mf.job_name(one) and mf.job_name(one) != mf.job_name(two)
    assert mf.labels_of(one)[mf.L_SCOPE] == one.scope
    assert sbatch.job_name(one.scope, one.key) != sbatch.job_name(two.scope, two.key)


def test_the_pure_kubernetes_builders_refuse_an_unresolved_scope(tmp_path: Path) -> None:
    job = direct_job(tmp_path, "align", "true", "k8s", "img")
    with pytest.raises(ValueError, match="no scope"):
        mf.job_name(job)
    assert not (tmp_path / "attempts" / run_scope.SCOPE_FILE).exists()  # no I/O there
