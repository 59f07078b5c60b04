"""Exceptions of the Python API (runs and servers). Every one is an
:class:`~akoflow.errors.AkoflowError`; none ever holds an API token."""

from __future__ import annotations

from akoflow.errors import AkoflowError
from akoflow.spec.loader import SpecError

__all__ = [
    "Conflict",
    "InvalidToken",
    "NotFound",
    "RunBusy",
    "RunInterrupted",
    "ServerError",
    "ServerUnreachable",
    "Unauthorized",
    "ValidationRejected",
]


class InvalidToken(AkoflowError, ValueError):
    """The API token cannot be sent: empty, or holding a line break, a control character or
    a character that is not ASCII (surrounding whitespace is dropped). The message never
    shows it."""


class RunBusy(AkoflowError):
    """Another live process runs this workflow (the same file and state dir): nothing was
    run. :attr:`run_id` is the run, :attr:`pid` the process that runs it."""

    def __init__(self, run_id: int, pid: int | None, message: str) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.pid = pid


class RunInterrupted(AkoflowError):
    """The run cannot go on while this process waits (the engine failed, or what still runs
    is on a runtime whose setup is wrong). It is interrupted, not lost: ``akoflow resume
    RUN_ID`` (or running the same workflow again) continues it."""

    def __init__(self, run_id: int, message: str) -> None:
        super().__init__(message)
        self.run_id = run_id


class ServerError(AkoflowError):
    """A server refused a request or could not be reached. :attr:`status` is the HTTP status
    (None when there was no answer), :attr:`detail` the server's explanation."""

    def __init__(self, detail: str, status: int | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status


class ServerUnreachable(ServerError):
    """No answer from the server (refused connection, DNS, timeout)."""


class Unauthorized(ServerError):
    """The server refused the API token (HTTP 401)."""


class NotFound(ServerError):
    """No such run or activity on the server (HTTP 404)."""


class Conflict(ServerError):
    """The request does not fit the run's state (HTTP 409): cancelling a run that already
    ended, retrying one that did not fail."""


class ValidationRejected(ServerError):
    """The server refused the workflow (HTTP 422): :attr:`errors` holds every problem it
    found, each a :class:`~akoflow.SpecError` (path, message, line), as the loader reports."""

    def __init__(self, detail: str, errors: list[SpecError]) -> None:
        super().__init__(detail, 422)
        self.errors = errors

    def __str__(self) -> str:
        lines = [self.detail, *(error.format("workflow") for error in self.errors)]
        return "\n".join(lines)
