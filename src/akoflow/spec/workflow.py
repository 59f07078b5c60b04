"""The resolved, validated workflow that the engine runs.

These are plain frozen dataclasses (no validation logic): the loader builds them from the YAML
after every check passed, with every inherited value already filled in from ``spec``.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class StoragePolicy:
    """Where a workflow's data lives on Kubernetes (spec.storagePolicy)."""

    type: str = "standalone"  # "standalone" | "distributed"
    storage_class_name: str | None = None
    storage_size: str | None = None


@dataclass(frozen=True, slots=True)
class Volume:
    """A host directory mounted into an activity's container."""

    local: str
    remote: str


@dataclass(frozen=True, slots=True)
class Webhook:
    """spec.notify's entry (akoflow.notify): the secret is the name of a variable, never its
    value."""

    url: str
    events: tuple[str, ...]
    secret_env: str | None = None


@dataclass(frozen=True, slots=True)
class Activity:
    """An activity as validated: its script, runtime, limits and dependencies resolved."""

    name: str
    run: str
    runtime: str
    image: str | None = None
    memory_limit: str | None = None  # as written, e.g. "500Mi"
    memory_bytes: int | None = None  # parsed
    cpu_limit: str | None = None  # as written, e.g. "500m"
    cpu_cores: float | None = None  # parsed
    depends_on: tuple[str, ...] = ()
    node_selector: dict[str, str] = field(default_factory=dict)
    keep_disk: bool = False
    mount_path: str | None = None
    retries: int = 0
    timeout_seconds: float | None = None
    env: dict[str, str] = field(default_factory=dict)
    inputs: tuple[str, ...] = ()  # declared paths or globs, relative to the data dir
    outputs: tuple[str, ...] = ()
    cache: bool = True  # extension: False never reuses an earlier run's result (akoflow.cache)


@dataclass(frozen=True, slots=True, weakref_slot=True)  # weakly cached by the loader
class Workflow:
    """A workflow as validated, the engine's and the store's view of the YAML."""

    name: str
    activities: tuple[Activity, ...]
    namespace: str = "akoflow"
    image: str | None = None
    runtime: str | None = None  # spec.runtime as written (activities carry the resolved one)
    mount_path: str | None = None
    storage_policy: StoragePolicy = field(default_factory=StoragePolicy)
    volumes: tuple[Volume, ...] = ()
    schedule: str | None = None  # placement policy name
    alpha: float | None = None
    strategy: str = "first-data-first"  # or "first-activity-first"
    collect: str = "outputs"  # remote files brought back at their end: "outputs", "all", "none"
    notify: tuple[Webhook, ...] = ()  # extension: webhooks told of its end (akoflow.notify)
