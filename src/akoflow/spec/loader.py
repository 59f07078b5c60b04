"""Load a workflow YAML file: parse, validate everything, report every error at once with its
path and line, then resolve inheritance into the frozen dataclasses of
:mod:`akoflow.spec.workflow`.

Design notes (why it looks like this):

* Speed. ``yaml.load(text, Loader=CSafeLoader)`` takes about 20 s on a 100,000-activity
  file (PyYAML's Python-level constructor and resolver, plus the garbage collector scanning
  the growing result). So :func:`_build` turns libyaml's event stream straight into dicts
  and lists, giving exactly SafeLoader's YAML 1.1 results (implicit types, anchors, merge
  keys), and also reports duplicate keys. Line numbers are not kept: only when there are
  errors does :func:`_find_lines` walk the events again, collecting the lines of just the
  paths it needs.
* All errors at once. Pydantic reports every per-value problem; the cross-activity checks
  (names, ``dependsOn``, cycles, runtimes) run on the raw data as well, so they still work
  when some activities are invalid.
* Inheritance comes from ``spec`` only, never from the previous activity (an upstream bug).
"""

from __future__ import annotations

import functools
import sys
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError
from pydantic_core import ErrorDetails
from yaml.events import (
    AliasEvent,
    DocumentEndEvent,
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
    StreamStartEvent,
)

from akoflow import heap
from akoflow.errors import AkoflowError
from akoflow.spec import dag
from akoflow.spec.model import (
    MAX_ENV_ENTRY_BYTES,
    MAX_ENV_TOTAL_BYTES,
    NOTIFY_EVENTS,
    ActivitySpec,
    StoragePolicySpec,
    WebhookSpec,
    WorkflowDocument,
    WorkflowSpec,
    constraint_message,
)
from akoflow.spec.quantities import parse_cpu, parse_memory
from akoflow.spec.workflow import Activity, StoragePolicy, Volume, Webhook, Workflow

try:
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

__all__ = [
    "RuntimeCheck",
    "SpecError",
    "WorkflowValidationError",
    "load_workflow",
    "load_workflow_file",
]

RuntimeCheck = Callable[[str], str | None]

#: Nodes that YAML aliases may add on top of the file's own (guards against "billion laughs").
MAX_ALIAS_EXPANSION = 1_000_000
#: Characters of text (keys and values) that the file and what its YAML aliases add may hold
#: together: a small file reusing one large anchored string must not become a huge workflow
#: (it is stored, sent by every workflow route and written out as scripts). A 100,000-activity
#: workflow written out in full is about 5 MiB; the CLI refuses files over 64 MiB as well.
MAX_EXPANDED_TEXT = 64 << 20
#: Largest workflow file :func:`load_workflow_file` reads.
MAX_FILE_BYTES = 64 << 20
#: Lines shown by ``str(WorkflowValidationError)``; ``errors`` always holds all of them.
REPORT_LIMIT = 200
#: Budget of name comparisons for "did you mean" suggestions on unknown ``dependsOn``.
_SUGGESTION_BUDGET = 200_000


@dataclass(frozen=True, slots=True)
class SpecError:
    """One problem in a workflow file.

    ``path`` is like ``spec.activities[3].memoryLimit`` (empty for file-level problems such
    as YAML syntax), ``line`` is 1-based in the YAML file.
    """

    path: str
    message: str
    line: int | None = None

    def format(self, source: str) -> str:
        """``FILE:LINE: PATH: MESSAGE``, leaving out what is unknown."""
        where = source if self.line is None else f"{source}:{self.line}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class WorkflowValidationError(AkoflowError):
    """Every problem found in a workflow file, sorted by line; ``str()`` is a report."""

    def __init__(self, errors: list[SpecError], source: str = "<workflow>") -> None:
        super().__init__(errors, source)
        self.errors = errors
        self.source = source

    def report(self, limit: int | None = REPORT_LIMIT) -> str:
        """Multi-line ``FILE:LINE: PATH: MESSAGE`` report, cut after ``limit`` errors."""
        count = len(self.errors)
        noun = "error" if count == 1 else "errors"
        lines = [f"{self.source}: {count} {noun} in workflow spec"]
        shown = self.errors if limit is None else self.errors[:limit]
        lines.extend(error.format(self.source) for error in shown)
        if len(shown) < count:
            lines.append(f"... and {count - len(shown)} more")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.report()


# --- internal issue representation --------------------------------------------------------

Loc = tuple[str | int, ...]


@dataclass(slots=True)
class _Issue:
    """An error before its line is known. ``at_key``: point at the key, not the value."""

    loc: Loc
    message: str
    at_key: bool = False
    line: int | None = None


class _YamlFailure(Exception):
    """The file is not usable YAML: reported alone, nothing else can be checked."""

    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


def _path_str(loc: Loc) -> str:
    parts: list[str] = []
    for segment in loc:
        if isinstance(segment, int) and not isinstance(segment, bool):
            parts.append(f"[{segment}]")
        else:
            parts.append(f".{segment}" if parts else str(segment))
    return "".join(parts)


# --- YAML: events to Python objects -------------------------------------------------------

_IMPLICIT: dict[Any, list[tuple[str, Any]]] = dict(yaml.SafeLoader.yaml_implicit_resolvers)
_IMPLICIT_FIRST = frozenset(key for key in _IMPLICIT if key)
_IMPLICIT_ANY = _IMPLICIT.get(None, [])
_CONSTRUCTOR = yaml.SafeLoader("")
_MERGE_TAG = "tag:yaml.org,2002:merge"
_STR_TAG = "tag:yaml.org,2002:str"
_MAP_TAGS = frozenset({None, "!", "tag:yaml.org,2002:map"})
_SEQ_TAGS = frozenset({None, "!", "tag:yaml.org,2002:seq"})


