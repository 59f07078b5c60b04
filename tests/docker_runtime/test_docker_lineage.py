"""Exact lineage across runtimes: a docker activity (its processes found from the
container's first process) and a local one write into the data dir at the same time; each
file goes to its writer or, for a container's earliest writes, is ambiguous: never another
activity's. Read back from the exported PROV."""

from __future__ import annotations

import io
from pathlib import Path

from prov.model import ProvDocument

from tests.conftest import Akoflow
from tests.docker_support.dockerd import IMAGE, PrivateDockerd
from tests.prov_support import ambiguous, mechanism, relations


def test_a_docker_and_a_local_activity_writing_at_the_same_time(
    akoflow: Akoflow,
    docker_env: dict[str, str],
    dockerd: PrivateDockerd,
    tmp_path: Path,
) -> None:
    # Each waits for the other's file before it ends: both write while both run.
    wf = tmp_path / "both.yaml"
    wf.write_text(
        f"name: both\nspec:\n  image: {IMAGE}\n  activities:\n"
        "    - name: boxed\n      runtime: docker\n      run: |\n"
        "        echo d > docker.txt\n"
        "        sh -c 'echo child > child.txt'\n"
        "        until [ -e local.txt ]; do sleep 0.05; done\n"
        "    - name: plain\n      runtime: local\n      run: |\n"
        "        echo l > local.txt\n"
        "        until [ -e docker.txt ]; do sleep 0.05; done\n"
        "    - name: reader\n      runtime: docker\n      dependsOn: [boxed, plain]\n"
        "      run: cat local.txt > copy.txt\n"
    )
    data = tmp_path / "data"
    res = akoflow("run", str(wf), "--data-dir", str(data), env=docker_env)
    assert res.returncode == 0, res.stderr + res.stdout
    prov = akoflow("prov", "1", env=docker_env)
    assert prov.returncode == 0, prov.stderr
    doc = ProvDocument.deserialize(io.StringIO(prov.stdout), format="json")
    assert mechanism(doc) == "observed (fanotify)"
    used, generated = relations(doc)
    unsure = ambiguous(doc)
    truth = {
        "docker.txt": "boxed",
        "child.txt": "boxed",
        "local.txt": "plain",
        "copy.txt": "reader",
    }
    # Never a wrong generator. The local activity's file is always exact; a container's
    # first processes can run before the engine knows them (a known limit, issue 15: the
    # container is registered by its id, then by its first pid once inspect answers), and
    # their writes are then ambiguous, without a generator, never another activity's.
    assert ("plain", "local.txt") in generated, prov.stdout
    for activity, path in generated:
        assert truth[path] == activity, (path, prov.stdout)
    assert {path for _, path in generated} | set(unsure) == set(truth), prov.stdout
    assert set(unsure) <= {"docker.txt", "child.txt", "copy.txt"}, unsure
    for path, candidates in unsure.items():
        assert candidates <= {truth[path]}, (path, candidates)
    assert used <= {("reader", "local.txt")}, used
