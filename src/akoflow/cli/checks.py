"""How ``akoflow runtimes check`` shows a check: the settings (secrets ***), what they resolve
to, then one line per step with ✓/✗ and the fix under a failed one. Reads the JSON shape of
:meth:`akoflow.runtimes.checks.Report.to_json`, so a server's answer shows the same."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

MARKS = {"ok": ("✓", "bold green"), "failed": ("✗", "bold red"), "skipped": ("–", "dim")}


def render(report: Mapping[str, Any], console: Console) -> None:
    console.print(
        Text.assemble(
            ("runtime ", "bold"), (str(report["runtime"]), "bold cyan"), f" ({report['kind']})"
        )  # fmt: skip
    )
    settings = report.get("settings") or {}
    if settings:
        shown = " ".join(f"{k}={v}" for k, v in sorted(settings.items()))
        console.print(Text(f"  settings: {shown}", style="dim"), soft_wrap=True)
    for key, value in (report.get("resolved") or {}).items():
        console.print(Text(f"  {key}: {value}", style="dim"), soft_wrap=True)
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column("mark", no_wrap=True)
    table.add_column("step", no_wrap=True, style="bold")
    table.add_column("detail", overflow="fold")
    for step in report.get("steps") or []:
        mark, style = MARKS.get(step["status"], ("?", ""))
        detail = Text(str(step["detail"]))
        if step["status"] == "failed":
            detail.stylize("red")
            if step.get("fix"):
                detail.append(f"\nfix: {step['fix']}", style="yellow")
        elif step["status"] == "skipped":
            detail.stylize("dim")
        table.add_row(Text(mark, style=style), escape(str(step["name"])), detail)
    console.print(table)
    passed = sum(1 for s in report.get("steps") or [] if s["status"] == "ok")
    total = len(report.get("steps") or [])
    if report.get("ok"):
        console.print(Text(f"all {total} checks passed", style="green"))
    else:
        console.print(Text(f"{passed} of {total} checks passed", style="bold red"))
