"""File names are bytes: a real run (local runtime, through the CLI) whose activity creates
files named with every byte but NUL and '/', quotes, newlines, '%41', a bidi override and
255-byte names, then every export of it: PROV-JSON, PROV-N and Turtle without a warning and
with each file exactly once under an IRI that decodes back to its bytes, the RO-Crate with a
portable copy of each, the HTML report, and the API's lineage graph (see
akoflow.provenance.names for the scheme)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from urllib.parse import unquote, unquote_to_bytes

import pytest
import rdflib

from tests.conftest import cli_env
from tests.server.conftest import API, Server, free_port

NS = "https://akoflow.dev/ns#workflow/1/"
OBSERVED_LINE = "file accesses of run 1: observed (fanotify)\n"

WORKFLOW = r"""name: names
spec:
  activities:
    - name: make
      run: |
        for i in $(seq 1 255); do
          [ "$i" -eq 47 ] && continue
          printf -v esc '\\x%02x' "$i"
          printf -v mid "in-%02x-${esc}-end" "$i"
          printf x > "./$mid"
          if [ "$i" -ne 46 ]; then printf -v one "$esc"; printf y > "./$one"; fi
        done
        printf s > 'a file.txt'
        printf s > 'q"uote.txt'
        printf s > "it's.txt"
        printf s > $'new\nline.txt'
        printf s > '%41'
        printf s > 'x#y'
        printf s > 'x?y'
        printf s > $'\xe2\x80\xae-rtl.txt'
        printf -v long '%255s' ''; printf s > "${long// /L}"
        printf -v ff '%255s' ''; ff=${ff// /\\xff}; printf -v ff "$ff"; printf s > "$ff"
        printf -v ee '%127s' ''; ee=${ee// /\\xc3\\xa9}; printf -v ee "${ee}x"; printf s > "$ee"
        mkdir $'sub dir\xfe'; printf s > $'sub dir\xfe/inner\nfile'
    - name: use
      dependsOn: [make]
      run: cat ./%41 > used-it.txt
"""

INPUT = b"in\xff put.txt"  # in place before the run


def made_by_make() -> set[bytes]:
    names = set()
    for i in range(1, 256):
        if i == 0x2F:
            continue
        names.add(b"in-%02x-%c-end" % (i, i))
        if i != 0x2E:
            names.add(bytes([i]))
    names |= {
        b"a file.txt",
        b'q"uote.txt',
        b"it's.txt",
        b"new\nline.txt",
        b"%41",
        b"x#y",
        b"x?y",
        "\u202e-rtl.txt".encode(),
        b"L" * 255,
        b"\xff" * 255,
        "é".encode() * 127 + b"x",
        b"sub dir\xfe/inner\nfile",
    }
    return names


GENERATED = made_by_make() | {b"used-it.txt"}
ALL = GENERATED | {INPUT}


def akoflow(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "akoflow", *args, "--state-dir", "state"],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=cli_env(PYTHONWARNINGS="always"),  # every warning shows, deprecations too
        timeout=120,
    )


def files_in(root: Path) -> set[bytes]:
    base = os.fsencode(root)
    found = set()
    for directory, _, names in os.walk(base):
        for name in names:
            found.add(os.path.relpath(os.path.join(directory, name), base))
    return found


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("names")
    (root / "wf.yaml").write_text(WORKFLOW)
    data = root / "data"
    data.mkdir()
    Path(os.fsdecode(os.path.join(os.fsencode(data), INPUT))).write_text("input")
    done = akoflow("run", "wf.yaml", "--data-dir", "data", "-q", cwd=root)
    assert done.returncode == 0, done.stderr
    assert files_in(data) == ALL  # the script made what this test expects
    return root


def _version_path(iri: str, prefix: str) -> bytes:
    """The file path in an entity IRI ``<prefix><encoded path>@<version>``."""
    assert iri.startswith(prefix), iri
    encoded, at, version = iri[len(prefix) :].rpartition("@")
    assert at and version
    return unquote_to_bytes(encoded)


def test_prov_json_has_every_name_once_without_warnings(run_dir: Path) -> None:
    done = akoflow("prov", "1", "--format", "json", cwd=run_dir)
    # Nothing on stderr but how the accesses were known: no warning.
    assert done.returncode == 0 and done.stderr == OBSERVED_LINE, done.stderr
    doc = json.loads(done.stdout)
    seen = Counter()
    for key, attrs in doc["entity"].items():
        if not key.startswith("run:file/"):
            continue
        path = _version_path(key, "run:file/")
        seen[path] += 1
        assert unquote_to_bytes(attrs["akoflow:pathBytes"]) == path
        shown = attrs["akoflow:path"]
        assert shown.isprintable(), shown  # no control or bidi characters, no surrogates
    assert set(seen) == ALL and set(seen.values()) == {1}
    shown = {a["akoflow:path"] for a in doc["entity"].values() if "akoflow:path" in a}
    assert "\\xff" * 255 in shown and "new\\x0aline.txt" in shown
    assert "\\u202e-rtl.txt" in shown and "a file.txt" in shown and "%41" in shown


def test_prov_n_writes_every_iri_as_it_is(run_dir: Path) -> None:
    done = akoflow("prov", "1", "--format", "provn", cwd=run_dir)
    # Nothing on stderr but how the accesses were known: no warning.
    assert done.returncode == 0 and done.stderr == OBSERVED_LINE, done.stderr
    entities = [
        line.strip()[len("entity(") :].split(",")[0]
        for line in done.stdout.splitlines()
        if line.strip().startswith("entity(run:file/")
    ]
    paths = Counter(_version_path(e, "run:file/") for e in entities)
    assert set(paths) == ALL and set(paths.values()) == {1}


def test_turtle_parses_and_every_iri_decodes_to_its_bytes(run_dir: Path) -> None:
    done = akoflow("prov", "1", "--format", "ttl", cwd=run_dir)
    # Nothing on stderr but how the accesses were known: no warning.
    assert done.returncode == 0 and done.stderr == OBSERVED_LINE, done.stderr
    graph = rdflib.Graph()
    graph.parse(data=done.stdout, format="turtle")
    prov_entity = rdflib.URIRef("http://www.w3.org/ns/prov#Entity")
    entities = {
        str(s) for s in graph.subjects(rdflib.RDF.type, prov_entity) if str(s).startswith(NS)
    }
    paths = Counter(_version_path(e, NS + "file/") for e in entities if "/file/" in e)
    assert set(paths) == ALL and set(paths.values()) == {1}


def test_crate_copies_every_file_under_a_portable_name(run_dir: Path) -> None:
    done = akoflow("crate", "1", "-o", "crate", cwd=run_dir)
    assert done.returncode == 0 and "Warning" not in done.stderr, done.stderr
    crate = run_dir / "crate"
    meta = json.loads((crate / "ro-crate-metadata.json").read_text(encoding="utf-8"))
    seen = Counter()
    for entity in meta["@graph"]:
        if entity.get("@type") != "File" or "akoflowPathBytes" not in entity:
            continue
        original = unquote_to_bytes(entity["akoflowPathBytes"])
        seen[original] += 1
        copy = unquote(entity["@id"], errors="strict")
        assert copy.startswith("data/") and ".." not in copy.split("/")
        assert copy.isprintable(), copy  # valid UTF-8, no control or bidi characters
        assert all(len(part.encode()) <= 255 for part in copy.split("/"))
        source = os.path.join(os.fsencode(run_dir / "data"), original)
        with open(source, "rb") as f:
            assert (crate / copy).read_bytes() == f.read()
    assert set(seen) == ALL and set(seen.values()) == {1}


def test_report_succeeds(run_dir: Path) -> None:
    done = akoflow("report", "1", "-o", "report.html", cwd=run_dir)
    assert done.returncode == 0 and "Warning" not in done.stderr, done.stderr
    assert "make" in (run_dir / "report.html").read_text(encoding="utf-8")


def test_lineage_route_is_valid_json_with_every_file(run_dir: Path) -> None:
    server = Server(state_dir=run_dir / "state", port=free_port(), env=cli_env())
    server.start()
    try:
        with server.client() as api:
            res = api.get(f"{API}/workflows/1/lineage/")
        assert res.status_code == 200, res.text
        graph = json.loads(res.content.decode("utf-8", errors="strict"))["data"]
    finally:
        server.stop()
    files = [n for n in graph["nodes"] if n["id"].startswith("file:")]
    ids = Counter(unquote_to_bytes(n["id"][len("file:") :]) for n in files)
    assert set(ids) == GENERATED and set(ids.values()) == {1}  # (inputs: one node of them all)
    assert all(n["label"].isprintable() for n in files)
    edges = {(e["from"], e["to"], e["label"]) for e in graph["edges"]}
    assert ("activity:use", "file:%2541", "used") in edges
    assert ("file:new%0Aline.txt", "activity:make", "wasGeneratedBy") in edges
