"""Every example workflow shipped in examples/ is valid (runtimes included)."""

from __future__ import annotations

from pathlib import Path

import pytest

from akoflow.runtimes.registry import check_runtime_name
from akoflow.spec import load_workflow

EXAMPLES = sorted((Path(__file__).parents[2] / "examples").glob("*.yaml"))


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 6


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_is_valid(path: Path) -> None:
    workflow = load_workflow(path.read_text(), source=str(path), runtime_check=check_runtime_name)
    assert workflow.activities