class _MergeKey:
    """The ``<<`` key of a YAML merge."""


_MERGE = _MergeKey()
_NO_KEY = object()


def _line(event: Any) -> int | None:
    return None if event is None else int(event.start_mark.line) + 1


def _construct_scalar(tag: str, value: str, event: Any) -> Any:
    """Build a non-string scalar exactly like PyYAML's SafeLoader would."""
    if tag == _MERGE_TAG:
        return _MERGE
    if tag == _STR_TAG:
        return value
    constructor = _CONSTRUCTOR.yaml_constructors.get(tag)
    if constructor is None or tag == "tag:yaml.org,2002:value":
        raise _YamlFailure(f"unsupported YAML tag {tag!r}", _line(event))
    try:
        return constructor(_CONSTRUCTOR, yaml.ScalarNode(tag, value))
    except Exception as exc:  # PyYAML constructors fail in many ways (IndexError on '')
        message = f"invalid value {value!r} for YAML tag {tag!r}: {exc or type(exc).__name__}"
        raise _YamlFailure(message, _line(event)) from None


def _resolve_plain(value: str, event: Any) -> Any:
    """YAML 1.1 implicit typing of a plain scalar (``3`` int, ``yes`` bool, ``~`` null...)."""
    for tag, pattern in _IMPLICIT.get(value[0] if value else "", []) + _IMPLICIT_ANY:
        if pattern.match(value):
            return _construct_scalar(tag, value, event)
    return value


def _apply_merges(mapping: dict[Any, Any], merges: list[Any], event: Any) -> None:
    """Apply ``<<`` merges in place: explicit keys win, then earlier merged mappings."""
    merged: dict[Any, Any] = {}
    sources: list[dict[Any, Any]] = []
    for merge in merges:
        items = merge if isinstance(merge, list) else [merge]
        for item in items:
            if not isinstance(item, dict):
                raise _YamlFailure(
                    "a YAML merge key '<<' needs a mapping or a list of mappings", _line(event)
                )
            sources.append(item)
    for source in reversed(sources):
        merged.update(source)
    merged.update(mapping)
    mapping.clear()
    mapping.update(merged)


def _build(text: str) -> tuple[Any, list[_Issue]]:
    """Parse one YAML document into plain Python objects; also report duplicate keys.

    Raises _YamlFailure for syntax errors and unusable constructs.
    """
    loader = _Loader(text)
    try:
        return _build_events(loader, len(text))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = None if mark is None else mark.line + 1
        column = "" if mark is None else f" (column {mark.column + 1})"
        problem = exc.problem or "syntax error"
        context = f" {exc.context}" if exc.context else ""
        raise _YamlFailure(f"invalid YAML{column}: {problem}{context}", line) from None
    except yaml.reader.ReaderError as exc:
        line = text.encode("utf-8", "surrogatepass")[: exc.position].count(b"\n") + 1
        raise _YamlFailure(f"invalid YAML: {exc.reason} {exc.character!r}", line) from None
    except yaml.YAMLError as exc:
        raise _YamlFailure(f"invalid YAML: {exc}", None) from None
    finally:
        loader.dispose()


def _expanded_size(obj: Any, sizes: dict[int, tuple[int, int]]) -> tuple[int, int]:
    """Nodes and characters of text (scalars, keys included) that ``obj`` stands for once
    aliases are expanded (memoised by identity, so shared sub-structures are walked once:
    linear even for "billion laughs" inputs)."""
    if not isinstance(obj, dict | list):
        return 1, _text_size(obj)
    known = sizes.get(id(obj))
    if known is not None:
        return known
    # Post-order walk without recursion; containers being walked count as one empty node
    # meanwhile, which also terminates self-referencing structures.
    sizes[id(obj)] = (1, 0)
    stack: list[tuple[Any, Iterator[Any]]] = [(obj, _children(obj))]
    totals = [[1, 0]]
    while stack:
        container, children = stack[-1]
        child = next(children, _NO_KEY)
        if child is _NO_KEY:
            stack.pop()
            nodes, chars = totals.pop()
            sizes[id(container)] = (nodes, chars)
            if totals:
                totals[-1][0] += nodes
                totals[-1][1] += chars
            continue
        if isinstance(child, dict | list):
            if id(child) not in sizes:
                sizes[id(child)] = (1, 0)
                stack.append((child, _children(child)))
                totals.append([1, 0])
                continue
            nodes, chars = sizes[id(child)]
        else:
            nodes, chars = 1, _text_size(child)
        totals[-1][0] += nodes
        totals[-1][1] += chars
    return sizes[id(obj)]


def _text_size(scalar: Any) -> int:
    """Characters a scalar stands for (other scalars are short: numbers, booleans, null)."""
    return len(scalar) if type(scalar) is str else 1


def _mib(chars: int) -> str:
    return f"{chars / (1 << 20):.1f} MiB"


def _children(container: Any) -> Iterator[Any]:
    if isinstance(container, dict):
        for key, value in container.items():
            yield key
            yield value
    else:
        yield from container


