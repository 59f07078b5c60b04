"""Result caching: an activity whose fingerprint matches a succeeded attempt of an earlier run
of the same state dir is not run again; its outputs are restored into the new run's data dir
and it ends ``cached`` (see docs/caching.md).

- :mod:`.fingerprint`: what goes into a key and a fingerprint (pure, versioned);
- :mod:`.store`: the entries (migration 0011) and the lineage they are checked against;
- :mod:`.files`: content hashes, and restores that are whole or not at all;
- :mod:`.decide`: whether an earlier result can be reused now, or why not;
- :mod:`.stage`: the engine's stage between READY and a runtime's line;
- :mod:`.plan`: ``akoflow run --dry-run``: what would run, and why.

``AKOFLOW_CACHE=off`` turns it off for an engine, :func:`disable` for one run
(``akoflow run --no-cache``), ``cache: false`` for one activity.
"""

from __future__ import annotations

from akoflow.store import Repository


def disable(repo: Repository, workflow_id: int) -> None:
    """No activity of this stored run reuses an earlier result (also when it is resumed)."""
    from akoflow.cache.store import CacheStore

    CacheStore(repo).disable(workflow_id)


__all__ = ["disable"]
