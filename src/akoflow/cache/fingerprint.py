"""Fingerprints of activities: pure functions, no I/O.

An activity's **key** hashes what it runs and how: the recipe version, the workflow's and the
activity's names, its script, image, runtime kind and the runtime settings that can change a
result, its environment, limits, placement settings, declared inputs and outputs, and the
fingerprints of its upstream activities. Its **fingerprint** adds what it read: the path and
SHA-256 of every file. Each part is kept as a digest of its own (:func:`components`), so a
miss can say what changed; nothing is kept in clear (a setting's value, a secret, an env
value), only SHA-256 digests.

:data:`RECIPE` is part of every key: a change of what goes into a key raises it, and every
entry made before no longer matches (nothing is reused on a recipe it was not made with).
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence

from akoflow.config import is_secret_key
from akoflow.spec.workflow import Activity, Workflow

RECIPE = "akoflow-cache/1"

# Runtime settings ({NAME}_{KEY}) that change how a run is operated, never what it computes:
# left out of keys (a new MAX_PARALLEL must not rerun a workflow). Every other setting of the
# activity's runtime counts, except secrets, which change who may do something, not what it
# computes (a rotated token must not rerun everything); they are never stored either way.
OPERATIONAL_SETTINGS = frozenset(
    {
        "ACCEPT_NEW_HOST_KEY",
        "ACCOUNTING",
        "API_VERSION",
        "CGROUPS",
        "CLEANUP",
        "COMMAND_TIMEOUT",
        "CONNECT_TIMEOUT",
        "FAIL_FAST_GRACE",
        "GO_TIMEOUT",
        "HEALTH_TIMEOUT",
        "KEEPALIVE",
        "KNOWN_HOSTS",
        "MAX_PARALLEL",
        "MAX_QUEUED",
        "MAX_SESSIONS",
        "METRICS_INTERVAL",
        "POLL_INTERVAL",
        "PULL_POLICY",
        "PULL_TIMEOUT",
        "QUEUE_AHEAD",
        "READY_TIMEOUT",
        "RECONNECT_MAX",
        "SPAWNERS",
        "STOP_TIMEOUT",
        "SUBMIT_RATE",
        "TIMEOUT",
        "TTL_SECONDS_AFTER_FINISHED",
        "WATCH_TIMEOUT",
    }
)

# What each component means to a person (a miss names the ones that changed).
COMPONENT_NAMES = {
    "recipe": "the cache recipe (a newer AkôFlow)",
    "workflow": "the workflow name",
    "activity": "the activity name",
    "script": "the script",
    "image": "the image",
    "runtime": "the runtime kind or its settings",
    "env": "the environment",
    "limits": "the CPU or memory limits",
    "placement": "the placement settings (nodeSelector, mountPath, namespace, volumes, storage)",
    "declared": "the declared inputs or outputs",
    "inherited": "an environment variable it names, inherited from the engine",
    "upstream names": "its dependencies",
    "upstreams": "the fingerprint of one or more of its upstream activities",
}
UPSTREAM = "upstream:"  # + an upstream activity's name: its fingerprint

# From this many upstream activities on, their names and fingerprints are two digests
# (UPSTREAM_NAMES, UPSTREAMS), not a component each: a join of 100,000 kept 8.7 MB of
# components in each entry, and encoding them held the engine's loop for 0.2 s; a miss then
# says that one of its upstream fingerprints changed, not which.
BIG_FAN_IN = 1_000
UPSTREAM_NAMES = "upstream names"
UPSTREAMS = "upstreams"
_DIGEST_CHUNK = 1_000  # items encoded at a time (a thread computing it lets others run)


# What json.dumps(..., sort_keys=True, separators=(",", ":")) builds at each call: made once
# (four digests per activity of a 100,000-activity run).
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def digest(*parts: object) -> str:
    """SHA-256 of ``parts`` as canonical JSON (lists, dicts with sorted keys, strings)."""
    return hashlib.sha256(_CANONICAL.encode(parts).encode()).hexdigest()


def digest_of_many(items: Sequence[object]) -> str:
    """``digest(list(items))``, encoded a chunk at a time: in a worker thread, the event
    loop gets the interpreter between chunks (one encode of 100,000 items held it 60 ms)."""
    h = hashlib.sha256(b"[[")
    for start in range(0, len(items), _DIGEST_CHUNK):
        if start:
            h.update(b",")
        h.update(_CANONICAL.encode(items[start : start + _DIGEST_CHUNK])[1:-1].encode())
    h.update(b"]]")
    return h.hexdigest()


# The same as digest (JSON writes a tuple as a list), remembered: most components are the
# same for every activity of a run (image, limits, placement...), and a 100,000-activity run
# computed each twice per activity. ``typed``: 1 and 1.0 are two JSON texts.
_shared_digest = functools.lru_cache(maxsize=1024, typed=True)(digest)


def runtime_settings(kind: str, values: Mapping[str, str], prefix: str) -> str:
    """Digest of the runtime kind and the settings (``{prefix}{KEY}`` variables) that can
    change a result: every one but :data:`OPERATIONAL_SETTINGS` and secrets."""
    kept = sorted(
        (name[len(prefix) :], value)
        for name, value in values.items()
        if name.startswith(prefix)
        and name[len(prefix) :] not in OPERATIONAL_SETTINGS
        and not is_secret_key(name[len(prefix) :])
    )
    return digest(kind, kept)


# Variables a script's shell sets itself, or the engine sets per attempt (never the same in
# two runs): their inherited values are not what the script sees.
SHELL_SET = frozenset(
    {"PWD", "OLDPWD", "RANDOM", "SECONDS", "LINENO", "PPID", "SHLVL", "UID", "EUID", "IFS"}
)
SHELL_SET_PREFIXES = ("BASH", "AKOFLOW_")
_NAMED = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")
LOCAL_KINDS = ("local",)  # runtimes whose activities inherit the engine's environment


def inherited(activity: Activity, kind: str, environ: Mapping[str, str]) -> list[tuple[str, str]]:
    """The variables of the engine's environment ``activity``'s script names (``$NAME``,
    ``${NAME}``) that it inherits (a local runtime; not set by the workflow): their values
    change what it computes. Only their digest is kept. A variable read another way (a
    program's own ``getenv``) is not seen (docs/caching.md)."""
    if kind not in LOCAL_KINDS:
        return []
    names = set(_NAMED.findall(activity.run)) - set(activity.env) - SHELL_SET
    return sorted(
        (name, environ[name])
        for name in names
        if name in environ and not name.startswith(SHELL_SET_PREFIXES)
    )


def components(
    workflow: Workflow,
    activity: Activity,
    *,
    runtime: str,
    upstream: Mapping[str, str],
    environ: Sequence[tuple[str, str]] = (),
) -> dict[str, str]:
    """The digests making up ``activity``'s key. ``runtime`` is :func:`runtime_settings`'s
    digest; ``upstream`` maps each direct dependency's name to its fingerprint; ``environ``
    is what :func:`inherited` found (a part of the key only when there is some: the keys of
    other activities stay as they were)."""
    parts = {
        "recipe": _shared_digest(RECIPE),
        "workflow": _shared_digest(workflow.name),
        "activity": digest(activity.name),
        "script": digest(activity.run),
        "image": _shared_digest(activity.image),
        "runtime": runtime,
        "env": _shared_digest(tuple(sorted(activity.env.items()))),
        "limits": _shared_digest(activity.memory_bytes, activity.cpu_cores),
        "placement": _shared_digest(
            tuple(sorted(activity.node_selector.items())),
            activity.mount_path,
            workflow.namespace,
            tuple((v.local, v.remote) for v in workflow.volumes),
            (
                workflow.storage_policy.type,
                workflow.storage_policy.storage_class_name,
                workflow.storage_policy.storage_size,
            ),
        ),
        "declared": _shared_digest(tuple(activity.inputs), tuple(activity.outputs)),
    }
    if environ:
        parts["inherited"] = digest(list(environ))
    if len(activity.depends_on) >= BIG_FAN_IN:
        names = sorted(set(activity.depends_on))
        parts[UPSTREAM_NAMES] = digest_of_many(names)
        parts[UPSTREAMS] = digest_of_many([(name, upstream[name]) for name in names])
    else:
        for name in activity.depends_on:
            parts[UPSTREAM + name] = upstream[name]
    return parts


def key_of(parts: Mapping[str, str]) -> str:
    return digest(sorted(parts.items()))


def fingerprint(key: str, reads: Iterable[tuple[str, str]]) -> str:
    """The key and what was read: (path as percent-encoded bytes, SHA-256) pairs."""
    return digest(key, sorted(set(reads)))


def _as_digests(parts: Mapping[str, str]) -> dict[str, str]:
    """``parts`` with a part per upstream activity as the two digests of a big fan-in."""
    if UPSTREAM_NAMES in parts:
        return dict(parts)
    names = sorted(k[len(UPSTREAM) :] for k in parts if k.startswith(UPSTREAM))
    kept = {k: v for k, v in parts.items() if not k.startswith(UPSTREAM)}
    kept[UPSTREAM_NAMES] = digest_of_many(names)
    kept[UPSTREAMS] = digest_of_many([(name, parts[UPSTREAM + name]) for name in names])
    return kept


def changed(before: Mapping[str, str], now: Mapping[str, str]) -> list[str]:
    """What differs between two components of one activity, for people (upstream activities
    by name), in a stable order."""
    if (UPSTREAM_NAMES in before) != (UPSTREAM_NAMES in now):
        # One side keeps a part per upstream (fewer than BIG_FAN_IN, or made before they
        # were two digests): compared as digests, the same upstreams are not a change.
        compared = changed(_as_digests(before), _as_digests(now))
        return compared or ["how its upstream activities are keyed (a newer AkôFlow)"]
    found: list[str] = []
    for name in COMPONENT_NAMES:
        if name == UPSTREAMS and before.get(UPSTREAM_NAMES) != now.get(UPSTREAM_NAMES):
            continue  # other dependencies: their fingerprints differ, that says nothing more
        if before.get(name) != now.get(name):
            found.append(COMPONENT_NAMES[name])
    ups = sorted({k for k in (*before, *now) if k.startswith(UPSTREAM)})
    added = [k[len(UPSTREAM) :] for k in ups if k not in before]
    gone = [k[len(UPSTREAM) :] for k in ups if k not in now]
    differ = [k[len(UPSTREAM) :] for k in ups if k in before and k in now and before[k] != now[k]]
    if added or gone:
        found.append(COMPONENT_NAMES[UPSTREAM_NAMES])
    found += [f"upstream {name}'s fingerprint" for name in differ]
    return list(dict.fromkeys(found))  # "its dependencies" once, when a side has both forms


def sentence(items: Sequence[str], most: int | None = None) -> str:
    """``a, b and c``; beyond ``most`` items, the first ones and how many more."""
    if most is not None and len(items) > most:
        return ", ".join(items[:most]) + f" and {len(items) - most} more"
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


__all__ = [
    "BIG_FAN_IN",
    "COMPONENT_NAMES",
    "OPERATIONAL_SETTINGS",
    "RECIPE",
    "changed",
    "components",
    "digest",
    "digest_of_many",
    "fingerprint",
    "inherited",
    "key_of",
    "runtime_settings",
    "sentence",
]