def _build_events(loader: Any, file_chars: int) -> tuple[Any, list[_Issue]]:
    """The hot loop: one pass over libyaml events with the open collection kept in locals.

    ``stack`` holds the enclosing collections as
    ``(container, is_mapping, pending key, key event, merges, anchor)``.
    """
    get_event = loader.get_event
    issues: list[_Issue] = []
    anchors: dict[str, Any] = {}
    sizes: dict[int, tuple[int, int]] = {}
    alias_nodes = 0
    # The file's own scalars are at most its length; aliases add what they stand for.
    text_budget = MAX_EXPANDED_TEXT - file_chars
    implicit_first = _IMPLICIT_FIRST
    no_key = _NO_KEY
    merge_key = _MERGE
    scalar_event, alias_event = ScalarEvent, AliasEvent
    mapping_start, sequence_start = MappingStartEvent, SequenceStartEvent
    mapping_end, sequence_end = MappingEndEvent, SequenceEndEvent
    stack: list[tuple[Any, bool, Any, Any, list[Any] | None, str | None]] = []
    container: Any = None  # the collection being filled (None: the document root)
    is_mapping = False
    key: Any = no_key
    key_event: Any = None
    merges: list[Any] | None = None
    anchor: str | None = None
    root: Any = None

    event = get_event()
    if type(event) is not StreamStartEvent:  # pragma: no cover - libyaml always starts so
        raise _YamlFailure("invalid YAML stream", None)
    event = get_event()
    if type(event) is StreamEndEvent:
        return None, issues
    while True:
        event = get_event()
        kind = type(event)
        if kind is scalar_event:
            obj = event.value
            if event.tag is None:
                if obj and obj[0] not in implicit_first:
                    pass  # the usual case: a string that cannot be anything else
                elif event.implicit[0]:
                    obj = _resolve_plain(obj, event)
            elif event.tag == "!":
                if event.implicit[0]:
                    obj = _resolve_plain(obj, event)
            else:
                obj = _construct_scalar(event.tag, obj, event)
            if obj is merge_key and (key is not no_key or not is_mapping):
                raise _YamlFailure("'<<' (a YAML merge) can only be a mapping key", _line(event))
            if event.anchor is not None:
                anchors[event.anchor] = obj
        elif kind is mapping_start or kind is sequence_start:
            opening_mapping = kind is mapping_start
            if event.tag not in (_MAP_TAGS if opening_mapping else _SEQ_TAGS):
                raise _YamlFailure(
                    f"unsupported YAML tag {event.tag!r} (only plain mappings and lists are "
                    "allowed in workflow files)",
                    _line(event),
                )
            stack.append((container, is_mapping, key, key_event, merges, anchor))
            container = {} if opening_mapping else []
            is_mapping = opening_mapping
            key, key_event, merges, anchor = no_key, None, None, event.anchor
            if anchor is not None:
                anchors[anchor] = container
            continue
        elif kind is mapping_end or kind is sequence_end:
            obj = container
            if merges is not None:
                _apply_merges(obj, merges, event)
            container, is_mapping, key, key_event, merges, anchor = stack.pop()
        elif kind is alias_event:
            if event.anchor not in anchors:
                raise _YamlFailure(f"unknown YAML alias *{event.anchor}", _line(event))
            obj = anchors[event.anchor]
            nodes, chars = _expanded_size(obj, sizes)
            alias_nodes += nodes
            text_budget -= chars
            if alias_nodes > MAX_ALIAS_EXPANSION:
                raise _YamlFailure(
                    f"YAML aliases expand to more than {MAX_ALIAS_EXPANSION:,} nodes",
                    _line(event),
                )
            if text_budget < 0:
                raise _YamlFailure(
                    "YAML aliases expand the workflow to more than "
                    f"{MAX_EXPANDED_TEXT >> 20} MiB of text (the file is {_mib(file_chars)}; "
                    "each use of an alias repeats its anchor's text): write such values once, "
                    "or keep large data in files of the data dir",
                    _line(event),
                )
        elif kind is DocumentEndEvent:
            event = get_event()
            if type(event) is not StreamEndEvent:
                raise _YamlFailure(
                    "expected a single YAML document, found another one (remove the '---')",
                    _line(event),
                )
            return root, issues
        else:  # pragma: no cover - libyaml never emits anything else inside a document
            raise _YamlFailure(f"unexpected YAML event {kind.__name__}", _line(event))

        # Place the finished node ``obj`` into the open collection.
        if is_mapping:
            if key is no_key:
                if type(obj) is not str and obj is not merge_key:
                    try:
                        hash(obj)
                    except TypeError:
                        raise _YamlFailure(
                            "a mapping key must be a scalar, not a list or mapping", _line(event)
                        ) from None
                key = obj
                key_event = event
            else:
                if key is merge_key:
                    if merges is None:
                        merges = []
                    merges.append(obj)
                else:
                    if key in container:
                        issues.append(_duplicate_key(stack, key, key_event))
                    container[key] = obj
                key = no_key
        elif container is not None:
            container.append(obj)
        else:
            root = obj


def _duplicate_key(
    stack: list[tuple[Any, bool, Any, Any, list[Any] | None, str | None]],
    key: Any,
    key_event: Any,
) -> _Issue:
    """Describe a repeated mapping key, with the path rebuilt from the open collections."""
    loc: list[str | int] = []
    for parent, parent_is_mapping, parent_key, *_ in stack[1:]:
        if not parent_is_mapping:
            loc.append(len(parent))
        else:
            loc.append(parent_key if isinstance(parent_key, str | int) else "?")
    loc.append(key if isinstance(key, str | int) else str(key))
    return _Issue(
        tuple(loc),
        f"duplicate key {key!r}: it is already set above in the same mapping, and YAML would "
        "silently keep only the last value",
        at_key=True,
        line=_line(key_event),
    )


