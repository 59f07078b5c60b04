"""The UI's files as served: public static pages with a strict Content-Security-Policy,
everything bundled (nothing from another origin), no markup injection in the scripts, and
the pure helpers (graph levels, SSE parsing, base64) checked in the browser itself."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable

import httpx
from playwright.sync_api import expect

from akoflow.server.ui.assets import bundled
from tests.server.conftest import Server
from tests.ui.conftest import Ui

UI = "/akoflow-admin/"
# URLs that are names, not fetches (the SVG namespace).
NAMESPACES = {"http://www.w3.org/2000/svg"}


def test_pages_are_public_static_and_locked_down(ui_server: Server) -> None:
    for path in (UI, UI + "runtimes", UI + "submit", UI + "workflows/7/", UI + "workflows/ns/7/"):
        res = httpx.get(ui_server.url + path)
        assert res.status_code == 200, path
        assert res.headers["content-type"].startswith("text/html")
        csp = res.headers["content-security-policy"]
        assert "default-src 'none'" in csp
        assert "script-src 'self'" in csp
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert "frame-ancestors 'none'" in csp
        assert res.headers["x-content-type-options"] == "nosniff"
    html = httpx.get(ui_server.url + UI).text
    # No inline script or style: every <script> has a src, no style attributes.
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == []
    assert "style=" not in html
    res = httpx.get(ui_server.url + UI + "static/app.js")
    assert res.headers["content-type"].startswith("text/javascript")
    assert res.headers["content-security-policy"]
    etag = res.headers["etag"]
    again = httpx.get(ui_server.url + UI + "static/app.js", headers={"If-None-Match": etag})
    assert again.status_code == 304
    for bad in ("static/nope.js", "static/..%2f__init__.py", "static/index.html", "static/"):
        assert httpx.get(ui_server.url + UI + bad).status_code == 404, bad
    # The UI's routes are not API operations.
    with ui_server.client() as api:
        paths = api.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if p.startswith("/akoflow-admin")]


def test_every_asset_is_bundled_and_builds_dom_without_markup() -> None:
    assets = bundled()
    assert {"index.html", "app.js", "style.css", "favicon.svg"} <= set(assets)
    for name, asset in assets.items():
        text = asset.body.decode()
        urls = set(re.findall(r"(?:https?:)?//[\w.-]+\.[a-z]{2,}[^\s\"')]*", text))
        assert urls <= NAMESPACES, (name, urls)
        assert "@import" not in text and "url(http" not in text, name
        if name.endswith(".js"):
            for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write"):
                assert sink not in text, (name, sink)
            assert not re.search(r"\beval\(|new Function\(|setTimeout\(\s*[\"'`]", text), name
            assert "localStorage" not in text, name  # the token lives in sessionStorage only


def test_pure_helpers_in_the_browser(open_ui: Callable[[Server], Ui], ui_server: Server) -> None:
    ui = open_ui(ui_server)
    ui.open()
    result = ui.page.evaluate(
        """async () => {
          const graph = await import('/akoflow-admin/static/graph.js');
          const api = await import('/akoflow-admin/static/api.js');
          const deps = new Map([['b', ['a']], ['c', ['a']], ['d', ['b', 'c']], ['e', ['d', 'a']],
                                ['x', ['y']], ['y', ['x']], ['z', ['missing']]]);
          const ids = ['a', 'b', 'c', 'd', 'e', 'x', 'y', 'z'];
          const lv = graph.levels(ids, deps);
          const ev = api.parseEvent('id: 7\\nevent: log\\ndata: {"a":\\ndata: 1}\\n: comment');
          return {
            levels: Object.fromEntries(ids.map((i) => [i, lv.get(i)])),
            event: ev,
            keepalive: api.parseEvent(': keep-alive'),
            b64: api.base64Utf8('name: ação ✓'),
          };
        }"""
    )
    # A cycle (never valid, but never a hang) is cut where it closes; unknown deps are ignored.
    assert result["levels"] == {"a": 0, "b": 1, "c": 1, "d": 2, "e": 3, "x": 2, "y": 1, "z": 0}
    assert result["event"] == {"event": "log", "id": "7", "data": '{"a":\n1}'}
    assert result["keepalive"] is None
    assert base64.b64decode(result["b64"]).decode() == "name: ação ✓"


def test_unknown_pages_and_workflows_say_not_found(ui: Ui) -> None:
    page = ui.page
    ui.open("/akoflow-admin/no-such-page")
    expect(page.locator("#main h1")).to_have_text("Page not found")
    ui.expected_statuses.add(404)
    ui.open("/akoflow-admin/workflows/999999/")
    expect(page.locator("#main h1")).to_have_text("Workflow #999999 not found")
    page.click("#main a[href='/akoflow-admin/']")
    expect(page.locator("#workflows")).to_be_visible()
