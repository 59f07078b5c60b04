"""Terminal output through rich, imported on first use: a command that prints nothing
(`akoflow run --quiet`, the benchmarks' way) does not pay for rich's import (60-80 ms here)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console


class LazyConsole:
    """Stands for a ``rich.console.Console`` (stdout, or stderr) created when first used."""

    def __init__(self, *, stderr: bool = False) -> None:
        self._stderr = stderr
        self._console: Console | None = None

    @property
    def console(self) -> Console:
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=self._stderr)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self.console, name)


def escape(text: str) -> str:
    """Text shown as written in rich markup (``rich.markup.escape``)."""
    from rich.markup import escape as markup_escape

    return markup_escape(text)


class LazyRichHandler(logging.Handler):
    """A ``rich.logging.RichHandler`` on ``console``, created at the first record logged."""

    def __init__(self, console: LazyConsole) -> None:
        super().__init__()
        self._console = console
        self._handler: logging.Handler | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self._handler is None:
            from rich.logging import RichHandler

            console = self._console.console
            self._handler = RichHandler(console=console, show_path=False, markup=False)
            self._handler.setFormatter(self.formatter)
        self._handler.emit(record)
