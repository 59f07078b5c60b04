"""Hostile pass on the versions of a remote file that jobs beside each other list (982a928: a
job whose listing after its command showed a version did not write a later one). Against the
private SLURM cluster, through an in-process engine; jobs wait on each other through files
under ``.akoflow/sync`` in the mount (bounded waits)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.test_engine_inprocess import run_to_end
from tests.hpc_runtime.test_declared_outputs import WAIT, Versions, versions
from tests.hpc_runtime.test_remote_provenance import export_prov
from tests.prov_support import ambiguous, relations

# `maker` changes shared.txt (p's) while `other`'s listing is taken, then removes it or puts
# p's version back (same size and time): its listings show it removed, or unchanged.
UNDONE = f"""\
name: undone
spec:
  runtime: hpc
  collect: none
  activities:
    - name: p
      run: printf 'p\\n' > shared.txt
    - name: maker
      dependsOn: [p]
      run: |
        wait_for() {{ {WAIT}; }}
        wait_for .akoflow/sync/other-started
        cp -p shared.txt /tmp/akf-undone-"$SLURM_JOB_ID"
        printf 'm\\n' >> shared.txt
        touch .akoflow/sync/maker-wrote
        wait_for '.akoflow/*/*-other-a1/files.after'
        sleep 1.5  # the engine learns of other's end first (listings CLOCK_SKEW apart)
        {{undo}}
        rm -f /tmp/akf-undone-"$SLURM_JOB_ID"
    - name: other
      dependsOn: [p]
      outputs: [o.txt]
      run: |
        wait_for() {{ {WAIT}; }}
        mkdir -p .akoflow/sync && touch .akoflow/sync/other-started
        wait_for .akoflow/sync/maker-wrote
        echo o > o.txt
"""

UNDO = {
    "removed": "rm shared.txt",
    "restored": 'cp -p /tmp/akf-undone-"$SLURM_JOB_ID" shared.txt',
}


@pytest.mark.parametrize("undo", sorted(UNDO))
def test_a_version_its_maker_then_removed_or_undid_is_not_the_catchers_alone(
    hpc_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, undo: str
) -> None:
    """``other``'s listing shows shared.txt changed (maker's append); maker's listings show
    it there before and then gone, or at p's version again: maker may have made the version
    other's listing caught. It was recorded as other's (other wrote nothing to it)."""
    monkeypatch.setenv("AKOFLOW_PROVENANCE", "on")
    mount = Path(hpc_env["HPC_MOUNT_PATH"])
    text = UNDONE.replace("{undo}", UNDO[undo])

    def read(repo: object, wf_id: int) -> Versions:
        return versions(repo, wf_id, "shared.txt")  # type: ignore[arg-type]

    found = run_to_end(tmp_path, text, read=read)
    assert (mount / "shared.txt").exists() is (undo == "restored")
    assert found == {(2, "p"), (4, "maker?other")}
    doc = export_prov(tmp_path / "state", "undone")
    _, generated = relations(doc)
    at = f"hpc:{mount}/"
    assert ("other", at + "shared.txt") not in generated
    assert ambiguous(doc) == {"shared.txt": {"maker", "other"}}
