"""What the UI must never do: run text from a workflow or a log as markup, show a runtime's
secrets, load anything from outside, or work without the token. Also: validation errors are
shown inline with their path and line, and the token is asked for and kept per tab."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import expect

from tests.server.conftest import Server, activity, free_port, submit, wait_workflow, workflow_yaml
from tests.ui.conftest import Ui

SCRIPT = "<script>alert('log')</script>"
IMG = "<img src=x onerror=alert('img')>"

HOSTILE = workflow_yaml(
    "hostile",
    activity(
        "shout",
        f'echo "{SCRIPT}"\necho "{IMG}" >&2\necho "$GREETING"',
        extra="      env:\n        GREETING: \"<b onmouseover=alert('env')>hi</b>\"\n",
    ),
)

# Two errors with their lines (the unknown key carries markup into the error text), and a
# third, a dependency on an activity that does not exist.
INVALID = """\
name: broken
spec:
  activities:
    - name: first
      run: echo one
      "<img src=x onerror=alert('key')>": 1
    - name: second
      run: echo two
      dependsOn: [nowhere]
"""


def test_markup_in_logs_commands_and_errors_is_shown_as_text(ui: Ui) -> None:
    with ui.server.client() as api:
        wf_id = submit(api, HOSTILE)
        assert wait_workflow(api, wf_id)["state"] == "succeeded"
    page = ui.page
    page.goto(f"{ui.server.url}/akoflow-admin/workflows/{wf_id}/")
    # The header and table drawn first: clicking before would aim at a graph they then move.
    expect(page.locator('#act-rows tr[data-name="shout"]')).to_be_visible()
    page.locator('#dag g.node[data-id="shout"]').click()
    log = page.locator("#log")
    expect(log.locator("[data-end]")).to_be_visible()
    text = log.inner_text()
    assert SCRIPT in text
    assert IMG in text
    assert "<b onmouseover=alert('env')>hi</b>" in text
    expect(page.locator(".command")).to_contain_text(SCRIPT)
    # Text nodes only: no element was made from any of it, anywhere on the page.
    assert page.locator("#main script, #main img, #main b").count() == 0
    ui.shot("hostile-logs")

    page.click("#nav a[data-section=submit]")
    page.fill("#yaml", INVALID)
    ui.expected_statuses.add(422)  # the answer to an invalid workflow; Chromium logs it
    page.click("#validate")
    expect(page.locator("#errors li")).to_have_count(2)
    message = page.locator("#errors .error-message").first
    expect(message).to_contain_text("unknown field \"<img src=x onerror=alert('key')>\"")
    assert page.locator("#main img").count() == 0
    # Nothing was loaded for the <img> in the texts (src=x would be a request to /x).
    assert not [u for u in ui.requests if u.endswith("/x")]


def test_validation_errors_are_inline_with_path_and_line(ui: Ui, tmp_path: Path) -> None:
    page = ui.page
    ui.expected_statuses.add(422)
    page.click("#nav a[data-section=submit]")
    page.fill("#yaml", INVALID)
    page.click("#submit")  # refused: nothing is stored
    items = page.locator("#errors li")
    expect(items).to_have_count(2)
    expect(page.locator("#result .errors-title")).to_have_text("invalid workflow: 2 errors")
    expect(items.nth(0).locator(".line-link")).to_have_text("line 6")
    expect(items.nth(1).locator(".line-link")).to_have_text("line 9")
    expect(items.nth(1).locator(".error-path")).to_have_text("spec.activities[1].dependsOn[0]")
    expect(items.nth(1).locator(".error-message")).to_have_text(
        "unknown activity 'nowhere' in dependsOn"
    )
    expect(page.locator(".gutter .err")).to_have_text(["6\n", "9\n"])
    # A click on an error's line selects that line in the editor.
    items.nth(1).locator(".line-link").click()
    selected = page.evaluate(
        "() => { const a = document.getElementById('yaml');"
        " return a.value.slice(a.selectionStart, a.selectionEnd); }"
    )
    assert selected == "      dependsOn: [nowhere]"
    expect(page).to_have_url(re.compile(r"/akoflow-admin/submit$"))
    ui.shot("submit-errors")
    # Chromium reports the 422 on the console: the watcher sees console errors (and would fail
    # the test on any it was not told to expect).
    assert any("status of 422" in e for e in ui.console_errors), ui.console_errors

    # A YAML syntax error is a file-level error, still with its line.
    page.fill("#yaml", "name: x\nspec: [unclosed\n")
    page.click("#validate")
    expect(items).to_have_count(1)
    expect(items.nth(0).locator(".line-link")).to_contain_text("line")

    # Fixed and uploaded as a file, it validates.
    lines = INVALID.replace("[nowhere]", "[first]").splitlines(keepends=True)
    del lines[5]  # the unknown key
    fixed = tmp_path / "fixed.yaml"
    fixed.write_text("".join(lines))
    page.set_input_files("#yaml-file", str(fixed))
    expect(page.locator("#yaml")).to_have_value(fixed.read_text())
    page.click("#validate")
    expect(page.locator("#result .ok")).to_have_text("Valid: broken, 2 activities on local.")
    expect(page.locator(".gutter .err")).to_have_count(0)


def test_runtimes_page_shows_health_and_no_secret(
    open_ui: Callable[[Server], Ui], start_server: Callable[..., Server]
) -> None:
    secrets = {
        "LOCAL_API_TOKEN": "local-token-s3cr3t",
        "K8S_AWS_API_SERVER_TOKEN": "k8s-token-s3cr3t",
        "DOCKER_X_TOKEN": "docker-token-s3cr3t",
        "DOCKER_X_PASSWORD": "docker-password-s3cr3t",
    }
    closed = free_port()  # nothing listens there: the runtimes are NOT_READY
    server = start_server(
        **secrets,
        LOCAL_MAX_PARALLEL="3",
        K8S_AWS_API_SERVER_HOST=f"127.0.0.1:{closed}",
        DOCKER_X_HOST=f"tcp://127.0.0.1:{closed}",
    )
    ui = open_ui(server)
    ui.open("/akoflow-admin/runtimes")
    ui.sign_in()
    page = ui.page
    local = page.locator('#runtimes article[data-name="local"]')
    expect(local.locator(".badge")).to_have_text("READY")
    expect(local.locator(".config")).to_contain_text("LOCAL_MAX_PARALLEL")
    expect(local.locator(".config tr", has_text="LOCAL_API_TOKEN")).to_contain_text("***")
    expect(local.locator("table.nodes tbody tr")).not_to_have_count(0)  # this machine
    for name in ("k8s-aws", "docker-x"):
        card = page.locator(f'#runtimes article[data-name="{name}"]')
        expect(card.locator(".badge")).to_have_text("NOT_READY")
        expect(card.locator(".reason")).not_to_have_text("—")
    expect(page.locator('#runtimes article[data-name="docker-x"] .config')).to_contain_text("***")
    html = page.content()
    for value in secrets.values():
        assert value not in html
    assert server.token not in html
    ui.shot("runtimes")


def test_sign_in_asks_for_the_token_and_keeps_it_in_this_tab_only(
    open_ui: Callable[[Server], Ui], ui_server: Server
) -> None:
    ui = open_ui(ui_server)
    ui.open()
    page = ui.page
    expect(page.locator("#signin")).to_be_visible()
    expect(page.locator("#nav")).to_be_hidden()
    ui.shot("sign-in")
    ui.expected_statuses.add(401)
    page.fill("#token", "not-the-token")
    page.click("#signin button[type=submit]")
    expect(page.locator("#signin .form-error")).to_have_text("The server refused this token.")
    ui.sign_in()
    expect(page.locator("#workflows")).to_be_visible()
    storage = page.evaluate("() => [sessionStorage.length, localStorage.length, document.cookie]")
    assert storage == [1, 0, ""]
    page.reload()
    expect(page.locator("#workflows")).to_be_visible()  # still signed in in this tab
    # The token only ever travels in the Authorization header.
    assert not [u for u in ui.requests if ui_server.token in u]
    page.click("#signout")
    expect(page.locator("#signin")).to_be_visible()
    assert page.evaluate("() => sessionStorage.length") == 0
    # Another tab (a new context) has to sign in again.
    other = open_ui(ui_server)
    other.open("/akoflow-admin/runtimes")
    expect(other.page.locator("#signin")).to_be_visible()
    other.sign_in()
    expect(other.page.locator("#runtimes")).to_be_visible()  # and lands where it was going


# Every bidirectional-text control: overrides and embeddings, isolates, marks.
BIDI_CONTROLS = [0x202A, 0x202B, 0x202C, 0x202D, 0x202E, 0x2066, 0x2067, 0x2068, 0x2069]
BIDI_CONTROLS += [0x200E, 0x200F, 0x061C]
RLO = "\u202e"


def test_bidi_controls_are_shown_as_visible_escapes(ui: Ui) -> None:
    every = "".join(map(chr, BIDI_CONTROLS))
    text = workflow_yaml(
        "bidi",
        activity(
            "spoof",
            f"echo 'invoice{RLO}fdp.exe'\necho \"$EVERY\" >&2\ntouch 'report{RLO}txt.sh'",
            extra=f'      image: "alpine{RLO}"\n      env:\n        EVERY: "{every}"\n',
        ),
    )
    with ui.server.client() as api:
        wf_id = submit(api, text)
        assert wait_workflow(api, wf_id)["state"] == "succeeded"
    page = ui.page
    page.goto(f"{ui.server.url}/akoflow-admin/workflows/{wf_id}/")
    expect(page.locator('#act-rows tr[data-name="spoof"]')).to_be_visible()
    page.locator('#dag g.node[data-id="spoof"]').click()
    log = page.locator("#log")
    expect(log.locator("[data-end]")).to_be_visible()
    expect(log).to_contain_text("invoice<U+202E>fdp.exe")
    escapes = "".join(f"<U+{c:04X}>" for c in BIDI_CONTROLS)
    expect(log).to_contain_text(escapes)
    # Each escape is its own marked element, styled apart from the text around it.
    expect(log.locator(".ctl")).to_have_count(1 + len(BIDI_CONTROLS))
    expect(log.locator(".ctl").first).to_have_text("<U+202E>")
    expect(page.locator(".command")).to_contain_text("invoice<U+202E>fdp.exe")
    expect(page.locator("#activity .facts")).to_contain_text("alpine<U+202E>")
    expect(page.locator("#lineage")).to_be_visible()  # the file the activity made
    # Nowhere on the page is a raw control left to reorder what is shown.
    shown = page.evaluate("() => document.body.innerText + document.title")
    assert not [c for c in BIDI_CONTROLS if chr(c) in shown], shown
    ui.shot("bidi-escaped")
    # The same in drawn text (graphs, charts) and in attributes, through the page's own DOM
    # helpers: SVG text gets a marked <tspan>, a tooltip attribute the plain escape.
    drawn = page.evaluate(
        """async (text) => {
            const { fill, h, s } = await import("/akoflow-admin/static/dom.js");
            const label = s("text", {}, text);
            const cell = h("td", { title: text });
            fill(cell, text);
            return [label.innerHTML, cell.getAttribute("title"), cell.innerHTML];
        }""",
        f"a{RLO}b\u2066c",
    )
    assert drawn == [
        'a<tspan class="ctl">&lt;U+202E&gt;</tspan>b<tspan class="ctl">&lt;U+2066&gt;</tspan>c',
        "a<U+202E>b<U+2066>c",
        'a<span class="ctl">&lt;U+202E&gt;</span>b<span class="ctl">&lt;U+2066&gt;</span>c',
    ]
