"""Use cases shared by the CLI and the server: validate, store and look up workflow runs."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from akoflow import config
from akoflow.runtimes.registry import check_runtime_name
from akoflow.spec import Workflow, load_workflow
from akoflow.store import Repository

DB_NAME = "akoflow.db"


@dataclass(frozen=True)
class Prepared:
    workflow: Workflow
    text: str
    spec_hash: str
    source: str


def validate_text(text: str, source: str) -> Prepared:
    """Parse and validate; raises WorkflowValidationError listing every problem."""
    default = config.default_runtime()
    workflow = load_workflow(
        text, source=source, runtime_check=check_runtime_name, default_runtime=default
    )
    digest = hashlib.sha256(f"{default}\n{text}".encode()).hexdigest()
    return Prepared(workflow, text, digest, source)


def open_repository(state_dir: Path) -> Repository:
    # Logs, the database and the API token live here: private to the user.
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    return Repository(state_dir / DB_NAME)


def store(
    repo: Repository, state_dir: Path, prepared: Prepared, data_dir: Path | None = None
) -> int:
    return repo.create_workflow(
        prepared.workflow,
        spec_yaml=prepared.text,
        spec_hash=prepared.spec_hash,
        source=prepared.source,
        runs_root=state_dir / "runs",
        data_dir=data_dir,
    )
