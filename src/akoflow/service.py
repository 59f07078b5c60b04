"""Use cases shared by the CLI and the server: validate, store and look up workflow runs."""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from akoflow import config, heap
from akoflow.errors import AkoflowError, StoreError
from akoflow.store import Repository

if TYPE_CHECKING:  # the loader (pydantic) only where a workflow file is read: not for `status`
    from akoflow.spec import Workflow, WorkflowValidationError

log = logging.getLogger(__name__)

DB_NAME = "akoflow.db"
RUNS_DIR = "runs"
MAX_WORKFLOW_FILE = 64 << 20  # bytes: a workflow file is text a person wrote, not data
_READ_CHUNK = 1 << 20


class StateError(AkoflowError):
    """The state dir or its database cannot be used; the message says why, for users."""


@dataclass(frozen=True)
class Prepared:
    """A workflow file loaded and validated, ready to store."""

    workflow: Workflow
    text: str
    spec_hash: str
    source: str


def validate_text(text: str, source: str) -> Prepared:
    """Parse and validate; raises WorkflowValidationError listing every problem."""
    from akoflow.runtimes.registry import check_runtime_name
    from akoflow.spec import load_workflow

    default = config.default_runtime()
    workflow = load_workflow(
        text, source=source, runtime_check=check_runtime_name, default_runtime=default
    )
    digest = hashlib.sha256(f"{default}\n{text}".encode()).hexdigest()
    return Prepared(workflow, text, digest, source)


# ----------------------------------------------------------------------- workflow files


def _unreadable(source: str, reason: str) -> WorkflowValidationError:
    from akoflow.spec import SpecError, WorkflowValidationError

    error = SpecError("", f"cannot read the workflow file: {reason}")
    return WorkflowValidationError([error], source)


def shown_path(path: Path | str) -> str:
    """A path as text for messages and the store: bytes that are not UTF-8 as ``\\xNN``."""
    return str(path).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def read_workflow_bytes(path: Path, *, limit: int = MAX_WORKFLOW_FILE) -> bytes:
    """The bytes of a workflow file, at most ``limit`` of them; WorkflowValidationError
    (worded like a validation error) when it cannot be read, is a directory or is larger.

    Pipes and character devices are read too (``akoflow run <(envsubst < wf.yaml)``,
    ``/dev/stdin``), bounded by the limit (``/dev/zero`` is refused, not read forever). The
    file is opened without blocking, so a named FIFO nobody writes to reads as empty instead
    of waiting for a writer forever.
    """
    source = shown_path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise _unreadable(source, exc.strerror or str(exc)) from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise _unreadable(source, "it is a directory")
        if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)):
            raise _unreadable(source, "not a regular file")
        os.set_blocking(fd, True)  # a pipe with a writer: wait for what it writes
        data = bytearray()
        while len(data) <= limit:
            chunk = os.read(fd, min(_READ_CHUNK, limit + 1 - len(data)))
            if not chunk:
                break
            data += chunk
    except OSError as exc:
        raise _unreadable(source, exc.strerror or str(exc)) from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise _unreadable(source, f"it is larger than the {limit >> 20} MiB a workflow may be")
    return bytes(data)


def read_workflow_file(path: Path) -> str:
    """The text of a workflow file (UTF-8), read as :func:`read_workflow_bytes` does."""
    raw = read_workflow_bytes(path)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        from akoflow.spec import SpecError, WorkflowValidationError

        line = raw[: exc.start].count(b"\n") + 1
        raise WorkflowValidationError(
            [SpecError("", f"the workflow file is not valid UTF-8 (byte {exc.start})", line)],
            shown_path(path),
        ) from None


# --------------------------------------------------------------------------- state dir

_warned_dirs: set[Path] = set()


Warn = Callable[[str], None]


def prepare_state_dir(state_dir: Path, *, warn: Warn = log.warning) -> None:
    """Create the state dir private to the user (0700: its database and logs can hold private
    data), or check an existing one: a directory, else StateError. An existing one that other
    users can enter gets a warning (``warn``), once per process; it is not changed behind the
    user's back."""
    try:
        state_dir.mkdir(mode=0o700, parents=True)
    except FileExistsError:
        if not state_dir.is_dir():
            raise StateError(f"the state dir {state_dir} exists and is not a directory") from None
        _warn_if_shared(state_dir, warn)
    except OSError as exc:
        raise StateError(
            f"cannot create the state dir {state_dir}: {exc.strerror or exc}"
        ) from None
    try:  # attempt logs live under runs/: private even in a state dir others can enter
        (state_dir / RUNS_DIR).mkdir(mode=0o700, exist_ok=True)
    except FileExistsError:
        raise StateError(f"{state_dir / RUNS_DIR} exists and is not a directory") from None
    except OSError as exc:
        raise StateError(f"cannot use the state dir {state_dir}: {exc.strerror or exc}") from None


def _warn_if_shared(state_dir: Path, warn: Warn) -> None:
    try:
        mode = stat.S_IMODE(state_dir.stat().st_mode)
    except OSError:
        return
    if mode & 0o077 and state_dir not in _warned_dirs:
        _warned_dirs.add(state_dir)
        warn(
            f"the state dir {state_dir} is open to other users (mode {mode:04o}) and holds the "
            f"run database and logs; `chmod 700 {state_dir}` makes it private"
        )


