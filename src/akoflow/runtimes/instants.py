"""Times as backends write them (RFC 3339), read as seconds since the epoch."""

from __future__ import annotations

import re
from datetime import datetime

_BEYOND_MICROSECONDS = re.compile(r"(\.[0-9]{6})[0-9]+")


def instant(raw: object) -> float | None:
    """An RFC 3339 time (``2026-12-06T10:21:00.123456789Z``, as dockerd and the Kubernetes
    API write them; digits beyond microseconds are dropped) in seconds since the epoch; None
    for anything else, a time without its zone, or a zero time (``0001-01-01...``: a
    daemon's "never")."""
    if not isinstance(raw, str):
        return None
    try:
        when = datetime.fromisoformat(_BEYOND_MICROSECONDS.sub(r"\1", raw))
    except ValueError:
        return None
    return when.timestamp() if when.year > 1 and when.tzinfo is not None else None


__all__ = ["instant"]
