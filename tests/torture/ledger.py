"""The ledger: one append-only file in the data dir that every activity writes to.

Each line is short and written with one O_APPEND write (``echo ... >> ledger``), so lines never
interleave and their order in the file is the order in which they happened. That order is all
the checks need: no clocks are compared.

    start <activity> <attempt> <pid> [<time>]    the script began (after the engine's prelude)
    end <activity> <attempt> <pid> [<time>]      the script reached its last line
    fail <activity> <attempt> <pid> [<time>]     a planned failure (the attempt exits 3)
    overlap <activity> <attempt> <pid> [<time>]  another attempt of it still held its lock
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

LEDGER = "ledger"
LOCKS = "locks"
KINDS = ("start", "end", "fail", "overlap")


@dataclass(frozen=True, slots=True)
class Entry:
    pos: int  # line number: the order of events
    kind: str
    activity: str
    attempt: int
    pid: int


def parse(text: str) -> tuple[list[Entry], list[str]]:
    """Entries, and the lines that are not well-formed (torn or interleaved writes)."""
    entries: list[Entry] = []
    bad: list[str] = []
    for pos, line in enumerate(text.splitlines()):
        fields = line.split()
        if (
            len(fields) in (4, 5)
            and fields[0] in KINDS
            and fields[2].isdigit()
            and fields[3].isdigit()
        ):
            entries.append(Entry(pos, fields[0], fields[1], int(fields[2]), int(fields[3])))
        else:
            bad.append(line)
    return entries, bad


def read(data_dir: Path) -> tuple[list[Entry], list[str]]:
    try:
        text = (data_dir / LEDGER).read_text()
    except FileNotFoundError:
        text = ""
    return parse(text)


class Tail:
    """New complete lines of the ledger since this object was made (or since the last call)."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LEDGER
        self.offset = self._size()
        self.partial = b""

    def _size(self) -> int:
        try:
            return os.stat(self.path).st_size
        except FileNotFoundError:
            return 0

    def new_lines(self) -> list[str]:
        if self._size() <= self.offset:
            return []
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            chunk = f.read()
        self.offset += len(chunk)
        *lines, self.partial = (self.partial + chunk).split(b"\n")
        return [line.decode(errors="replace") for line in lines]

    def count(self, pattern: re.Pattern[str]) -> int:
        return sum(1 for line in self.new_lines() if pattern.search(line))
