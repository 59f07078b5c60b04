"""On ``PYTHONPATH`` (tests only): a Ctrl-C (SIGINT) raised by the interpreter itself as the
module named by ``INTERRUPT_AT_IMPORT`` starts to import, as one pressed in the first
milliseconds of a command lands, while its modules import."""

import os
import signal
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType

TARGET = os.environ.get("INTERRUPT_AT_IMPORT")


class Interrupting:
    @staticmethod
    def find_spec(
        name: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if name == TARGET:
            sys.meta_path.remove(Interrupting)  # once
            signal.raise_signal(signal.SIGINT)  # KeyboardInterrupt, from here
        return None


if TARGET:
    sys.meta_path.insert(0, Interrupting)