def database_error(path: Path | str, exc: sqlite3.Error) -> str:
    """What to tell a user about a state database SQLite cannot use."""
    from akoflow.store.room import short_of_room

    text = str(exc)
    hint = ""
    directory = Path(path).parent
    if isinstance(exc, sqlite3.DatabaseError) and (
        "not a database" in text or "malformed" in text or "corrupt" in text
    ):
        hint = " (it is damaged or not an AkôFlow database: move it away to start afresh)"
    elif short_of_room(exc, directory):
        # SQLite reports a full disk at open as an I/O error on its index file (SHMSIZE).
        hint = (
            f" (no room left on its disk: SQLite needs some even to read it. Free room there "
            f"(`df -h {directory}`, `du -sh {directory}/runs/*`), then try again)"
        )
    return f"the state database {path} cannot be used: {text}{hint}"


def open_repository(state_dir: Path, *, warn: Warn = log.warning) -> Repository:
    """The state dir's repository (created private to the user if new); StateError if the
    directory or its database cannot be used."""
    prepare_state_dir(state_dir, warn=warn)
    path = state_dir / DB_NAME
    try:
        return Repository(path)
    except sqlite3.Error as exc:
        raise StateError(database_error(path, exc)) from None
    except StoreError as exc:  # a database of a newer AkôFlow
        raise StateError(str(exc)) from None
    except OSError as exc:
        raise StateError(f"cannot open the state database {path}: {exc.strerror or exc}") from None


def _highest_run_dir_id(runs_root: Path) -> int:
    """The highest run id among ``runs_root``'s ``<id>-<name>`` directories (0 if none)."""
    highest = 0
    try:
        with os.scandir(runs_root) as entries:
            for entry in entries:
                head = entry.name.partition("-")[0]
                if head.isascii() and head.isdigit():
                    highest = max(highest, int(head))
    except OSError:
        pass
    return highest


STORE_ASIDE = 2_000  # activities: a workflow this big is stored on a connection of its own


def store(
    repo: Repository, state_dir: Path, prepared: Prepared, data_dir: Path | None = None
) -> int:
    """Store a new run of the workflow; its id. A big one is written through a connection
    of its own (:meth:`Repository.aside`): 100,000 activities take about 2 s, during which
    every reader of ``repo`` (a server's event loop: the API, the engine) waited for its
    lock. The collector is paused while a big one is stored (:func:`akoflow.heap.paused_for`:
    `akoflow run` stores inside its claim's transaction, after the loader's pause ended, and
    collections walked the rows as they were built: 1.5 s at 100,000)."""
    with heap.paused_for(prepared.text):
        if len(prepared.workflow.activities) < STORE_ASIDE:
            return _store(repo, state_dir, prepared, data_dir)
        with repo.aside() as writer:
            return _store(writer, state_dir, prepared, data_dir)


def _store(repo: Repository, state_dir: Path, prepared: Prepared, data_dir: Path | None) -> int:
    # Run dirs outlive a database moved away or lost: a new run must never take the id (and
    # so the attempt files and data dir) of one that is still on disk.
    repo.skip_workflow_ids(_highest_run_dir_id(state_dir / RUNS_DIR))
    return repo.create_workflow(
        prepared.workflow,
        spec_yaml=prepared.text,
        spec_hash=prepared.spec_hash,
        source=prepared.source,
        runs_root=state_dir / RUNS_DIR,
        data_dir=data_dir,
    )


# ------------------------------------------------------------------- claiming a run


@dataclass(frozen=True)
class Claim:
    """What ``akoflow run FILE`` gets to run: a new run, or this file's interrupted one."""

    wf_id: int
    resumed: bool
    busy_pid: int | None = None
    """Another live process runs it: nothing was claimed or stored."""
    other_version: int | None = None
    """An interrupted run of another version of the file (same name), left alone."""


def claim_run(
    repo: Repository,
    state_dir: Path,
    prepared: Prepared,
    *,
    data_dir: Path | None = None,
    new: bool = False,
) -> Claim:
    """Find this file's interrupted run, or store a new one, and make this process its owner,
    in one write transaction: of several ``akoflow run`` of the same file started at once,
    one decides at a time, so exactly one runs it and the others see a live owner.

    The engine's ``attach`` then accepts the run, as its owner is this process.
    """
    from akoflow.engine.ownership import owner_alive, process_start_time

    pid, started = os.getpid(), process_start_time()
    # BEGIN IMMEDIATE: the database's write lock, until decided; a big run stored with the
    # collector paused (see store)
    with heap.paused_for(prepared.text), repo.transaction():
        found = None if new else repo.find_unfinished(spec_hash=prepared.spec_hash)
        if found is not None:
            if found.owner_pid != pid and owner_alive(found.owner_pid, found.owner_started):
                return Claim(found.id, resumed=True, busy_pid=found.owner_pid)
            repo.claim_workflow(
                found.id,
                pid=pid,
                started=started,
                expect_pid=found.owner_pid,
                expect_started=found.owner_started,
            )  # cannot lose: nobody else writes while this transaction holds the lock
            return Claim(found.id, resumed=True)
        newest = repo.list_workflows(limit=1, unfinished_only=True, name=prepared.workflow.name)
        other = next((w.id for w in newest if not owner_alive(w.owner_pid, w.owner_started)), None)
        wf_id = store(repo, state_dir, prepared, data_dir)
        repo.claim_workflow(wf_id, pid=pid, started=started, expect_pid=None, expect_started=None)
        return Claim(wf_id, resumed=False, other_version=other)
