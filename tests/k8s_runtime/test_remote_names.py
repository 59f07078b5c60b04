"""Remote provenance of files whose names are not plain text, through the real channel: a
BusyBox pod lists its volume into its log (every ``$`` doubled for Kubernetes), the engine
reads the listing back and stores each name exactly; a newline in a name forges no entry."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from akoflow.states import WorkflowState
from tests.k8s_runtime.conftest import IMAGE, engine_with, run
from tests.k8s_support.cluster import EmulatedCluster

SCRIPT = r"""touch "$(printf 'bad\377name.txt')"
touch "$(printf 'x\n5\t1.0\tforged')"
touch "$(printf 'q"u o\342\200\256te')"
mkdir "$(printf 'dir\376')"
echo in > "$(printf 'dir\376/in\001side')"
echo done
"""

NAMES = {
    b"bad\xffname.txt",
    b"x\n5\t1.0\tforged",
    'q"u o\u202ete'.encode(),
    b"dir\xfe/in\x01side",
}


def test_odd_names_on_the_volume_are_recorded_exactly(
    tmp_path: Path, cluster: EmulatedCluster
) -> None:
    body = "".join(f"        {line}\n" for line in SCRIPT.splitlines())
    text = (
        f"name: names\nspec:\n  runtime: k8s-aws\n  image: {IMAGE}\n  activities:\n"
        f"    - name: make\n      run: |\n{body}"
    )

    async def scenario() -> None:
        async with engine_with(tmp_path, text, cluster.env("k8s-aws")) as (repo, engine, wf_id):
            wf = await engine.attach(wf_id)
            state = await asyncio.wait_for(engine.wait(wf_id), 120)
            assert state is WorkflowState.SUCCEEDED, wf.activities["make"].reason
            made = {os.fsencode(r.path) for r in repo.list_files(wf_id) if r.role == "generated"}
            assert made == NAMES
            assert "".join(c.data for _, c in repo.read_logs(wf.activities["make"].id)) == "done\n"

    run(scenario())
