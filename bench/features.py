"""What each feature costs per activity on local: a wide run of ``true`` activities with
everything on, then with one feature off at a time, then with all of them off.

    .venv/bin/python bench/features.py                    # wide-2000, 5 rounds
    .venv/bin/python bench/features.py --n 5000 --rounds 7 --dir /dev/shm
    .venv/bin/python bench/run.py features                # the same, from the runner

Features: result caching (``AKOFLOW_CACHE=off``), the observation of file accesses
(``AKOFLOW_OBSERVE=off``: provenance inferred from timing instead), provenance as a whole
(``AKOFLOW_PROVENANCE=off``) and a cgroup per attempt (``LOCAL_CGROUPS=off``).
Each round runs every configuration once, one after the other, each on a fresh state dir;
the ratios are taken within a round and their median printed (this VM's speed drifts by 2x
within minutes: only same-minute comparisons mean anything). CPU is the whole tree's (the
engine, its spawners and every bash), from wait4. What an activity costs that no feature
explains is the engine, its spawners and bash themselves.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fs_state import deletion_note
from run import wide_yaml

PY = sys.executable
CONFIGS: dict[str, dict[str, str]] = {
    "everything on": {},
    "cache off": {"AKOFLOW_CACHE": "off"},
    "observation off": {"AKOFLOW_OBSERVE": "off"},  # provenance inferred from timing
    "provenance off": {"AKOFLOW_PROVENANCE": "off"},
    "cgroups off": {"LOCAL_CGROUPS": "off"},
    "all three off": {"AKOFLOW_CACHE": "off", "AKOFLOW_PROVENANCE": "off", "LOCAL_CGROUPS": "off"},
}


def one_run(wf: Path, state: Path, extra: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the whole tree) of one ``akoflow run``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AKOFLOW_", "LOCAL_"))}
    env.update(extra)
    argv = [PY, "-m", "akoflow", "run", str(wf), "--quiet", "--state-dir", str(state)]
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    assert proc.stderr is not None
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"akoflow run failed with {extra}:\n{err}")
    return wall, usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=2000, help="activities of the wide run")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dir", help="where the state dirs go (e.g. /dev/shm)")
    args = parser.parse_args()
    acts = args.n + 1
    with tempfile.TemporaryDirectory(prefix="akoflow-features-", dir=args.dir) as d:
        tmp = Path(d)
        if (note := deletion_note(tmp)) is not None:
            print(note, flush=True)
        wf = tmp / "wide.yaml"
        wf.write_text(wide_yaml(args.n))
        walls: dict[str, list[float]] = {name: [] for name in CONFIGS}
        cpus: dict[str, list[float]] = {name: [] for name in CONFIGS}
        for round_ in range(args.rounds):
            for i, (name, extra) in enumerate(CONFIGS.items()):
                state = tmp / f"state-{round_}-{i}"
                wall, cpu = one_run(wf, state, extra)
                walls[name].append(wall)
                cpus[name].append(cpu)
                # The next run creates as many files as this one: deleting them now would
                # slow its creates on some file systems (bench/fs_state.py); kept until the end.
            print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr, flush=True)
        base_w, base_c = walls["everything on"], cpus["everything on"]
        print(
            f"wide-{args.n} on local, {args.rounds} rounds (medians; ratios paired within a "
            "round, against everything on)"
        )
        for name in CONFIGS:
            w, c = walls[name], cpus[name]
            wall_ratio = statistics.median(x / b for x, b in zip(w, base_w, strict=True))
            saved = statistics.median((b - x) / acts * 1000 for x, b in zip(c, base_c, strict=True))
            line = (
                f"  {name:<16} {statistics.median(w):7.2f} s  "
                f"{statistics.median(w) / acts * 1000:5.2f} ms/act  "
                f"CPU {statistics.median(c) / acts * 1000:5.2f} ms/act"
            )
            if name != "everything on":
                line += f"  wall {wall_ratio:4.2f}x, CPU saved {saved:+.2f} ms/act"
            print(line, flush=True)


if __name__ == "__main__":
    main()
