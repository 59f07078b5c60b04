"""Parsing of resource quantities (memory, CPU) and durations as written in workflow YAML.

Kept as pure functions so the spec model, the runtimes and the scheduler all agree on one
meaning of ``500Mi`` or ``1h30m`` (upstream parsed these ad hoc and panicked on ``1Gi``).
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation
from functools import lru_cache

__all__ = [
    "parse_cpu",
    "parse_cpu_text",
    "parse_duration",
    "parse_memory",
    "parse_memory_text",
]

MEMORY_FORMS = (
    "expected a positive number of bytes, optionally with a binary suffix Ki Mi Gi Ti Pi Ei "
    "(e.g. 500Mi, 0.5Gi), a decimal suffix k M G T P E (e.g. 1G, 123k) or an exponent "
    "(e.g. 129e6)"
)
CPU_FORMS = "expected a positive number of cores (e.g. 0.5, 2) or millicores (e.g. 500m)"
DURATION_FORMS = (
    "expected a positive duration: a number of seconds (e.g. 90, 1.5) or number+unit parts "
    "with units d, h, m, s, ms (e.g. 30s, 5m, 1h30m, 1.5h)"
)

_BINARY = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL = {"k": 1, "M": 2, "G": 3, "T": 4, "P": 5, "E": 6}
_MULTIPLIER: dict[str, Decimal] = {
    "": Decimal(1),
    **{s: Decimal(1024**p) for s, p in _BINARY.items()},
    **{s: Decimal(1000**p) for s, p in _DECIMAL.items()},
}
# Kubernetes grammar: <number>(<suffix> | e<int>). "1E" is exa, "1E3" is an exponent.
_MEMORY_RE = re.compile(
    r"(?P<num>\+?(?:\d+(?:\.\d*)?|\.\d+))"
    r"(?:(?P<exp>[eE][+-]?\d+)|(?P<suffix>[A-Za-z]+))?"
)
_MAX_BYTES = Decimal(2**63 - 1)

_CPU_RE = re.compile(r"\+?(?P<num>\d+(?:\.\d*)?|\.\d+)(?P<milli>m?)")

_NUMBER_RE = re.compile(r"\+?(?:\d+(?:\.\d*)?|\.\d+)")
_DURATION_PART = r"(\d+(?:\.\d*)?|\.\d+)(ms|d|h|m|s)"
_DURATION_RE = re.compile(rf"(?:{_DURATION_PART})+")
_DURATION_PART_RE = re.compile(_DURATION_PART)
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def _number_or_none(value: object, what: str, forms: str) -> float | None:
    """Return a finite numeric ``value`` as float, None for strings; reject bools and others.

    YAML turns ``true``/``yes`` into bools, which Python treats as ints: never a quantity.
    """
    if isinstance(value, bool):
        raise ValueError(f"invalid {what} {value!r}: a boolean is not a {what}; {forms}")
    if isinstance(value, int | float):
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(f"invalid {what} {value!r}: must be finite; {forms}")
        if number <= 0:
            raise ValueError(f"invalid {what} {value!r}: must be greater than 0; {forms}")
        return number
    if isinstance(value, str):
        return None
    raise ValueError(f"invalid {what} {value!r}: expected a string or a number; {forms}")


def _memory_unit_hint(suffix: str) -> str:
    """Suggest the right suffix for the usual mistakes (``MB``, ``GiB``, ``m``, ``K``)."""
    if suffix == "m":
        return " ('m' means milli, which is not valid for memory; use Mi or M)"
    if suffix.endswith("iB") and suffix[:-1] in _BINARY:
        return f" (write {suffix[:-1]!r}, without the 'B')"
    core = suffix[:-1] if suffix[-1:] in ("B", "b") and len(suffix) > 1 else suffix
    for candidate in ("k", "M", "G", "T", "P", "E"):
        if core.lower() == candidate.lower():
            binary = candidate.upper() + "i"
            return f" (did you mean {candidate!r} (decimal) or {binary!r} (binary)?)"
    return ""


def parse_memory(value: str | int | float) -> int:
    """Parse a Kubernetes memory quantity (``500Mi``, ``1G``, ``129e6``...) into bytes.

    Fractional byte counts are rounded up, as Kubernetes does.
    """
    number = _number_or_none(value, "memory quantity", MEMORY_FORMS)
    if number is None:
        assert isinstance(value, str)
        return parse_memory_text(value)
    amount = Decimal(value) if isinstance(value, int) else Decimal(repr(value))
    return _whole_bytes(amount, value)


@lru_cache(maxsize=4096)
def parse_memory_text(value: str) -> int:
    """:func:`parse_memory` for strings; cached because files repeat the same few values."""
    text = value.strip()
    match = _MEMORY_RE.fullmatch(text)
    if match is None:
        detail = " (must be greater than 0)" if text.startswith("-") else ""
        raise ValueError(f"invalid memory quantity {value!r}{detail}; {MEMORY_FORMS}")
    number, exponent, suffix = match["num"], match["exp"], match["suffix"] or ""
    if suffix not in _MULTIPLIER:
        hint = _memory_unit_hint(suffix)
        raise ValueError(
            f"invalid memory quantity {value!r}: unknown unit {suffix!r}{hint}; {MEMORY_FORMS}"
        )
    if not exponent and number.isdigit():  # the usual case, e.g. "500Mi": exact integers
        return _whole_bytes(Decimal(int(number) * int(_MULTIPLIER[suffix])), value)
    try:
        amount = Decimal(number) * _MULTIPLIER[suffix]
        if exponent:
            amount = amount.scaleb(int(exponent[1:]))
    except (InvalidOperation, OverflowError, ValueError):
        raise ValueError(f"invalid memory quantity {value!r}; {MEMORY_FORMS}") from None
    return _whole_bytes(amount, value)


def _whole_bytes(amount: Decimal, value: object) -> int:
    """Round up to whole bytes and check the range."""
    if amount > _MAX_BYTES:
        raise ValueError(f"invalid memory quantity {value!r}: too large; {MEMORY_FORMS}")
    result = math.ceil(amount)
    if result <= 0:
        raise ValueError(f"invalid memory quantity {value!r}: must be greater than 0")
    return int(result)


def parse_cpu(value: str | int | float) -> float:
    """Parse a CPU quantity into cores: ``0.5``, ``2``, ``500m`` (millicores) or a number."""
    number = _number_or_none(value, "CPU quantity", CPU_FORMS)
    if number is not None:
        return number
    assert isinstance(value, str)
    return parse_cpu_text(value)


@lru_cache(maxsize=4096)
def parse_cpu_text(value: str) -> float:
    """:func:`parse_cpu` for strings, cached."""
    match = _CPU_RE.fullmatch(value.strip())
    if match is None:
        raise ValueError(f"invalid CPU quantity {value!r}; {CPU_FORMS}")
    cores = float(match["num"])
    if match["milli"]:
        cores /= 1000.0
    if not math.isfinite(cores) or cores <= 0:
        raise ValueError(f"invalid CPU quantity {value!r}: must be greater than 0; {CPU_FORMS}")
    return cores


def parse_duration(value: str | int | float) -> float:
    """Parse a duration into seconds: a bare number is seconds, else parts like ``1h30m``."""
    number = _number_or_none(value, "duration", DURATION_FORMS)
    if number is not None:
        return number
    assert isinstance(value, str)
    return _parse_duration_text(value)


@lru_cache(maxsize=4096)
def _parse_duration_text(value: str) -> float:
    text = value.strip()
    if _NUMBER_RE.fullmatch(text):
        seconds = float(text)
    elif _DURATION_RE.fullmatch(text):
        seconds = sum(
            float(amount) * _UNIT_SECONDS[unit] for amount, unit in _DURATION_PART_RE.findall(text)
        )
    else:
        raise ValueError(f"invalid duration {value!r}; {DURATION_FORMS}")
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"invalid duration {value!r}: must be greater than 0; {DURATION_FORMS}")
    return seconds
