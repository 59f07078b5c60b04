"""The web UI: a static single-page app under ``/akoflow-admin/`` that talks to the REST API.

The pages hold no data and need no token: the browser asks the user for the API token, keeps
it in ``sessionStorage`` and sends it as ``Authorization: Bearer`` on every API call. Every
asset ships in the package (no CDN) and every response carries a strict Content-Security-Policy
(no inline script or style), so a workflow's names, logs or errors can only ever be text.
"""

from akoflow.server.ui.routes import router

__all__ = ["router"]
