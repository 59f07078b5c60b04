"""Pydantic models of the workflow YAML exactly as written (camelCase keys, unknown keys
rejected).

These check each value on its own; cross-activity rules (unknown ``dependsOn``, duplicate
names, cycles, runtimes) live in the loader, which also turns the models into the resolved
dataclasses of :mod:`akoflow.spec.workflow`. Every field carries a description so that
:func:`json_schema` documents the format for editors and users.
"""

from __future__ import annotations

import posixpath
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

from akoflow.spec.quantities import (
    CPU_FORMS,
    DURATION_FORMS,
    MEMORY_FORMS,
    parse_cpu,
    parse_cpu_text,
    parse_duration,
    parse_memory,
    parse_memory_text,
)

__all__ = [
    "MAX_ENV_ENTRY_BYTES",
    "MAX_ENV_TOTAL_BYTES",
    "MAX_RUN_CHARS",
    "RESERVED_ENV_NAMES",
    "RESERVED_ENV_PREFIXES",
    "ActivitySpec",
    "NOTIFY_EVENTS",
    "StoragePolicySpec",
    "WebhookSpec",
    "WorkflowDocument",
    "WorkflowSpec",
    "constraint_message",
    "json_schema",
    "webhook_url_problem",
]

DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"

#: Longest ``run`` script, in characters: scripts are stored, shown and copied per attempt;
#: larger programs belong in files of the data dir (or the image).
MAX_RUN_CHARS = 1 << 20
#: Linux's MAX_ARG_STRLEN: exec(2) refuses (E2BIG) any one ``NAME=value`` environment entry
#: longer than this, counting its terminating NUL.
MAX_ENV_ENTRY_BYTES = 128 << 10
#: Most an activity's own environment (spec.env merged with its env) may take: argv and the
#: environment share ARG_MAX (about 2 MiB), and the engine's variables need room too.
MAX_ENV_TOTAL_BYTES = 1 << 20
#: Environment names a workflow may not set: bash reads them when it starts (a start-up file,
#: options, xtrace output) and they would run before, or change, the engine's own start-up
#: code of every attempt. Names starting with RESERVED_ENV_PREFIXES are refused too:
#: ``BASH_FUNC_name%%`` are exported functions and ``AKOFLOW_*`` are set by the engine.
RESERVED_ENV_NAMES = frozenset(
    {"BASH_ENV", "ENV", "SHELLOPTS", "BASHOPTS", "POSIXLY_CORRECT", "PS4", "BASH_XTRACEFD"}
)
RESERVED_ENV_PREFIXES = ("BASH_FUNC_", "AKOFLOW_")

_DNS_LABEL = re.compile(DNS_LABEL_PATTERN)
_DNS_SUBDOMAIN = re.compile(DNS_SUBDOMAIN_PATTERN)
_ENV_NAME = re.compile(ENV_NAME_PATTERN)
# Kubernetes label syntax: optional DNS-subdomain prefix and '/', then a name part.
_LABEL_KEY = re.compile(
    r"(?:[a-z0-9]([-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?"
)
_LABEL_VALUE = re.compile(r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?)?")


# --- validators ---------------------------------------------------------------------------


