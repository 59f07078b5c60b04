"""The engine (the real CLI) is SIGKILLed while the data plane copies a large file between the
engine host and the SLURM cluster, then ``akoflow resume`` (issue 17, item 6): the copy cut
short is never trusted, it is made again (or verified) and renamed into place only whole; the
temporary ``.<name>.akoflow-part`` never stays as the file; the HPC activity runs exactly once
(SLURM's job-completion log and a counter file it appends to are the witnesses).

To stop the engine mid-copy without a race, it is first frozen (SIGSTOP) as soon as the copy's
temporary file appears, so the test can see that the copy really is partial, then killed.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

from akoflow import service
from akoflow.dataplane.mover import PART_SUFFIX
from tests.conftest import Akoflow, cli_env, start_cli
from tests.hpc_runtime.conftest import runtime_env
from tests.hpc_runtime.test_hpc_engine import jobcomp, slurm_name
from tests.slurm_support.cluster import SlurmCluster

# Many SFTP requests and SSH windows long; the freeze (not the size) makes the cut certain,
# and each 200 MiB more would cost seconds of hashing on a small machine.
BIG = 32 * 2**20


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def parts_of(path: Path) -> list[Path]:
    """The temporary files of copies to ``path`` (``.<name>[.<run>].akoflow-part``)."""
    return sorted(path.parent.glob("." + glob.escape(path.name) + "*" + PART_SUFFIX))


def freeze_when_copying(engine: subprocess.Popen[str], target: Path, timeout: float = 90) -> int:
    """Stop ``engine`` (SIGSTOP) as soon as a copy to ``target`` holds some bytes; its size
    then."""
    deadline = time.monotonic() + timeout
    part = target
    while time.monotonic() < deadline:
        found = parts_of(target)
        size = 0
        if found:
            part = found[0]
            try:
                size = part.stat().st_size
            except FileNotFoundError:
                size = 0
        if size > 0:
            os.kill(engine.pid, signal.SIGSTOP)
            time.sleep(0.3)  # what was already in flight lands; nothing more is sent
            return part.stat().st_size
        if engine.poll() is not None:
            out, err = engine.communicate()
            raise AssertionError(f"the engine ended before copying: {err}{out}")
        time.sleep(0.002)
    os.kill(engine.pid, signal.SIGKILL)
    engine.communicate(timeout=10)
    raise AssertionError(f"no copy to {target} ever appeared")


def kill(engine: subprocess.Popen[str]) -> None:
    os.kill(engine.pid, signal.SIGKILL)
    engine.communicate(timeout=10)
    assert engine.returncode == -signal.SIGKILL


def slurm_runs(cluster: SlurmCluster, tmp_path: Path, wf: str, activity: str) -> list[str]:
    """The end states of every SLURM job of ``activity``, whatever its attempt number."""
    return [
        r["JobState"]
        for attempt in range(1, 4)
        for r in jobcomp(cluster, slurm_name(tmp_path, 1, wf, activity, attempt=attempt))
    ]


def run_cli(wf: Path, state_dir: Path, data: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    argv = ["run", str(wf), "--quiet", "--state-dir", str(state_dir), "--data-dir", str(data)]
    return start_cli(argv, env)


def test_sigkill_while_a_file_is_copied_to_the_cluster_then_resume(
    slurm_cluster: SlurmCluster, akoflow: Akoflow, tmp_path: Path, state_dir: Path
) -> None:
    env = cli_env(**runtime_env(slurm_cluster, "hpc", "mount/crash-put"))
    mount = Path(env["HPC_MOUNT_PATH"])
    mount.mkdir(parents=True, exist_ok=True)
    data = tmp_path / "data"
    data.mkdir()
    big = data / "big.bin"
    with big.open("wb") as f:
        for _ in range(BIG // 2**23):
            f.write(os.urandom(2**23))
    want = sha256_of(big)
    wf = tmp_path / "put.yaml"
    wf.write_text(
        "name: bigput\nspec:\n  runtime: hpc\n  activities:\n"
        "    - name: consume\n      run: |\n        echo run >> count.consume\n"
        "        sha256sum < big.bin > big.sha256\n"
    )
    engine = run_cli(wf, state_dir, data, env)
    partial = freeze_when_copying(engine, mount / "big.bin")
    assert 0 < partial < BIG  # really cut short
    assert not (mount / "big.bin").exists()
    kill(engine)
    assert not (mount / "count.consume").exists()  # nothing was submitted

    res = akoflow("resume", "--json", env=env, timeout=120)
    assert res.returncode == 0, res.stderr + res.stdout
    doc = json.loads(res.stdout)
    assert [(a["name"], a["state"]) for a in doc["activities"]] == [("consume", "succeeded")]

    # The copy was made again, whole, and renamed into place; the half one is gone.
    assert (mount / "big.bin").stat().st_size == BIG
    assert sha256_of(mount / "big.bin") == want
    assert parts_of(mount / "big.bin") == []
    # The activity ran once, on the whole file.
    assert (mount / "count.consume").read_text() == "run\n"
    assert (mount / "big.sha256").read_text().split()[0] == want
    assert slurm_runs(slurm_cluster, tmp_path, "bigput", "consume") == ["COMPLETED"]
    # ... and its files came back (the sink's, collected at its end).
    assert (data / "big.sha256").read_text().split()[0] == want
    assert (data / "count.consume").read_text() == "run\n"
    assert sha256_of(big) == want  # the source was never touched
    repo = service.open_repository(state_dir)
    try:
        sent = [c for c in repo.list_data_copies(1) if c.path == "big.bin" and c.destination != ""]
    finally:
        repo.close()
    # The copy the kill cut short left no record; the one made after it is recorded once.
    assert [(c.bytes, c.sha256) for c in sent] == [(BIG, want)]


def test_sigkill_while_a_sinks_file_is_fetched_back_then_resume(
    slurm_cluster: SlurmCluster, akoflow: Akoflow, tmp_path: Path, state_dir: Path
) -> None:
    env = cli_env(**runtime_env(slurm_cluster, "hpc", "mount/crash-get"))
    mount = Path(env["HPC_MOUNT_PATH"])
    mount.mkdir(parents=True, exist_ok=True)
    data = tmp_path / "data"
    wf = tmp_path / "get.yaml"
    wf.write_text(
        "name: bigget\nspec:\n  runtime: hpc\n  activities:\n"
        "    - name: produce\n      run: |\n        echo run >> count.produce\n"
        "        mkdir -p out\n"
        f"        head -c {BIG} /dev/urandom > out/big.bin\n"
    )
    engine = run_cli(wf, state_dir, data, env)
    partial = freeze_when_copying(engine, data / "out" / "big.bin")
    assert 0 < partial < BIG
    assert not (data / "out" / "big.bin").exists()
    kill(engine)
    want = sha256_of(mount / "out" / "big.bin")

    res = akoflow("resume", "--json", env=env, timeout=120)
    assert res.returncode == 0, res.stderr + res.stdout
    doc = json.loads(res.stdout)
    assert [(a["name"], a["state"], a["attempts"]) for a in doc["activities"]] == [
        ("produce", "succeeded", 1)
    ]

    got = data / "out" / "big.bin"
    assert got.stat().st_size == BIG
    assert sha256_of(got) == want
    assert parts_of(got) == []
    assert not [p for p in data.rglob("*") if p.name.endswith(PART_SUFFIX)]
    # The activity ran once: its file is the one it wrote, not a second run's.
    assert (mount / "count.produce").read_text() == "run\n"
    assert slurm_runs(slurm_cluster, tmp_path, "bigget", "produce") == ["COMPLETED"]
    repo = service.open_repository(state_dir)
    try:
        fetched = [c for c in repo.list_data_copies(1) if c.path == "out/big.bin"]
    finally:
        repo.close()
    assert [(c.destination, c.bytes, c.sha256) for c in fetched] == [("", BIG, want)]
