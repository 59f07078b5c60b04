"""Notifications: webhooks told of a run's end and of an activity's failure (issue 19).

Events are recorded by the store's triggers (migration 0012) in the transaction that records
the end; :class:`~akoflow.notify.sender.Notifier` (an engine loop) turns them into signed
JSON POSTs, retried with back-off. See docs/operating.md for the payload and its signature.
"""

from __future__ import annotations

from akoflow.notify.sender import Notifier
from akoflow.notify.settings import NotifySettings

__all__ = ["NotifySettings", "Notifier"]
