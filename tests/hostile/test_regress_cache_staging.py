"""Regression (hostile pass on issues 13/15 after result caching): two activities of one
decision batch restoring the same file.

A restore's temporary name was fixed per file name: sibling ``a``'s staged copy of ``out``
was removed and replaced by sibling ``b``'s (``b``'s own attempt to stage began by removing
what was there), ``a``'s commit renamed ``b``'s bytes into place and recorded them as the
version ``a`` made, and ``b``'s commit found nothing and ran it. The run's lineage then
said ``a`` generated ``out`` with content the file never held in that run, and had nothing
of ``b``'s write. The temporary names are per activity now.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tests.conftest import Akoflow

pytestmark = [pytest.mark.needs_root]  # reuse needs observed lineage (fanotify)

ONLY_A = "name: same\nspec:\n  activities:\n    - name: a\n      run: echo A > out\n"
ONLY_B = "name: same\nspec:\n  activities:\n    - name: b\n      run: echo B > out\n"
BOTH = ONLY_A + "    - name: b\n      run: echo B > out\n"


def test_two_reused_siblings_restoring_one_file_keep_their_own_copies(
    akoflow: Akoflow, tmp_path: Path
) -> None:
    for n, text in enumerate((ONLY_A, ONLY_B, BOTH), 1):
        wf = tmp_path / f"w{n}.yaml"
        wf.write_text(text)
        res = akoflow("run", str(wf), "--quiet")
        assert res.returncode == 0, res.stderr
    # a and b have the keys they had in runs 1 and 2: both reused, from two data dirs.
    status = json.loads(akoflow("status", "3", "--json").stdout)
    assert {a["name"]: a["state"] for a in status["activities"]} == {
        "a": "cached",
        "b": "cached",
    }
    data = Path(status["workflow"]["data_dir"])
    held = hashlib.sha256((data / "out").read_bytes()).hexdigest()
    listed = json.loads(akoflow("files", "3", "--json").stdout)
    assert [(f["path"], f["sha256"]) for f in listed] == [("out", held)]
    # Each reuse recorded the version it restored, with its own content.
    prov = akoflow("prov", "3", "--format", "json")
    assert prov.returncode == 0, prov.stderr
    doc = json.loads(prov.stdout)
    made = {
        v["prov:entity"]: v["prov:activity"].split("/")[-2]
        for v in doc.get("wasGeneratedBy", {}).values()
    }
    shas = {
        name: entity["akoflow:sha256"]
        for name, entity in doc["entity"].items()
        if entity.get("akoflow:path") == "out"
    }
    by_maker = {made[name]: sha for name, sha in shas.items()}
    assert by_maker == {
        "a": hashlib.sha256(b"A\n").hexdigest(),
        "b": hashlib.sha256(b"B\n").hexdigest(),
    }
    assert not list(data.glob(".*.akoflow-part"))
