"""A real browser on a real server: Playwright drives Debian's headless chromium (never a
downloaded one) against an `akoflow server` subprocess on 127.0.0.1.

Every page a test opens is watched: any request that is not to the server is blocked and
fails the test, and so does a console error, an uncaught exception or a dialog (an
``alert()`` would mean some text ran as script). Screenshots go to ``test-output/ui/``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Dialog,
    Page,
    Route,
    expect,
    sync_playwright,
)

from tests.conftest import ROOT, cli_env
from tests.server.conftest import Server, free_port, start_server

__all__ = ["start_server"]  # a fixture of the server tests, used here too

SHOTS = ROOT / "test-output" / "ui"
WAIT_MS = 60_000  # workflows run for real: allow for a loaded CI machine
expect.set_options(timeout=WAIT_MS)


def chromium_path() -> str:
    """Debian's chromium (scripts/test-deps installs it); AKOFLOW_CHROMIUM overrides."""
    path = os.environ.get("AKOFLOW_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        pytest.fail(
            f"chromium not found at {path}: the UI tests need Debian's chromium "
            "(scripts/test-deps installs it)",
            pytrace=False,
        )
    return path


# Package scope, not session: Playwright's sync API keeps an event loop marked running in
# the main thread while it is open, so any later test's asyncio.run() would be refused.
@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium_path(), headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server per test module."""
    server = Server(
        state_dir=tmp_path_factory.mktemp("ui-server") / "state", port=free_port(), env=cli_env()
    )
    server.start()
    yield server
    server.stop()


@dataclass
class Ui:
    """A browser tab on the server, with what it did recorded for the checks at the end."""

    page: Page
    server: Server
    requests: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    expected_statuses: set[int] = field(default_factory=set)

    def open(self, path: str = "/akoflow-admin/") -> None:
        self.page.goto(self.server.url + path)

    def sign_in(self, token: str | None = None) -> None:
        self.page.fill("#token", token or self.server.token)
        self.page.click("#signin button[type=submit]")
        self.page.wait_for_selector("#nav", state="visible")

    def shot(self, name: str) -> Path:
        SHOTS.mkdir(parents=True, exist_ok=True)
        path = SHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def problems(self) -> list[str]:
        unexpected = [
            e
            for e in self.console_errors
            if not any(f"status of {s}" in e for s in self.expected_statuses)
        ]
        return (
            [f"request off the server: {u}" for u in self.blocked]
            + [f"console error: {e}" for e in unexpected]
            + [f"page error: {e}" for e in self.page_errors]
            + [f"dialog: {d}" for d in self.dialogs]
        )


def _watch(ui: Ui, origin: str) -> None:
    page = ui.page

    def route(r: Route) -> None:
        url = r.request.url
        parts = urlsplit(url)
        if f"{parts.scheme}://{parts.netloc}" == origin:
            r.continue_()
        elif parts.scheme in ("data", "blob"):
            r.continue_()
        else:
            ui.blocked.append(url)
            r.abort()

    def console(msg: ConsoleMessage) -> None:
        if msg.type == "error":
            ui.console_errors.append(msg.text)

    def dialog(d: Dialog) -> None:
        ui.dialogs.append(f"{d.type}: {d.message}")
        d.dismiss()

    page.route("**/*", route)
    page.on("request", lambda req: ui.requests.append(req.url))
    page.on("console", console)
    page.on("pageerror", lambda exc: ui.page_errors.append(str(exc)))
    page.on("dialog", dialog)


@pytest.fixture
def open_ui(browser: Browser) -> Iterator[Callable[[Server], Ui]]:
    """``open_ui(server)``: a fresh browser context (own sessionStorage) on that server. At the
    end: no request left 127.0.0.1, no console error, no uncaught error, no dialog."""
    opened: list[Ui] = []

    def open_(server: Server) -> Ui:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.set_default_timeout(WAIT_MS)
        ui = Ui(page=context.new_page(), server=server)
        _watch(ui, server.url)
        opened.append(ui)
        return ui

    yield open_
    problems: list[str] = []
    for ui in opened:
        problems += ui.problems()
        for url in ui.requests:
            assert urlsplit(url).hostname == "127.0.0.1", url
        ui.page.context.close()
    assert not problems, problems


@pytest.fixture
def ui(open_ui: Callable[[Server], Ui], ui_server: Server) -> Ui:
    """A signed-in tab on the module's server."""
    tab = open_ui(ui_server)
    tab.open()
    tab.sign_in()
    return tab
