"""Provenance of a fan-out/fan-in run that passes files, exported as W3C PROV and read back
with the ``prov`` library in every format.

work-1 and work-2 run side by side; the engine runs as root, so each attempt's reads and
writes are observed (see akoflow.provenance)."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
from prov.model import (
    ProvActivity,
    ProvDocument,
    ProvMembership,
)

from akoflow.provenance.snapshot import changes, scan
from tests.prov_support import derivations, mechanism, paths_of, relations

WORKFLOW = """\
name: fan
spec:
  activities:
    - name: split
      run: |
        cat input.txt > part-1.txt
        cat input.txt input.txt > part-2.txt
    - name: work-1
      dependsOn: [split]
      run: wc -c < part-1.txt > out-1.txt
    - name: work-2
      dependsOn: [split]
      run: |
        sleep 1
        wc -c < part-2.txt > out-2.txt
    - name: join
      dependsOn: [work-1, work-2]
      run: cat out-1.txt out-2.txt > result.txt
"""


def akoflow(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "akoflow", *args], cwd=cwd, capture_output=True, text=True
    )


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("prov")
    (root / "wf.yaml").write_text(WORKFLOW)
    data = root / "data"
    data.mkdir()
    (data / "input.txt").write_text("seed\n")
    # The state dir inside the data dir on purpose: AkôFlow's own files are not provenance.
    done = akoflow(
        "run", "wf.yaml", "--state-dir", "data/.state", "--data-dir", "data", "-q", cwd=root
    )
    assert done.returncode == 0, done.stderr
    return root


def export(run_dir: Path, fmt: str) -> ProvDocument:
    done = akoflow("prov", "fan", "--state-dir", "data/.state", "--format", fmt, cwd=run_dir)
    assert done.returncode == 0, done.stderr
    if fmt == "ttl":
        return ProvDocument.deserialize(io.StringIO(done.stdout), format="rdf", rdf_format="turtle")
    return ProvDocument.deserialize(io.StringIO(done.stdout), format=fmt)


@pytest.mark.parametrize("fmt", ["json", "ttl"])
# prov's RDF reader calls an rdflib API that rdflib 7 deprecates.
@pytest.mark.filterwarnings("ignore:Dataset.default_context is deprecated:DeprecationWarning")
def test_prov_relations_of_a_fan_out_fan_in(run_dir: Path, fmt: str) -> None:
    doc = export(run_dir, fmt)
    used, generated = relations(doc)
    assert generated == {
        ("split", "part-1.txt"),
        ("split", "part-2.txt"),
        ("work-1", "out-1.txt"),
        ("work-2", "out-2.txt"),
        ("join", "result.txt"),
    }
    # Each activity used what it read (observed): one input from before the run, one of the
    # two parts, the two outputs; nothing it merely could have read.
    assert used == {
        ("split", "input.txt"),
        ("work-1", "part-1.txt"),
        ("work-2", "part-2.txt"),
        ("join", "out-1.txt"),
        ("join", "out-2.txt"),
    }
    assert derivations(doc) == {
        ("part-1.txt", "input.txt"),
        ("part-2.txt", "input.txt"),
        ("out-1.txt", "part-1.txt"),
        ("out-2.txt", "part-2.txt"),
        ("result.txt", "out-1.txt"),
        ("result.txt", "out-2.txt"),
    }
    assert mechanism(doc) == "observed (fanotify)"
    members = {
        paths_of(doc)[str(m.formal_attributes[1][1])] for m in doc.get_records(ProvMembership)
    }
    assert members == {"input.txt"}
    (inputs,) = [e for e in doc.get_records() if str(e.identifier).endswith("inputs")]
    assert "prov:Collection" in {str(t) for t in inputs.get_asserted_types()}
    assert not any(".state" in path for _, path in used | generated)


def test_prov_has_agents_times_and_the_dag(run_dir: Path) -> None:
    doc = export(run_dir, "json")
    provn = akoflow("prov", "fan", "--state-dir", "data/.state", "-f", "provn", cwd=run_dir)
    assert provn.returncode == 0
    text = provn.stdout
    assert 'agent(run:runtime/local, [prov:type="prov:SoftwareAgent"' in text
    assert "actedOnBehalfOf(run:runtime/local, akoflow:engine" in text
    assert "wasAssociatedWith(run:activity/join/1, run:runtime/local, run:workflow)" in text
    assert "wasInformedBy(run:activity/join/1, run:activity/work-1/1)" in text
    activities = list(doc.get_records(ProvActivity))
    assert len(activities) == 4
    for act in activities:
        start, end = act.get_startTime(), act.get_endTime()
        assert start is not None and end is not None and start <= end
    sizes = {
        str(next(iter(e.get_attribute("akoflow:path")))): next(
            iter(e.get_attribute("akoflow:size"))
        )
        for e in doc.get_records()
        if e.is_element() and e.get_attribute("akoflow:path")
    }
    assert sizes["part-2.txt"] == 10 and sizes["input.txt"] == 5


def test_unknown_format_is_a_clear_error(run_dir: Path) -> None:
    done = akoflow("prov", "fan", "--state-dir", "data/.state", "-f", "dot", cwd=run_dir)
    assert done.returncode == 2 and "use one of json, provn, ttl" in done.stderr


def test_snapshot_changes_and_cheap_checksums(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("bb")
    first = scan(tmp_path)
    assert set(first) == {"a.txt", "sub/b.txt"} and first["sub/b.txt"].size == 2
    assert first["a.txt"].sha256 == (
        "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb"
    )
    (tmp_path / "a.txt").write_text("changed")
    (tmp_path / "c.txt").write_text("c")
    (tmp_path / "sub" / "b.txt").unlink()
    change = changes(first, scan(tmp_path, first))
    assert set(change.created) == {"c.txt"}
    assert set(change.modified) == {"a.txt"}
    assert set(change.deleted) == {"sub/b.txt"}


def test_run_crate_read_back_with_rocrate(run_dir: Path) -> None:
    from rocrate.rocrate import ROCrate

    out = run_dir / "crate"
    done = akoflow("crate", "fan", "--state-dir", "data/.state", "-o", "crate", cwd=run_dir)
    assert done.returncode == 0, done.stderr
    crate = ROCrate(out)
    conforms = {c["@id"] for c in crate.root_dataset["conformsTo"]}
    assert "https://w3id.org/ro/wfrun/workflow/0.5" in conforms
    workflow = crate.mainEntity
    assert workflow.id == "workflow.yaml" and "name: fan" in (out / "workflow.yaml").read_text()
    actions = {a.id: a for a in crate.get_entities() if a.type == "CreateAction"}
    run = actions["#run-1"]
    assert run["instrument"].id == "workflow.yaml"
    status = run["actionStatus"]  # a reference to schema.org, read back as its id
    assert getattr(status, "id", status) == "http://schema.org/CompletedActionStatus"
    assert {e.id for e in run["object"]} == {"data/input.txt"}
    assert {e.id for e in run["result"]} == {
        f"data/{f}" for f in ("part-1.txt", "part-2.txt", "out-1.txt", "out-2.txt", "result.txt")
    }
    join = actions["#activity-join-attempt-1"]
    assert join["instrument"].id == "#activity-join"
    assert {e.id for e in join["result"]} == {"data/result.txt"}
    assert {"data/out-1.txt", "data/out-2.txt"} <= {e.id for e in join["object"]}
    assert join["akoflowRuntime"] == "local" and join["exitCode"] == 0
    assert (out / "data" / "result.txt").read_text() == "5\n10\n"
    again = akoflow("crate", "fan", "--state-dir", "data/.state", "-o", "crate", cwd=run_dir)
    assert again.returncode == 2 and "not empty" in again.stderr


def test_run_crate_without_data_references_the_files(run_dir: Path) -> None:
    from rocrate.rocrate import ROCrate

    done = akoflow(
        "crate", "fan", "--state-dir", "data/.state", "-o", "refs", "--no-data", cwd=run_dir
    )
    assert done.returncode == 0, done.stderr
    assert not (run_dir / "refs" / "data").exists()
    ids = {e.id for e in ROCrate(run_dir / "refs").get_entities() if e.type == "File"}
    assert (run_dir / "data" / "result.txt").absolute().as_uri() in ids


def test_a_dependent_uses_its_input_while_an_unrelated_activity_still_runs(
    tmp_path: Path,
) -> None:
    """`slow` runs across `make`'s write, so who wrote a.txt is only decided once `slow` ends;
    `read` starts before that and is still recorded as using its dependency's output."""
    from akoflow import service

    (tmp_path / "wf.yaml").write_text(
        "name: overlap\nspec:\n  activities:\n"
        "    - name: slow\n      run: sleep 1.5\n"
        "    - name: make\n      run: echo a > a.txt\n"
        "    - name: read\n      dependsOn: [make]\n      run: cat a.txt > b.txt\n"
    )
    done = akoflow(
        "run", "wf.yaml", "--state-dir", "state", "--data-dir", "data", "-q", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    repo = service.open_repository(tmp_path / "state")
    files = {(f.activity, f.role, f.path) for f in repo.list_files(1)}
    assert ("make", "generated", "a.txt") in files
    assert ("read", "used", "a.txt") in files
    assert ("read", "generated", "b.txt") in files
    assert not any(a == "slow" and role == "generated" for a, role, _ in files)
