"""Deleting finished runs and what they left: rows, files, backend objects, database pages
(``akoflow delete``, ``akoflow gc``, the server's routes and ``AKOFLOW_RETENTION``)."""

from akoflow.gc.collector import Collector, DeletedRun, RemoteOutcome, Report, fresh_runtime
from akoflow.gc.options import GcOptions, parse_age

__all__ = [
    "Collector",
    "DeletedRun",
    "GcOptions",
    "RemoteOutcome",
    "Report",
    "fresh_runtime",
    "parse_age",
]
