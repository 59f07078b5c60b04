"""The UI's bundled files: read once from the package, served by name only (no paths)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


def content_type(name: str) -> str | None:
    """The media type of a bundled file by its suffix; None for a kind the UI never ships."""
    dot = name.rfind(".")
    return CONTENT_TYPES.get(name[dot:]) if dot > 0 else None


@cache
def bundled() -> dict[str, Asset]:
    """Every file of ``static/`` by bare name: a request can only ever name one of these."""
    assets: dict[str, Asset] = {}
    for entry in resources.files(__package__).joinpath("static").iterdir():
        kind = content_type(entry.name)
        if kind is None or not entry.is_file():
            continue
        body = entry.read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        assets[entry.name] = Asset(body=body, content_type=kind, etag=etag)
    return assets
