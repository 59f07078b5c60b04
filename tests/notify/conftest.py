from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import cli_env
from tests.notify.receiver import Receiver
from tests.server.conftest import server, start_server  # noqa: F401  (fixtures)

SECRET = "n0t-in-any-log-7f3a9c"
# Short waits so a test takes seconds: the first back-off, one request, the end-of-run wait.
FAST = {
    "AKOFLOW_NOTIFY_BACKOFF": "0.2",
    "AKOFLOW_NOTIFY_TIMEOUT": "1",
    "AKOFLOW_NOTIFY_WAIT": "10",
    "AKOFLOW_NOTIFY_SECRET_HOOK": SECRET,
}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rx = Receiver()
    yield rx
    rx.close()


def env(**extra: str) -> dict[str, str]:
    return cli_env(**{**FAST, **extra})


def workflow(path: Path, notify: str, *activities: tuple[str, str]) -> Path:
    """A workflow file: ``notify`` is the YAML of spec.notify's list (indented 4)."""
    acts = "".join(
        f"    - name: {n}\n      run: {r!r}\n      cache: false\n" for n, r in activities
    )
    path.write_text(f"name: {path.stem}\nspec:\n  notify:\n{notify}  activities:\n{acts}")
    return path


def hook(
    url: str, *, events: list[str] | None = None, secret: str | None = "AKOFLOW_NOTIFY_SECRET_HOOK"
) -> str:
    text = f"    - url: {url!r}\n"
    if events is not None:
        text += f"      events: [{', '.join(events)}]\n"
    if secret is not None:
        text += f"      secret: {secret}\n"
    return text


def cli(
    state: Path, *args: str, environ: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "akoflow", *args, "--state-dir", str(state)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, env=environ or env())


def query(state: Path, sql: str) -> list[dict[str, Any]]:
    """Rows of the state database as the engine left them (nothing if not made yet)."""
    if not (state / "akoflow.db").exists():
        return []
    with contextlib.closing(sqlite3.connect(state / "akoflow.db")) as db:
        db.row_factory = sqlite3.Row
        try:
            rows = db.execute(sql).fetchall()
        except sqlite3.OperationalError as exc:  # its tables not made yet
            if "no such table" in str(exc):
                return []
            raise
        db.commit()
    return [dict(r) for r in rows]


def deliveries(state: Path) -> list[dict[str, Any]]:
    return query(state, "SELECT * FROM notify_deliveries ORDER BY id")
