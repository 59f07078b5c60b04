"""The data plane's copies in the run's provenance (issue 17, item 4), for a real run against
the private SLURM cluster (local -> hpc -> hpc -> local): in the W3C PROV export read back
with ``prov``, each copy is an ``akoflow:Copy`` activity that used the version at its source
and generated the one at its destination (derived from it), with its locations, bytes,
SHA-256 and times, made for the attempt it names; every file entity is ``prov:atLocation``
the engine host or the cluster; a file fetched back to the host is the copy's version, no
version of its own. The lineage graph (the API route and the report) and the RO-Crate show
the same copies."""

from __future__ import annotations

import asyncio
import html
import io
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from prov.model import (
    PROV_LOCATION,
    PROV_TYPE,
    ProvActivity,
    ProvCommunication,
    ProvDerivation,
    ProvDocument,
    ProvGeneration,
    ProvUsage,
)
from rocrate.rocrate import ROCrate

from akoflow import report
from akoflow.provenance import lineage
from akoflow.provenance.crate import write_crate
from akoflow.provenance.names import display
from akoflow.provenance.prov_export import serialize, workflow_document
from akoflow.states import WorkflowState
from akoflow.store import Repository
from akoflow.store.repository import DataCopy
from tests.conftest import cli_env
from tests.e2e.test_engine_inprocess import engine_with
from tests.hpc_runtime.conftest import runtime_env
from tests.hpc_runtime.test_data_plane import PIPELINE
from tests.hpc_runtime.test_hpc_engine import states
from tests.server.conftest import API, Server, free_port
from tests.slurm_support.cluster import SlurmCluster


@dataclass
class Run:
    repo: Repository
    wf_id: int
    location: str  # the cluster's: hpc:<MOUNT_PATH>
    state: Path
    copies: list[DataCopy]