def _describe(value: object) -> str:
    """Name a YAML value's kind for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"a {type(value).__name__}"


def _dns_problem(value: str, *, subdomain: bool) -> str:
    """Explain why ``value`` is not a DNS-1123 label/subdomain (empty string when it is)."""
    limit = 253 if subdomain else 63
    pattern = _DNS_SUBDOMAIN if subdomain else _DNS_LABEL
    if not value:
        return "it is empty"
    if len(value) > limit:
        return f"it is {len(value)} characters long (at most {limit})"
    if pattern.fullmatch(value):
        return ""
    allowed = "abcdefghijklmnopqrstuvwxyz0123456789-" + ("." if subdomain else "")
    bad = sorted({c for c in value if c not in allowed})
    if bad:
        shown = " ".join(repr(c) for c in bad[:8])
        upper = " (uppercase is not allowed)" if any(c.isupper() for c in bad) else ""
        return f"it contains {shown}{upper}"
    if subdomain:
        return "each '.'-separated part must start and end with a lowercase letter or digit"
    return "it must start and end with a lowercase letter or digit"


_NAME_RULES = {
    "activity": (
        False,
        "activity names must be DNS-1123 labels (lowercase letters, digits and '-', starting "
        "and ending with a letter or digit, at most 63 characters) because they become "
        "Kubernetes object names and file names",
    ),
    "workflow": (
        True,
        "workflow names must be DNS-1123 subdomains (lowercase letters, digits, '-' and '.', "
        "starting and ending with a letter or digit, at most 253 characters) because they "
        "name Kubernetes objects and directories",
    ),
    "namespace": (
        False,
        "a Kubernetes namespace must be a DNS-1123 label (lowercase letters, digits and '-', "
        "starting and ending with a letter or digit, at most 63 characters)",
    ),
}


def constraint_message(loc: tuple[str | int, ...], value: object) -> str | None:
    """Explain a failed pattern/length constraint of the field at ``loc`` (a pydantic
    location), or None if the field has no specific explanation.

    The constraints run inside pydantic-core for speed; the wording lives here.
    """
    field = loc[-1] if loc else None
    if field == "dependsOn" or (len(loc) >= 2 and loc[-2] == "dependsOn"):
        return "activity names in dependsOn must not be empty"
    if not isinstance(value, str):
        return None
    kind = {
        ("name", 1): "workflow",
        ("name", 4): "activity",
        ("namespace", 2): "namespace",
    }.get((str(field), len(loc)))
    if kind is not None:
        subdomain, rule = _NAME_RULES[kind]
        problem = _dns_problem(value, subdomain=subdomain) or "it is not allowed"
        return f"invalid {kind} name {value!r}: {problem}; {rule}"
    if field == "run":
        return _run_problem(value)
    if field in ("image", "runtime", "schedule", "storageClassName"):
        if not value.strip():
            what = "must not be empty"
        elif "\x00" in value:
            what = "must not contain a NUL byte"
        elif any(c.isspace() for c in value):
            what = "must not contain whitespace"
        else:
            what = "must not contain control characters"
        return f"invalid {field} {_short(value)}: {what}"
    return None


def _short(value: str, keep: int = 60) -> str:
    """repr() of a value for a message, cut when long (messages quote what was written)."""
    text = repr(value)
    return text if len(text) <= keep else f"{text[: keep - 3]}..."


def _run_problem(value: str) -> str:
    if len(value) > MAX_RUN_CHARS:
        return (
            f"'run' is {len(value):,} characters long: a script may have at most "
            f"{MAX_RUN_CHARS:,} (1 Mi); keep larger programs in a file of the data dir or image"
        )
    nul = value.find("\x00")
    if nul >= 0:
        return f"'run' contains a NUL byte (character {nul + 1:,}): bash cannot run such a script"
    return "'run' must be a non-empty shell script"


def _number_to_str(value: object) -> object:
    """Quantities may be YAML numbers (``cpuLimit: 0.5``); keep them as the written text."""
    if isinstance(value, bool):
        return value  # rejected by the parser with a clear message
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e16 else repr(value)
    return value


def _memory_text(value: object) -> object:
    """Validate a memory quantity, keeping it as text (one Python call per value: speed)."""
    if type(value) is str:
        parse_memory_text(value)
        return value
    if isinstance(value, int | float):
        parse_memory(value)
        return _number_to_str(value)
    return value  # pydantic reports the wrong type


def _cpu_text(value: object) -> object:
    if type(value) is str:
        parse_cpu_text(value)
        return value
    if isinstance(value, int | float):
        parse_cpu(value)
        return _number_to_str(value)
    return value


def _to_seconds(value: object) -> object:
    """Durations become seconds right away: ``90``, ``30s``, ``1h30m``..."""
    if isinstance(value, str | int | float):
        return parse_duration(value)
    return value


def _scalar_to_str(value: object) -> str:
    """Environment and label values: YAML scalars become the strings a shell would see."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return value
    hint = "; write '' for an empty string" if value is None else ""
    raise ValueError(f"expected a string, number or boolean, got {_describe(value)}{hint}")


def _env_value(value: object) -> object:
    """An environment value as the shell will see it; a NUL cannot be passed to a process."""
    text = value if type(value) is str else _scalar_to_str(value)
    if "\x00" in text:
        raise ValueError(
            "an environment value cannot contain a NUL byte: the operating system passes "
            "environment entries as NUL-terminated strings"
        )
    return text


