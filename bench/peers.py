"""AkôFlow against its fastest Python peer (Parsl's ThreadPoolExecutor with bash apps) and
against the serial `bash -c true` floor, in the same run, interleaved (the machine's speed
drifts within minutes: only side-by-side numbers compare).

    .venv/bin/pip install -e '.[bench]'          # Parsl, for the benchmark only
    .venv/bin/python bench/peers.py              # wide-1000 and chain-100, 3 rounds
    .venv/bin/python bench/peers.py --rounds 5 --wide 500 --chain 50
    .venv/bin/python bench/run.py peers          # the same, from the benchmark runner

Each measurement is a fresh process, start-up included, as a user runs it:

- akoflow: ``akoflow run wf.yaml --quiet`` with a fresh state dir (durable state: every
  intent and end committed to SQLite before and after each process, logs captured);
- parsl: ``python bench/peers.py --parsl-child wide N`` (import, load a ThreadPoolExecutor
  config with as many threads as akoflow's local slots, N bash apps, wait, clean up), with
  its run dir in a fresh temporary directory; it keeps no durable state;
- floor: N x ``bash -c true`` one after the other, started from Python.

wide-N is N activities running ``true`` then a join depending on all of them; chain-N is N
activities each depending on the one before; one is a run of a single activity (the start-up:
no run can take less than it plus one bash process per activity, printed as each shape's
bound, when each activity needs bash). ``true`` is one plain command: akoflow starts the
program itself, without bash (akoflow.runtimes.plain_command, as GNU make does), while Parsl's
bash apps always run ``bash -c``. So each round also runs akoflow on ``true;`` (a separator:
a shell is needed), with bash under every activity as for any script that is not one plain
command (``akoflow+bash``); ``--command`` changes what the first akoflow runs. Parsl runs
``true`` in both. Each
round runs every contestant once, in turn; the medians and their ratios are printed (goals
of issue 20: wide akoflow/parsl <= 0.5, akoflow/floor <= 1.3; chain akoflow/parsl <= 0.5).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fs_state import deletion_note
from run import chain_yaml, wide_yaml  # the same workflows as bench/run.py's

PY = sys.executable
SLOTS = max(2, (os.cpu_count() or 1) * 2)  # akoflow's local default MAX_PARALLEL
SETTLE_SECONDS = 0.3  # after a resident run (Resident.run)
SHELL_COMMAND = "true;"  # what `true` is with a shell needed: not one plain command


def parsl_child(shape: str, n: int, run_dir: str) -> None:
    """The Parsl side: runs in its own process (start-up, imports and config included)."""
    import parsl
    from parsl.app.app import bash_app
    from parsl.config import Config
    from parsl.executors.threads import ThreadPoolExecutor

    @bash_app  # type: ignore[misc]
    def true(inputs: list[object] = ()) -> str:
        return "true"

    config = Config(
        executors=[ThreadPoolExecutor(max_threads=SLOTS, label="threads")],
        run_dir=run_dir,
        usage_tracking=0,
    )
    with parsl.load(config):
        if shape == "wide":
            futures = [true() for _ in range(n)]
            true(inputs=futures).result()
        else:
            fut = true()
            for _ in range(n - 1):
                fut = true(inputs=[fut])
            fut.result()


def children_cpu() -> float:
    """CPU seconds of every ended descendant this process has reaped (each reaped its own)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """Wall time and CPU time of the whole process tree (spawners, bash: all reaped)."""
    cpu = children_cpu()
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr.decode(errors="replace"))
        raise SystemExit(f"{argv[:4]} failed with exit code {proc.returncode}")
    return wall, children_cpu() - cpu


def run_akoflow(wf: Path, tmp: Path, tag: str, src: str | None = None) -> tuple[float, float]:
    state = Path(tempfile.mkdtemp(prefix=f"state-{tag}-", dir=tmp))
    # On its own (a resident engine the user runs must not serve these runs).
    env = {**os.environ, "AKOFLOW_RESIDENT": "0"}
    if src is not None:
        env["PYTHONPATH"] = src
    argv = [PY, "-m", "akoflow", "run", str(wf), "--quiet", "--state-dir", str(state)]
    return timed(argv, env=env)


