"""The lineage panel links each file of the run to its download, in a real browser: a row of
the Files table and a file node of the graph each save the file's bytes (a name that is not
UTF-8 included), fetched with the token in the header, never in a URL."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import expect

from tests.server.conftest import submit, wait_workflow, workflow_yaml
from tests.ui.conftest import Ui

MAKE = """\
    - name: make
      run: |
        echo hello > hello.txt
        mkdir sub && seq 1 1000 > sub/numbers.txt
        printf 'odd' > "$(printf 'bad\\377.txt')"
"""


def test_the_lineage_panel_downloads_each_file(ui: Ui) -> None:
    with ui.server.client() as api:
        wf_id = submit(api, workflow_yaml("downloads", MAKE))
        assert wait_workflow(api, wf_id)["state"] == "succeeded"
    page = ui.page
    page.goto(f"{ui.server.url}/akoflow-admin/workflows/{wf_id}/")
    rows = page.locator("#lineage #files tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.nth(0).locator("td").nth(0)).to_have_text("bad\\xff.txt")
    expect(rows.nth(0).locator("td").nth(1)).to_have_text("make")
    files = f"/akoflow-api/workflows/{wf_id}/files/"
    link = page.locator('#files tr[data-path="bad%FF.txt"] a.download')
    expect(link).to_have_attribute("href", files + "bad%FF.txt")

    def saved(click: object) -> bytes:
        with page.expect_download() as info:
            assert callable(click)
            click()
        return Path(info.value.path()).read_bytes()

    assert saved(link.click) == b"odd"
    numbers = page.locator('#files tr[data-path="sub/numbers.txt"] a.download')
    expected = "".join(f"{i}\n" for i in range(1, 1001)).encode()
    assert saved(numbers.click) == expected
    # A file node of the graph downloads too.
    node = page.locator('#lineage g.node[data-id="file:hello.txt"]')
    assert saved(node.click) == b"hello\n"
    ui.shot("lineage-files")
    fetched = [u for u in ui.requests if "/files/" in u and "?" not in u]
    assert {u.removeprefix(ui.server.url) for u in fetched} >= {
        files + "bad%FF.txt",
        files + "sub/numbers.txt",
        files + "hello.txt",
    }
    assert not any(ui.server.token in u for u in ui.requests)  # the token stays in headers
