"""Server mode: the engine as a long-lived service behind a REST API (upstream-compatible).

The app is :func:`akoflow.server.app.create_app`; this package import stays free of the web
framework so the CLI client can use :mod:`akoflow.server.token` cheaply.
"""
