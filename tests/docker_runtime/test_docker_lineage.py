"""Exact lineage across runtimes: a docker activity (its processes known before its command
runs: the container waits for the engine's go) and a local one write into the data dir at the
same time; containers that end within milliseconds of their start; each file goes to its
writer, never ambiguous. Read back from the exported PROV."""

from __future__ import annotations

import io
from pathlib import Path

from prov.model import ProvDocument

from tests.conftest import Akoflow
from tests.docker_support.dockerd import IMAGE, PrivateDockerd
from tests.prov_support import ambiguous, mechanism, relations


def exported(akoflow: Akoflow, env: dict[str, str]) -> tuple[ProvDocument, str]:
    prov = akoflow("prov", "1", env=env)
    assert prov.returncode == 0, prov.stderr
    return ProvDocument.deserialize(io.StringIO(prov.stdout), format="json"), prov.stdout


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
    doc, text = exported(akoflow, docker_env)
    assert mechanism(doc) == "observed (fanotify)"
    used, generated = relations(doc)
    unsure = ambiguous(doc)
    assert unsure == {}, (unsure, generated)
    assert generated == {
        ("boxed", "docker.txt"),
        ("boxed", "child.txt"),
        ("plain", "local.txt"),
        ("reader", "copy.txt"),
    }, text
    assert used == {("reader", "local.txt")}, text


def test_containers_that_write_at_once_and_end_within_milliseconds(
    akoflow: Akoflow,
    docker_env: dict[str, str],
    dockerd: PrivateDockerd,
    tmp_path: Path,
) -> None:
    # The race of issue 15: a container's first (and only) write, made as its command
    # starts, and its end, all before the engine has asked the daemon for its pid. Several
    # at once, so that their starts overlap the engine's work on the others.
    wf = tmp_path / "quick.yaml"
    names = [f"quick{i}" for i in range(6)]
    wf.write_text(
        f"name: quick\nspec:\n  image: {IMAGE}\n  activities:\n"
        + "".join(
            f"    - name: {n}\n      runtime: docker\n      run: echo {n} > {n}.txt\n"
            for n in names
        )
    )
    data = tmp_path / "data"
    res = akoflow("run", str(wf), "--data-dir", str(data), env=docker_env)
    assert res.returncode == 0, res.stderr + res.stdout
    doc, text = exported(akoflow, docker_env)
    assert mechanism(doc) == "observed (fanotify)"
    used, generated = relations(doc)
    unsure = ambiguous(doc)
    assert unsure == {}, (unsure, generated)
    assert generated == {(n, f"{n}.txt") for n in names}, text
    assert used == set(), text
