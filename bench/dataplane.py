"""Data plane benchmark (issue 17): bytes moved against bytes needed, and copy throughput.

    .venv/bin/python bench/dataplane.py                     # fan-out of 20, a 1 GiB file
    .venv/bin/python bench/dataplane.py --fan-out 50 --file-mib 1 --big-mib 256
    .venv/bin/python bench/dataplane.py fanout              # one part only (or: throughput)

Starts a private SLURM cluster with an SSH login node (tests/slurm_support/cluster.py) in a
temp dir, as bench/hpc.py does.

fanout: a local activity writes N files; N HPC activities each read one of them (once
declaring it, ``inputs:``, once not) and write a copy of it, which comes back as the output of
a last activity. The bytes the data plane copied (its own records, ``data_copies``) are
compared with the bytes needed: to the cluster, the distinct files read (equal, not N times,
either way, since one location holds each file once; undeclared, every file of the run goes
before the first HPC activity starts); back, the N outputs (each sink's listings also show
the files the sinks running beside it wrote: those may come back more than once).

throughput: a file of --big-mib engine -> cluster and back through the HPC runtime's data
mover (SFTP over the runtime's one SSH connection, then size + SHA-256 on both sides and a
rename), the same file through that connection's plain SFTP (no checks), and OpenSSH's `scp`
and `sftp` to the same sshd, all on this machine in the same run. MiB/s and ratios to scp.

scale (issue 20; no cluster: ``bench/dataplane.py scale --sizes 5000 10000 20000``): the data
plane's own work at each end of a remote attempt (:meth:`DataPlane.wants_collect`, its
``collect`` and the ``record_outputs`` of the end's record, as the engine calls them), for runs
of N activities with --live attempts at once at one location, against a real store; the
runtime and its mover are stand-ins that copy nothing. Each attempt's listings show its own
file and what the attempts that ended while it ran wrote (a real listing is the whole working
directory: the runtime's cost, not measured here). Two shapes: ``wide`` (each declares its
output, every output comes back) and ``pairs`` (a_i -> b_i, undeclared: a_i's file stays
there, fresh, for b_i; b_i's comes back). Time per end, over the run and over its last ends:
the same at every N when an end costs what it touched, growing with N when it scans the run
(what is left of a growth with the collector on is Python's: a bigger heap costs more to
collect; ``python -c`` with ``gc.disable()`` around :func:`run_scale` shows it flat).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from akoflow import service  # noqa: E402
from akoflow.config import RuntimeConfig  # noqa: E402
from akoflow.dataplane import DataPlane  # noqa: E402
from akoflow.dataplane.mover import Digest, hash_file  # noqa: E402
from akoflow.engine import Engine  # noqa: E402
from akoflow.engine.model import ActivityRun, WorkflowRun  # noqa: E402
from akoflow.provenance.remote import RemoteFiles  # noqa: E402
from akoflow.provenance.snapshot import FileState  # noqa: E402
from akoflow.runtimes.base import JobSpec, Outcome  # noqa: E402
from akoflow.runtimes.hpc import HpcRuntime  # noqa: E402
from akoflow.runtimes.hpc.ssh import SshLink  # noqa: E402
from akoflow.spec import Activity, load_workflow  # noqa: E402
from akoflow.states import ActivityState, WorkflowState  # noqa: E402
from tests.slurm_support.cluster import SlurmCluster  # noqa: E402

MiB = 2**20

# ---------------------------------------------------------------------- fan-out


def fan_out_yaml(n: int, file_mib: int, *, declared: bool) -> str:
    lines = [
        f"name: fan{'-declared' if declared else ''}",
        "spec:",
        "  activities:",
        "    - name: make",
        "      runtime: local",
        "      run: |",
        "        mkdir -p in",
        f"        for i in $(seq 0 {n - 1}); do",
        f"          head -c {file_mib}M /dev/urandom > in/f$i.bin",
        "        done",
    ]
    for i in range(n):
        lines += [f"    - name: use{i}", "      runtime: hpc", "      dependsOn: [make]"]
        if declared:
            lines.append(f"      inputs: [in/f{i}.bin]")
        lines.append(f"      run: cp in/f{i}.bin out{i}.bin")  # a sink's output: comes back
    return "\n".join(lines) + "\n"


async def run_fan_out(work: Path, n: int, file_mib: int, *, declared: bool) -> dict[str, float]:
    tag = "declared" if declared else "undeclared"
    state, data = work / f"state-{tag}", work / f"data-{tag}"
    os.environ["HPC_MOUNT_PATH"] = str(work / f"mount-{tag}")
    repo = service.open_repository(state)
    prepared = service.validate_text(fan_out_yaml(n, file_mib, declared=declared), f"{tag}.yaml")
    wf_id = service.store(repo, state, prepared, data)
    engine = Engine(repo, state, log_interval=5.0)
    await engine.start()
    t0 = time.perf_counter()
    try:
        await engine.attach(wf_id)
        final = await engine.wait(wf_id)
        elapsed = time.perf_counter() - t0
        rt = engine._slots["hpc"].runtime
        assert isinstance(rt, HpcRuntime)
        logins = rt.connections_opened
    finally:
        await engine.stop()
    copies = repo.list_data_copies(wf_id)
    repo.close()
    needed = sum((data / "in" / f"f{i}.bin").stat().st_size for i in range(n))
    needed_back = sum((data / f"out{i}.bin").stat().st_size for i in range(n))
    sent = [c for c in copies if c.source == "" and c.path.startswith("in/")]
    back = [c for c in copies if c.destination == ""]
    return {
        "ok": float(final.value == "succeeded"),
        "seconds": elapsed,
        "needed": needed,
        "moved": sum(c.bytes for c in sent),
        "copies": len(sent),
        "back": sum(c.bytes for c in back),
        "needed_back": needed_back,
        "back_copies": len(back),
        "back_files": len({c.path for c in back}),
        "logins": logins,
    }


def bench_fan_out(work: Path, n: int, file_mib: int) -> None:
    print(f"fan-out: 1 local activity writes {n} files of {file_mib} MiB; {n} HPC activities")
    for declared in (True, False):
        r = asyncio.run(run_fan_out(work, n, file_mib, declared=declared))
        how = "each declares inputs: [its file]" if declared else "no inputs: declared     "
        print(
            f"  {how}  {'ok' if r['ok'] else 'FAILED'} in {r['seconds']:5.1f}s; "
            f"needed {r['needed'] / MiB:6.1f} MiB, moved to the cluster "
            f"{r['moved'] / MiB:6.1f} MiB in {r['copies']:.0f} copies "
            f"(ratio {r['moved'] / max(1, r['needed']):.2f}; N x would be {n:.0f}.00); "
            f"back: needed {r['needed_back'] / MiB:.1f} MiB, moved {r['back'] / MiB:.1f} MiB "
            f"(ratio {r['back'] / max(1, r['needed_back']):.2f}) in {r['back_copies']:.0f} "
            f"copies of {r['back_files']:.0f} files; "
            f"SSH logins {r['logins']:.0f}"
        )
    print(
        f"  (a copy of the needed files per activity, as staging around every activity did, "
        f"would move {n} x {n * file_mib} MiB = {n * n * file_mib} MiB undeclared, "
        f"{n * file_mib} MiB declared: arithmetic, not measured)"
    )


# ---------------------------------------------------------------------- throughput


class Quiet:
    """Where the runtime reports jobs: this benchmark submits none."""

    def job_running(self, key: str, node: str | None) -> None:
        pass

    def job_finished(self, key: str, outcome: Outcome) -> None:
        pass


def write_random(path: Path, size: int) -> None:
    """``size`` bytes that do not compress (fast: the kernel's random source is slow here)."""
    rng = random.Random(17)
    with path.open("wb") as f:
        left = size
        while left:
            chunk = min(left, 8 * MiB)
            f.write(rng.randbytes(chunk))
            left -= chunk


def ssh_options(cluster: SlurmCluster) -> list[str]:
    return [
        "-F", "/dev/null",
        "-o", f"Port={cluster.ssh_port}",
        "-o", "User=root",
        "-o", f"IdentityFile={cluster.client_key}",
        "-o", "IdentitiesOnly=yes",
        "-o", f"UserKnownHostsFile={cluster.known_hosts}",
        "-o", "StrictHostKeyChecking=yes",
        "-o", "BatchMode=yes",
    ]  # fmt: skip


def openssh_cipher(cluster: SlurmCluster) -> str:
    res = subprocess.run(
        ["ssh", "-v", *ssh_options(cluster), "127.0.0.1", "true"],
        capture_output=True,
        text=True,
        check=False,
    )
    found = re.search(r"kex: client->server cipher: (\S+)", res.stderr)
    return found.group(1) if found else "?"


def command(argv: list[str], stdin: str | None = None) -> Callable[[], Awaitable[object]]:
    """An OpenSSH client run (in a thread: the runtime's connection stays served)."""
    return lambda: asyncio.to_thread(
        subprocess.run, argv, input=stdin, text=True, check=True, capture_output=True
    )


async def timed(step: Callable[[], Awaitable[object]]) -> float:
    start = time.perf_counter()
    await step()
    return time.perf_counter() - start


async def run_throughput(cluster: SlurmCluster, work: Path, size: int, rounds: int) -> None:
    """Each way of copying, ``rounds`` times in turn (so a busy moment of the machine hits them
    alike); the best time of each is reported."""
    mount = work / "mount-big"
    os.environ["HPC_MOUNT_PATH"] = str(mount)
    data = work / "data-big"
    data.mkdir()
    back = work / "back"
    back.mkdir()
    source = data / "big.bin"
    write_random(source, size)
    opts = ssh_options(cluster)
    remote = f"127.0.0.1:{mount}"
    sftp_cmd = ["sftp", "-q", "-b", "-", *opts, "127.0.0.1"]
    rt = HpcRuntime("hpc", RuntimeConfig.from_env("hpc", dict(os.environ)), Quiet())
    await rt.start()
    try:
        job = JobSpec(
            key="wf1-big-a1",
            workflow_id=1,
            workflow_name="big",
            activity_id=1,
            activity=Activity(name="big", run="true", runtime="hpc"),
            attempt=1,
            data_dir=data,
            attempt_dir=work,
        )
        mover = rt.data_mover(job)
        assert mover is not None
        link = await rt._ready_transport()
        assert isinstance(link, SshLink)
        conn = await link.connection()
        sftp = await link.sftp()
        cipher = conn.get_extra_info("send_cipher")
        raw_source, raw_mount = os.fsencode(source), os.fsencode(mount)
        digest: list[Digest] = []

        async def host_hash() -> None:
            digest.append(await asyncio.to_thread(hash_file, raw_source))

        async def remote_hash() -> None:
            await link.run(["sha256sum", str(mount / "raw.bin")])

        ways: dict[str, dict[str, Callable[[], Awaitable[object]]]] = {
            "engine -> HPC": {
                "data mover (verified)": lambda: mover.put(source, "big.bin", digest[0]),
                "its SFTP alone": lambda: sftp.put(raw_source, raw_mount + b"/raw.bin"),
                "scp": command(["scp", "-q", *opts, str(source), f"{remote}/scp.bin"]),
                "sftp": command(sftp_cmd, f"put {source} {mount}/sftp.bin\n"),
            },
            "HPC -> engine": {
                "data mover (verified)": lambda: mover.get("big.bin", back / "big.bin"),
                "its SFTP alone": lambda: sftp.get(raw_mount + b"/raw.bin", back / "raw"),
                "scp": command(["scp", "-q", *opts, f"{remote}/scp.bin", str(back / "scp.bin")]),
                "sftp": command(sftp_cmd, f"get {mount}/sftp.bin {back}/sftp.bin\n"),
            },
        }
        best: dict[str, dict[str, float]] = {d: {} for d in ways}
        t_hash = t_remote = float("inf")
        for _ in range(rounds):
            t_hash = min(t_hash, await timed(host_hash))
            for direction, steps in ways.items():
                for name, step in steps.items():
                    took = await timed(step)
                    best[direction][name] = min(best[direction].get(name, took), took)
            t_remote = min(t_remote, await timed(remote_hash))
        logins = rt.connections_opened
    finally:
        await rt.stop()
    for path in (back / "big.bin", back / "raw", back / "scp.bin", back / "sftp.bin"):
        assert path.stat().st_size == size, path
    print(
        f"throughput: {size / MiB:.0f} MiB, one machine, best of {rounds} rounds; cipher "
        f"{cipher} (asyncssh), {openssh_cipher(cluster)} (OpenSSH); the mover's SSH logins "
        f"{logins}; SHA-256 of the file: {t_hash:.2f}s on the engine host (before a put, "
        f"cached after), {t_remote:.2f}s on the cluster (sha256sum through the connection)"
    )
    for direction, times in best.items():
        base = times["scp"]
        for name, seconds in times.items():
            print(
                f"  {direction}  {name:<22} {seconds:6.2f}s  {size / MiB / seconds:7.1f} MiB/s"
                f"  x{seconds / base:5.2f} the time of scp"
            )


# ---------------------------------------------------------------------- scale

SCALE_LOCATION = "hpc:/scale"


class ScaleMover:
    """A location that copies nothing (the bench measures the data plane's bookkeeping)."""

    location = SCALE_LOCATION

    async def put(self, source: Path, path: str, expected: Digest) -> None:
        pass

    async def get(self, path: str, destination: Path) -> Digest:
        return Digest(1, "0" * 64)

    async def stats(self, paths: object) -> None:
        return None


class ScaleRuntime:
    """What the data plane asks of a runtime whose files stay remote."""

    files_stay_remote = True

    def __init__(self) -> None:
        self.mover = ScaleMover()

    def data_mover(self, job: object) -> ScaleMover:
        return self.mover


def scale_yaml(n: int, shape: str) -> str:
    lines = ["name: scale", "spec:", "  runtime: hpc", "  activities:"]
    if shape == "wide":
        for i in range(n):
            lines += [f"    - name: t{i}", "      run: 'true'", f"      outputs: [out/{i}.txt]"]
    else:
        for i in range(n // 2):
            lines += [f"    - name: a{i}", "      run: 'true'"]
            lines += [f"    - name: b{i}", "      run: 'true'", f"      dependsOn: [a{i}]"]
    return "\n".join(lines) + "\n"


async def run_scale(work: Path, n: int, shape: str, live: int, tail: int) -> tuple[float, float]:
    """Seconds per attempt end: over the whole run, over its last ``tail`` ends."""
    state = work / f"state-{shape}-{n}"
    repo = service.open_repository(state)
    text = scale_yaml(n, shape)
    workflow = load_workflow(text)
    wf_id = repo.create_workflow(
        workflow, spec_yaml=text, spec_hash="x", source=None, runs_root=state / "runs"
    )
    wf = WorkflowRun(
        wf_id, "scale", workflow, work / f"data-{shape}-{n}", state, WorkflowState.RUNNING
    )
    specs = {a.name: a for a in workflow.activities}
    for rec in repo.list_activities(wf_id):
        wf.activities[rec.name] = ActivityRun(
            rec.id, rec.name, specs[rec.name], "hpc", ActivityState.PENDING, 0, 1, wf
        )
    for act in wf.activities.values():
        act.deps = [wf.activities[d] for d in act.spec.depends_on]
        for dep in act.deps:
            dep.dependents.append(act)
    wf.data_dir.mkdir()
    runtime = ScaleRuntime()
    plane = DataPlane(repo, lambda name: runtime, lambda act: None)  # type: ignore[arg-type,return-value]
    rt: Any = runtime
    ready = deque(a for a in wf.activities.values() if not a.deps)
    running: deque[ActivityRun] = deque()
    ended_files: deque[tuple[float, str]] = deque(maxlen=4 * live)  # (when, path) written
    times: list[float] = []

    def dispatch() -> None:
        while ready and len(running) < live:
            act = ready.popleft()
            plane.needs_listing(act, rt)  # as the engine's job_spec asks it at each dispatch
            act.attempt, act.state = 1, ActivityState.RUNNING
            act.dispatched_at = time.time()
            plane.dispatched(act)  # as the engine's Attempts._begin tells it
            running.append(act)

    dispatch()
    while running:
        act = running.popleft()
        own = f"{'out' if act.name[0] in 'tb' else 'mid'}/{act.name[1:]}.txt"
        after = {p: FileState(1, when) for when, p in ended_files if when >= act.dispatched_at}
        now = time.time()
        after[own] = FileState(1, now)
        outcome = Outcome(True, 0, files=RemoteFiles(SCALE_LOCATION, {}, after))
        start = time.perf_counter()
        with repo.transaction():
            if plane.wants_collect(act, rt, outcome):
                await plane.collect(act, rt, outcome)
            plane.record_outputs(act, rt, outcome.files)  # the end's record (engine: finish)
            act.state, act.finished_at = ActivityState.SUCCEEDED, time.time()
        times.append(time.perf_counter() - start)
        ended_files.append((now, own))
        ready.extend(act.dependents)
        dispatch()
    repo.close()
    assert len(times) == n
    return sum(times) / n, sum(times[-tail:]) / min(tail, n)


def bench_scale(work: Path, sizes: list[int], live: int) -> None:
    tail = 1000
    print(
        f"scale: the data plane's work per end of a remote attempt, {live} attempts at once "
        f"at one location (mean over the run / over its last {tail} ends)"
    )
    for shape in ("wide", "pairs"):
        for n in sizes:
            whole, last = asyncio.run(run_scale(work, n, shape, live, tail))
            print(
                f"  {shape:<5} N={n:>6}  {whole * 1e3:8.3f} ms per end over the run, "
                f"{last * 1e3:8.3f} ms over the last {tail}"
            )


# ---------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("which", nargs="*", default=["fanout", "throughput"])
    parser.add_argument("--fan-out", type=int, default=20)
    parser.add_argument("--file-mib", type=int, default=2, help="size of each fan-out file")
    parser.add_argument("--big-mib", type=int, default=1024, help="size of the throughput file")
    parser.add_argument("--rounds", type=int, default=3, help="throughput: best of this many")
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 10000, 20000])
    parser.add_argument("--live", type=int, default=100, help="scale: attempts at once")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="akf-bench-dataplane-"))
    if "scale" in args.which:
        try:
            bench_scale(root, args.sizes, args.live)
        finally:
            if set(args.which) == {"scale"}:
                shutil.rmtree(root, ignore_errors=True)
        if set(args.which) == {"scale"}:
            return 0
    cluster = SlurmCluster(root / "cluster")
    cluster.root.mkdir()
    try:
        cluster.start()
        env = cluster.settings("hpc")
        env.update(
            HPC_POLL_INTERVAL="0.5",
            HPC_SUBMIT_RATE="1000",
            HPC_METRICS_INTERVAL="0",
            HPC_SSH_CONFIG_FILE="none",
        )
        os.environ.update(env)
        print(f"slurm + sshd up under {root}")
        if "fanout" in args.which:
            bench_fan_out(root, args.fan_out, args.file_mib)
        if "throughput" in args.which:
            asyncio.run(run_throughput(cluster, root, args.big_mib * MiB, args.rounds))
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
