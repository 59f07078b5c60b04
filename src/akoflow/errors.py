"""The root of AkôFlow's own exceptions, and the error of a bad ``{NAME}_{KEY}`` setting.

Every error AkôFlow raises on purpose (a spec that does not validate, a runtime that refuses
or cannot reach its backend, a state dir that cannot be used, a bad setting) is an
:class:`AkoflowError`, so a program embedding the engine can tell them from bugs with one
``except``. Each class keeps the builtin base it had (``ValueError``, ``RuntimeError``...), so
callers catching those still do. This module imports nothing of AkôFlow: any module can use it.
"""

from __future__ import annotations


class AkoflowError(Exception):
    """Base of every exception AkôFlow raises on purpose; the message is for users."""


class SettingError(AkoflowError, ValueError):
    """A ``{NAME}_{KEY}`` setting is missing or malformed. The message names the variable and
    what was expected, never a secret's value; :attr:`variable` is the full variable name."""

    def __init__(self, message: str, *, variable: str) -> None:
        super().__init__(message)
        self.variable = variable


class StoreError(AkoflowError, RuntimeError):
    """The state database cannot be used as it is (a schema newer than this AkôFlow knows, a
    migration that failed); the message says what to do."""


__all__ = ["AkoflowError", "SettingError", "StoreError"]
