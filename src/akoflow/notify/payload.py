"""What a webhook receives: the JSON body (made once per delivery, so every try sends the same
bytes), its signature, and how a webhook is named in logs.

Pure functions: no store, no network.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

SIGNATURE_HEADER = "X-AkoFlow-Signature"
DELIVERY_HEADER = "X-AkoFlow-Delivery"
EVENT_HEADER = "X-AkoFlow-Event"


@dataclass(frozen=True, slots=True)
class RunFacts:
    """A run as a notification tells of it."""

    id: int
    name: str
    namespace: str
    state: str
    created_at: float
    started_at: float | None
    finished_at: float | None
    counts: dict[str, int] | None = None  # activities by state (workflow events)


@dataclass(frozen=True, slots=True)
class ActivityFacts:
    """An activity as a notification tells of it."""

    name: str
    state: str
    runtime: str
    attempt: int
    max_attempts: int
    exit_code: int | None
    reason: str | None
    node: str | None
    started_at: float | None
    finished_at: float | None


def iso(ts: float | None) -> str | None:
    """An instant as RFC 3339 UTC with milliseconds (``2025-01-31T12:00:00.123Z``)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def run_link(public_url: str | None, wf_id: int) -> str | None:
    """The run's page in the server's UI, when the server's public address is known."""
    return f"{public_url}/akoflow-admin/workflows/{wf_id}/" if public_url else None


def body(
    event: str,
    at: float,
    run: RunFacts,
    activity: ActivityFacts | None,
    *,
    public_url: str | None,
    delivery: str | None = None,
) -> bytes:
    """The JSON body of one delivery (``delivery``: its id, a new UUID when not given)."""
    workflow: dict[str, Any] = {
        "id": run.id,
        "name": run.name,
        "namespace": run.namespace,
        # A workflow event tells of the state it entered (the run may be retried since).
        "state": event.split(".", 1)[1] if event.startswith("workflow.") else run.state,
        "createdAt": iso(run.created_at),
        "startedAt": iso(run.started_at),
        "finishedAt": iso(run.finished_at),
        "url": run_link(public_url, run.id),
    }
    if run.counts is not None:
        workflow["activities"] = dict(sorted(run.counts.items()))
    doc: dict[str, Any] = {
        "event": event,
        "delivery": delivery or str(uuid.uuid4()),
        "time": iso(at),
        "workflow": workflow,
    }
    if activity is not None:
        doc["activity"] = {
            "name": activity.name,
            "state": activity.state,
            "runtime": activity.runtime,
            "attempt": activity.attempt,
            "maxAttempts": activity.max_attempts,
            "exitCode": activity.exit_code,
            "reason": activity.reason,
            "node": activity.node,
            "startedAt": iso(activity.started_at),
            "finishedAt": iso(activity.finished_at),
        }
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


def delivery_id(raw: bytes) -> str:
    """The delivery id a body carries (sent again as the X-AkoFlow-Delivery header)."""
    value = json.loads(raw).get("delivery")
    return str(value) if value else ""


def signature(raw: bytes, secret: str) -> str:
    """X-AkoFlow-Signature's value: ``sha256=`` and the hex HMAC-SHA256 of the raw body."""
    digest = hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def shown_url(url: str) -> str:
    """A webhook as logs and API name it: scheme, host and port only. Its path, query and
    user info are left out: they often hold the receiver's token."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(a webhook URL that is not valid)"
    if ":" in host:
        host = f"[{host}]"
    rest = "/…" if (parts.path not in ("", "/") or parts.query) else "/"
    return f"{parts.scheme}://{host}{port}{rest}"


def scrubbed(text: str, url: str) -> str:
    """``text`` (an error's message) without the URL or its secret-bearing parts."""
    parts = urlsplit(url)
    for piece in (url, parts.query, parts.netloc if "@" in parts.netloc else "", parts.path):
        if piece and len(piece) > 1:
            text = text.replace(piece, "…")
    return text


__all__ = [
    "DELIVERY_HEADER",
    "EVENT_HEADER",
    "SIGNATURE_HEADER",
    "ActivityFacts",
    "RunFacts",
    "body",
    "delivery_id",
    "iso",
    "run_link",
    "scrubbed",
    "shown_url",
    "signature",
]
