"""The engine's notification settings, from ``AKOFLOW_NOTIFY_*`` and ``AKOFLOW_PUBLIC_URL``.

``AKOFLOW_NOTIFY_URL`` is a webhook told of every run of the state dir (the server's default,
next to each workflow's own ``spec.notify``); ``AKOFLOW_NOTIFY_SECRET`` holds its HMAC key
and ``AKOFLOW_NOTIFY_EVENTS`` chooses its events. The rest shape delivery: tries, the first
back-off (doubled after each failed try), the per-request timeout and how long ``akoflow
run`` waits at its end for its run's deliveries. A bad value is a :class:`SettingError`
naming the variable; a secret's value is never echoed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from akoflow.config import RuntimeConfig
from akoflow.errors import SettingError
from akoflow.spec.model import NOTIFY_EVENTS, NOTIFY_SECRET_VARIABLE, webhook_url_problem
from akoflow.spec.workflow import Webhook

PUBLIC_URL_ENV = "AKOFLOW_PUBLIC_URL"
DEFAULT_TRIES = 8  # with a first back-off of 30 s: the last try about 64 min after the first
DEFAULT_BACKOFF = 30.0
DEFAULT_TIMEOUT = 10.0
DEFAULT_WAIT = 5.0
MAX_TRIES = 100


@dataclass(frozen=True, slots=True)
class NotifySettings:
    """The webhooks' settings (from AKOFLOW_NOTIFY_*)."""

    default: Webhook | None = None  # AKOFLOW_NOTIFY_URL's webhook
    tries: int = DEFAULT_TRIES
    first_backoff: float = DEFAULT_BACKOFF
    max_backoff: float = 6 * 3600.0
    timeout: float = DEFAULT_TIMEOUT  # one request, start to end
    wait: float = DEFAULT_WAIT  # at an engine's stop, for its ended runs' deliveries
    public_url: str | None = None  # links to a run's page (the server's address for people)

    def delay(self, tries: int) -> float:
        """The wait after the ``tries``-th failed try: the first back-off, doubled each time."""
        return float(min(self.first_backoff * 2.0 ** max(tries - 1, 0), self.max_backoff))

    @property
    def lease(self) -> float:
        """How long a sender holds a delivery it tries: its request is cut at ``timeout``,
        so another engine may take it over only once that try surely ended."""
        return self.timeout + max(2.0, self.timeout / 2)


def parse_events(raw: str | None, variable: str) -> tuple[str, ...]:
    """``workflow.failed,activity.failed`` (commas or blanks) as events; empty: all."""
    names = [n for n in (raw or "").replace(",", " ").split() if n]
    unknown = [n for n in names if n not in NOTIFY_EVENTS]
    if unknown:
        raise SettingError(
            f"{variable} names unknown events {', '.join(map(repr, unknown))}; known: "
            f"{', '.join(NOTIFY_EVENTS)}",
            variable=variable,
        )
    return tuple(dict.fromkeys(names)) or NOTIFY_EVENTS


def load(environ: Mapping[str, str] | None = None) -> NotifySettings:
    env = os.environ if environ is None else environ
    config = RuntimeConfig.from_env("akoflow-notify", env)
    default = None
    url = config.get_text("URL")
    if url is not None:
        problem = webhook_url_problem(url)
        if problem:  # the URL itself is not shown: it may hold a token
            raise config.invalid("URL", f"is not a webhook URL: {problem}")
        events = parse_events(config.get("EVENTS"), config.variable("EVENTS"))
        secret = NOTIFY_SECRET_VARIABLE if config.get_text("SECRET") else None
        default = Webhook(url, events, secret)
    public = (env.get(PUBLIC_URL_ENV) or "").strip().rstrip("/") or None
    if public is not None and webhook_url_problem(public):
        raise SettingError(
            f"{PUBLIC_URL_ENV} must be the server's http:// or https:// address "
            f"({webhook_url_problem(public).replace('the webhook URL', 'it')})",
            variable=PUBLIC_URL_ENV,
        )
    return NotifySettings(
        default=default,
        tries=config.get_int("TRIES", DEFAULT_TRIES, minimum=1, maximum=MAX_TRIES),
        first_backoff=config.get_seconds("BACKOFF", DEFAULT_BACKOFF),
        timeout=config.get_seconds("TIMEOUT", DEFAULT_TIMEOUT, maximum=600.0),
        wait=config.get_seconds("WAIT", DEFAULT_WAIT, minimum=0.0, maximum=600.0),
        public_url=public,
    )


def webhooks_of(spec_hooks: tuple[Webhook, ...], default: Webhook | None) -> list[Webhook]:
    """A run's webhooks: its own, then the default unless it names the same URL."""
    hooks = list(spec_hooks)
    if default is not None and all(h.url != default.url for h in hooks):
        hooks.append(default)
    return hooks


__all__ = ["NotifySettings", "load", "parse_events", "webhooks_of"]
