"""AkôFlow benchmarks: one command, numbers and ratios on stdout.

    .venv/bin/python bench/run.py            # the engine: startup, wide, chain, plan,
                                             # provenance (10,000 files in the data dir)
    .venv/bin/python bench/run.py wide chain # a subset
    .venv/bin/python bench/run.py all        # everything below too (several minutes, root:
                                             # it starts dockerd, SLURM, sshd, emulators)
    DOCKER_HOST=unix:///tmp/d/docker.sock .venv/bin/python bench/run.py docker
                                             # per-activity overhead of docker vs local (needs
                                             # a daemon with the image: `python -m
                                             # tests.docker_support.dockerd up /tmp/d`)
    .venv/bin/python bench/run.py server     # server mode (bench/server.py)
    .venv/bin/python bench/run.py singularity k8s hpc
                                             # the runtimes' own benchmarks (bench/<name>.py):
                                             # overhead per activity, API requests per
                                             # activity, slurmctld RPCs per job
    .venv/bin/python bench/run.py dataplane  # files between the engine and a SLURM cluster
                                             # (bench/dataplane.py): bytes moved vs needed
                                             # in a fan-out, 1 GiB copies vs scp and sftp
    .venv/bin/python bench/run.py slurm-array
                                             # a 1,000-activity SLURM fan-out as single jobs
                                             # vs job arrays (bench/slurm_array.py): submit
                                             # RPCs (sdiag) and wall time, side by side
    .venv/bin/python bench/run.py cache      # result caching (bench/cache.py): wide-1000
                                             # re-run uncached vs fully cached, and the ratio
    .venv/bin/python bench/run.py peers      # wide-1000 and chain-100 vs Parsl's
                                             # ThreadPoolExecutor and the serial bash floor,
                                             # interleaved, with ratios (bench/peers.py;
                                             # `pip install -e '.[bench]'` for Parsl)
    .venv/bin/python bench/run.py scale      # 100,000 activities end to end (wide, and 1,000
                                             # fan-outs of 100): time, peak RSS, status and
                                             # API page latency during the run (bench/scale.py)

Every workflow runs through the real CLI in a fresh process (start-up included) with a fresh
state dir, the way a user runs it. Budgets (2-core machine) from the design brief:
wide-1000 >= 200 activities/s, chain-100 < 2 s, 100k validate+plan < 10 s and < 1 GiB;
server: a page of a 100,000-activity workflow's activities < 100 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


def wide_yaml(n: int, command: str = "true") -> str:
    run = f"      run: {json.dumps(command)}"
    lines = ["name: wide", "spec:", "  activities:"]
    for i in range(n):
        lines += [f"    - name: t{i}", run]
    lines += [
        "    - name: join",
        "      dependsOn: [" + ", ".join(f"t{i}" for i in range(n)) + "]",
        run,
    ]
    return "\n".join(lines) + "\n"


def chain_yaml(n: int, command: str = "true") -> str:
    lines = ["name: chain", "spec:", "  activities:"]
    for i in range(n):
        lines += [f"    - name: c{i}", f"      run: {json.dumps(command)}"]
        if i:
            lines.append(f"      dependsOn: [c{i - 1}]")
    return "\n".join(lines) + "\n"


def trivial_yaml(name: str, n: int, runtime: str, image: str | None, chain: bool) -> str:
    lines = [f"name: {name}", "spec:", f"  runtime: {runtime}"]
    if image:
        lines.append(f"  image: {image}")
    lines.append("  activities:")
    for i in range(n):
        lines += [f"    - name: t{i}", "      run: 'true'"]
        if chain and i:
            lines.append(f"      dependsOn: [t{i - 1}]")
    return "\n".join(lines) + "\n"


def runtime_overhead(runtime: str, n: int, image: str, tmp: Path, env: dict[str, str]) -> None:
    """N trivial activities on ``runtime`` and on local, independent (wide) and in a chain
    (latency): the overhead per activity of the runtime."""
    for shape in ("wide", "chain"):
        walls = {}
        for kind in ("local", runtime):
            name = f"{kind}-{shape}"
            wf = tmp / f"{name}.yaml"
            img = image if kind == runtime else None
            wf.write_text(trivial_yaml(name, n, kind, img, shape == "chain"))
            state = tmp / f"state-{name}"
            wall, _, code, _ = timed(
                akoflow("run", str(wf), "--quiet", "--state-dir", str(state)), env=env
            )
            walls[kind] = wall
            print(
                f"{name:<18} {n:>4} activities  {wall:7.3f} s  {wall / n * 1000:7.1f} ms/act  "
                f"exit {code}"
            )
        extra = (walls[runtime] - walls["local"]) / n * 1000
        print(f"{'':<18} {runtime} overhead ({shape}): {extra:+.1f} ms per activity")


def bench_docker(n: int, image: str, tmp: Path) -> None:
    """N trivial activities on docker vs local (see :func:`runtime_overhead`)."""
    host = os.environ.get("DOCKER_HOST")
    if not host:
        print(f"{'docker':<11} skipped: set DOCKER_HOST to a daemon that has {image}")
        return
    runtime_overhead("docker", n, image, tmp, {**os.environ, "DOCKER_PULL_POLICY": "never"})


def big_yaml(n: int) -> str:
    parts = ["name: big\nspec:\n  activities:\n"]
    for i in range(n):
        deps = ""
        if i >= 2:
            deps = f"      dependsOn: [a{i - 1}, a{i // 2}]\n"
        elif i == 1:
            deps = "      dependsOn: [a0]\n"
        parts.append(
            f"    - name: a{i}\n      run: echo {i}\n      memoryLimit: 128Mi\n"
            f"      cpuLimit: 500m\n{deps}"
        )
    return "".join(parts)


def timed(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, int, int, str]:
    """Wall seconds, peak RSS of the largest process of the tree (bytes), exit code, stderr."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.stderr is not None
    err = proc.stderr.read().decode()
    proc.stderr.close()
    if proc.returncode != 0:
        sys.stderr.write(err)
    return wall, usage.ru_maxrss * 1024, proc.returncode, err