# --- YAML: lines of paths -----------------------------------------------------------------


class _Unmatchable:
    """Path segment for complex (non-scalar) keys: never equal to a pydantic location."""


_UNMATCHABLE = _Unmatchable()


def _find_lines(text: str, locs: Iterable[Loc]) -> tuple[dict[Loc, int], dict[Loc, int]]:
    """Lines (1-based) of the values and of the keys at the given paths and their parents.

    Walks the event stream again but descends only into collections on a wanted path.
    The first occurrence wins when a key is repeated.
    """
    wanted: set[Any] = set()
    for loc in locs:
        for i in range(len(loc) + 1):
            wanted.add(loc[:i])
    value_lines: dict[Loc, int] = {}
    key_lines: dict[Loc, int] = {}
    loader = _Loader(text)
    get_event: Callable[[], Any] = loader.get_event
    # Frame: [path, is_mapping, pending key or None, next index]
    frames: list[list[Any]] = []
    skip = 0  # depth inside a collection that is not on a wanted path
    skipping_key = False
    try:
        while True:
            event = get_event()
            kind = type(event)
            if skip:
                if kind is MappingStartEvent or kind is SequenceStartEvent:
                    skip += 1
                elif kind is MappingEndEvent or kind is SequenceEndEvent:
                    skip -= 1
                    if not skip and frames:
                        _advance(frames[-1], key_done=skipping_key)
                continue
            if kind is StreamEndEvent or kind is DocumentEndEvent:
                break
            if kind is StreamStartEvent or kind is DocumentStartEvent:
                continue
            if kind is MappingEndEvent or kind is SequenceEndEvent:
                frames.pop()
                if frames:
                    _advance(frames[-1], key_done=False)
                continue
            is_collection = kind is MappingStartEvent or kind is SequenceStartEvent
            if frames:
                top = frames[-1]
                if top[1] and top[2] is None:  # this node is a key
                    if kind is ScalarEvent:
                        key_path = (*top[0], event.value)
                        if key_path in wanted and key_path not in key_lines:
                            key_lines[key_path] = event.start_mark.line + 1
                        top[2] = event.value
                    else:
                        top[2] = _UNMATCHABLE
                        if is_collection:
                            skip, skipping_key = 1, True
                    continue
                path = (*top[0], top[2] if top[1] else top[3])
            else:
                path = ()
            if path in wanted and path not in value_lines:
                value_lines[path] = event.start_mark.line + 1
            if is_collection:
                if path in wanted:
                    frames.append([path, kind is MappingStartEvent, None, 0])
                else:
                    skip, skipping_key = 1, False
            elif frames:
                _advance(frames[-1], key_done=False)
    except yaml.YAMLError:  # pragma: no cover - the text already parsed once
        pass
    finally:
        loader.dispose()
    return value_lines, key_lines


def _advance(frame: list[Any], *, key_done: bool) -> None:
    """Move a frame past the node that just ended (a key, a value or a list item)."""
    if not frame[1]:
        frame[3] += 1
    elif not key_done:
        frame[2] = None


def _assign_lines(text: str, issues: list[_Issue]) -> list[SpecError]:
    """Turn issues into SpecErrors with lines, sorted by line (stable for equal lines)."""
    pending = [issue for issue in issues if issue.line is None]
    value_lines, key_lines = _find_lines(text, (i.loc for i in pending)) if pending else ({}, {})
    errors: list[tuple[int, int, SpecError]] = []
    for order, issue in enumerate(issues):
        line = issue.line
        if line is None:
            loc = issue.loc
            if issue.at_key:
                line = key_lines.get(loc)
            if line is None:
                line = value_lines.get(loc)
            end = len(loc)
            while line is None and end > 0:
                end -= 1
                line = value_lines.get(loc[:end])
        error = SpecError(_path_str(issue.loc), issue.message, line)
        errors.append((line if line is not None else sys.maxsize, order, error))
    errors.sort(key=lambda item: (item[0], item[1]))
    return [error for _, _, error in errors]


# --- pydantic errors to messages ----------------------------------------------------------


def _aliases(model: type[Any]) -> list[str]:
    return [field.alias or name for name, field in model.model_fields.items()]


_TOP_FIELDS = _aliases(WorkflowDocument)
_SPEC_FIELDS = _aliases(WorkflowSpec)
_ACTIVITY_FIELDS = _aliases(ActivitySpec)
_POLICY_FIELDS = _aliases(StoragePolicySpec)
_WEBHOOK_FIELDS = _aliases(WebhookSpec)
_ENGINE_FIELDS = {"id", "status", "procId", "createdAt", "startedAt", "finishedAt"}
_QUANTITY_FIELDS = {"memoryLimit", "cpuLimit", "storageSize", "timeout"}


def _close_field(key: str, allowed: list[str]) -> str | None:
    """A likely intended field name: same letters ignoring case and '_'/'-', or similar."""
    simple = key.replace("_", "").replace("-", "").lower()
    for field in allowed:
        if field.lower() == simple:
            return field
    import difflib  # a spec with an error only

    matches = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    return matches[0] if matches else None


