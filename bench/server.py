"""Server-mode benchmarks, against the real server process on a fresh state dir.

    .venv/bin/python bench/server.py                  # both
    .venv/bin/python bench/server.py --workflows 500  # more submissions

* **submit**: N one-activity workflows posted at once through the API (16 connections):
  submissions per second until all are accepted, and until all have succeeded.
* **list-100k**: one workflow of 100,000 activities submitted through the API (validation and
  store timed), then pages of its activities listed while it runs (budget: < 100 ms a page),
  first, deep by offset, and every page walked by keyset.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

API = "/akoflow-api"
PY = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(state: Path, **env: str) -> tuple[subprocess.Popen[bytes], str, str]:
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("AKOFLOW_")} | env
    proc = subprocess.Popen(
        [PY, "-m", "akoflow", "server", "--port", str(port), "--state-dir", str(state)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=environ,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(url + "/akoflow-server/check-service/", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.05)
    token = (state / "api-token").read_text().strip()
    return proc, url, token


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


async def submit_many(url: str, token: str, n: int) -> tuple[float, list[int]]:
    headers = {"Authorization": f"Bearer {token}"}
    sem = asyncio.Semaphore(16)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=300) as client:

        async def one(i: int) -> int:
            text = f"name: s{i}\nspec:\n  activities:\n    - name: a\n      run: 'true'\n"
            async with sem:
                res = await client.post(API + "/workflows/", json={"workflow": b64(text)})
            res.raise_for_status()
            return int(res.json()["workflow_id"])

        start_t = time.perf_counter()
        ids = await asyncio.gather(*(one(i) for i in range(n)))
        return time.perf_counter() - start_t, ids


def bench_submit(tmp: Path, n: int) -> None:
    proc, url, token = start(tmp / "state-submit")
    try:
        t0 = time.perf_counter()
        accepted, ids = asyncio.run(submit_many(url, token, n))
        with httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60
        ) as api:
            while True:
                page = api.get(
                    API + "/workflows/",
                    params={"per_page": 1000, "unfinished": "true", "activities": "false"},
                ).json()
                if page["total"] == 0:
                    break
                time.sleep(0.05)
            done = time.perf_counter() - t0
            states = api.get(
                API + "/workflows/", params={"per_page": 1000, "activities": "false"}
            ).json()["data"]
        ok = sum(1 for w in states if w["state"] == "succeeded")
        print(
            f"{'submit':<11} {n:>6} workflows   accepted in {accepted:6.2f} s "
            f"({n / accepted:7.1f} submissions/s)  all succeeded in {done:6.2f} s "
            f"({n / done:6.1f} workflows/s)  [{ok}/{len(ids)} succeeded]"
        )
    finally:
        stop(proc)


def timed_get(api: httpx.Client, path: str, **params: object) -> tuple[float, dict[str, object]]:
    t = time.perf_counter()
    res = api.get(path, params=params)
    res.raise_for_status()
    return (time.perf_counter() - t) * 1000, res.json()


def bench_list(tmp: Path, n: int) -> None:
    # One slot: the workflow stays running while its pages are listed (the realistic case,
    # the engine busy on the same event loop).
    proc, url, token = start(tmp / "state-list", LOCAL_MAX_PARALLEL="1")
    try:
        text = "name: big\nspec:\n  activities:\n" + "".join(
            f"    - name: a{i}\n      run: 'true'\n" for i in range(n)
        )
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=url, headers=headers, timeout=600) as api:
            t = time.perf_counter()
            res = api.post(API + "/workflows/", json={"workflow": b64(text)})
            res.raise_for_status()
            submit_s = time.perf_counter() - t
            wf = res.json()["workflow_id"]
            path = f"{API}/workflows/{wf}/activities/"
            first, doc = timed_get(api, path, limit=100)
            assert doc["total"] == n, doc["total"]
            deep, _ = timed_get(api, path, limit=100, offset=n - 100)
            keyset_deep, _ = timed_get(api, path, limit=100, after=n - 101)
            big_page, _ = timed_get(api, path, limit=1000)
            walk: list[float] = []
            after = -1
            while True:
                ms, page = timed_get(api, path, limit=100, after=after)
                walk.append(ms)
                if page["nextAfter"] is None:
                    break
                after = int(str(page["nextAfter"]))
            light, _ = timed_get(api, f"{API}/workflows/{wf}/", activities="false")
            full, _ = timed_get(api, f"{API}/workflows/{wf}/")
            api.post(f"{API}/workflows/{wf}/cancel/")
        walk.sort()
        print(
            f"{'list-100k':<11} {n:>6} activities  submit (validate+store+attach) "
            f"{submit_s:6.2f} s; page of 100: first {first:5.1f} ms, offset {n - 100} "
            f"{deep:5.1f} ms, keyset deep {keyset_deep:5.1f} ms; page of 1000 {big_page:5.1f} ms\n"
            f"{'':<11} walk of {len(walk)} pages by keyset: median "
            f"{statistics.median(walk):5.1f} ms, p99 {walk[int(len(walk) * 0.99) - 1]:5.1f} ms, "
            f"max {walk[-1]:5.1f} ms  [budget < 100 ms a page]\n"
            f"{'':<11} workflow detail without activities {light:6.1f} ms; with all {n} "
            f"(upstream's shape) {full:7.1f} ms"
        )
    finally:
        stop(proc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("which", nargs="*", default=["submit", "list"])
    parser.add_argument("--workflows", type=int, default=200)
    parser.add_argument("--big", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="akoflow-bench-server-") as d:
        if "submit" in args.which:
            bench_submit(Path(d), args.workflows)
        if "list" in args.which:
            bench_list(Path(d), args.big)


if __name__ == "__main__":
    main()
