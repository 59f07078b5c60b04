"""File names are bytes on Linux: how AkôFlow keeps, stores and shows them without loss.

A name may hold any byte but ``/`` and NUL: not always valid UTF-8, with newlines, quotes or
bidirectional controls. One scheme everywhere:

- **In memory** a name is a ``str`` as :func:`os.fsdecode` makes it (``surrogateescape``: each
  byte that is not valid UTF-8 becomes one lone surrogate), so :func:`os.fsencode` gives the
  exact bytes back.
- **In SQLite** (:func:`to_db`/:func:`from_db`) a name that is valid UTF-8 is stored as TEXT,
  readable as ever; any other is stored as a BLOB of its raw bytes. The choice depends only on
  the name, so an equality query binds the same value and still matches; databases written
  before this scheme (all TEXT) read unchanged.
- **For people** (:func:`display`: the report, UI labels, PROV's ``akoflow:path``, a crate
  file's ``name``): the name as text, with ``\\xNN`` for each byte that is not valid UTF-8 and
  for control characters, ``\\uNNNN`` for line separators and bidirectional formatting
  characters (U+202E and the like, which would reorder what is shown), and ``\\\\`` for a
  backslash. Always valid Unicode (JSON, XML, Turtle, HTML), one line, and reversible.
- **For tools** (:func:`encoded`: PROV IRIs, ``akoflow:pathBytes``, RO-Crate ``@id`` and
  ``akoflowPathBytes``, the lineage graph's file node ids): the raw bytes percent-encoded as
  in RFC 3986, every byte but ASCII letters, digits, ``-._~`` and the ``/`` between
  directories. A valid URI path, hence also a valid IRI; :func:`decoded` (or
  ``urllib.parse.unquote_to_bytes``) gives the bytes back.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from urllib.parse import quote_from_bytes, unquote_to_bytes

NAME_MAX = 255  # bytes in one file name (Linux, and most file systems)
# The end of the name a copy is written under until it is complete and renamed into place
# (the data plane's, a Kubernetes copy's): never a file of the run, wherever it is listed.
COPY_SUFFIX = ".akoflow-part"

# What display() escapes besides undecodable bytes and the backslash: C0 and C1 controls and
# DEL, the line and paragraph separators, and the bidirectional formatting characters. A
# pattern only, part of those below: they are compiled when first used (each ~0.3 ms, which a
# short `akoflow run` that shows no name would pay at its start).
_HIDDEN = "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]"
_SURROGATE = re.compile("[\ud800-\udfff]")


def is_copy_in_progress(name: str) -> bool:
    """Whether ``name`` (a path or a file name) is a copy being made (:data:`COPY_SUFFIX`)."""
    return name.endswith(COPY_SUFFIX)


def to_bytes(name: str) -> bytes:
    """The name's bytes on disk."""
    return os.fsencode(name)


def from_bytes(raw: bytes) -> str:
    """The in-memory form of a name read as bytes."""
    return os.fsdecode(raw)


def is_text(name: str) -> bool:
    """Whether the name is valid UTF-8 (holds no undecodable byte)."""
    return _SURROGATE.search(name) is None


def to_db(name: str) -> str | bytes:
    """The SQLite value of a name: TEXT when valid UTF-8, else a BLOB of its bytes."""
    return name if is_text(name) else to_bytes(name)


def from_db(value: str | bytes) -> str:
    return value if isinstance(value, str) else from_bytes(value)


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    if char == "\\":
        return "\\\\"
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape: the raw byte code - 0xDC00
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


@functools.cache
def _display() -> re.Pattern[str]:
    return re.compile(rf"\\|{_SURROGATE.pattern}|{_HIDDEN}")


def display(name: str) -> str:
    """The name for people: valid Unicode on one line, escapes where it is not plain text."""
    return _display().sub(_escape, name)


def encoded(name: str) -> str:
    """The name's bytes percent-encoded (RFC 3986), ``/`` kept: lossless and URI-safe."""
    return quote_from_bytes(to_bytes(name), safe="/")


def decoded(text: str) -> str:
    """The in-memory name of an :func:`encoded` one."""
    return from_bytes(unquote_to_bytes(text))


# Characters a copy's name does without (portable_name): those display() escapes, '%' (the
# escape itself), '\\' and what Windows forbids in names.
@functools.cache
def _not_portable() -> re.Pattern[str]:
    return re.compile(rf'[%\\<>:"|?*]|{_SURROGATE.pattern}|{_HIDDEN}')


def _percent(match: re.Match[str]) -> str:
    return quote_from_bytes(to_bytes(match.group()), safe="")


def portable_name(segment: str) -> str:
    """A name for a copy of a file elsewhere (an RO-Crate that may be zipped and opened on
    another system): the name itself when it is plain text, else with the bytes of the
    characters other systems refuse or show wrongly percent-encoded (``%`` included, so two
    names never share a copy's name). Beyond :data:`NAME_MAX` bytes it is cut, with a hash of
    the whole name to keep it distinct."""
    safe = _not_portable().sub(_percent, segment)
    if len(safe.encode()) <= NAME_MAX:
        return safe
    digest = hashlib.sha256(to_bytes(segment)).hexdigest()[:16]
    head = safe.encode()[: NAME_MAX - len(digest) - 1].decode("utf-8", "ignore")
    return f"{re.sub('%[0-9A-F]?$', '', head)}~{digest}"  # no escape cut in half
