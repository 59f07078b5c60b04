"""Workflows through the browser: submit one and watch it finish (DAG, table, timeline,
dashboard), follow an activity's output live, cancel running work, retry a failed run."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import Locator, expect

from tests.server.conftest import activity, submit, wait_workflow, workflow_yaml
from tests.ui.conftest import Ui

DIAMOND = workflow_yaml(
    "diamond",
    activity("fetch", "echo fetched"),
    activity("left", "echo left; sleep 0.5", depends=["fetch"]),
    activity("right", "echo right", depends=["fetch"]),
    activity("join", "echo joined", depends=["left", "right"]),
)


def wait_gate(path: Path) -> str:
    """Shell lines that block until the test creates ``path`` (no timing in the test)."""
    return f"while [ ! -e '{path}' ]; do sleep 0.05; done"


def open_workflow(ui: Ui, wf_id: int) -> None:
    ui.page.goto(f"{ui.server.url}/akoflow-admin/workflows/{wf_id}/")
    expect(ui.page.locator("#wf-state .badge")).to_be_visible()


def row(ui: Ui, name: str) -> Locator:
    return ui.page.locator(f'#act-rows tr[data-name="{name}"]')


def cell(ui: Ui, name: str, column: int) -> Locator:
    """A cell of an activity's row: 1 state, 2 runtime, 4 attempts, 7 exit code."""
    return row(ui, name).locator("td").nth(column)


def test_submit_through_the_ui_and_watch_it_finish(ui: Ui) -> None:
    page = ui.page
    page.click("#nav a[data-section=submit]")
    page.fill("#yaml", DIAMOND)
    page.click("#validate")
    expect(page.locator("#result .ok")).to_have_text("Valid: diamond, 4 activities on local.")
    page.click("#submit")
    expect(page).to_have_url(re.compile(r"/akoflow-admin/workflows/\d+/$"))
    expect(page.locator("#wf-title")).to_have_text("diamond")
    expect(page.locator("#wf-state .badge")).to_have_text("succeeded")

    # The DAG: one node per activity, by level (fetch, then left/right, then join).
    nodes = page.locator("#dag g.node")
    expect(nodes).to_have_count(4)
    expect(page.locator("#dag g.node.state-succeeded")).to_have_count(4)
    expect(page.locator("#dag path.edge")).to_have_count(4)
    x = {
        n: float(page.locator(f'#dag g.node[data-id="{n}"] rect').get_attribute("x") or "nan")
        for n in ("fetch", "left", "right", "join")
    }
    assert x["fetch"] < x["left"] == x["right"] < x["join"]
    expect(page.locator('#dag g.node[data-id="join"] .node-sub')).to_contain_text("local")

    # The table: state, runtime, attempts and exit code of each activity.
    for name in ("fetch", "left", "right", "join"):
        expect(cell(ui, name, 1)).to_have_text("succeeded")
        expect(cell(ui, name, 2)).to_have_text("local")
        expect(cell(ui, name, 4)).to_have_text("1/1")
        expect(cell(ui, name, 7)).to_have_text("0")
    expect(page.locator("#timeline rect.bar.state-succeeded")).to_have_count(4)
    expect(page.locator("#wf-cancel")).to_be_hidden()
    ui.shot("workflow-succeeded")

    # The dashboard lists it; search filters by name.
    page.click("#nav a[data-section=workflows]")
    wf_row = page.locator("#wf-rows tr", has_text="diamond")
    expect(wf_row.locator(".badge")).to_have_text("succeeded")
    expect(wf_row).to_contain_text("4/4 done")
    page.fill("#wf-search", "no-such-name")
    expect(page.locator("#wf-rows td.empty")).to_contain_text("matches")
    page.fill("#wf-search", "diam")
    expect(wf_row).to_be_visible()
    page.select_option("#wf-state", "failed")
    expect(wf_row).to_have_count(0)
    page.select_option("#wf-state", "succeeded")
    expect(wf_row).to_be_visible()
    page.fill("#wf-search", "")
    ui.shot("dashboard")
    wf_row.locator("a.wf-link").click()
    expect(page.locator("#wf-title")).to_have_text("diamond")


