"""Workflows on the Kubernetes runtime against the emulated cluster (TLS, token, real pods).

Each activity's pod really runs in a container of the private dockerd; files pass between
activities through the PVC (a host directory the kubelet bind-mounts).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from akoflow.states import ActivityState, WorkflowState
from tests.k8s_runtime.conftest import IMAGE, engine_with, run
from tests.k8s_support.cluster import EmulatedCluster

FAN = f"""\
name: fan
spec:
  runtime: k8s-aws
  image: {IMAGE}
  storagePolicy:
    type: standalone
    storageClassName: standard
    storageSize: 2Gi
  activities:
    - name: split
      run: |
        printf '%s\\n' "it's \\"quoted\\" \\$HOME" 3 4 > numbers.txt
        echo split done
    - name: left
      dependsOn: [split]
      cpuLimit: 500m
      memoryLimit: 64Mi
      run: sed -n 2p numbers.txt > left.txt
    - name: right
      dependsOn: [split]
      run: sed -n 3p numbers.txt > right.txt
    - name: join
      dependsOn: [left, right]
      run: |
        echo $(( $(cat left.txt) * $(cat right.txt) )) > product.txt
        head -n1 numbers.txt
        cat product.txt
"""


def test_fan_out_fan_in_passes_files_on_the_shared_volume(
    tmp_path: Path, cluster: EmulatedCluster
) -> None:
    async def scenario() -> None:
        async with engine_with(tmp_path, FAN, cluster.env("k8s-aws")) as (repo, engine, wf_id):
            wf = await engine.attach(wf_id)
            state = await asyncio.wait_for(engine.wait(wf_id), 120)
            reasons = {a.name: a.reason for a in wf.activities.values()}
            assert state is WorkflowState.SUCCEEDED, reasons
            join = wf.activities["join"]
            logs = "".join(c.data for _, c in repo.read_logs(join.id))
            assert logs == 'it\'s "quoted" $HOME\n12\n'
            split_logs = "".join(c.data for _, c in repo.read_logs(wf.activities["split"].id))
            assert split_logs == "split done\n"
            assert all(a.state is ActivityState.SUCCEEDED for a in wf.activities.values())

    run(scenario())
    # One shared PVC for the workflow, mounted by every activity's pod.
    pvcs = cluster.objects("v1/persistentvolumeclaims", "akoflow")
    assert len(pvcs) == 1
    assert pvcs[0]["spec"]["storageClassName"] == "standard"
    assert pvcs[0]["spec"]["resources"]["requests"]["storage"] == "2Gi"
    counts = cluster.counts()
    assert counts["create jobs"] == 4
    assert counts["create persistentvolumeclaims"] == 1
    # cleanup=always (default): every Job deleted once the engine stored everything, all
    # four in one request when the run ended.
    assert counts["deletecollection jobs"] == 1 and counts["delete jobs"] == 0
    assert cluster.objects("batch/v1/jobs", "akoflow") == []


DOLLARS = f"""\
name: dollars
spec:
  runtime: k8s-aws
  image: {IMAGE}
  activities:
    - name: literal
      env:
        GREETING: 'hi $(AKOFLOW_DATA_DIR) $$ $HOME'
      run: |
        printf '%s\\n' '$(AKOFLOW_DATA_DIR)' '$$' "$GREETING"
        echo "pid $$" | grep -q '^pid [0-9][0-9]*$' && echo pid ok
        echo "$((2 + 3)) $(echo sub)"
"""


def test_dollar_syntax_reaches_the_shell_untouched(
    tmp_path: Path, cluster: EmulatedCluster
) -> None:
    """Kubernetes expands $(NAME) and reads $$ as $ in a container's command and env values
    (the emulated kubelet does as a real one); the script and env still arrive verbatim."""

    async def scenario() -> None:
        async with engine_with(tmp_path, DOLLARS, cluster.env("k8s-aws")) as (
            repo,
            engine,
            wf_id,
        ):
            wf = await engine.attach(wf_id)
            state = await asyncio.wait_for(engine.wait(wf_id), 120)
            act = wf.activities["literal"]
            assert state is WorkflowState.SUCCEEDED, act.reason
            logs = "".join(c.data for _, c in repo.read_logs(act.id))
            assert logs == (
                "$(AKOFLOW_DATA_DIR)\n$$\nhi $(AKOFLOW_DATA_DIR) $$ $HOME\npid ok\n5 sub\n"
            )

    run(scenario())
