from __future__ import annotations

import math

import pytest

from akoflow.spec.quantities import parse_cpu, parse_duration, parse_memory

Ki, Mi, Gi = 1024, 1024**2, 1024**3


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("500Mi", 500 * Mi),
        ("1Gi", Gi),
        ("1G", 1_000_000_000),
        (128974848, 128974848),
        ("128974848", 128974848),
        ("129e6", 129_000_000),
        (129e6, 129_000_000),
        ("123k", 123_000),
        ("0.5Gi", Gi // 2),
        ("1Ki", Ki),
        ("2Ti", 2 * 1024**4),
        ("1Pi", 1024**5),
        ("1Ei", 1024**6),
        ("1M", 1_000_000),
        ("1T", 10**12),
        ("1P", 10**15),
        ("1E", 10**18),  # exa, not an exponent
        ("1E3", 1000),  # exponent
        ("1.5", 2),  # fractional bytes round up, as in Kubernetes
        (" 64Mi ", 64 * Mi),
        ("+1Ki", Ki),
    ],
)
def test_parse_memory_valid(value: str | int | float, expected: int) -> None:
    assert parse_memory(value) == expected


@pytest.mark.parametrize(
    ("value", "hint"),
    [
        ("500m", "milli"),  # milli is a CPU unit, never memory
        ("1GB", "did you mean 'G' (decimal) or 'Gi' (binary)?"),
        ("1gb", "did you mean 'G'"),
        ("5K", "did you mean 'k'"),
        ("1GiB", "write 'Gi'"),
        ("-1Mi", "greater than 0"),
        ("0", "greater than 0"),
        (0, "greater than 0"),
        (-5, "greater than 0"),
        (True, "boolean"),
        (float("nan"), "finite"),
        ("abc", "Ki Mi Gi"),
        ("", "Ki Mi Gi"),
        ("1 Gi", "Ki Mi Gi"),
        ("1e999", "too large"),
        ("1Zi", "unknown unit 'Zi'"),
    ],
)
def test_parse_memory_invalid(value: object, hint: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_memory(value)  # type: ignore[arg-type]
    assert hint in str(info.value)


def test_memory_error_names_the_accepted_forms() -> None:
    with pytest.raises(ValueError, match="500Mi") as info:
        parse_memory("lots")
    message = str(info.value)
    for form in ("Ki Mi Gi Ti Pi Ei", "k M G T P E", "129e6"):
        assert form in message


def test_memory_rejects_other_types() -> None:
    with pytest.raises(ValueError, match="string or a number"):
        parse_memory([1])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0.5", 0.5),
        ("2", 2.0),
        ("2.0", 2.0),
        ("500m", 0.5),
        ("1000m", 1.0),
        ("250m", 0.25),
        (2, 2.0),
        (0.25, 0.25),
        (".5", 0.5),
    ],
)
def test_parse_cpu_valid(value: str | int | float, expected: float) -> None:
    assert parse_cpu(value) == pytest.approx(expected)


@pytest.mark.parametrize(
    "value", ["0", "0m", "-1", "1Gi", "abc", "", "0.5 cores", True, 0, -1.5, math.inf, "inf"]
)
def test_parse_cpu_invalid(value: object) -> None:
    with pytest.raises(ValueError, match="millicores"):
        parse_cpu(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (30, 30.0),
        (1.5, 1.5),
        ("90", 90.0),
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1h30m", 5400.0),
        ("1.5h", 5400.0),
        ("2m30s", 150.0),
        ("500ms", 0.5),
        ("1d", 86400.0),
        ("1d2h", 93600.0),
    ],
)
def test_parse_duration_valid(value: str | int | float, expected: float) -> None:
    assert parse_duration(value) == pytest.approx(expected)


@pytest.mark.parametrize(
    "value", ["0s", "0", 0, -5, "5x", "1h 30m", "", "h", "m5", "1.2.3s", True, math.nan]
)
def test_parse_duration_invalid(value: object) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(value)  # type: ignore[arg-type]
    assert "1h30m" in str(info.value)  # the message names the accepted forms
