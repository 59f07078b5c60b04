"""Scale (issue 20, item 2): 100,000 activities on local, end to end, while the state stays
readable.

    .venv/bin/python bench/scale.py                  # wide-100000 and fanouts-1000x100
    .venv/bin/python bench/scale.py wide --n 20000   # smaller, or one shape
    .venv/bin/python bench/run.py scale              # the same, from the benchmark runner

Each shape is submitted to a real ``akoflow server`` on a fresh state dir (the engine runs in
the server process, with the API and UI on its event loop: the busier case) and followed to
its end. Printed per shape: the time from the POST (validation and store included) to the
run's end, the server's peak RSS (wait4 of the process, its whole life), and, sampled every
``--every`` seconds while it runs, the latency of ``akoflow status ID`` (a fresh CLI process
on the same state dir, start-up included) and of the API's page of 100 activities (keyset,
at the rows the engine is busy with). Goals: < 150 s, < 500 MB, a page < 100 ms.

Before each shape it waits (up to 7 minutes) until a file create costs what it does on a quiet
file system, and prints that cost before and after: on ext4 without a journal, creates cost up
to 20x more for minutes after many deletions (bench/fs_state.py). ``--keep`` leaves the state
dirs in place instead of deleting them at the end (what the next benchmark would pay for).

Shapes: **wide** is N activities running ``true`` and a join depending on all of them;
**writes** (not run by default) is wide whose activities each write a file of their own
(what the provenance of their outputs costs at scale: it was quadratic once);
**fanouts** is LEVELS levels of WIDTH activities, each activity of a level depending on the
first activity of the level before (1,000 fan-outs of 100, one after the other: a critical
path of LEVELS activities with WIDTH-wide parallelism at every level).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fs_state import create_cost, deletion_note, settle
from run import floor_bash
from server import API, free_port

FLOOR_N = 1000  # `bash -c true` one after the other, before and after each shape

PY = sys.executable


def wide_yaml(n: int, *, writes: bool = False) -> str:
    parts = [f"name: {'writes' if writes else 'wide'}\nspec:\n  activities:\n"]
    run = "'echo {i} > out{i}'" if writes else "'true'"
    parts += [f"    - name: t{i}\n      run: {run.format(i=i)}\n" for i in range(n)]
    parts.append("    - name: join\n      dependsOn: [" + ", ".join(f"t{i}" for i in range(n)))
    parts.append("]\n      run: 'true'\n")
    return "".join(parts)


def fanouts_yaml(levels: int, width: int) -> str:
    parts = ["name: fanouts\nspec:\n  activities:\n"]
    for lv in range(levels):
        dep = f"      dependsOn: [l{lv - 1}-0]\n" if lv else ""
        parts += [f"    - name: l{lv}-{i}\n      run: 'true'\n{dep}" for i in range(width)]
    return "".join(parts)


def start_server(state: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AKOFLOW_")}
    proc = subprocess.Popen(
        [PY, "-m", "akoflow", "server", "--port", str(port), "--state-dir", str(state)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(1200):
        try:
            if httpx.get(url + "/akoflow-server/check-service/", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.05)
    return proc, url, (state / "api-token").read_text().strip()


def stop_server(proc: subprocess.Popen[bytes]) -> tuple[int, float]:
    """Stop the server; its peak RSS in bytes and the CPU seconds of its process tree (wait4:
    the whole life of the process, with the spawners it reaped and the activities they did)."""
    proc.terminate()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        time.sleep(0.1)
    else:
        proc.kill()
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_maxrss * 1024, usage.ru_utime + usage.ru_stime


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def one(name: str, text: str, n: int, tmp: Path, every: float) -> None:
    create_before = settle(tmp / "probes")
    floor_before = floor_bash(FLOOR_N) / FLOOR_N
    state = tmp / f"state-{name}"
    proc, url, token = start_server(state)
    status_ms: list[float] = []
    page_ms: list[float] = []
    status_failed: list[int] = []  # exit codes of `akoflow status` calls that failed
    slow: list[tuple[float, str, float]] = []  # (seconds since the POST, what, ms)
    done = threading.Event()
    try:
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=url, headers=headers, timeout=600) as api:
            t0 = time.perf_counter()
            res = api.post(
                API + "/workflows/",
                json={"workflow": base64.b64encode(text.encode()).decode()},
            )
            res.raise_for_status()
            submitted = time.perf_counter() - t0
            wf = int(res.json()["workflow_id"])
            detail = f"{API}/workflows/{wf}/"

            def sample() -> None:
                status_argv = [PY, "-m", "akoflow", "status", str(wf), "--state-dir", str(state)]
                with httpx.Client(base_url=url, headers=headers, timeout=600) as probe:
                    after = -1
                    while not done.wait(every):
                        t = time.perf_counter()
                        code = subprocess.run(
                            status_argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                        ).returncode
                        status_ms.append((time.perf_counter() - t) * 1000)
                        slow.append((t - t0, "status", status_ms[-1]))
                        if code:
                            status_failed.append(code)
                        t = time.perf_counter()
                        page = probe.get(
                            detail + "activities/", params={"limit": 100, "after": after}
                        )
                        page.raise_for_status()
                        page_ms.append((time.perf_counter() - t) * 1000)
                        slow.append((t - t0, "page", page_ms[-1]))
                        nxt = page.json()["nextAfter"]
                        after = -1 if nxt is None else int(nxt)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            while True:
                doc = api.get(detail, params={"activities": "false"}).json()["data"]
                if doc["state"] in ("succeeded", "failed", "cancelled"):
                    break
                time.sleep(0.5)
            wall = time.perf_counter() - t0
            done.set()
            sampler.join()
    finally:
        done.set()
        rss, cpu = stop_server(proc)
    floor_after = floor_bash(FLOOR_N) / FLOOR_N
    create_after = create_cost(tmp / "probes")
    floor = (floor_before + floor_after) / 2
    print(
        f"{name:<16} {n:>7} activities  {wall:7.1f} s end to end ({n / wall:6.0f} act/s, "
        f"submit {submitted:5.1f} s)  peak RSS {rss / 2**20:6.1f} MiB  {doc['state']}  "
        "[< 150 s, < 500 MB]"
    )
    print(
        f"{'':<16} the machine's floor, `bash -c true` serially: {floor * 1000:.2f} ms "
        f"(before {floor_before * 1000:.2f}, after {floor_after * 1000:.2f}); the run took "
        f"{wall / n * 1000:.2f} ms per activity, {wall / (n * floor):.2f}x the floor; "
        f"a file create cost {create_before * 1e6:.0f} us before, {create_after * 1e6:.0f} after",
        flush=True,
    )
    cores = os.cpu_count() or 1
    print(
        f"{'':<16} CPU of the server and all it started: {cpu:.1f} s, {cpu / n * 1000:.2f} ms "
        f"per activity; {cpu / (wall * cores):.0%} of the {cores} CPUs over the run",
        flush=True,
    )
    if status_ms:
        print(
            f"{'':<16} during the run: `akoflow status {wf}` median "
            f"{statistics.median(status_ms):6.0f} ms max {max(status_ms):6.0f} ms; "
            "API page of 100 median "
            f"{statistics.median(page_ms):5.1f} ms p90 {pct(page_ms, 0.9):5.1f} ms "
            f"max {max(page_ms):5.1f} ms ({len(page_ms)} samples)  [page < 100 ms]; "
            f"status failed {len(status_failed)} times {sorted(set(status_failed))}",
            flush=True,
        )
        # The slowest of each kind: status (a fresh process) is always slower than a page.
        worst = [
            sample
            for kind, count in (("status", 2), ("page", 3))
            for sample in sorted((s for s in slow if s[1] == kind), key=lambda s: -s[2])[:count]
        ]
        print(
            f"{'':<16} slowest samples: "
            + ", ".join(f"{what} {ms:.0f} ms at {at:.0f} s" for at, what, ms in worst),
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("which", nargs="*", default=["wide", "fanouts"])  # and: writes
    parser.add_argument("--n", type=int, default=100_000, help="activities of wide")
    parser.add_argument("--levels", type=int, default=1000)
    parser.add_argument("--width", type=int, default=100)
    parser.add_argument("--every", type=float, default=2.0, help="seconds between samples")
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the state dirs (deleting 400,000 files slows the next creates for minutes)",
    )
    args = parser.parse_args()
    # A kept dir is never deleted; else the one made here goes at the end.
    place: contextlib.AbstractContextManager[str] = (
        contextlib.nullcontext(tempfile.mkdtemp(prefix="akoflow-scale-"))
        if args.keep
        else tempfile.TemporaryDirectory(prefix="akoflow-scale-")
    )
    with place as d:
        tmp = Path(d)
        if args.keep:
            print(f"state dirs kept in {tmp}", flush=True)
        if (note := deletion_note(tmp)) is not None:
            print(note, flush=True)
        if "wide" in args.which:
            one("wide", wide_yaml(args.n), args.n + 1, tmp, args.every)
        if "writes" in args.which:
            one("writes", wide_yaml(args.n, writes=True), args.n + 1, tmp, args.every)
        if "fanouts" in args.which:
            name = f"fanouts-{args.levels}x{args.width}"
            text = fanouts_yaml(args.levels, args.width)
            one(name, text, args.levels * args.width, tmp, args.every)


if __name__ == "__main__":
    main()
