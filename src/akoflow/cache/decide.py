"""Whether an activity's earlier result can be reused, and the files that reuse restores.

Decided as Nextflow and Snakemake do, at dispatch time, once its upstream activities ran or
were reused: the entries of earlier ended runs with the same key (:mod:`.fingerprint`) are
tried newest first; one is reused when it may be (its lineage was exact, its outputs are on
the engine host), every file it read holds the same content (SHA-256, not times) in the
new run's data dir now, every directory it listed the same names (:func:`~.files.listing`,
without what activities it does not depend on made: :attr:`Request.unrelated`), a declared
glob matches no new file, and each of its outputs is there already or can be copied from its
run's data dir with the recorded content. Anything else is a miss, with the reason.

This module does the file work (hashing, staging copies) and reads the store; it never
changes a state. It runs off the event loop (a thread), or for ``akoflow run --dry-run``
without staging anything (:attr:`Request.plan_only`).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from akoflow.cache.files import LISTING, Hasher, NotThere, Staged, Version, listing, stage_copy
from akoflow.cache.fingerprint import changed, sentence
from akoflow.cache.store import CacheStore, Entry, Output
from akoflow.provenance.declared import compile_glob, declares, is_glob
from akoflow.provenance.names import display

READS = "reads"  # an entry's components say how its reads were known: observed or declared
OBSERVED, DECLARED = "observed", "declared"
NO_EARLIER_RUN = "no earlier run of it"  # a miss with nothing to explain


@dataclass(frozen=True)
class Request:
    """What the cache is asked about one activity: its key and fingerprint, its data dir."""

    workflow_id: int | None  # None: a dry run (no run stored)
    workflow_name: str
    activity: str
    key: str
    components: dict[str, str]
    data_dir: Path
    declared_inputs: tuple[str, ...] = ()
    declared_outputs: tuple[str, ...] = ()
    plan_only: bool = False
    # A dry run's view of files upstream reuses would restore: path -> sha256.
    planned: Mapping[str, str] = field(default_factory=dict)
    # The paths of the data dir activities it does not depend on made in this run (asked
    # only for a listing): not what it could find at its start (see stage._reads_of).
    unrelated: Callable[[], set[str]] | None = None

    @functools.cached_property
    def left_out(self) -> set[str]:
        """:attr:`unrelated`, asked once per request (a decision): each ask reads every path
        the run generated from the store (a `find` over thousands of directories asked it
        for every listing of every candidate entry, and deciding became quadratic)."""
        return self.unrelated() if self.unrelated is not None else set()


@dataclass
class Hit:
    """A reusable entry, with what it read and wrote as found now, and its outputs staged."""

    entry: Entry
    reads: list[tuple[str, Version]]  # what it read, as found now
    outputs: list[tuple[str, Version]]
    staged: Staged
    listings: list[tuple[str, str]] = field(default_factory=list)  # directories it listed

    @property
    def reason(self) -> str:
        return f"cached: reused attempt {self.entry.attempt} of run #{self.entry.workflow_id}"


@dataclass
class Miss:
    """No reuse, and why; the declared inputs as read now (kept to record the entry)."""

    reason: str
    declared_reads: list[tuple[str, str, float]] | None = None  # None: not all readable


Decision = Hit | Miss


def _first_miss(latest: Entry | None, components: dict[str, str]) -> str:
    """Why an activity with no earlier result of its key runs: what changed since the
    latest entry of its name (``latest``), if any."""
    if latest is None:
        return NO_EARLIER_RUN
    what = changed(latest.components, components)
    if what:
        return f"{sentence(what)} changed since run #{latest.workflow_id}"
    return f"run #{latest.workflow_id}'s result cannot be reused"


def declared_files(patterns: tuple[str, ...], data_dir: Path) -> list[str]:
    """The regular files the declared ``patterns`` match in ``data_dir`` now (directories
    reached by a symbolic link are not walked)."""
    found: set[str] = set()
    for pattern in dict.fromkeys(patterns):
        if not is_glob(pattern):
            found.add(pattern)
            continue
        regex = compile_glob(pattern)
        for here, _dirs, names in os.walk(data_dir):
            rel = os.path.relpath(here, data_dir)
            prefix = "" if rel == "." else rel + "/"
            found.update(prefix + n for n in names if regex.fullmatch(prefix + n))
    return sorted(found)


class Decider:
    def __init__(self, store: CacheStore, hasher: Hasher) -> None:
        self.store = store
        self.hasher = hasher

    # ------------------------------------------------------------------ reads

    def _now(self, request: Request, path: str) -> Version | None:
        planned = request.planned.get(path)
        if planned is not None:
            return Version(0, planned, 0.0)
        try:
            return self.hasher.version(request.data_dir, path)
        except NotThere:
            return None

    def _declared_now(self, request: Request) -> list[str]:
        """The files the declared inputs match now (with a dry run's planned restores)."""
        found = set(declared_files(request.declared_inputs, request.data_dir))
        found.update(p for p in request.planned if declares(request.declared_inputs, p))
        return sorted(found)

    def declared_reads(self, request: Request) -> list[tuple[str, str, float]] | None:
        """The declared inputs' files and contents now (None: one cannot be read)."""
        reads: list[tuple[str, str, float]] = []
        for path in self._declared_now(request):
            version = self._now(request, path)
            if version is None:
                return None
            reads.append((path, version.sha256, version.mtime))
        return reads

    # ------------------------------------------------------------------ decision

    def without_files(self, request: Request) -> Miss | None:
        """The decision when the store alone makes it (no earlier result of this key, no
        declared inputs to hash): a miss; else None (:meth:`decide` does the file work)."""
        if request.declared_inputs or self.store.candidates(
            request.key, not_in=request.workflow_id
        ):
            return None
        return self._miss(request, [])

    def without_files_many(self, requests: Sequence[Request]) -> list[Miss | None]:
        """:meth:`without_files` of each request, asking the store a few statements for all
        of them instead of one or two each (a wide run decides hundreds at a time)."""
        keys: dict[int | None, set[str]] = {}
        for r in requests:
            if not r.declared_inputs:
                keys.setdefault(r.workflow_id, set()).add(r.key)
        earlier = {
            (run, key)
            for run, asked in keys.items()
            for key in self.store.keys_with_candidates(asked, not_in=run)
        }

        def quick(r: Request) -> bool:
            return not r.declared_inputs and (r.workflow_id, r.key) not in earlier

        names: dict[str, set[str]] = {}
        for r in filter(quick, requests):
            names.setdefault(r.workflow_name, set()).add(r.activity)
        latest = {
            (wf, name): entry
            for wf, asked_names in names.items()
            for name, entry in self.store.latest_of_many(wf, asked_names).items()
        }
        return [
            Miss(_first_miss(latest.get((r.workflow_name, r.activity)), r.components))
            if quick(r)
            else None
            for r in requests
        ]

    def decide(self, request: Request) -> Decision:
        reasons: list[str] = []
        for entry in self.store.candidates(request.key, not_in=request.workflow_id):
            found = self._try(request, entry)
            if isinstance(found, Hit):
                return found
            reasons.append(found)
        return self._miss(request, reasons)

    def _miss(self, request: Request, reasons: list[str]) -> Miss:
        if reasons:
            reason = reasons[0]
        else:
            latest = self.store.latest_of(request.workflow_name, request.activity)
            reason = _first_miss(latest, request.components)
        reads = self.declared_reads(request) if request.declared_inputs else None
        return Miss(reason, reads)

    def _try(self, request: Request, entry: Entry) -> Hit | str:
        """A hit on ``entry``, or why not."""
        run = f"run #{entry.workflow_id}"
        if entry.not_reusable is not None:
            return f"{run}'s result is not reusable: {entry.not_reusable}"
        outputs = entry.outputs
        reads = list(entry.reads)
        if entry.components.get(READS) == DECLARED:
            # Unobserved, its declarations say what it reads: a file they match now that it
            # did not read (a glob's new match) is an input that changed.
            before = {p for p, sha, _ in reads if not sha.startswith(LISTING)}
            new = [p for p in self._declared_now(request) if p not in before]
            if new:
                return f"{display(new[0])} matches its declared inputs now, not in {run}"
        if outputs is None:  # it ran: its outputs and exactness are in its run's lineage
            unsure = self.store.ambiguous(entry.activity_id, entry.attempt)
            if entry.components.get(READS) == DECLARED:
                # Unobserved: its declarations are its data; what else changed while it ran
                # is another activity's as much as its own, and not restored.
                unsure = [p for p in unsure if declares(request.declared_outputs, p)]
            if unsure:
                return f"{run}'s lineage of it is ambiguous (`akoflow prov {entry.workflow_id}`)"
            generated, remote = self.store.generated(entry.activity_id, entry.attempt)
            if remote:
                return f"{run}'s outputs of it stay on a remote runtime"
            outputs = tuple(generated)
            if entry.components.get(READS) != DECLARED:  # declared: hashed before it ran
                reads = self._not_its_own(reads, generated)
        listings = [(p, sha) for p, sha, _ in reads if sha.startswith(LISTING)]
        reads = [r for r in reads if not r[1].startswith(LISTING)]
        for path, sha in listings:
            if self._listing(request, path) != sha:
                where = "the data dir" if path == "." else f"directory {display(path)}"
                return f"the names in {where} (listed by {run}) changed"
        for path, sha, _ in reads:
            now = self._now(request, path)
            if now is None:
                return f"input {display(path)} is not in the data dir (read by {run})"
            if now.sha256 != sha:
                return f"input {display(path)} changed since {run}"
        found = [(p, v) for p, _, _ in reads if (v := self._now(request, p)) is not None]
        staged = Staged(request.data_dir, request.activity)
        restored: list[tuple[str, Version]] = []
        for output in outputs:
            version = self._restore(request, entry, output, staged)
            if version is None:
                staged.discard()
                return (
                    f"its output {display(output.path)} is no longer in {run}'s data dir "
                    "as it made it"
                )
            restored.append((output.path, version))
        return Hit(entry, found, restored, staged, listings)

    def _listing(self, request: Request, path: str) -> str:
        unrelated = request.left_out
        try:
            return listing(
                request.data_dir,
                path,
                leave_out=unrelated,
                planned=[p for p in request.planned if p not in unrelated],
            )
        except NotThere:  # a name no directory can have (".." in it)
            return LISTING + "absent"

    @staticmethod
    def _not_its_own(
        reads: list[tuple[str, str, float]], generated: list[Output]
    ) -> list[tuple[str, str, float]]:
        """``reads`` but the versions the attempt generated itself (by the lineage: a
        version is recorded generated by one attempt at most, and never when it was there
        before, as another attempt's or the run's input): not an input a new run must hold
        beforehand. Any other version it read is an input, whenever it was written."""
        own = {(o.path, o.sha256) for o in generated if o.sha256 is not None}
        return [r for r in reads if (r[0], r[1]) not in own]

    def _restore(
        self, request: Request, entry: Entry, output: Output, staged: Staged
    ) -> Version | None:
        sha = output.sha256
        if sha is None:  # too big to be checksummed when recorded: by size and change time
            sha = self.store_sha_of_unhashed(entry, output)
            if sha is None:
                return None
        now = self._now(request, output.path)
        if now is not None and now.sha256 == sha:
            return now  # already there (the same data dir, or restored before a crash)
        source = Path(entry.data_dir)
        if request.plan_only:
            try:
                there = self.hasher.version(source, output.path)
            except NotThere:
                return None
            return there if there.sha256 == sha else None
        try:
            return stage_copy(staged, source, output.path, sha)
        except NotThere:
            return None

    def store_sha_of_unhashed(self, entry: Entry, output: Output) -> str | None:
        """The content of a generated version recorded without a checksum (a big file), if
        the file in its run's data dir is still that version (same size and change time)."""
        try:
            info = os.stat(Path(entry.data_dir) / output.path, follow_symlinks=False)
        except OSError:
            return None
        if info.st_size != output.size or abs(info.st_ctime - output.mtime) > 1e-6:
            return None
        return self.hasher.sha256(Path(entry.data_dir), output.path)


__all__ = ["NO_EARLIER_RUN", "Decider", "Decision", "Hit", "Miss", "Request", "declared_files"]
