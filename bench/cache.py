"""Result caching benchmark (issue 18): a re-run that runs everything against one that reuses
everything, in the same state dir and the same invocation.

    .venv/bin/python bench/cache.py              # wide-1000 (each activity writes a file)
    .venv/bin/python bench/cache.py --wide 200
    .venv/bin/python bench/run.py cache          # the same, from the benchmark runner

Each run goes through the real CLI in a fresh process (start-up included), as a user runs it:
the first run fills the cache, `--no-cache` re-runs every activity (uncached), a plain re-run
reuses every result (each output restored into the new run's data dir, its content checked).
The uncached and the cached re-run are printed with their ratio.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PY = sys.executable


def wide_files_yaml(n: int) -> str:
    """``n`` independent activities, each writing a small file, then one reading them all."""
    lines = ["name: wide", "spec:", "  activities:"]
    for i in range(n):
        lines += [f"    - name: t{i}", f"      run: echo {i} > t{i}.txt"]
    lines += [
        "    - name: join",
        "      dependsOn: [" + ", ".join(f"t{i}" for i in range(n)) + "]",
        "      run: cat t*.txt | wc -l > count.txt",
    ]
    return "\n".join(lines) + "\n"


def timed_run(wf: Path, state: Path, *extra: str) -> float:
    argv = [PY, "-m", "akoflow", "run", str(wf), "--quiet", "--state-dir", str(state), *extra]
    start = time.perf_counter()
    subprocess.run(argv, check=True, env={**os.environ, "AKOFLOW_CACHE": "on"})
    return time.perf_counter() - start


def states(state: Path, run: int) -> dict[str, int]:
    import json

    out = subprocess.run(
        [PY, "-m", "akoflow", "status", str(run), "--json", "--state-dir", str(state)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    counts: dict[str, int] = {}
    for act in json.loads(out)["activities"]:
        counts[act["state"]] = counts.get(act["state"], 0) + 1
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--wide", type=int, default=1000)
    args = parser.parse_args()
    n = args.wide + 1
    with tempfile.TemporaryDirectory(prefix="akoflow-bench-cache-") as d:
        tmp = Path(d)
        wf = tmp / "wide.yaml"
        wf.write_text(wide_files_yaml(args.wide))
        state = tmp / "state"
        first = timed_run(wf, state)
        uncached = timed_run(wf, state, "--no-cache")
        cached = timed_run(wf, state)
        ran, reused = states(state, 2), states(state, 3)
        print(f"cache       wide-{args.wide}: first run {first:7.3f} s")
        print(f"cache       uncached re-run {uncached:7.3f} s  ({n / uncached:7.1f} act/s; {ran})")
        print(f"cache       cached re-run   {cached:7.3f} s  ({n / cached:7.1f} act/s; {reused})")
        print(f"cache       cached / uncached = {cached / uncached:.3f} ({uncached / cached:.1f}x)")


if __name__ == "__main__":
    main()
