"""`akoflow report`: a self-contained HTML file that headless chromium opens without errors,
without any network request, and with every workflow value shown as text."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from playwright.sync_api import Browser, ConsoleMessage, Dialog, Request

from tests.conftest import cli_env
from tests.ui.conftest import SHOTS

WORKFLOW = """\
name: reported
spec:
  env:
    MARK: "<img src=x onerror=alert(1)>"
  activities:
    - name: make
      run: |
        echo data > data.txt
        end=$((SECONDS + 2)); while [ $SECONDS -lt $end ]; do :; done
    - name: use
      dependsOn: [make]
      run: cat data.txt
    - name: boom
      run: |
        echo "<script>alert('x')</script> $MARK" >&2
        exit 4
    - name: after-boom
      dependsOn: [boom]
      run: 'true'
"""


def test_report_opens_offline_in_chromium_with_everything_as_text(
    tmp_path: Path, browser: Browser
) -> None:
    (tmp_path / "wf.yaml").write_text(WORKFLOW)
    env = cli_env()

    def akoflow(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "akoflow", *args, "--state-dir", "state"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
        )

    assert akoflow("run", "wf.yaml", "-q").returncode == 1  # boom fails
    done = akoflow("report", "reported", "-o", "report.html")
    assert done.returncode == 0, done.stderr
    report = tmp_path / "report.html"
    text = report.read_text()
    assert "<script>" not in text and "&lt;script&gt;" in text

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    requests: list[str] = []
    problems: list[str] = []

    def console(msg: ConsoleMessage) -> None:
        if msg.type == "error":
            problems.append(msg.text)

    def dialog(d: Dialog) -> None:
        problems.append(f"dialog {d.message}")
        d.dismiss()

    def request(req: Request) -> None:
        requests.append(req.url)

    page.on("console", console)
    page.on("dialog", dialog)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.on("request", request)
    page.goto(report.as_uri())
    try:
        assert requests == [report.as_uri()]  # nothing but the file itself
        assert page.title() == "reported #1 · AkôFlow report"
        dag = page.locator('svg[aria-label="DAG"] rect')
        assert dag.count() == 4
        bars = page.locator('svg[aria-label="timeline"] rect')
        assert bars.count() == 3  # after-boom never ran
        rows = page.locator("table#activities tbody tr")
        assert rows.count() == 4
        make = page.locator("tr", has_text="make").first.inner_text()
        assert "succeeded" in make and "local" in make
        failure = page.locator("pre").inner_text()
        assert "<script>alert('x')</script> <img src=x onerror=alert(1)>" in failure
        assert "exit code 4" in page.locator("h3 + p").inner_text()
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "report.png"), full_page=True)
        assert not problems, problems
    finally:
        page.close()
