"""The docker runtime's overhead per activity against the docker SDK alone, side by side.

    DOCKER_HOST=unix:///tmp/d/docker.sock .venv/bin/python bench/docker_vs_sdk.py  # a daemon
    .venv/bin/python bench/docker_vs_sdk.py       # starts a private dockerd (root)
    .venv/bin/python bench/docker_vs_sdk.py -n 30 --rounds 3 --parallel 8

Each round, on the same daemon and in the same minute:

- sdk: N containers of the image, each made, started, waited for and removed with the docker
  SDK directly, at most PARALLEL at once (threads), in this process: the floor of what any
  tool that starts containers on that daemon pays;
- local: a wide workflow of N ``true`` activities on the local runtime through the CLI (a
  fresh process, start-up included);
- docker: the same workflow on the docker runtime (``DOCKER_MAX_PARALLEL`` = PARALLEL).

The docker runtime's overhead per activity is (docker - local) / N: what running an activity
in a container adds to AkôFlow. It is compared with the SDK's own time per container
(sdk / N); the ratio is the goal of issue 20 (at most 1.2). The SDK's containers are the
runtime's: same image, the same four bind mounts (data dir, script, output dir, control dir),
tini as init, no network, removed at the end. Medians over the rounds are printed last.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

import docker  # noqa: E402
from docker.types import Mount  # noqa: E402

from run import akoflow, timed, trivial_yaml  # noqa: E402
from tests.docker_support.dockerd import IMAGE, PrivateDockerd  # noqa: E402


def sdk_containers(host: str, image: str, n: int, parallel: int, tmp: Path) -> float:
    """Wall seconds to make, start, wait for and remove ``n`` containers like the runtime's
    (``parallel`` at once)."""
    api = docker.APIClient(base_url=host, version="auto")
    data = tmp / "data"
    data.mkdir(exist_ok=True)

    def one(i: int) -> None:
        prefix = tmp / f"c{i}"
        for suffix in (".out", ".ctl"):
            Path(f"{prefix}{suffix}").mkdir(exist_ok=True)
        Path(f"{prefix}.sh").write_text("true\n")
        host_config = api.create_host_config(
            mounts=[
                Mount("/data", str(data), type="bind"),
                Mount("/.akoflow/script.sh", f"{prefix}.sh", type="bind", read_only=True),
                Mount("/.akoflow/out", f"{prefix}.out", type="bind"),
                Mount("/.akoflow/ctl", f"{prefix}.ctl", type="bind", read_only=True),
            ],
            network_mode="none",
            init=True,
        )
        cid = api.create_container(
            image,
            entrypoint=["sh", "-c", 'exec "$0" /.akoflow/script.sh', "sh"],
            command=[],
            working_dir="/data",
            host_config=host_config,
        )["Id"]
        api.start(cid)
        code = api.wait(cid)["StatusCode"]
        api.remove_container(cid, force=True)
        if code != 0:
            raise RuntimeError(f"container {cid[:12]} exited {code}")

    start = time.perf_counter()
    try:
        with ThreadPoolExecutor(parallel) as pool:
            list(pool.map(one, range(n)))
        return time.perf_counter() - start
    finally:
        api.close()


def akoflow_wide(
    kind: str, n: int, image: str, tmp: Path, env: dict[str, str], tag: str = ""
) -> float:
    name = f"{kind}-wide{tag}"
    wf = tmp / f"{name}.yaml"
    wf.write_text(trivial_yaml(name, n, kind, image if kind == "docker" else None, False))
    wall, _, code, _ = timed(
        akoflow("run", str(wf), "--quiet", "--state-dir", str(tmp / f"state-{name}")), env=env
    )
    if code != 0:
        raise RuntimeError(f"akoflow run on {kind} exited {code}")
    return wall


def one_round(host: str, args: argparse.Namespace, tmp: Path) -> tuple[float, ...]:
    env = {
        **os.environ,
        "DOCKER_HOST": host,
        "DOCKER_PULL_POLICY": "never",
        "DOCKER_MAX_PARALLEL": str(args.parallel),
    }
    sdk = sdk_containers(host, args.image, args.n, args.parallel, tmp / "sdk")
    local = akoflow_wide("local", args.n, args.image, tmp, env)
    dock = akoflow_wide("docker", args.n, args.image, tmp, env)
    if not args.other_src:
        return sdk, local, dock
    other = {**env, "PYTHONPATH": str(Path(args.other_src).resolve())}
    return sdk, local, dock, akoflow_wide("docker", args.n, args.image, tmp, other, "-other")


def show(label: str, n: int, sdk: float, local: float, dock: float, *other: float) -> None:
    overhead, floor = (dock - local) / n * 1000, sdk / n * 1000
    line = (
        f"{label:<8} sdk {sdk:6.3f} s ({floor:6.1f} ms/container)  local {local:6.3f} s  "
        f"docker {dock:6.3f} s  overhead {overhead:6.1f} ms/activity  "
        f"ratio {overhead / floor:5.2f}x  [goal <= 1.2x]"
    )
    for wall in other:  # the same with --other-src
        extra = (wall - local) / n * 1000
        line += f"  | other src: docker {wall:6.3f} s  ratio {extra / floor:5.2f}x"
    print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=30, help="activities (containers) per run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--parallel", type=int, default=8, help="containers at once (both)")
    parser.add_argument("--image", default=IMAGE)
    parser.add_argument(
        "--other-src",
        help="a src dir of another AkôFlow version (e.g. `git archive` of an older commit): "
        "its docker run too, each round, for a before/after in the same minute",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="akoflow-bench-docker-") as d:
        tmp = Path(d)
        host = os.environ.get("DOCKER_HOST")
        daemon = None
        if not host:
            daemon = PrivateDockerd(tmp / "dockerd")
            daemon.start()
            daemon.import_image(args.image)
            host = daemon.host
        try:
            rounds = []
            for r in range(args.rounds):
                (tmp / f"r{r}" / "sdk").mkdir(parents=True)
                rounds.append(one_round(host, args, tmp / f"r{r}"))
                show(f"round {r + 1}", args.n, *rounds[-1])
            medians = [statistics.median(col) for col in zip(*rounds, strict=True)]
            show("median", args.n, *medians)
            ratios = [(r[2] - r[1]) / r[0] for r in rounds]
            line = f"{'':<8} median of the rounds' ratios {statistics.median(ratios):5.2f}x"
            if args.other_src:
                others = [(r[3] - r[1]) / r[0] for r in rounds]
                line += f"  (other src: {statistics.median(others):5.2f}x)"
            print(line)
        finally:
            if daemon is not None:
                daemon.stop()


if __name__ == "__main__":
    main()
