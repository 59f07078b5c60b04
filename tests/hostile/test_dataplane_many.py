"""Hostile pass on the data plane (issue 17): hundreds of small files in one attempt, both
ways (to the cluster before it, back after it), and names with odd bytes (not UTF-8, a
newline, a leading dash, 255 bytes long) through copies made at once."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from akoflow.dataplane.mover import PART_SUFFIX
from akoflow.states import WorkflowState
from tests.e2e.test_engine_inprocess import engine_with
from tests.hpc_runtime.test_hpc_engine import states

pytestmark = [pytest.mark.slurm, pytest.mark.needs_root]

N = 120  # 300 measured once: 5.9 s up (4 at once), 3.8 s back (one by one)

MANY = f"""\
name: many
spec:
  activities:
    - name: make
      runtime: local
      run: |
        mkdir -p in
        i=0; while [ $i -lt {N} ]; do echo "in $i" > in/$i.txt; i=$((i+1)); done
    - name: work
      runtime: hpc
      dependsOn: [make]
      run: |
        mkdir -p out
        for f in in/*.txt; do b=${{f#in/}}; sed 's/in/out/' "$f" > "out/$b"; done
"""


def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_hundreds_of_small_files_each_way(hpc_env: dict[str, str], tmp_path: Path) -> None:
    data = tmp_path / "data"
    mount = Path(hpc_env["HPC_MOUNT_PATH"])
    peak = [0]

    async def scenario() -> tuple[float, float]:
        async with engine_with(tmp_path, MANY) as (repo, engine, wf_id):
            before = fds()
            wf = await engine.attach(wf_id)
            waiting = asyncio.ensure_future(engine.wait(wf_id))
            while not waiting.done():
                peak[0] = max(peak[0], fds() - before)
                await asyncio.sleep(0.02)
            assert waiting.result() is WorkflowState.SUCCEEDED, states(wf)
            made = repo.list_data_copies(wf_id)
            up = [c for c in made if c.destination != ""]
            back = [c for c in made if c.destination == ""]
            assert len(up) == N and len(back) == N
            span = lambda cs: max(c.ended_at for c in cs) - min(c.started_at for c in cs)  # noqa: E731
            return span(up), span(back)

    started = time.monotonic()
    up, back = asyncio.run(scenario())
    print(
        f"\n{N} files up in {up:.2f} s, back in {back:.2f} s, "
        f"run {time.monotonic() - started:.2f} s, fd peak +{peak[0]}"
    )
    for i in range(N):
        assert (mount / "in" / f"{i}.txt").read_text() == f"in {i}\n"
        assert (data / "out" / f"{i}.txt").read_text() == f"out {i}\n"
    assert not [p for p in data.rglob("*") if p.name.endswith(PART_SUFFIX)]
    assert not [p for p in mount.rglob("*") if p.name.endswith(PART_SUFFIX)]
    assert peak[0] < 100  # bounded: copies at once are gated, nothing is left open


# Names as bytes: not UTF-8, newlines (also a final one), a leading dash, spaces, shell and
# printf metacharacters, and one of 255 bytes (the longest a name can be: its temporary name
# cannot be longer, it is a hash).
ODD = [
    b"odd\xffname",
    b"new\nline",
    b"trail\n",
    b"-rf",
    b" lead and trail ",
    b"$(touch pwned)",
    b"back`tick`\\n%s%d",
    b"*",
    b"L" * 255,
    b"\xc3\xa9t\xc3\xa9",
]

ODD_FLOW = """\
name: odd
spec:
  activities:
    - name: copy
      runtime: hpc
      run: |
        mkdir -p out
        for f in *; do if [ -f "$f" ]; then cp -- "$f" "out/$f"; fi; done
"""


def test_odd_names_through_copies_made_at_once(hpc_env: dict[str, str], tmp_path: Path) -> None:
    data = tmp_path / "data"
    mount = Path(hpc_env["HPC_MOUNT_PATH"])
    raw = os.fsencode(data)
    os.makedirs(raw)
    for i, name in enumerate(ODD):
        with open(raw + b"/" + name, "wb") as f:
            f.write(b"content %d of " % i + name + b"\n")

    async def scenario() -> None:
        async with engine_with(tmp_path, ODD_FLOW) as (_, engine, wf_id):
            wf = await engine.attach(wf_id)
            state = await asyncio.wait_for(engine.wait(wf_id), timeout=90)
            assert state is WorkflowState.SUCCEEDED, states(wf)

    asyncio.run(scenario())
    there = os.fsencode(mount)
    for i, name in enumerate(ODD):
        want = b"content %d of " % i + name + b"\n"
        with open(there + b"/" + name, "rb") as f:
            assert f.read() == want, name
        with open(raw + b"/out/" + name, "rb") as f:
            assert f.read() == want, name
    assert not (mount / "pwned").exists() and not (data / "pwned").exists()
    assert not [p for p in data.rglob("*") if p.name.endswith(PART_SUFFIX)]
    assert not [p for p in mount.rglob("*") if p.name.endswith(PART_SUFFIX)]