class Resident:
    """A resident engine (``akoflow resident start``) of its own state dir, for the
    ``resident`` rows: the command hands the run to a copy of the server, whose CPU the
    server's reaped-children counters hold (not this process's)."""

    def __init__(self, tmp: Path) -> None:
        self.env = {**os.environ, "AKOFLOW_HOME": str(tmp / "resident-home")}
        self.env.pop("AKOFLOW_RESIDENT", None)
        subprocess.run(
            [PY, "-m", "akoflow", "resident", "start", "--idle", "1h"],
            env=self.env,
            check=True,
            stderr=subprocess.DEVNULL,
        )
        status = subprocess.run(
            [PY, "-m", "akoflow", "resident", "status", "--json"],
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
        )
        import json

        self.pid = int(json.loads(status.stdout)["pid"])

    def server_cpu(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_bytes().rsplit(b")", 1)[1].split()
        return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")  # cutime, cstime

    def run(self, wf: Path, tmp: Path, tag: str) -> tuple[float, float]:
        state = Path(tempfile.mkdtemp(prefix=f"state-{tag}-", dir=tmp))
        argv = [PY, "-m", "akoflow", "run", str(wf), "--quiet", "--state-dir", str(state)]
        before = self.server_cpu()
        wall, cpu = timed(argv, env=self.env)
        cpu += self.server_cpu() - before
        # The server starts the next copy's spawners as a copy ends (two interpreters, ~30 ms
        # on both cores): not while the next contestant runs.
        time.sleep(SETTLE_SECONDS)
        return wall, cpu

    def stop(self) -> None:
        subprocess.run(
            [PY, "-m", "akoflow", "resident", "stop"], env=self.env, stderr=subprocess.DEVNULL
        )


def run_parsl(shape: str, n: int, tmp: Path) -> tuple[float, float]:
    run_dir = tempfile.mkdtemp(prefix=f"parsl-{shape}-", dir=tmp)
    return timed([PY, __file__, "--parsl-child", shape, str(n), run_dir])


def run_floor(n: int) -> tuple[float, float]:
    cpu, start = children_cpu(), time.perf_counter()
    for _ in range(n):
        subprocess.run(["bash", "-c", "true"], check=True)
    return time.perf_counter() - start, children_cpu() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--wide", type=int, default=1000)
    parser.add_argument("--chain", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--command",
        default="true",
        help="what akoflow's activities run (default: true, started without bash; 'true;' "
        "needs bash)",
    )
    parser.add_argument(
        "--baseline",
        metavar="SRC",
        help="also run akoflow from this source tree (its src/ dir, e.g. of `git archive "
        "REV src | tar -x -C DIR`): before/after in the same run",
    )
    parser.add_argument(
        "--dir",
        metavar="DIR",
        help="where the runs' state and run dirs go (default: the system's temporary dir). "
        "A tmpfs (/dev/shm) measures the engines without the file system: on ext4 without "
        "a journal, files created after many deletions cost up to 20x more (bench/fs_state.py)",
    )
    parser.add_argument("--parsl-child", nargs=3, metavar=("SHAPE", "N", "RUN_DIR"))
    args = parser.parse_args()
    if args.parsl_child:
        shape, n, run_dir = args.parsl_child
        parsl_child(shape, int(n), run_dir)
        return
    try:
        import parsl  # noqa: F401
    except ImportError:
        raise SystemExit("Parsl is missing: .venv/bin/pip install -e '.[bench]'") from None
    # Byte-compiled first (with PYTHONDONTWRITEBYTECODE set, as on some machines, a tree
    # never compiled is compiled again at every start: 0.2-0.3 s of each run).
    trees = [str(Path(__file__).resolve().parent.parent / "src")]
    if args.baseline:
        trees.append(args.baseline)
    subprocess.run([PY, "-m", "compileall", "-q", *trees], check=True, stdout=subprocess.DEVNULL)
    times: dict[str, list[float]] = {}
    cpus: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="akoflow-peers-", dir=args.dir) as d:
        tmp = Path(d)
        if (note := deletion_note(tmp)) is not None:
            print(note, flush=True)
        wide, chain, one = tmp / "wide.yaml", tmp / "chain.yaml", tmp / "one.yaml"
        wide.write_text(wide_yaml(args.wide, args.command))
        chain.write_text(chain_yaml(args.chain, args.command))
        one.write_text(chain_yaml(1, args.command))
        wide_sh, chain_sh = tmp / "wide-sh.yaml", tmp / "chain-sh.yaml"
        wide_sh.write_text(wide_yaml(args.wide, SHELL_COMMAND))
        chain_sh.write_text(chain_yaml(args.chain, SHELL_COMMAND))
        print(
            f"akoflow's activities run: {args.command} (akoflow+bash: {SHELL_COMMAND})", flush=True
        )
        resident = Resident(tmp)
        contestants = {
            # A run of one activity: start-up (imports, store, engine) and one bash.
            "one akoflow": lambda: run_akoflow(one, tmp, "one"),
            "one resident": lambda: resident.run(one, tmp, "one-r"),
            "wide akoflow": lambda: run_akoflow(wide, tmp, "wide"),
            "wide akoflow+bash": lambda: run_akoflow(wide_sh, tmp, "wide-sh"),
            "wide baseline": lambda: run_akoflow(wide, tmp, "wide", args.baseline),
            "wide resident": lambda: resident.run(wide, tmp, "wide-r"),
            "wide parsl": lambda: run_parsl("wide", args.wide, tmp),
            "wide floor": lambda: run_floor(args.wide + 1),
            "chain akoflow": lambda: run_akoflow(chain, tmp, "chain"),
            "chain akoflow+bash": lambda: run_akoflow(chain_sh, tmp, "chain-sh"),
            "chain baseline": lambda: run_akoflow(chain, tmp, "chain", args.baseline),
            "chain resident": lambda: resident.run(chain, tmp, "chain-r"),
            "chain parsl": lambda: run_parsl("chain", args.chain, tmp),
            "chain floor": lambda: run_floor(args.chain),
        }
        if not args.baseline:
            del contestants["wide baseline"], contestants["chain baseline"]
        try:
            for r in range(args.rounds):
                line = []
                for name, run in contestants.items():
                    wall, cpu = run()
                    times.setdefault(name, []).append(wall)
                    cpus.setdefault(name, []).append(cpu)
                    line.append(f"{name} {wall:6.3f}")
                print(f"round {r + 1}: " + "  ".join(line), flush=True)
        finally:
            resident.stop()
    med = {name: statistics.median(v) for name, v in times.items()}
    print(f"medians of {args.rounds} rounds ({os.cpu_count()} CPUs, {SLOTS} slots/threads):")
    for shape, n in (("wide", args.wide + 1), ("chain", args.chain)):
        ako, parsl_, floor = med[f"{shape} akoflow"], med[f"{shape} parsl"], med[f"{shape} floor"]
        print(
            f"{shape + '-' + str(n):<11} akoflow {ako:7.3f} s  parsl {parsl_:7.3f} s  "
            f"floor {floor:7.3f} s  akoflow/parsl {ako / parsl_:5.2f}x  "
            f"akoflow/floor {ako / floor:5.2f}x  [{ako / n * 1000:.2f} ms/act]"
        )
        # The tree's CPU (the floor's: bash alone, and the loop starting it): what the
        # machine's cores bound; a run can not take less than its CPU / the cores.
        cpu = {k: statistics.median(cpus[f"{shape} {k}"]) for k in ("akoflow", "parsl", "floor")}
        print(
            f"{'':<11} CPU s: akoflow {cpu['akoflow']:.3f} [{cpu['akoflow'] / n * 1000:.2f} "
            f"ms/act]  parsl {cpu['parsl']:.3f}  floor {cpu['floor']:.3f} "
            f"[{cpu['floor'] / n * 1000:.2f} ms/act, the bash processes alone]"
        )
        # No run of this design can take less than its start-up plus the bash processes
        # themselves (one after the other in a chain, on every core when wide): what the
        # goals leave to the engine per activity, measured in the same minutes.
        res = med[f"{shape} resident"]
        res_cpu = statistics.median(cpus[f"{shape} resident"])
        print(
            f"{'':<11} resident {res:7.3f} s  resident/parsl {res / parsl_:5.2f}x  "
            f"resident/floor {res / floor:5.2f}x  CPU {res_cpu:.3f} s  (a resident engine "
            f"ran it: `akoflow resident start`; one activity {med['one resident']:.3f} s)"
        )
        sh = med[f"{shape} akoflow+bash"]
        print(
            f"{'':<11} akoflow+bash {sh:7.3f} s  akoflow+bash/parsl {sh / parsl_:5.2f}x  "
            f"akoflow+bash/floor {sh / floor:5.2f}x  (every activity under bash: '{SHELL_COMMAND}')"
        )
        bound = med["one akoflow"] + (floor if shape == "chain" else floor / (os.cpu_count() or 1))
        print(
            f"{'':<11} bound: start-up (a run of 1 activity) {med['one akoflow']:.3f} s + the "
            f"bash processes = {bound:.3f} s = {bound / parsl_:.2f}x parsl; akoflow beyond "
            f"it {(ako - bound) / n * 1000:.2f} ms/act (below 0: no bash under a plain command)"
        )
        if args.baseline:
            base = med[f"{shape} baseline"]
            print(
                f"{'':<11} baseline {base:7.3f} s  baseline/parsl {base / parsl_:5.2f}x  "
                f"baseline/floor {base / floor:5.2f}x  akoflow/baseline {ako / base:5.2f}x"
            )


if __name__ == "__main__":
    main()
