"""Routes of the UI: the page shell for every UI path and the bundled static files.

Client-side routing: ``/akoflow-admin/``, ``/akoflow-admin/runtimes``,
``/akoflow-admin/submit``, ``/akoflow-admin/workflows/{id}/`` (and upstream's
``/akoflow-admin/workflows/{namespace}/{id}/``) all get the same shell; its scripts draw the
page from the API.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Path
from fastapi.responses import Response

from akoflow.server.errors import not_found
from akoflow.server.ui.assets import Asset, bundled

PREFIX = "/akoflow-admin"

# No inline script or style anywhere, nothing from another origin, no framing, no plugins:
# even if some text reached the DOM as markup it could neither run nor load anything.
CSP = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "font-src 'self'",
        "manifest-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
        "object-src 'none'",
    ]
)

SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}

AssetName = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")]

router = APIRouter(prefix=PREFIX, include_in_schema=False)


def _serve(asset: Asset, if_none_match: str | None) -> Response:
    # `no-cache`: revalidate every time (cheap with the ETag), so an upgraded server never
    # runs a stale script against a changed API.
    headers = {**SECURITY_HEADERS, "ETag": asset.etag, "Cache-Control": "no-cache"}
    if if_none_match is not None and asset.etag in if_none_match:
        return Response(status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.content_type, headers=headers)


@router.get("/static/{name}")
async def static_file(
    name: AssetName, if_none_match: Annotated[str | None, Header()] = None
) -> Response:
    asset = bundled().get(name)
    if asset is None or name == "index.html":
        raise not_found(f"file {name}")
    return _serve(asset, if_none_match)


@router.get("/")
@router.get("/{page:path}")
async def shell(page: str = "", if_none_match: Annotated[str | None, Header()] = None) -> Response:
    """The page shell, for every client-side route (an unknown one shows "not found")."""
    if page.startswith("static/"):
        raise not_found(f"file {page[7:]}")
    return _serve(bundled()["index.html"], if_none_match)
