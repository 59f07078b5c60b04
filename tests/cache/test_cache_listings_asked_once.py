"""A decision asks for the paths to leave out of an activity's listings once, not once per
directory listed: each ask reads every path the run generated from the store, and an
activity that ran `find` over thousands of directories made its decision quadratic (3,000
directories: 12 s instead of 2 s). Found by a hostile pass on cda289c, which dropped the
per-request memo of that ask."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from akoflow.cache.decide import Decider, Hit, Request
from akoflow.cache.files import Hasher
from akoflow.cache.store import CacheStore
from akoflow.service import open_repository
from tests.conftest import Akoflow

WALKED = """\
name: walked
spec:
  runtime: local
  activities:
    - name: make
      run: for i in 1 2 3 4 5 6; do mkdir -p d/$i; echo $i > d/$i/f; done
    - name: walk
      dependsOn: [make]
      run: find . | sort > all.txt
"""


def test_a_decision_asks_once_what_to_leave_out_of_its_listings(
    akoflow: Akoflow, tmp_path: Path, state_dir: Path
) -> None:
    wf = tmp_path / "walked.yaml"
    wf.write_text(WALKED)
    res = akoflow("run", str(wf), "--json")
    assert res.returncode == 0, res.stderr
    data_dir = Path(json.loads(res.stdout)["workflow"]["data_dir"])
    asked: list[str] = []

    def unrelated() -> set[str]:
        asked.append("unrelated")
        return {"all.txt"}  # its own: in the data dir now, not when it listed it

    with contextlib.closing(open_repository(state_dir)) as repo:
        store = CacheStore(repo)
        key, components = store._exec(
            "SELECT key, components FROM cache_entries WHERE activity_name = 'walk'"
        ).fetchone()
        [entry] = store.candidates(key, not_in=None)
        listed = [p for p, sha, _ in entry.reads if sha.startswith("listing:")]
        assert len(listed) > 6, entry.reads  # the data dir, d, and each d/N
        request = Request(
            None, "walked", "walk", key, json.loads(components), data_dir, unrelated=unrelated
        )
        decision = Decider(store, Hasher()).decide(request)
    assert isinstance(decision, Hit), decision
    assert asked == ["unrelated"]  # not once per directory listed
