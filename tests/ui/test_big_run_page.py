"""The page of a run too big to draw (over the graph's 400 nodes): its lineage panel asks only
for the files' part of the graph (no node and edge per activity, read again every few seconds
while it runs, on the engine's event loop), and still lists the files and who made them."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from playwright.sync_api import expect

from tests.server.conftest import activity, submit, wait_workflow, workflow_yaml
from tests.ui.conftest import Ui

WIDTH = 401  # graph.js MAX_NODES + 1


def test_a_big_runs_lineage_panel_reads_only_its_files(ui: Ui) -> None:
    acts = [activity("make", "echo made > made.txt")]
    acts += [activity(f"t{i}", "true") for i in range(WIDTH)]
    with ui.server.client() as api:
        wf_id = submit(api, workflow_yaml("big-page", *acts))
        assert wait_workflow(api, wf_id, timeout=120)["state"] == "succeeded"
    ui.open(f"/akoflow-admin/workflows/{wf_id}/")
    page = ui.page
    expect(page.locator("#dag")).to_contain_text("drawn for workflows of up to 400")
    rows = page.locator("#lineage #files tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.nth(0).locator("td").nth(0)).to_have_text("made.txt")
    expect(rows.nth(0).locator("td").nth(1)).to_have_text("make")
    lineage = [u for u in ui.requests if urlsplit(u).path.endswith(f"/{wf_id}/lineage/")]
    assert lineage, ui.requests
    assert all(parse_qs(urlsplit(u).query) == {"activities": ["false"]} for u in lineage)
