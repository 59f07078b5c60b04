"""Validate and plan one big workflow file in this process (run by bench/run.py).

Plan = the DAG work the engine does before running anything: cycle check, topological order
and depth levels of every activity.
"""

from __future__ import annotations

import sys
import time

from akoflow import service
from akoflow.spec import dag


def main(path: str) -> None:
    start = time.perf_counter()
    with open(path, encoding="utf-8") as f:
        prepared = service.validate_text(f.read(), path)
    validated = time.perf_counter()
    deps = {a.name: a.depends_on for a in prepared.workflow.activities}
    order = dag.topological_order(deps)
    depth = dag.levels(deps)
    planned = time.perf_counter()
    print(
        f"validate {validated - start:.3f} s, plan {planned - validated:.3f} s, "
        f"{len(order)} activities, depth {max(depth.values()) + 1}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main(sys.argv[1])