def _check_env_name(value: str) -> str:
    if not _ENV_NAME.fullmatch(value):
        raise ValueError(
            f"invalid environment variable name {_short(value)}: names must match "
            f"{ENV_NAME_PATTERN} (letters, digits and '_', not starting with a digit)"
        )
    if value in RESERVED_ENV_NAMES or value.startswith(RESERVED_ENV_PREFIXES):
        raise ValueError(f"environment variable name {value!r} is reserved: {_reserved_why(value)}")
    return value


def _reserved_why(name: str) -> str:
    if name.startswith("AKOFLOW_"):
        return "names starting with AKOFLOW_ are set by the engine"
    listed = ", ".join(sorted(RESERVED_ENV_NAMES))
    return (
        "bash reads it when it starts, so it would change how every attempt's shell starts "
        f"(reserved: {listed} and names starting with BASH_FUNC_ or AKOFLOW_)"
    )


def _one_or_many(value: object) -> object:
    """``dependsOn: a`` is accepted as shorthand for ``dependsOn: [a]``; null means none."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return value


def _parse_selector(value: object) -> object:
    """Upstream writes ``nodeSelector: key=value``; also accept ``k=v,k2=v2`` and mappings."""
    if not isinstance(value, str):
        return value
    result: dict[str, str] = {}
    for part in value.split(","):
        key, sep, label = part.strip().partition("=")
        if not sep:
            raise ValueError(
                f"invalid nodeSelector {value!r}: expected 'key=value' (several separated by "
                "commas) or a mapping of label keys to values"
            )
        result[key.strip()] = label.strip()
    return result


def _check_selector(value: dict[str, str]) -> dict[str, str]:
    for key, label in value.items():
        if not _LABEL_KEY.fullmatch(key) or len(key.rpartition("/")[2]) > 63:
            raise ValueError(
                f"invalid nodeSelector label key {key!r}: expected an optional DNS prefix and "
                "'/', then at most 63 letters, digits, '-', '_' or '.' starting and ending "
                "with a letter or digit (e.g. kubernetes.io/hostname)"
            )
        if not _LABEL_VALUE.fullmatch(label) or len(label) > 63:
            raise ValueError(
                f"invalid nodeSelector value {label!r} for {key!r}: at most 63 letters, "
                "digits, '-', '_' or '.', starting and ending with a letter or digit"
            )
    return value


def _check_volume(value: str) -> str:
    local, sep, remote = value.partition(":")
    if not sep or ":" in remote or not local or not remote:
        raise ValueError(
            f"invalid volume {_short(value)}: expected 'local:remote' with exactly one ':' and "
            "both paths non-empty, e.g. /home/me/in:/scratch/me/in"
        )
    if "\x00" in value:
        raise ValueError(f"invalid volume {_short(value)}: paths cannot contain a NUL byte")
    if not remote.startswith("/"):
        raise ValueError(f"invalid volume {value!r}: the remote path {remote!r} must be absolute")
    for side, path in (("local", local), ("remote", remote)):
        if ".." in path.split("/"):
            raise ValueError(
                f"invalid volume {value!r}: the {side} path {path!r} has a '..' component; "
                "write the directory it means without '..'"
            )
    if posixpath.normpath(remote) in ("/", "//"):
        raise ValueError(
            f"invalid volume {value!r}: the remote path must not be '/' (it is synchronised "
            "in both directions)"
        )
    return value


def _check_data_path(value: str) -> str:
    """A declared input or output: a path or glob relative to the data dir (the runtime's
    working dir), which must stay inside it: not absolute, no '..', written normalised."""
    if not value:
        raise ValueError("a declared path must not be empty")
    if "\x00" in value:
        raise ValueError(f"invalid path {_short(value)}: it contains a NUL byte")
    if value.startswith("/"):
        raise ValueError(
            f"invalid path {_short(value)}: declared inputs and outputs are relative to the data "
            "dir (the runtime's working dir); an absolute path would leave it"
        )
    parts = value.split("/")
    if ".." in parts:
        raise ValueError(
            f"invalid path {_short(value)}: '..' would leave the data dir (the runtime's working "
            "dir); declared inputs and outputs stay inside it"
        )
    if "" in parts or "." in parts:
        normal = "/".join(p for p in parts if p not in ("", "."))
        hint = f", as {normal!r}" if normal else ""
        raise ValueError(f"invalid path {_short(value)}: write it normalised{hint}")
    return value


def _check_mount_path(value: str) -> str:
    """Absolute, normalised (a trailing '/' is fine), without '..' and not the root."""
    if "\x00" in value:
        raise ValueError(f"invalid mountPath {_short(value)}: it contains a NUL byte")
    if not value.startswith("/"):
        raise ValueError(f"mount path {_short(value)} must be an absolute path (start with '/')")
    if ".." in value.split("/"):
        raise ValueError(
            f"invalid mountPath {value!r}: '..' is not allowed (the data dir would be mounted "
            "somewhere other than where the path seems to point)"
        )
    body = value.rstrip("/")
    if not body:
        raise ValueError(
            f"invalid mountPath {value!r}: it must not be '/' (the data dir would be mounted "
            "over the container's whole file system)"
        )
    normal = posixpath.normpath(re.sub("/+", "/", body))
    if normal != body:
        raise ValueError(f"invalid mountPath {value!r}: write it normalised, as {normal!r}")
    return value


# --- reusable field types -----------------------------------------------------------------

_STR_OR_NUMBER: dict[str, Any] = {"anyOf": [{"type": "string"}, {"type": "number"}]}

# Names are checked with pydantic's (Rust) pattern and length constraints, which is much
# faster than a Python validator on 100,000 activities; :func:`constraint_message` then
# explains a failure (the loader uses it for the error message).
ActivityName = Annotated[str, Field(pattern=DNS_LABEL_PATTERN, max_length=63)]
WorkflowName = Annotated[str, Field(pattern=DNS_SUBDOMAIN_PATTERN, max_length=253)]
Namespace = Annotated[str, Field(pattern=DNS_LABEL_PATTERN, max_length=63)]
NonBlank = Annotated[str, Field(pattern=r"\S")]
Token = Annotated[str, Field(pattern=r"^[^\s\x00-\x1f\x7f-\x9f]+$")]
Script = Annotated[str, Field(pattern=r"^[^\x00]*[^\s\x00][^\x00]*$", max_length=MAX_RUN_CHARS)]
MountPath = Annotated[
    str,
    AfterValidator(_check_mount_path),
    WithJsonSchema({"type": "string", "pattern": "^/[^\\x00]*[^/\\x00]", "examples": ["/data"]}),
]
MemoryQuantity = Annotated[
    str,
    BeforeValidator(_memory_text),
    WithJsonSchema({**_STR_OR_NUMBER, "examples": ["500Mi", "1Gi", "1G", 128974848]}),
]
CpuQuantity = Annotated[
    str,
    BeforeValidator(_cpu_text),
    WithJsonSchema({**_STR_OR_NUMBER, "examples": ["500m", "0.5", 2]}),
]
Duration = Annotated[
    float,
    BeforeValidator(_to_seconds),
    WithJsonSchema({**_STR_OR_NUMBER, "examples": ["30s", "5m", "1h30m", 90]}),
]
Retries = Annotated[int, Field(strict=True, ge=0, le=100)]
EnvName = Annotated[str, AfterValidator(_check_env_name)]
EnvValue = Annotated[
    str,
    BeforeValidator(_env_value),
    WithJsonSchema({"type": ["string", "number", "boolean"]}),
]
Env = Annotated[
    dict[EnvName, EnvValue],
    WithJsonSchema(
        {
            "type": "object",
            "propertyNames": {
                "pattern": ENV_NAME_PATTERN,
                "not": {
                    "anyOf": [
                        {"enum": sorted(RESERVED_ENV_NAMES)},
                        *({"pattern": f"^{prefix}"} for prefix in RESERVED_ENV_PREFIXES),
                    ]
                },
            },
            "additionalProperties": {"type": ["string", "number", "boolean"]},
        }
    ),
]
DependsOn = Annotated[
    list[NonBlank],
    BeforeValidator(_one_or_many),
    WithJsonSchema({"anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "string"}]}),
]
NodeSelector = Annotated[
    dict[str, Annotated[str, BeforeValidator(_scalar_to_str)]],
    BeforeValidator(_parse_selector),
    AfterValidator(_check_selector),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": "^[^=,]+=[^=,]*(,[^=,]+=[^=,]*)*$"},
                {"type": "object", "additionalProperties": {"type": "string"}},
            ],
            "examples": ["kubernetes.io/hostname=node-1"],
        }
    ),
]
DataPaths = Annotated[
    list[Annotated[str, AfterValidator(_check_data_path)]],
    BeforeValidator(_one_or_many),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "array", "items": {"type": "string"}},
                {"type": "string"},
            ],
            "examples": [["counts.csv", "plots/*.png", "out/**/*.json"]],
        }
    ),
]
VolumeEntry = Annotated[
    str,
    AfterValidator(_check_volume),
    WithJsonSchema({"type": "string", "pattern": "^[^:]+:/[^:]*$"}),
]


#: What a webhook of ``spec.notify`` can be told of (all of them by default).
NOTIFY_EVENTS = ("workflow.succeeded", "workflow.failed", "workflow.cancelled", "activity.failed")
NotifyEvent = Literal[
    "workflow.succeeded", "workflow.failed", "workflow.cancelled", "activity.failed"
]
MAX_WEBHOOKS = 16
MAX_WEBHOOK_URL_CHARS = 2048
#: The server default webhook's secret. A workflow's webhook names AKOFLOW_NOTIFY_SECRET_<NAME>
#: only (activities never see these, see akoflow.config): naming any variable of the engine
#: (HOME, a cloud key, the server's own secret) would sign bodies with it for whoever wrote the
#: workflow, and a receiver of theirs could then test guesses of its value.
NOTIFY_SECRET_VARIABLE = "AKOFLOW_NOTIFY_SECRET"
_WORKFLOW_SECRET = re.compile(rf"^{NOTIFY_SECRET_VARIABLE}_[A-Za-z0-9_]+$")
WORKFLOW_SECRET_PATTERN = _WORKFLOW_SECRET.pattern


def webhook_url_problem(url: str) -> str:
    """Why ``url`` cannot be a webhook (empty string when it can): http or https with a host,
    no blanks or control characters. Messages never repeat the URL (it may hold a token)."""
    if not url:
        return "the webhook URL is empty"
    if len(url) > MAX_WEBHOOK_URL_CHARS:
        return f"the webhook URL is {len(url)} characters long (at most {MAX_WEBHOOK_URL_CHARS})"
    if any(c.isspace() or ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in url):
        return "the webhook URL contains blanks or control characters"
    scheme, sep, _ = url.partition("://")
    if not sep or scheme.lower() not in ("http", "https"):
        shown = f" (it starts with {scheme[:12]!r})" if sep else ""
        return f"the webhook URL must start with http:// or https://{shown}"
    try:
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a port that is not one
    except ValueError:
        return "the webhook URL's host or port is not valid"
    if not host:
        return "the webhook URL has no host"
    return ""


def _check_webhook_url(value: str) -> str:
    problem = webhook_url_problem(value)
    if problem:
        raise ValueError(problem)
    return value


def _check_secret_variable(value: str) -> str:
    if not _ENV_NAME.match(value):
        # Not echoed: it may be the secret itself, written where its variable's name goes.
        raise ValueError(
            "must be the name of the environment variable that holds the secret (letters, "
            "digits and '_', not starting with a digit), not the secret itself"
        )
    if not _WORKFLOW_SECRET.match(value):
        # Not echoed either: a secret can look like a variable's name.
        raise ValueError(
            f"must name a variable {NOTIFY_SECRET_VARIABLE}_<NAME> (e.g. "
            f"{NOTIFY_SECRET_VARIABLE}_TEAM) set in the engine's environment: a workflow's "
            f"webhook is signed with no other variable of the engine ({NOTIFY_SECRET_VARIABLE} "
            "itself is the key of the server's default webhook)"
        )
    return value


WebhookUrl = Annotated[
    str,
    AfterValidator(_check_webhook_url),
    WithJsonSchema({"type": "string", "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://", "format": "uri"}),
]
SecretVariable = Annotated[
    str,
    AfterValidator(_check_secret_variable),
    WithJsonSchema({"type": "string", "pattern": WORKFLOW_SECRET_PATTERN}),
]


def _no_items() -> list[Any]:
    """A new empty list: ``default_factory=list`` but for pydantic, which reads the signature
    of each factory (whether it takes the data validated so far): ``list``'s comes from its
    text signature, through the tokenizer, whose first use (~2 ms) is every run's."""
    return []