def test_logs_follow_live_output_and_metrics_are_charted(ui: Ui, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    text = workflow_yaml(
        "talker",
        activity("talk", f"echo 'first line'\n{wait_gate(gate)}\necho 'second line' >&2"),
    )
    with ui.server.client() as api:
        wf_id = submit(api, text)
        open_workflow(ui, wf_id)
        page = ui.page
        row(ui, "talk").get_by_role("button", name="Logs of talk").click()
        log = page.locator("#log")
        expect(log).to_contain_text("first line")
        expect(page.locator("#log-status")).to_have_text("following live output")
        # Samples are taken every 2 s while it runs: the charts draw them.
        for chart in ("#cpu-chart", "#mem-chart"):
            expect(page.locator(f"{chart} .series, {chart} .series-dot")).not_to_have_count(0)
        assert "second line" not in log.inner_text()
        node = page.locator('#dag g.node[data-id="talk"]')
        expect(node).to_have_class(re.compile("state-running"))
        ui.shot("activity-running")
        gate.touch()
        # The new output arrives in the open viewer, no reload.
        expect(log.locator(".stderr")).to_have_text("second line\n")
        expect(log.locator("[data-end]")).to_have_text("— succeeded, exit code 0 —\n")
        expect(page.locator("#log-status")).to_have_text("ended")
        expect(page.locator("#activity h2 .badge")).to_have_text("succeeded")
        expect(page.locator("#wf-state .badge")).to_have_text("succeeded")
        assert wait_workflow(api, wf_id)["state"] == "succeeded"
    ui.shot("activity-logs")


def test_cancel_an_activity_then_the_workflow_from_the_ui(ui: Ui) -> None:
    text = workflow_yaml(
        "sleepers",
        activity("one", "sleep 300"),
        activity("two", "sleep 300"),
        activity("after-two", "echo never", depends=["two"]),
    )
    with ui.server.client() as api:
        wf_id = submit(api, text)
        open_workflow(ui, wf_id)
        page = ui.page
        for name in ("one", "two"):
            expect(cell(ui, name, 1)).to_have_text("running")
        ui.shot("workflow-running")
        cancel_one = page.get_by_role("button", name="Cancel one")
        cancel_one.click()
        expect(cancel_one).to_have_text("Confirm")  # a second click, no browser dialog
        cancel_one.click()
        expect(cell(ui, "one", 1)).to_have_text("cancelled")
        expect(cell(ui, "two", 1)).to_have_text("running")
        expect(page.locator("#wf-state .badge")).to_have_text("running")

        page.click("#wf-cancel")
        expect(page.locator("#wf-cancel")).to_have_text("Click again to cancel")
        page.click("#wf-cancel")
        expect(page.locator("#wf-state .badge")).to_have_text("cancelled")
        expect(cell(ui, "two", 1)).to_have_text("cancelled")
        expect(cell(ui, "after-two", 1)).to_have_text(re.compile("cancelled|skipped"))
        expect(page.locator("#wf-retry")).to_be_visible()
        doc = wait_workflow(api, wf_id)
    assert doc["state"] == "cancelled"
    assert {a["name"]: a["state"] for a in doc["spec"]["activities"]}["one"] == "cancelled"


def test_retry_a_failed_workflow_from_the_ui(ui: Ui, tmp_path: Path) -> None:
    gate = tmp_path / "fixed"
    text = workflow_yaml(
        "flaky",
        activity("check", f"test -e '{gate}' || {{ echo 'not yet' >&2; exit 4; }}"),
        activity("report", "echo done", depends=["check"]),
    )
    with ui.server.client() as api:
        wf_id = submit(api, text)
        assert wait_workflow(api, wf_id)["state"] == "failed"
        open_workflow(ui, wf_id)
        page = ui.page
        expect(page.locator("#wf-state .badge")).to_have_text("failed")
        expect(cell(ui, "check", 7)).to_have_text("4")
        expect(cell(ui, "report", 1)).to_have_text("skipped")
        page.locator('#dag g.node[data-id="check"]').click()
        ends = page.locator("#log [data-end]")
        expect(ends).to_have_text(["— failed, exit code 4 —\n"])
        expect(page.locator("#log .stderr")).to_have_text("not yet\n")
        ui.shot("workflow-failed")
        gate.touch()
        page.click("#wf-retry")
        page.click("#wf-retry")
        expect(page.locator("#wf-state .badge")).to_have_text("succeeded")
        expect(cell(ui, "report", 1)).to_have_text("succeeded")
        # The open viewer followed the retried activity on from where it was.
        expect(ends).to_have_text(["— failed, exit code 4 —\n", "— succeeded, exit code 0 —\n"])
        assert wait_workflow(api, wf_id)["state"] == "succeeded"
