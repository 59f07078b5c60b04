"""The lineage panel of a workflow's page, in a real browser, for a run whose provenance holds
exact edges (an activity that read an input and wrote two files, one named with a byte that
is not UTF-8 and a newline; two activities that read its output) and an ambiguous file (both
of those activities wrote it while both ran). What the user sees is checked: the ambiguous
file drawn dashed with its candidates and joined to them by dashed `candidate` edges, never a
`wasGeneratedBy`; the exact edges drawn; the same edges as the lineage API route, the HTML
report (opened in the browser too) and the PROV export read back with ``prov``. The panel
is opened while the two writers are held, and follows the run to its end without a reload.

The run is real, through ``akoflow run`` (the server shows it from the same state dir). Both
writers append to the file while both run (each waits for the other), so the version is
ambiguous however the accesses are known: observed with fanotify (root) or inferred from
timing (``AKOFLOW_OBSERVE=off``: both windows hold the change).
"""

from __future__ import annotations

import io
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, expect
from prov.model import ProvDocument

from tests.conftest import cli_env
from tests.prov_support import INPUTS, ambiguous, derivations, mechanism, relations
from tests.server.conftest import API, Server
from tests.ui.conftest import WAIT_MS, Ui

WORKFLOW = """\
name: lineage-panel
spec:
  env:
    SYNC: {sync}
  activities:
    - name: clean
      run: |
        tr a-z A-Z < raw.txt > clean.txt
        cat raw.txt > "$(printf 'odd\\377\\nout.txt')"
      outputs: [clean.txt, "odd*"]
    - name: left
      dependsOn: [clean]
      run: |
        cat clean.txt > /dev/null
        touch "$SYNC/left-started"
        until [ -e "$SYNC/go" ]; do sleep 0.01; done
        echo 1 >> "$(printf 'shared\\377\\nname.txt')"
        touch "$SYNC/left-wrote"
        until [ -e "$SYNC/right-wrote" ]; do sleep 0.01; done
    - name: right
      dependsOn: [clean]
      run: |
        cat clean.txt > /dev/null
        touch "$SYNC/right-started"
        until [ -e "$SYNC/left-wrote" ]; do sleep 0.01; done
        echo 2 >> "$(printf 'shared\\377\\nname.txt')"
        touch "$SYNC/right-wrote"
"""

# The names as people see them (akoflow.provenance.names.display) and as node ids.
ODD = "odd\\xff\\x0aout.txt"
SHARED = "shared\\xff\\x0aname.txt"
SHARED_ID = "file:shared%FF%0Aname.txt"
OBSERVED = "observed (fanotify)"

Edge = tuple[str, str, str]  # (relation, activity, file label or INPUTS)


@dataclass
class Run:
    dir: Path
    proc: subprocess.Popen[bytes]

    @property
    def state(self) -> Path:
        return self.dir / "state"

    @property
    def sync(self) -> Path:
        return self.dir / "sync"

    def akoflow(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "akoflow", *args, "--state-dir", str(self.state)],
            capture_output=True,
            text=True,
            env=cli_env(),
            timeout=60,
        )


def start_run(tmp_path: Path, observe: str) -> Run:
    """``akoflow run`` in the background; returns once `left` and `right` both run (held)."""
    sync = tmp_path / "sync"
    data = tmp_path / "data"
    sync.mkdir()
    data.mkdir()
    (data / "raw.txt").write_text("abc\n")
    (data / "unread.txt").write_text("never read\n")
    (tmp_path / "wf.yaml").write_text(WORKFLOW.format(sync=sync))
    argv = [sys.executable, "-m", "akoflow", "run", str(tmp_path / "wf.yaml"), "-q"]
    argv += ["--state-dir", str(tmp_path / "state"), "--data-dir", str(data)]
    with (tmp_path / "run.out").open("wb") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env=cli_env(AKOFLOW_OBSERVE=observe)
        )
    run = Run(tmp_path, proc)
    deadline = time.monotonic() + 60
    while not all((sync / f"{n}-started").exists() for n in ("left", "right")):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise AssertionError((tmp_path / "run.out").read_text(errors="replace"))
        time.sleep(0.02)
    return run


def api_graph(server: Server) -> tuple[dict[str, str], set[Edge], set[Edge]]:
    """The lineage route: node labels by id, its edges by id, and by name (file edges)."""
    with server.client() as api:
        res = api.get(f"{API}/workflows/1/lineage/")
    assert res.status_code == 200, res.text
    graph = res.json()["data"]
    labels = {n["id"]: n["label"] for n in graph["nodes"]}
    by_id = {(e["from"], e["label"], e["to"]) for e in graph["edges"]}
    return labels, by_id, named(labels, by_id)