def _unknown_field(loc: Loc) -> str:
    """Message for a key the model does not know, with the most useful hint."""
    key = str(loc[-1])
    parent = loc[:-1]
    if parent == ():
        if key in _SPEC_FIELDS:
            return f"unknown top-level field {key!r}; did you mean spec.{key}?"
        allowed, where = _TOP_FIELDS, "at the top level"
    elif parent == ("spec",):
        if key in ("storageClassName", "storageSize"):
            return f"unknown field {key!r} in spec; did you mean spec.storagePolicy.{key}?"
        if key in _ACTIVITY_FIELDS and key not in _SPEC_FIELDS:
            return f"{key!r} belongs to an activity (under spec.activities), not to spec"
        allowed, where = _SPEC_FIELDS, "in spec"
    elif parent == ("spec", "storagePolicy"):
        allowed, where = _POLICY_FIELDS, "in spec.storagePolicy"
    elif len(parent) == 3 and parent[:2] == ("spec", "notify"):
        allowed, where = _WEBHOOK_FIELDS, "in a webhook of spec.notify"
    elif len(parent) == 3 and parent[:2] == ("spec", "activities"):
        if key in _ENGINE_FIELDS:
            return f"{key!r} is set by the engine and cannot be given in the workflow file"
        if key in _SPEC_FIELDS and key not in _ACTIVITY_FIELDS:
            return f"{key!r} can only be set for the whole workflow (under spec)"
        allowed, where = _ACTIVITY_FIELDS, "in an activity"
    else:
        return f"unknown field {key!r}"
    if key in _ENGINE_FIELDS:
        return f"{key!r} is set by the engine and cannot be given in the workflow file"
    guess = _close_field(key, allowed)
    hint = f"; did you mean {guess!r}?" if guess else f"; allowed: {', '.join(allowed)}"
    return f"unknown field {key!r} {where}{hint}"


def _translate(error: ErrorDetails) -> _Issue:
    """One pydantic error as an issue with a message written for workflow authors."""
    loc: Loc = tuple(error["loc"])
    kind = error["type"]
    value = error.get("input")
    ctx = error.get("ctx") or {}
    at_key = False
    if loc and loc[-1] == "[key]":
        loc, at_key = loc[:-1], True
    field = str(loc[-1]) if loc else ""
    got = _got(value)
    if kind == "value_error" and "error" in ctx:
        message = str(ctx["error"])
    elif kind == "invalid_key" or (kind == "string_type" and at_key):
        if loc:
            loc = (*loc[:-1], str(loc[-1]))  # a mapping key, not a list index
        at_key = True
        message = (
            f"keys must be strings, got {_got(value)}; quote the key if it is meant as text "
            "(YAML reads numbers, yes/no/on/off and null as other types)"
        )
    elif kind == "missing":
        message = f"required field {field!r} is missing"
    elif kind == "extra_forbidden":
        message, at_key = _unknown_field(loc), True
    elif kind == "string_type":
        if field in _QUANTITY_FIELDS:
            message = f"expected a string or a number, got {got}"
        elif isinstance(value, bool | int | float):
            message = f"expected a string, got {got}; quote it in YAML if it is meant as text"
        else:
            message = f"expected a string, got {got}"
    elif kind in ("int_type", "int_parsing", "int_from_float"):
        message = f"expected a whole number, got {got}"
    elif kind in ("bool_type", "bool_parsing"):
        message = f"expected true or false, got {got}"
    elif kind in ("list_type", "tuple_type"):
        message = f"expected a list, got {got}"
    elif kind in ("dict_type", "model_type", "model_attributes_type"):
        message = f"expected a mapping, got {got}"
    elif kind in ("float_type", "float_parsing"):
        message = f"expected a number or a string, got {got}"
    elif kind == "literal_error":
        message = f"must be {ctx.get('expected', 'one of the allowed values')}, got {value!r}"
    elif kind == "too_short" and loc == ("spec", "activities"):
        message = "spec.activities must list at least one activity"
    elif kind in ("string_pattern_mismatch", "string_too_long", "string_too_short"):
        message = constraint_message(loc, value) or error["msg"]
    elif kind in ("greater_than_equal", "less_than_equal"):
        message = (
            f"must be between 0 and 100, got {value!r}" if field == "retries" else error["msg"]
        )
    else:
        message = error["msg"]
    return _Issue(loc, message, at_key=at_key)


