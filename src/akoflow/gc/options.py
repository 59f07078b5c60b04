"""A gc's options, checked the same way by the CLI, the API and the retention setting."""

from __future__ import annotations

from dataclasses import dataclass

from akoflow.spec.quantities import parse_duration

MAX_AGE = 100 * 365 * 86400.0  # s: an age beyond a century is a typo
MAX_KEEP = 1_000_000


def parse_age(text: str) -> float:
    """``30d``, ``12h``, ``1d12h``, ``90m``, or seconds; ValueError with the accepted forms."""
    seconds = parse_duration(text)
    if seconds > MAX_AGE:
        raise ValueError(f"invalid age {text!r}: more than 100 years")
    return seconds


@dataclass(frozen=True, slots=True)
class GcOptions:
    older_than: float | None = None
    keep_last: int | None = None
    dry_run: bool = False

    @classmethod
    def parse(
        cls, older_than: str | None, keep_last: int | None, dry_run: bool = False
    ) -> GcOptions:
        """ValueError with the reason for an option that cannot be one."""
        age = parse_age(older_than) if older_than is not None else None
        if keep_last is not None and not 0 <= keep_last <= MAX_KEEP:
            raise ValueError(f"invalid keep-last {keep_last}: from 0 to {MAX_KEEP}")
        return cls(age, keep_last, dry_run)


__all__ = ["GcOptions", "parse_age"]