def named(labels: dict[str, str], edges: set[Edge]) -> set[Edge]:
    """(relation, activity, file) of the file edges given by node ids."""

    def file(node: str) -> str:
        return INPUTS if node == "inputs" else labels[node]

    found = set()
    for source, label, target in edges:
        if label == "used":
            found.add((label, source.removeprefix("activity:"), file(target)))
        elif label in ("wasGeneratedBy", "candidate"):
            found.add((label, target.removeprefix("activity:"), file(source)))
    return found


def drawn(ui: Ui) -> dict[str, Any]:
    """What the lineage panel shows: its edges (as drawn, with their tooltip and dash), its
    nodes (class, text, tooltip, dash) and the list of ambiguous files."""
    result: dict[str, Any] = ui.page.evaluate(
        """() => {
          const panel = document.querySelector("#lineage");
          const dash = (el) => getComputedStyle(el).strokeDasharray;
          return {
            edges: [...panel.querySelectorAll("svg path.edge")].map((p) => ({
              from: p.dataset.from, to: p.dataset.to, label: p.dataset.label,
              cls: p.getAttribute("class"), tip: p.querySelector("title")?.textContent,
              dash: dash(p),
            })),
            nodes: Object.fromEntries([...panel.querySelectorAll("svg g.node")].map((g) => [
              g.dataset.id,
              { cls: g.getAttribute("class"), label: g.querySelector(".node-label").textContent,
                sub: g.querySelector(".node-sub").textContent,
                tip: g.querySelector("title").textContent,
                dash: dash(g.querySelector(".node-box")) },
            ])),
            listed: [...panel.querySelectorAll(".ambiguous li")].map((li) => li.textContent),
            text: panel.innerText,
          };
        }"""
    )
    return result


def report_edges(browser: Browser, run: Run) -> set[Edge]:
    """The Files section of `akoflow report`, as chromium shows it, as edges."""
    out = run.dir / "report.html"
    done = run.akoflow("report", "1", "-o", str(out))
    assert done.returncode == 0, done.stderr
    page = browser.new_page()
    try:
        page.goto(out.as_uri())
        tables: list[dict[str, Any]] = page.evaluate(
            """() => [...document.querySelectorAll("h2 ~ table, h3 ~ table")].map((t) => ({
                 head: [...t.querySelectorAll("th")].map((th) => th.textContent),
                 rows: [...t.querySelectorAll("tbody tr")].map((tr) => ({
                   cls: tr.className, cells: [...tr.cells].map((td) => td.textContent) })),
               }))"""
        )
    finally:
        page.close()
    edges: set[Edge] = set()
    for table in tables:
        for row in table["rows"]:
            if table["head"] == ["file", "generated by", "used by"]:
                file, generated, used = row["cells"]
                if row["cls"] == "inputs":
                    assert file.endswith("before the run") and generated == "-"
                    file = INPUTS
                edges |= {("wasGeneratedBy", a, file) for a in generated.split(", ") if a != "-"}
                edges |= {("used", a, file) for a in used.split(", ") if a != "-"}
            elif table["head"] == ["file", "candidates", "why"]:
                file, candidates, _ = row["cells"]
                names = candidates.removeprefix("ambiguous: ").split(", ")
                edges |= {("candidate", c.split(" #")[0], file) for c in names}
    return edges


def prov_edges(run: Run) -> tuple[set[Edge], ProvDocument]:
    done = run.akoflow("prov", "1")
    assert done.returncode == 0, done.stderr
    doc = ProvDocument.deserialize(io.StringIO(done.stdout), format="json")
    used, generated = relations(doc)
    edges = {("used", a, f) for a, f in used} | {("wasGeneratedBy", a, f) for a, f in generated}
    for file, candidates in ambiguous(doc).items():
        edges |= {("candidate", c, file) for c in candidates}
    return edges, doc