def _got(value: object) -> str:
    """Short description of a bad input for messages: its kind, and the value if small."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "null (an empty value)"
    if isinstance(value, bool):
        return f"a boolean ({'true' if value else 'false'})"
    if isinstance(value, int | float):
        return f"a number ({value!r})"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --- cross-activity checks on the raw data -------------------------------------------------


def _cross_checks(data: dict[Any, Any], runtime_check: RuntimeCheck | None) -> list[_Issue]:
    """Checks spanning activities. Works on the raw dicts so that it also runs when pydantic
    rejected some activities; anything of the wrong type is simply skipped here."""
    issues: list[_Issue] = []
    spec = data.get("spec")
    if not isinstance(spec, dict):
        return issues
    verdicts: dict[str, str | None] = {}

    def check_runtime(value: object, loc: Loc) -> None:
        if runtime_check is None or not isinstance(value, str):
            return
        if value not in verdicts:
            # Empty names or names with spaces are already reported by the model.
            well_formed = value.split() == [value]
            verdicts[value] = runtime_check(value) if well_formed else None
        verdict = verdicts[value]
        if verdict:
            issues.append(_Issue(loc, verdict))

    check_runtime(spec.get("runtime"), ("spec", "runtime"))
    schedule = spec.get("schedule")
    if isinstance(schedule, str) and schedule.split() == [schedule]:
        # Imported here: policies depend on the runtime contract, which depends on the spec.
        from akoflow.placement.policies import available_policies

        policies = available_policies()
        if schedule not in policies:
            issues.append(
                _Issue(
                    ("spec", "schedule"),
                    f"unknown placement policy {schedule!r}: use one of "
                    f"{', '.join(policies)} (or install one as an 'akoflow.placement' entry point)",
                )
            )
    activities = spec.get("activities")
    issues.extend(_env_size_checks(spec.get("env"), activities))
    if not isinstance(activities, list):
        return issues

    first_index: dict[str, int] = {}
    for i, activity in enumerate(activities):
        if type(activity) is not dict:
            continue
        name = activity.get("name")
        if type(name) is str:
            j = first_index.setdefault(name, i)
            if j != i:
                issues.append(
                    _Issue(
                        ("spec", "activities", i, "name"),
                        f"duplicate activity name {name!r}: already used by "
                        f"spec.activities[{j}]; activity names must be unique",
                    )
                )
        if runtime_check is not None and "runtime" in activity:
            check_runtime(activity["runtime"], ("spec", "activities", i, "runtime"))

    # Only activities with dependencies enter the graph: the others cannot be on a cycle.
    graph: dict[str, list[str]] = {}
    budget = [_SUGGESTION_BUDGET]
    forward = False  # a dependency on a later activity: only then is a cycle possible
    get_index = first_index.get
    for i, activity in enumerate(activities):
        if type(activity) is not dict:
            continue
        deps = activity.get("dependsOn")
        if not deps:
            continue
        if type(deps) is str:
            deps, single = [deps], True
        elif type(deps) is list:
            single = False
        else:
            continue  # pydantic reports the type
        name = activity.get("name")
        clean = True  # every dependency is a known, earlier activity (the usual case)
        for dep in deps:
            position = get_index(dep) if type(dep) is str else None
            if position is None or position >= i:
                clean = False
                break
        if not clean:
            valid: list[str] = []
            for k, dep in enumerate(deps):
                if type(dep) is not str or not dep.strip():
                    continue  # pydantic reports wrong types and empty names
                loc: Loc = ("spec", "activities", i, "dependsOn")
                if not single:
                    loc = (*loc, k)
                position = get_index(dep)
                if dep == name:
                    issues.append(_Issue(loc, f"activity {name!r} depends on itself"))
                elif position is None:
                    issues.append(_Issue(loc, _unknown_dependency(dep, first_index, budget)))
                else:
                    valid.append(dep)
                    forward = forward or position >= i
            deps = valid
        if type(name) is str and get_index(name) == i:
            graph[name] = deps

    if forward:
        for cycle in dag.find_cycles(graph):
            issues.append(
                _Issue(
                    ("spec", "activities", first_index[cycle[0]], "dependsOn"),
                    f"dependency cycle: {_show_cycle(cycle)} (each activity depends on the next)",
                )
            )
    return issues


def _env_entry_sizes(env: dict[Any, Any]) -> dict[str, int]:
    """Bytes each ``NAME=value`` entry takes when passed to exec(2), NUL included (values
    as the model will turn them into strings; other types are reported by the model)."""
    sizes: dict[str, int] = {}
    for name, value in env.items():
        if type(name) is not str:
            continue
        if type(value) is str:
            length = len(value)
            # UTF-8 takes at most 4 bytes a character: encode only when it could matter.
            if length * 4 + len(name) + 2 > MAX_ENV_ENTRY_BYTES:
                length = len(value.encode("utf-8", "surrogatepass"))
        elif isinstance(value, bool | int | float):
            length = 24  # the string of a number or boolean is short
        else:
            continue
        sizes[name] = len(name.encode("utf-8", "surrogatepass")) + 1 + length + 1
    return sizes


def _env_size_checks(spec_env: object, activities: object) -> list[_Issue]:
    """Each environment entry and each activity's merged environment must fit what exec(2)
    takes (E2BIG otherwise: the attempt could never start)."""
    issues: list[_Issue] = []
    known: dict[int, dict[str, int]] = {}  # aliased env mappings are measured once

    def measured(env: dict[Any, Any], loc: Loc) -> dict[str, int]:
        sizes = known.get(id(env))
        if sizes is None:
            sizes = known[id(env)] = _env_entry_sizes(env)
        for name, size in sizes.items():
            if size > MAX_ENV_ENTRY_BYTES:
                issues.append(
                    _Issue(
                        (*loc, name),
                        f"environment variable {name} is {size:,} bytes as NAME=value: the "
                        f"kernel refuses any entry over {MAX_ENV_ENTRY_BYTES:,} bytes (E2BIG); "
                        "pass large data in a file of the data dir instead",
                    )
                )
        return sizes

    def too_large(total: int) -> str:
        return (
            f"the environment is {total:,} bytes: an activity's environment (spec.env "
            f"merged with its env) may take at most {MAX_ENV_TOTAL_BYTES:,} bytes, to fit "
            "the kernel's limit for a process's arguments and environment (about 2 MiB)"
        )

    base: dict[str, int] = {}
    base_total = 0
    if type(spec_env) is dict:
        base = measured(spec_env, ("spec", "env"))
        base_total = sum(base.values())
        if base_total > MAX_ENV_TOTAL_BYTES:
            issues.append(_Issue(("spec", "env"), too_large(base_total)))
            base_total = 0  # reported once here, not again for every activity
            base = {}
    if type(activities) is not list:
        return issues
    for i, activity in enumerate(activities):
        if type(activity) is not dict:
            continue
        env = activity.get("env")
        if type(env) is not dict or not env:
            continue
        # Fast path (the usual case): repr() has at least the characters of every name and
        # value plus two more an entry, and UTF-8 takes at most 4 bytes a character.
        bound = 4 * len(repr(env))
        if bound <= MAX_ENV_ENTRY_BYTES and base_total + bound <= MAX_ENV_TOTAL_BYTES:
            continue
        loc: Loc = ("spec", "activities", i, "env")
        own = measured(env, loc)
        total = base_total + sum(own.values()) - sum(base.get(name, 0) for name in own)
        if total > MAX_ENV_TOTAL_BYTES:
            issues.append(_Issue(loc, too_large(total)))
    return issues


def _unknown_dependency(dep: str, names: dict[str, int], budget: list[int]) -> str:
    """Message for a ``dependsOn`` naming no activity, with a close name when affordable."""
    message = f"unknown activity {dep!r} in dependsOn"
    if dep.strip() == "":
        return f"{message}: names must not be empty"
    if budget[0] >= len(names):
        budget[0] -= len(names)
        import difflib  # a spec with an error only

        close = difflib.get_close_matches(dep, names.keys(), n=1, cutoff=0.6)
        if close:
            return f"{message}; did you mean {close[0]!r}?"
    return message


def _show_cycle(cycle: list[str], keep: int = 5) -> str:
    if len(cycle) <= 2 * keep + 1:
        return " -> ".join(cycle)
    hidden = len(cycle) - 2 * keep
    return " -> ".join([*cycle[:keep], f"... ({hidden} more) ...", *cycle[-keep:]])


# --- resolution ---------------------------------------------------------------------------


def _resolve(document: WorkflowDocument, default_runtime: str) -> Workflow:
    """Fill every inherited value from ``spec`` (never from the previous activity)."""
    spec = document.spec
    spec_env = spec.env or {}
    spec_runtime = spec.runtime or default_runtime
    spec_retries = spec.retries if spec.retries is not None else 0
    memory_bytes: dict[str, int] = {}
    cpu_cores: dict[str, float] = {}
    activities: list[Activity] = []
    append = activities.append
    # One string for a script or runtime name many activities repeat: a 100,000-activity run
    # keeps them all for its whole life. (Dicts are never shared: they are mutable.)
    scripts: dict[str, str] = {}
    runtimes: dict[str, str] = {}
    for activity in spec.activities:
        memory = activity.memory_limit
        memory_value: int | None = None
        if memory is not None:
            memory_value = memory_bytes.get(memory)
            if memory_value is None:
                memory_value = memory_bytes[memory] = parse_memory(memory)
        cpu = activity.cpu_limit
        cpu_value: float | None = None
        if cpu is not None:
            cpu_value = cpu_cores.get(cpu)
            if cpu_value is None:
                cpu_value = cpu_cores[cpu] = parse_cpu(cpu)
        env = activity.env
        deps = activity.depends_on
        run = scripts.setdefault(activity.run, activity.run)
        runtime = activity.runtime or spec_runtime
        append(
            Activity(
                name=activity.name,
                run=run,
                runtime=runtimes.setdefault(runtime, runtime),
                image=activity.image or spec.image,
                memory_limit=memory,
                memory_bytes=memory_value,
                cpu_limit=cpu,
                cpu_cores=cpu_value,
                depends_on=tuple(dict.fromkeys(deps) if len(deps) > 1 else deps),
                node_selector=activity.node_selector,
                keep_disk=activity.keep_disk,
                mount_path=activity.mount_path or spec.mount_path,
                retries=activity.retries if activity.retries is not None else spec_retries,
                timeout_seconds=activity.timeout if activity.timeout is not None else spec.timeout,
                env={**spec_env, **env} if env else dict(spec_env),
                inputs=tuple(dict.fromkeys(activity.inputs)) if activity.inputs else (),
                outputs=tuple(dict.fromkeys(activity.outputs)) if activity.outputs else (),
                cache=activity.cache,
            )
        )
    policy = spec.storage_policy
    return Workflow(
        name=document.name,
        activities=tuple(activities),
        namespace=spec.namespace or "akoflow",
        image=spec.image,
        runtime=spec.runtime,
        mount_path=spec.mount_path,
        storage_policy=StoragePolicy()
        if policy is None
        else StoragePolicy(
            type=policy.type,
            storage_class_name=policy.storage_class_name,
            storage_size=policy.storage_size,
        ),
        volumes=tuple(Volume(*entry.split(":", 1)) for entry in spec.volumes),
        schedule=spec.schedule,
        alpha=spec.alpha,
        strategy={"FDF": "first-data-first", "FAF": "first-activity-first"}.get(
            spec.strategy, spec.strategy
        ),
        collect=spec.collect,
        notify=tuple(
            Webhook(
                hook.url,
                tuple(dict.fromkeys(hook.events)) if hook.events else NOTIFY_EVENTS,
                hook.secret,
            )
            for hook in spec.notify
        ),
    )


# --- entry points -------------------------------------------------------------------------


def _check(
    text: str, runtime_check: RuntimeCheck | None
) -> tuple[WorkflowDocument | None, list[_Issue]]:
    """Parse and validate; returns the model (None when invalid) and every issue found."""
    try:
        data, issues = _build(text)
    except _YamlFailure as failure:
        return None, [_Issue((), failure.message, line=failure.line)]
    if data is None:
        return None, [
            _Issue(
                (), "the workflow file is empty; expected a mapping with 'name' and 'spec'", line=1
            )
        ]
    if not isinstance(data, dict):
        return None, [
            _Issue(
                (),
                "the workflow file must be a YAML mapping with 'name' and 'spec', "
                f"not {_got(data)}",
            )
        ]
    document, errors = _validated(data)
    issues.extend(_translate(error) for error in errors)
    issues.extend(_cross_checks(data, runtime_check))
    return document, issues


VALIDATE_CHUNK = 500  # activities per call of pydantic (a few ms: see _validated)


@functools.cache
def _activities_adapter() -> TypeAdapter[list[ActivitySpec]]:
    return TypeAdapter(list[ActivitySpec])


def _validated(data: dict[Any, Any]) -> tuple[WorkflowDocument | None, list[ErrorDetails]]:
    """The document as the model, or None and pydantic's errors.

    One call of pydantic holds the GIL throughout: 0.9 s for 100,000 activities, during
    which a server's event loop (which validates in a thread) stood still. A big workflow's
    activities are validated a chunk at a time instead, with the same errors at the same
    paths, in the same order (``activities`` is the last field of the last field)."""
    spec = data.get("spec")
    acts = spec.get("activities") if isinstance(spec, dict) else None
    if not isinstance(acts, list) or len(acts) <= VALIDATE_CHUNK:
        try:
            return WorkflowDocument.model_validate(data), []
        except ValidationError as exc:
            return None, exc.errors(include_url=False)
    assert isinstance(spec, dict)
    errors: list[ErrorDetails] = []
    unknown: list[ErrorDetails] = []  # pydantic lists a model's unknown keys after its fields
    document: WorkflowDocument | None = None
    try:  # everything else, with one activity (``activities`` may not be empty)
        document = WorkflowDocument.model_validate(
            {**data, "spec": {**spec, "activities": acts[:1]}}
        )
    except ValidationError as exc:
        first = ("spec", "activities", 0)
        for e in exc.errors(include_url=False):
            loc = tuple(e["loc"])
            if loc[:3] == first:
                continue
            top = len(loc) == 1 or (len(loc) == 2 and loc[0] == "spec")
            (unknown if top and e["type"] == "extra_forbidden" else errors).append(e)
    validated: list[ActivitySpec] = []
    adapter = _activities_adapter()
    for start in range(0, len(acts), VALIDATE_CHUNK):
        try:
            validated += adapter.validate_python(acts[start : start + VALIDATE_CHUNK])
        except ValidationError as exc:
            for error in exc.errors(include_url=False):
                index, *rest = error["loc"]
                assert isinstance(index, int)
                error["loc"] = ("spec", "activities", start + index, *rest)
                errors.append(error)
    errors += unknown  # spec's, then the top level's: after the activities, as one call says
    if errors or document is None:
        return None, errors
    spec_model = document.spec.model_copy(update={"activities": validated})
    return document.model_copy(update={"spec": spec_model}), errors


def load_workflow(
    text: str,
    *,
    source: str = "<workflow>",
    runtime_check: RuntimeCheck | None = None,
    default_runtime: str = "local",
) -> Workflow:
    """Parse and validate workflow YAML and return the resolved :class:`Workflow`.

    ``runtime_check(name)`` returns None when a runtime name is acceptable, else an error
    message; it is called once per distinct name. Raises WorkflowValidationError listing
    every problem, each with its path and line.
    """
    if runtime_check is None:
        with _loaded_lock:
            known = _loaded.get((text, default_runtime))
        if known is not None:
            return known
    # Millions of dicts, lists and strings that all stay alive, and no cycle among them.
    with heap.paused_for(text):
        document, issues = _check(text, runtime_check)
        if issues or document is None:
            raise WorkflowValidationError(_assign_lines(text, issues), source)
        workflow = _resolve(document, default_runtime)
    with _loaded_lock:
        _loaded[text, default_runtime] = workflow
    return workflow


# The workflows loaded and still in use somewhere, by text: a submitted workflow is loaded to
# validate it, then again by the engine that runs it from the store while the first is still
# held (a 100,000-activity file: 1.3 s and ~150 MB at their peak, for an equal result). A
# Workflow is immutable, so one object serves both; an entry goes with its last holder.
_loaded: weakref.WeakValueDictionary[tuple[str, str], Workflow] = weakref.WeakValueDictionary()
_loaded_lock = threading.Lock()  # the server validates in a worker thread


def load_workflow_file(
    path: str | Path,
    *,
    source: str | None = None,
    runtime_check: RuntimeCheck | None = None,
    default_runtime: str = "local",
) -> Workflow:
    """Read and load a workflow file; unreadable files also raise WorkflowValidationError."""
    name = str(path) if source is None else source
    try:
        with Path(path).open("rb") as file:
            raw = file.read(MAX_FILE_BYTES + 1)  # bounded: /dev/zero must not fill memory
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise WorkflowValidationError(
            [SpecError("", f"cannot read the workflow file: {reason}")], name
        ) from None
    if len(raw) > MAX_FILE_BYTES:
        raise WorkflowValidationError(
            [SpecError("", f"the workflow file is larger than {MAX_FILE_BYTES >> 20} MiB")], name
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise WorkflowValidationError(
            [SpecError("", f"the workflow file is not valid UTF-8 (byte {exc.start})", line)],
            name,
        ) from None
    return load_workflow(
        text, source=name, runtime_check=runtime_check, default_runtime=default_runtime
    )