class _Strict(BaseModel):
    """Shared config: unknown keys are errors, keys are matched by their YAML (camelCase) name."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        field_title_generator=lambda name, _info: name.replace("_", " ").capitalize(),
    )


class StoragePolicySpec(_Strict):
    """How activity working directories are stored on Kubernetes."""

    type: Literal["standalone", "distributed"] = Field(
        default="standalone",
        description=(
            "'standalone' (default): one shared PersistentVolumeClaim mounted by every activity "
            "of the workflow; 'distributed': one volume per worker node, not shared between nodes."
        ),
    )
    storage_class_name: Token | None = Field(
        default=None,
        alias="storageClassName",
        description="Kubernetes StorageClass for the volumes (cluster default when omitted).",
    )
    storage_size: MemoryQuantity | None = Field(
        default=None,
        alias="storageSize",
        description="Size of each volume as a Kubernetes quantity, e.g. 64Mi or 1Gi.",
    )


class WebhookSpec(_Strict):
    """A webhook told of the run's end and of failed activities (an AkôFlow extension)."""

    url: WebhookUrl = Field(
        description="Where the JSON body is POSTed: an http:// or https:// URL.",
    )
    events: list[NotifyEvent] | None = Field(
        default=None,
        min_length=1,
        description=(
            "What it is told of: any of 'workflow.succeeded', 'workflow.failed', "
            "'workflow.cancelled', 'activity.failed' (default: all of them)."
        ),
    )
    secret: SecretVariable | None = Field(
        default=None,
        description=(
            "Name of the engine's environment variable that holds the HMAC-SHA256 key, "
            "AKOFLOW_NOTIFY_SECRET_<NAME>: the body is signed with it (X-AkoFlow-Signature). "
            "The value is read when sending and never stored or shown."
        ),
    )