def akoflow(*args: str) -> list[str]:
    return [PY, "-m", "akoflow", *args]


def floor_bash(n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        subprocess.run(["bash", "-c", "true"], check=True)
    return time.perf_counter() - start


def bench_run(name: str, text: str, n_acts: int, tmp: Path, budget: str) -> None:
    wf = tmp / f"{name}.yaml"
    wf.write_text(text)
    state = tmp / f"state-{name}"
    wall, rss, code, _ = timed(akoflow("run", str(wf), "--quiet", "--state-dir", str(state)))
    rate = n_acts / wall
    print(
        f"{name:<11} {n_acts:>6} activities  {wall:7.3f} s  {rate:8.1f} act/s  "
        f"{wall / n_acts * 1000:6.2f} ms/act  peak RSS {rss / 2**20:6.1f} MiB  "
        f"exit {code}  [{budget}]"
    )


def bench_provenance(n_files: int, n_acts: int, tmp: Path) -> None:
    """A wide workflow whose data dir already holds many files, each activity writing one more:
    the engine looks at the data dir at every wake-up (provenance), which must cost per
    change, not per file or per pending change."""
    data = tmp / "prov-data"
    for d in range(max(1, n_files // 100)):
        sub = data / f"d{d}"
        sub.mkdir(parents=True)
        for i in range(min(100, n_files)):
            (sub / f"f{i}").write_bytes(b"x")
    # Each activity writes a file, and one long activity runs beside them all: changes wait
    # for it before they can be decided (the case that must not cost per pending change).
    lines = ["name: prov", "spec:", "  activities:", "    - name: monitor", "      run: sleep 2"]
    for i in range(n_acts):
        lines += [f"    - name: t{i}", f"      run: echo {i} > out-{i}.txt"]
    wf = tmp / "prov.yaml"
    wf.write_text("\n".join(lines) + "\n")
    walls = {}
    for mode in ("off", "on"):
        state = tmp / f"state-prov-{mode}"
        env = {**os.environ, "AKOFLOW_PROVENANCE": mode}
        argv = akoflow(
            "run", str(wf), "--quiet", "--state-dir", str(state), "--data-dir", str(data)
        )
        walls[mode], _, code, _ = timed(argv, env=env)
        print(
            f"{'provenance':<11} {n_acts:>6} activities, {n_files} files in the data dir, "
            f"provenance {mode:<3}  {walls[mode]:7.3f} s  exit {code}"
        )
    extra = (walls["on"] - walls["off"]) / n_acts * 1000
    print(f"{'':<11} provenance cost: {extra:+.2f} ms per activity")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    default = ["startup", "wide", "chain", "plan", "provenance"]
    if os.environ.get("DOCKER_HOST"):
        default.append("docker")
    parser.add_argument(
        "which",
        nargs="*",
        default=default,
        help="startup wide chain plan provenance docker server singularity k8s hpc slurm-array "
        "dataplane cache features, "
        "or all "
        f"(default: {' '.join(default)})",
    )
    parser.add_argument("--wide", type=int, default=1000)
    parser.add_argument("--chain", type=int, default=100)
    parser.add_argument("--big", type=int, default=100_000)
    parser.add_argument("--docker", type=int, default=20, help="activities per docker run")
    parser.add_argument("--docker-image", default="akoflow-test/busybox:1")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="akoflow-bench-") as d:
        tmp = Path(d)
        if "all" in args.which:
            args.which = [*default, "docker"] if os.environ.get("DOCKER_HOST") else default
            args.which.append("all")
        if "startup" in args.which:
            wall, rss, _, _ = timed(akoflow("--version"))
            print(
                f"{'startup':<11} `akoflow --version` {wall * 1000:7.1f} ms  "
                f"peak RSS {rss / 2**20:.1f} MiB"
            )
        if "wide" in args.which:
            n = args.wide
            floor = floor_bash(n)
            print(
                f"{'floor':<11} {n:>6} x bash -c true (serial)  {floor:7.3f} s  "
                f"{floor / n * 1000:6.2f} ms/task"
            )
            bench_run("wide", wide_yaml(n), n + 1, tmp, "budget >= 200 act/s")
            wall, _, _, _ = timed(
                akoflow(
                    "run",
                    str(tmp / "wide.yaml"),
                    "--quiet",
                    "--new",
                    "--no-cache",  # runs every activity again (bench/cache.py: reuses)
                    "--state-dir",
                    str(tmp / "state-wide"),
                )
            )
            print(
                f"{'':<11} second run {wall:.3f} s; ratio to bash floor "
                f"{wall / floor:.2f}x; overhead vs floor "
                f"{(wall - floor) / (n + 1) * 1000:+.2f} ms/act"
            )
        if "chain" in args.which:
            bench_run("chain", chain_yaml(args.chain), args.chain, tmp, "budget < 2 s")
        if "provenance" in args.which:
            bench_provenance(10_000, 1000, tmp)
        if "docker" in args.which:
            bench_docker(args.docker, args.docker_image, tmp)
        if "plan" in args.which:
            big = tmp / "big.yaml"
            big.write_text(big_yaml(args.big))
            wall, rss, rc, detail = timed(
                [PY, str(Path(__file__).with_name("plan_big.py")), str(big)]
            )
            print(
                f"{'plan-100k':<11} {args.big:>6} activities  {wall:7.3f} s  validate+plan "
                f"(start-up included)  peak RSS {rss / 2**20:6.1f} MiB  exit {rc}  "
                f"[budget < 10 s, < 1024 MiB]\n{'':<11} {detail.strip()}"
            )
        # The remote and container runtimes (each starts its own daemons or stand-ins, a
        # minute or more) and server mode: their own scripts, run from here by name;
        # `all` runs every benchmark.
        names = ("server", "singularity", "k8s", "hpc", "slurm-array", "dataplane", "cache")
        for name in (*names, "features"):
            if name in args.which or "all" in args.which:
                sys.stdout.flush()
                print(f"== {name}", flush=True)
                script = Path(__file__).with_name(f"{name.replace('-', '_')}.py")
                subprocess.run([PY, str(script)], check=False)


if __name__ == "__main__":
    main()
