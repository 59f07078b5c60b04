"""Per-activity overhead of the singularity runtime vs local, through the real CLI.

    .venv/bin/python bench/singularity.py                 # 20 activities, the test launcher
    .venv/bin/python bench/singularity.py -n 50
    .venv/bin/python bench/singularity.py --binary /usr/bin/apptainer --image /x/alpine.sif

N trivial activities (``true``) run independently (wide: throughput) and as a chain (latency),
on local and on singularity, each in a fresh CLI process with a fresh state dir, as bench/run.py
does. The launcher floor (N serial ``BINARY exec IMAGE /bin/true``) separates what the launcher
itself costs from what AkôFlow adds. Without ``--binary`` the image is a real SIF built here and
the launcher is the TEST stand-in (tests/singularity_support/apptainer: squashfuse + bwrap),
so the numbers describe that stand-in, not Apptainer.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from run import runtime_overhead  # noqa: E402
from tests.singularity_support import sif  # noqa: E402

LAUNCHER = ROOT / "tests" / "singularity_support" / "apptainer"


def launcher_floor(binary: str, image: str, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        subprocess.run([binary, "exec", "--cleanenv", image, "/bin/true"], check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=20, help="activities per run")
    parser.add_argument("--binary", default=str(LAUNCHER))
    parser.add_argument("--image", help="SIF path (default: a busybox SIF built here)")
    args = parser.parse_args()
    n = args.n
    with tempfile.TemporaryDirectory(prefix="akoflow-bench-sif-") as d:
        tmp = Path(d)
        image = args.image or str(
            sif.build_sif(sif.busybox_rootfs(tmp / "rootfs"), tmp / "busybox.sif")
        )
        env = {**os.environ, "SINGULARITY_BINARY": args.binary}
        env["SINGULARITY_CACHE_DIR"] = str(tmp / "cache")
        floor = launcher_floor(args.binary, image, n)
        print(
            f"{'floor':<18} {n:>4} x exec /bin/true (serial)  {floor:7.3f} s  "
            f"{floor / n * 1000:7.1f} ms/exec  [{os.path.basename(args.binary)}]"
        )
        runtime_overhead("singularity", n, image, tmp, env)


if __name__ == "__main__":
    main()