@pytest.mark.parametrize(
    "observe",
    [
        pytest.param("on", marks=pytest.mark.needs_root, id="observed"),
        pytest.param("off", id="timing"),
    ],
)
def test_lineage_panel_shows_exact_and_ambiguous_edges_as_the_api_report_and_prov(
    tmp_path: Path,
    observe: str,
    browser: Browser,
    start_server: Callable[..., Server],
    open_ui: Callable[[Server], Ui],
) -> None:
    run = start_run(tmp_path, observe)
    try:
        server = start_server(state_dir=run.state)
        ui = open_ui(server)
        ui.open("/akoflow-admin/workflows/1/")
        ui.sign_in()
        panel = ui.page.locator("#lineage")

        # While `left` and `right` are held: `clean`'s edges, and nothing of the shared file.
        expect(panel.locator("svg path.edge-wasGeneratedBy")).to_have_count(2)
        labels, held, _ = api_graph(server)
        shown = drawn(ui)
        assert {(e["from"], e["label"], e["to"]) for e in shown["edges"]} == held
        assert ("file:clean.txt", "wasGeneratedBy", "activity:clean") in held
        assert SHARED_ID not in labels and SHARED_ID not in shown["nodes"]

        (run.sync / "go").touch()
        assert run.proc.wait(timeout=60) == 0, (run.dir / "run.out").read_text(errors="replace")
    finally:
        if run.proc.poll() is None:
            run.proc.kill()
            run.proc.wait()

    # The panel follows the run: the ambiguous file appears without a reload.
    node = panel.locator(f'g.node[data-id="{SHARED_ID}"]')
    expect(node).to_have_class("node state-ambiguous", timeout=WAIT_MS)
    expect(panel.locator(".ambiguous li")).to_have_count(1)
    ui.shot(f"lineage-panel-{observe}")
    labels, by_id, api = api_graph(server)
    shown = drawn(ui)

    # The ambiguous file, as the user sees it: dashed, labelled with its candidates, listed
    # with them and why, joined to each by a dashed `candidate` edge and by nothing else.
    shared = shown["nodes"][SHARED_ID]
    assert shared["sub"] == "ambiguous: left, right"
    assert shared["tip"].startswith(
        f"{SHARED} — ambiguous: may have been generated by left, right: "
    )
    assert shared["label"].startswith("shared\\xff\\x0a")  # escaped, on one line
    assert shared["dash"] not in ("none", "")
    touching = [e for e in shown["edges"] if SHARED_ID in (e["from"], e["to"])]
    assert sorted((e["label"], e["to"]) for e in touching) == [
        ("candidate", "activity:left"),
        ("candidate", "activity:right"),
    ]
    for e in touching:
        assert e["cls"] == "edge edge-candidate" and e["dash"] not in ("none", "")
        assert e["tip"] == f"{SHARED} candidate {e['to'].removeprefix('activity:')}"
    (item,) = shown["listed"]
    assert item.startswith(f"{SHARED} may have been generated by left, right: ")
    assert len(item) > len(f"{SHARED} may have been generated by left, right: ")  # the reason
    assert "\ufffd" not in shown["text"]  # no byte lost to a replacement character

    # The exact edges, drawn solid, with their tooltip.
    generated = [e for e in shown["edges"] if e["label"] == "wasGeneratedBy"]
    assert {(e["from"], e["to"]) for e in generated} == {
        ("file:clean.txt", "activity:clean"),
        ("file:odd%FF%0Aout.txt", "activity:clean"),
    }
    assert {e["tip"] for e in generated} == {
        "clean.txt wasGeneratedBy clean",
        f"{ODD} wasGeneratedBy clean",
    }
    assert all(e["dash"] == "none" for e in generated)
    assert shown["nodes"]["file:odd%FF%0Aout.txt"]["tip"] == f"{ODD} — file"

    # The panel draws exactly the route's edges (dependsOn included), the report and the
    # PROV export have the same file edges.
    assert {(e["from"], e["label"], e["to"]) for e in shown["edges"]} == by_id
    assert set(shown["nodes"]) == set(labels)
    assert report_edges(browser, run) == api
    prov, doc = prov_edges(run)
    assert prov == api

    # What those edges are.
    assert {e for e in api if e[0] == "wasGeneratedBy"} == {
        ("wasGeneratedBy", "clean", "clean.txt"),
        ("wasGeneratedBy", "clean", ODD),
    }
    assert {e for e in api if e[0] == "candidate"} == {
        ("candidate", "left", SHARED),
        ("candidate", "right", SHARED),
    }
    assert {("used", "left", "clean.txt"), ("used", "right", "clean.txt")} <= api
    assert not [e for e in api if e[2] == "unread.txt"]
    if observe == "on":
        assert mechanism(doc) == OBSERVED
        # Used = read: the input `clean` read, not the collection of every input.
        assert ("used", "clean", "raw.txt") in api
        assert not [e for e in api if e[2] == INPUTS]
        assert ("clean.txt", "raw.txt") in derivations(doc)
    else:
        assert mechanism(doc).startswith("inferred from timing")
        # Timing cannot tell who read which input: every activity used them all.
        assert {e for e in api if e[2] == INPUTS} == {
            ("used", name, INPUTS) for name in ("clean", "left", "right")
        }
