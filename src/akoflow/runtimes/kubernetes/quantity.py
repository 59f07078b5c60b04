"""Kubernetes resource quantities as metrics-server and node status report them."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

_SUFFIX = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15,
    "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
}


def parse_quantity(value: object) -> Decimal | None:
    """``"250m"`` -> 0.25, ``"1Ki"`` -> 1024, ``"123456n"`` -> 0.000123456; None if invalid."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return Decimal(str(value))
    if not isinstance(value, str) or not value:
        return None
    text = value.strip()
    for size in (2, 1, 0):
        suffix = text[len(text) - size :] if size else ""
        if suffix in _SUFFIX and (size == 0 or len(text) > size):
            number = text[: len(text) - size] if size else text
            try:
                return Decimal(number) * _SUFFIX[suffix]
            except InvalidOperation:
                continue
    return None


def cpu_cores(value: object) -> float | None:
    q = parse_quantity(value)
    return float(q) if q is not None else None


def byte_count(value: object) -> int | None:
    q = parse_quantity(value)
    return int(q) if q is not None else None