class ActivitySpec(_Strict):
    """One shell activity of the DAG. Unset values are inherited from ``spec``."""

    name: ActivityName = Field(
        description=(
            "Unique activity name, a DNS-1123 label (lowercase letters, digits and '-', at most "
            "63 characters): it becomes part of Kubernetes object names and file names."
        )
    )
    run: Script = Field(
        description=(
            "Shell script to run, passed verbatim to the shell (multi-line allowed; at most "
            "1 Mi characters, no NUL byte)."
        )
    )
    image: Token | None = Field(
        default=None,
        description=(
            "Container image (Kubernetes, Docker) or image path (Singularity, HPC); "
            "inherits spec.image."
        ),
    )
    runtime: Token | None = Field(
        default=None,
        description="Name of the runtime that runs this activity; inherits spec.runtime.",
    )
    memory_limit: MemoryQuantity | None = Field(
        default=None,
        alias="memoryLimit",
        description=f"Memory limit as a Kubernetes quantity: {MEMORY_FORMS}.",
    )
    cpu_limit: CpuQuantity | None = Field(
        default=None,
        alias="cpuLimit",
        description=f"CPU limit: {CPU_FORMS}.",
    )
    depends_on: DependsOn = Field(
        default_factory=_no_items,
        alias="dependsOn",
        description=(
            "Names of the activities that must finish before this one starts "
            "(a list, or a single name)."
        ),
    )
    node_selector: NodeSelector = Field(
        default_factory=dict,
        alias="nodeSelector",
        description=(
            "Kubernetes node labels the activity must run on: 'key=value' (several separated "
            "by commas) or a mapping of label keys to values."
        ),
    )
    keep_disk: bool = Field(
        default=False,
        strict=True,
        alias="keepDisk",
        description="Keep the activity's volume after the workflow finishes (default false).",
    )
    mount_path: MountPath | None = Field(
        default=None,
        alias="mountPath",
        description="Absolute path where the activity's data directory is mounted; "
        "inherits spec.mountPath.",
    )
    retries: Retries | None = Field(
        default=None,
        description="How many times to retry the activity after a failure (0..100); "
        "inherits spec.retries, default 0.",
    )
    timeout: Duration | None = Field(
        default=None,
        description=f"Maximum run time before the activity is killed; {DURATION_FORMS}. "
        "Inherits spec.timeout, default none.",
    )
    env: Env | None = Field(
        default=None,
        description="Environment variables for the script, merged over spec.env "
        "(values become strings).",
    )
    inputs: DataPaths = Field(
        default_factory=_no_items,
        description=(
            "Files the activity reads: paths or globs ('*', '?', '[...]' within a name, '**' "
            "for any depth) relative to the data dir (the runtime's working dir). One that "
            "matches nothing when the activity is dispatched fails it without running it."
        ),
    )
    outputs: DataPaths = Field(
        default_factory=_no_items,
        description=(
            "Files the activity writes, as paths or globs like inputs. Each is attributed to "
            "the attempt that wrote it on every runtime; one that matches nothing after a "
            "successful attempt fails that attempt with the missing paths."
        ),
    )
    cache: bool = Field(
        default=True,
        strict=True,
        description="Reuse the result of an earlier run of the same state dir whose "
        "fingerprint matches (script, image, settings, inputs' contents; see docs/caching.md); "
        "false always runs it (default true).",
    )