@pytest.fixture(scope="module")
def run(slurm_cluster: SlurmCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """The pipeline of test_data_plane.py, run once for this module's tests."""
    tmp_path = tmp_path_factory.mktemp("plane-prov")
    env = runtime_env(slurm_cluster, "hpc", "mount/plane-prov")
    Path(env["HPC_MOUNT_PATH"]).mkdir(parents=True, exist_ok=True)

    async def scenario() -> tuple[Repository, int]:
        async with engine_with(tmp_path, PIPELINE) as (repo, engine, wf_id):
            wf = await engine.attach(wf_id)
            state = await asyncio.wait_for(engine.wait(wf_id), timeout=90)
            assert state is WorkflowState.SUCCEEDED, states(wf)
            return repo, wf_id

    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        repo, wf_id = asyncio.run(scenario())
    try:
        location = f"hpc:{env['HPC_MOUNT_PATH']}"
        yield Run(repo, wf_id, location, tmp_path / "state", repo.list_data_copies(wf_id))
    finally:
        repo.close()


def prov_of(run: Run) -> ProvDocument:
    """The run's PROV-JSON export, read back with ``prov``."""
    text = serialize(workflow_document(run.repo, run.wf_id), "json")
    return ProvDocument.deserialize(io.StringIO(text), format="json")


def values(record: Any, attribute: Any) -> set[str]:
    return {str(v) for v in record.get_attribute(attribute)}


def one(record: Any, attribute: Any) -> str:
    (value,) = values(record, attribute)
    return value


def where(location: str) -> str:
    """A location as PROV's prov:Location and the report name it."""
    return location or "engine host"


def test_each_copy_is_a_prov_activity_from_one_version_to_the_other(run: Run) -> None:
    doc = prov_of(run)
    elements = {str(r.identifier): r for r in doc.get_records() if r.is_element()}
    locations = {
        i: one(e, "akoflow:location")
        for i, e in elements.items()
        if "prov:Location" in values(e, PROV_TYPE)
    }
    assert set(locations.values()) == {"engine host", run.location}
    # Every file entity lives somewhere: the engine host or the cluster, a declared Location.
    files = {i: e for i, e in elements.items() if e.get_attribute("akoflow:path")}
    at = {i: locations[one(e, PROV_LOCATION)] for i, e in files.items()}
    for i, e in files.items():
        remote = e.get_attribute("akoflow:location")
        assert at[i] == (one(e, "akoflow:location") if remote else "engine host"), i
        assert i.startswith("run:remote/" if remote else "run:file/"), i

    copies = [a for a in doc.get_records(ProvActivity) if "akoflow:Copy" in values(a, PROV_TYPE)]
    assert len(copies) == len(run.copies) == 5  # 2 up for total, 3 back for report
    used = {str(u.formal_attributes[0][1]): str(u.formal_attributes[1][1])
            for u in doc.get_records(ProvUsage)
            if "copy/" in str(u.formal_attributes[0][1])}  # fmt: skip
    generated: dict[str, set[str]] = {}  # entity -> what generated it
    for g in doc.get_records(ProvGeneration):
        generated.setdefault(str(g.formal_attributes[0][1]), set()).add(
            str(g.formal_attributes[1][1])
        )
    derived = {
        tuple(str(v) for _, v in d.formal_attributes[:3]) for d in doc.get_records(ProvDerivation)
    }
    informed = {
        (str(c.formal_attributes[0][1]), str(c.formal_attributes[1][1]))
        for c in doc.get_records(ProvCommunication)
    }
    by_id = {str(a.identifier).rsplit("/", 2)[-2:][-1]: a for a in copies}
    for number, copy in enumerate(run.copies, 1):
        activity = by_id[str(number)]
        identifier = str(activity.identifier)
        assert values(activity, "akoflow:bytes") == {str(copy.bytes)}
        assert values(activity, "akoflow:sha256") == {copy.sha256}
        assert locations[one(activity, "akoflow:source")] == where(copy.source)
        assert locations[one(activity, "akoflow:destination")] == where(copy.destination)
        assert activity.get_startTime().timestamp() == pytest.approx(copy.started_at, abs=1e-3)
        assert activity.get_endTime().timestamp() == pytest.approx(copy.ended_at, abs=1e-3)
        # It used the version at its source and generated the one at its destination.
        source = used[identifier]
        (made,) = [e for e, by in generated.items() if identifier in by]
        for entity, place in ((source, copy.source), (made, copy.destination)):
            assert one(files[entity], "akoflow:path") == display(copy.path)
            assert at[entity] == where(place)
        host = source if copy.source == "" else made
        assert values(files[host], "akoflow:sha256") == {copy.sha256}
        assert (made, source, identifier) in derived
        # Made for the attempt it names: total needed the inputs, report what the cluster made.
        reader = "total" if copy.destination == run.location else "report"
        attempt = one(activity, "akoflow:forActivity")
        assert attempt.endswith(f"activity/{reader}/1")
        assert (attempt, identifier) in informed  # the attempt was informed by its copy
    # A file fetched back to the host is its copy's version: generated by the copy alone (no
    # attempt, no ambiguity), used by the activity that needed it.
    back = [c for c in run.copies if c.destination == ""]
    assert {c.path for c in back} == {"sum.txt", "lines.txt", "odd-copy.txt"}
    for copy in back:
        (entity,) = [i for i in files if at[i] == "engine host" and one(files[i], "akoflow:path")
                     == copy.path]  # fmt: skip
        assert all("copy/" in g for g in generated[entity]), generated[entity]
        assert not files[entity].get_attribute("akoflow:attribution")
    # The files the engine put on the cluster are no inputs found there before the run.
    assert not [e for e in elements if e.endswith("inputs")]


def test_the_turtle_export_says_atLocation_and_Copy(run: Run) -> None:
    text = serialize(workflow_document(run.repo, run.wf_id), "ttl")
    assert "prov:atLocation" in text
    assert text.count("akoflow:Copy") >= len(run.copies)


def node(location: str, path: str) -> str:
    return "file:" + quote(os.fsencode(f"{location}/{path}" if location else path), safe="/")


def test_the_lineage_route_and_the_report_show_the_copies(run: Run) -> None:
    expected = {(node(c.destination, c.path), node(c.source, c.path)) for c in run.copies}
    graph = lineage.of_run(run.repo, run.wf_id)
    assert {(e.source, e.target) for e in graph.edges if e.label == "copiedFrom"} == expected
    kinds = {n.id: n.type for n in graph.nodes}
    # Only copied there: the cluster's inputs, the host's files fetched back.
    assert kinds[node(run.location, "in/numbers.txt")] == "copy"
    assert kinds[node("", "sum.txt")] == "copy"
    assert kinds[node("", "in/numbers.txt")] == "file"  # prepare generated it
    assert kinds[node(run.location, "sum.txt")] == "file"  # total generated it

    server = Server(state_dir=run.state, port=free_port(), env=cli_env())
    server.start()
    try:
        with server.client() as api:
            res = api.get(f"{API}/workflows/{run.wf_id}/lineage/")
        assert res.status_code == 200, res.text
        served = res.json()["data"]
    finally:
        server.stop()
    edges = {(e["from"], e["to"]) for e in served["edges"] if e["label"] == "copiedFrom"}
    assert edges == expected
    assert {n["id"]: n["type"] for n in served["nodes"] if n["id"] in kinds} == kinds

    page = report.render(run.repo, run.wf_id)
    rows = [
        [
            html.unescape(re.sub(r"<[^>]+>", "", cell))
            for cell in re.findall(r"<td[^>]*>(.*?)</td>", row)
        ]
        for row in re.findall(r"<tr class=copy>(.*?)</tr>", page)
    ]
    assert [(r[0], r[1], r[2], r[5], r[6]) for r in rows] == [
        (display(c.path), where(c.source), where(c.destination),
         "total" if c.destination else "report", c.sha256[:16])
        for c in run.copies
    ]  # fmt: skip
    assert f"<h3>Copies ({len(run.copies)}," in page
    # The host's sum.txt is shown as a copy of the cluster's, not a file of no generator.
    (row,) = re.findall(r"<tr><td><code>sum\.txt</code></td><td>(.*?)</td>", page)
    assert html.unescape(re.sub(r"<[^>]+>", "", row)) == f"copy of {run.location}/sum.txt"


def test_the_ro_crate_has_a_create_action_per_copy(run: Run, tmp_path: Path) -> None:
    dest = write_crate(run.repo, run.wf_id, tmp_path / "crate")
    crate = ROCrate(dest)  # the library reads it back
    graph = {
        e["@id"]: e for e in json.loads((dest / "ro-crate-metadata.json").read_text())["@graph"]
    }
    for number, copy in enumerate(run.copies, 1):
        action = graph[f"#copy-{number}"]
        assert crate.get(f"#copy-{number}") is not None
        assert action["@type"] == "CreateAction"
        assert action["instrument"] == {"@id": "#akoflow-engine"}
        assert (action["akoflowSource"], action["akoflowDestination"]) == (
            where(copy.source),
            where(copy.destination),
        )
        assert (action["contentSize"], action["sha256"]) == (str(copy.bytes), copy.sha256)
        ((source,), (result,)) = action["object"], action["result"]
        ends = [graph[source["@id"]], graph[result["@id"]]]
        assert [e["akoflowLocation"] for e in ends] == [where(copy.source), where(copy.destination)]
        assert {e["name"] for e in ends} == {
            display(f"{p}/{copy.path}" if p else copy.path) for p in (copy.source, copy.destination)
        }
        reader = "total" if copy.destination else "report"
        assert action["akoflowForActivity"] == {"@id": f"#activity-{reader}-attempt-1"}
    mentioned = {m["@id"] for m in graph["./"]["mentions"]}
    assert {f"#copy-{n}" for n in range(1, len(run.copies) + 1)} <= mentioned