class WorkflowSpec(_Strict):
    """Workflow-wide settings and the activities; settings here are defaults for activities."""

    image: Token | None = Field(
        default=None,
        description="Default container image (or image path for Singularity/HPC).",
    )
    runtime: Token | None = Field(
        default=None,
        description="Default runtime name for activities that do not set one.",
    )
    namespace: Namespace | None = Field(
        default=None,
        description="Kubernetes namespace (a DNS-1123 label); default 'akoflow'.",
    )
    mount_path: MountPath | None = Field(
        default=None,
        alias="mountPath",
        description="Default absolute mount path for activity data directories.",
    )
    storage_policy: StoragePolicySpec | None = Field(
        default=None,
        alias="storagePolicy",
        description="Kubernetes storage settings.",
    )
    volumes: list[VolumeEntry] = Field(
        default_factory=_no_items,
        description="Paths to synchronise for HPC runtimes, each 'local:remote' with an "
        "absolute remote path.",
    )
    schedule: Token | None = Field(
        default=None,
        description=(
            "Placement policy that chooses a node for each activity: 'akoscore' (the highest "
            "AkôScore wins), 'round-robin', or a policy installed as a Python entry point "
            "(group 'akoflow.placement'). Unset: the runtime's own scheduler places work."
        ),
    )
    alpha: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        strict=False,
        description=(
            "AkôScore weight between memory headroom (1) and expected speed (0); default the "
            "runtime's {NAME}_ALPHA, else 0.5."
        ),
    )
    strategy: Literal["first-data-first", "first-activity-first", "FDF", "FAF"] = Field(
        default="first-data-first",
        description=(
            "'first-data-first' (FDF, default): an activity starts as soon as its inputs are "
            "ready. 'first-activity-first' (FAF): each DAG level finishes before the next starts."
        ),
    )
    collect: Literal["outputs", "all", "none"] = Field(
        default="outputs",
        description=(
            "Which files written on remote runtimes (HPC, Kubernetes) come back to the engine "
            "host's data dir when their activity ends: 'outputs' (default) those of the "
            "workflow's last activities, 'all' every one, 'none' none. Files a later activity "
            "on another runtime needs always follow it."
        ),
    )
    retries: Retries | None = Field(
        default=None,
        description="Default number of retries after a failure (0..100) for every activity.",
    )
    timeout: Duration | None = Field(
        default=None,
        description=f"Default maximum run time for every activity; {DURATION_FORMS}.",
    )
    env: Env | None = Field(
        default=None,
        description="Environment variables given to every activity (activity env wins).",
    )
    notify: list[WebhookSpec] = Field(
        default_factory=_no_items,
        max_length=MAX_WEBHOOKS,
        description=(
            "Webhooks POSTed a signed JSON body when the run ends and when an activity fails "
            f"(at most {MAX_WEBHOOKS}; the server's AKOFLOW_NOTIFY_URL is told too). See "
            "docs/operating.md."
        ),
    )
    activities: list[ActivitySpec] = Field(
        min_length=1,
        description="The activities of the workflow, in file order (at least one).",
    )


class WorkflowDocument(_Strict):
    """An AkôFlow workflow file."""

    model_config = ConfigDict(
        title="AkôFlow workflow",
        json_schema_extra={"$schema": "https://json-schema.org/draft/2020-12/schema"},
    )

    name: WorkflowName = Field(
        description=(
            "Workflow name, a DNS-1123 subdomain (lowercase letters, digits, '-' and '.', "
            "at most 253 characters)."
        ),
    )
    spec: WorkflowSpec = Field(description="Workflow settings and activities.")


def json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of the workflow file, keyed by the YAML names."""
    return WorkflowDocument.model_json_schema(by_alias=True)
