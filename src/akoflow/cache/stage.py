"""The engine's cache stage: READY activities pass here before their runtime's line.

- An activity that becomes READY and may be reused (caching on for the engine, its run and
  itself; its files on the engine host) waits in the stage's queue
  instead of its runtime's. The stage's loop decides (:mod:`.decide`, in a thread: hashing
  and copying are file work), then in one transaction records each reuse (a ``cached``
  attempt, the activity CACHED, its lineage, its entry) and releases its dependents, or puts
  the activity in its runtime's line with the reason it runs.
- A succeeded attempt gets its entry (key, what it read, fingerprint) in the transaction of
  its end when the store tells all it needs; else (a big file to hash, a listing) once that
  transaction is committed, and its dependents' decisions wait for it (both are queued in
  the same turn of the engine, and the stage handles finished attempts first).
- Restored files are renamed into place on the event loop, just before they are recorded and
  the provenance recorder is told (:meth:`ProvenanceRecorder.copied_in`): no scan sees them
  as anyone's change. The engine's own writes are never observed as an attempt's.

Crash safety: a reuse is recorded after its files are in place, in one transaction; an engine
killed in between leaves the activity READY, and the resumed run decides again (the files
already there with the right content are kept, nothing is copied twice, nothing runs).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from akoflow.cache.decide import (
    DECLARED,
    NO_EARLIER_RUN,
    OBSERVED,
    READS,
    Decider,
    Decision,
    Hit,
    Miss,
    Request,
)
from akoflow.cache.files import Hasher, names_digest
from akoflow.cache.fingerprint import (
    BIG_FAN_IN,
    components,
    fingerprint,
    inherited,
    key_of,
    runtime_settings,
)
from akoflow.cache.store import CacheStore, Output
from akoflow.config import activity_environ, env_prefix
from akoflow.errors import AkoflowError
from akoflow.provenance.names import display, encoded
from akoflow.runtimes.registry import adapter_for
from akoflow.states import ActivityState
from akoflow.store import Repository
from akoflow.upstream import upstream_ids

if TYPE_CHECKING:
    from akoflow.engine.model import ActivityRun, RuntimeSlot, WorkflowRun
    from akoflow.engine.transitions import Transitions
    from akoflow.provenance.observed import Listings
    from akoflow.provenance.recorder import ProvenanceRecorder, WritesAtEnd

log = logging.getLogger(__name__)

CHUNK = 256  # activities decided, or results recorded, per step of the stage
# Decided at once per turn of the loop, where they become READY: enough for the first
# dispatch to fill the lines; a wide run's first turn deciding a whole CHUNK started
# nothing for 15-20 ms more (the stage decides the rest while they run).
INLINE = 32
KEYS_KEPT = 10_000  # keys decided and not used yet by an entry (see _keys)
SERVE_EVERY = 32  # activities decided between two calls of the runtimes' serve()
AHEAD = 1024  # decided activities waiting in a runtime's line before the stage decides more

A = ActivityState
KeyOf = tuple[dict[str, str], str, str | None]  # components, key, an upstream not known
Reads = tuple[list[tuple[str, str, float]], str]  # (path, sha256, mtime) read; how known


def _big(act: ActivityRun) -> bool:
    return len(act.deps) >= BIG_FAN_IN


def cache_wanted() -> bool:
    """``AKOFLOW_CACHE=off`` turns result caching off for every run of this engine."""
    return os.environ.get("AKOFLOW_CACHE", "on").lower() not in ("0", "off", "false", "no")


class CacheFailure(AkoflowError):
    """Recording a reuse failed half-way: memory and store may differ (fatal to the engine,
    as any failed transaction of the processor is)."""


@dataclass(frozen=True)
class Finished:
    """An activity's successful end, as the cache stage records it."""

    act: ActivityRun
    number: int
    observed: bool  # its processes' accesses were observed (registered at their start)
    declared: list[tuple[str, str, float]] | None  # its declared inputs, hashed before it ran
    listing: Listings | None = None  # observed: what it listed (None: not known)
    writes: WritesAtEnd | None = None  # observed: what its writes leave a reuse depending on
    recovered: bool = False  # its end was stored, its entry not, when the engine stopped


class CacheStage:
    def __init__(
        self,
        repo: Repository,
        slots: Mapping[str, RuntimeSlot],
        transitions: Transitions,
        provenance: ProvenanceRecorder,
        *,
        wake: Callable[[], None],
        serve: Callable[[], None] = lambda: None,
    ) -> None:
        self.repo = repo
        self.store = CacheStore(repo)
        self.hasher = Hasher()
        self.decider = Decider(self.store, self.hasher)
        self.enabled = cache_wanted()
        self._slots = slots
        self._t = transitions
        self._provenance = provenance
        self._wake_processor = wake
        # Runtimes with a line of their own start its next attempts (Engine._serve_runtimes):
        # deciding a chunk holds the event loop for milliseconds.
        self._serve_runtimes = serve
        self._wake = asyncio.Event()
        # Runtime name -> its READY activities waiting to be decided, in order.
        self._queue: dict[str, collections.deque[ActivityRun]] = {}
        self._finished: list[Finished] = []
        self._fp: dict[int, str] = {}  # activity id -> fingerprint of its latest success
        # activity id -> its components and key as decided before it ran, for its entry
        # (computing them again cost 8% of the engine's time on a run of `true`s); a bound
        # on what failures and cancels leave behind.
        self._keys: dict[int, tuple[dict[str, str], str]] = {}
        self._disabled: set[int] = set()  # runs started with --no-cache
        self._declared: dict[int, list[tuple[str, str, float]]] = {}  # activity id -> inputs
        self._settings: dict[str, str] = {}  # runtime name -> digest of its settings
        self._mechanisms: dict[int, str] = {}
        self._environ: dict[str, str] | None = None
        self._inline_left = INLINE  # decisions at once left in this turn of the loop

    # ================================================================ engine hooks

    def attach(self, wf: WorkflowRun) -> None:
        """A run is taken over (new or resumed): its fingerprints so far; a success whose
        entry a crash kept from being written gets one now (its reads from the lineage)."""
        if self.store.disabled(wf.id):
            self._disabled.add(wf.id)
        known = self.store.fingerprints(wf.id)
        self._fp.update(known)
        for act in wf.activities.values():
            if act.state is A.SUCCEEDED and act.id not in known and act.attempt > 0:
                self._hold(Finished(act, act.attempt, False, None, recovered=True))

    def enqueue(self, act: ActivityRun) -> None:
        """Where a READY activity goes: the stage, or its runtime's line."""
        if not self._wants(act):
            self._slots[act.runtime].queue.append(act)
        elif (
            self._queue.get(act.runtime)
            or self._finished
            or len(self._slots[act.runtime].queue) >= AHEAD
            or not self._decided_now(act)
        ):
            self._queue.setdefault(act.runtime, collections.deque()).append(act)
            self._wake.set()

    def refill(self) -> None:
        """The processor took activities from its runtimes' lines: decide more if some wait
        for a line that has room again."""
        if self._has_room():
            self._wake.set()

    def _has_room(self) -> bool:
        return any(
            waiting and len(self._slots[name].queue) < AHEAD
            for name, waiting in self._queue.items()
        )

    def _take(self, most: int) -> list[ActivityRun]:
        """Up to ``most`` activities to decide, of runtimes whose line has room: deciding
        far ahead of what can start held every key of a 100,000-wide run (more than
        :data:`KEYS_KEPT`: computed again at each end) and decided them all before the
        first ended."""
        taken: list[ActivityRun] = []
        for name, waiting in list(self._queue.items()):
            room = AHEAD - len(self._slots[name].queue)
            while waiting and room > 0 and len(taken) < most:
                taken.append(waiting.popleft())
                room -= 1
            if not waiting:
                del self._queue[name]
        return taken

    def _decided_now(self, act: ActivityRun) -> bool:
        """Decide ``act`` at once when the store alone decides (a key never seen: a miss),
        up to :data:`INLINE` per turn of the event loop (a 100,000-wide run's first turn
        leaves the rest to the stage's steps): it goes to its runtime's line in the same
        turn, and the processor starts it in the same wake-up (a chain's link was two
        turns of the loop and a commit longer). False: the stage decides it."""
        if self._inline_left <= 0 or _big(act):  # a big one's key is computed in a thread
            return False
        if self._inline_left == INLINE:
            with contextlib.suppress(RuntimeError):  # no loop running: this turn only
                asyncio.get_running_loop().call_soon(self._refill)
        self._inline_left -= 1
        try:
            request = self._request(act)
            decision = None if request is None else self._quick(request)
        except Exception:  # the stage decides it, and says why it cannot
            return False
        if request is not None:
            if decision is None:
                return False
            self._runs(act, decision)
        self._wake_processor()
        return True

    def _refill(self) -> None:
        self._inline_left = INLINE

    def attempt_succeeded(self, act: ActivityRun) -> None:
        """The live attempt of ``act`` succeeded (its transaction is not committed yet)."""
        declared = self._declared.pop(act.id, None)
        key = (act.id, act.attempt)
        listing = self._provenance.listings.pop(key, None)
        writes = self._provenance.writes_at_end.pop(key, None)
        # An attempt adopted after a restart was observed from then on only: what it did
        # before is not known, so neither is what a reuse would have to restore.
        observed = act.observed and not act.adopted
        finished = Finished(act, act.attempt, observed, declared, listing, writes)
        if not self._finished and self._record_now(finished):
            return
        self._hold(finished)

    def _record_now(self, finished: Finished) -> bool:
        """Record the entry in the transaction of the attempt's end when the store tells all
        it needs (no file to hash): no turn of the stage, no commit of its own. False: it
        waits for the stage (in order behind any that wait already)."""
        if _big(finished.act) and finished.act.id not in self._keys:
            return False  # its key is computed again, in a thread
        try:
            found = self._reads_of(finished, self._mechanism(finished.act.wf), file_work=False)
        except Exception:  # the stage tries again, and says why it cannot
            return False
        if found is None:
            return False
        try:
            # One statement (no savepoint needed: SQLite undoes a failed statement alone).
            self._add_entry(finished, *found)
        except Exception:  # the run goes on; this result is just not reusable
            log.exception("cache: cannot record the result of %s", finished.act.name)
        return True

    def _hold(self, finished: Finished) -> None:
        """The run is recorded ended only once this entry is (its end waits, as for a
        release): a next run must find every result of an ended one."""
        finished.act.wf.releasing += 1
        self._finished.append(finished)
        self._wake.set()

    async def drain(self) -> None:
        """The engine stops: record the entries still waiting (decisions wait for a next
        engine)."""
        if self._finished:
            await self._record(list(self._finished))

    def _wants(self, act: ActivityRun) -> bool:
        slot = self._slots.get(act.runtime)
        return (
            self.enabled
            and act.spec.cache
            and act.wf.id not in self._disabled
            and slot is not None
            and not slot.runtime.files_stay_remote
        )

    # ================================================================ the loop

    async def step(self) -> None:
        await self._wake.wait()
        self._wake.clear()
        # A few hundred at a time: a 100,000-wide run makes every activity READY at once,
        # and deciding them all in one go held the event loop (the API, the engine) for
        # seconds; in chunks, the first ones are dispatched while the rest are decided.
        finished = self._finished[:CHUNK]  # left there until recorded (see drain)
        queue = self._take(CHUNK)
        if len(self._finished) > CHUNK or self._has_room():
            self._wake.set()
        if finished:
            await self._record(finished)
        if queue:
            await self._resolve(queue)
        if self._wake.is_set():
            # More to do: a turn for the API and the processor first (waiting on a set event
            # does not yield, and deciding a miss no longer awaits a thread: a 40,000-wide run
            # held the loop 17 s again, chunk after chunk).
            await asyncio.sleep(0)

    # ------------------------------------------------------------------ keys

    def _runtime_digest(self, name: str) -> tuple[str, str]:
        """The runtime's kind and the digest of its settings."""
        adapter = adapter_for(name)
        kind = adapter.kind if adapter is not None else name
        digest = self._settings.get(name)
        if digest is None:
            digest = self._settings[name] = runtime_settings(kind, os.environ, env_prefix(name))
        return kind, digest

    async def _keys_in_thread(self, acts: Iterable[ActivityRun]) -> dict[int, KeyOf]:
        """The keys of big activities (:data:`BIG_FAN_IN` upstreams or more), computed in a
        worker thread: a join of 100,000 held the loop 0.2 s (the engine, and a server's
        API)."""
        todo = list(acts)
        if not todo:
            return {}
        return await asyncio.to_thread(lambda: {act.id: self._key(act) for act in todo})

    def _key(self, act: ActivityRun) -> KeyOf:
        """The components and key of ``act``, and an upstream whose fingerprint is unknown."""
        upstream: dict[str, str] = {}
        unknown = None
        for dep in act.deps:
            fp = self._fp.get(dep.id)
            if fp is None:
                unknown = dep.name
                fp = f"unknown:{act.wf.id}:{dep.id}"  # never any other run's
            upstream[dep.name] = fp
        kind, settings = self._runtime_digest(act.runtime)
        if self._environ is None:
            self._environ = activity_environ()  # what its processes inherit, secrets not
        parts = components(
            act.wf.workflow,
            act.spec,
            runtime=settings,
            upstream=upstream,
            environ=inherited(act.spec, kind, self._environ),
        )
        return parts, key_of(parts), unknown

    def _mechanism(self, wf: WorkflowRun) -> str:
        found = self._mechanisms.get(wf.id)
        if found is None:
            found = self.store.mechanism(wf.id) or "off"
            if found.startswith(OBSERVED):  # decided for the run's life
                self._mechanisms[wf.id] = found
        return found

    # ------------------------------------------------------------------ entries of successes

    async def _record(self, finished: list[Finished]) -> None:
        """Entries of ``finished`` (the first ones of :attr:`_finished`), then their runs may
        end."""
        recorded = 0  # of ``finished``, the first ones whose entries are committed
        try:
            jobs = [(f, self._mechanism(f.act.wf)) for f in finished]
            # What the store says is read here; an attempt that needs file work (hashing a
            # big file it read, what a listing depends on) is looked at in a thread: a hop
            # per chunk cost more than the reads of a run of `true`s.
            found = [self._reads_of(f, m, file_work=False) for f, m in jobs]
            slow = [jobs[i] for i, reads in enumerate(found) if reads is None]
            if slow:
                done = iter(
                    await asyncio.to_thread(lambda: [self._reads_of(f, m) for f, m in slow])
                )
                found = [reads if reads is not None else next(done) for reads in found]
            gathered = [reads for reads in found if reads is not None]
            for batch in self._batches([f for f, _ in jobs], gathered):
                keys = await self._keys_in_thread(
                    f.act for f, _ in batch if _big(f.act) and f.act.id not in self._keys
                )
                with self.repo.transaction():
                    for f, (reads, why) in batch:
                        try:
                            # one statement, as in _record_now
                            self._add_entry(f, reads, why, keys.get(f.act.id))
                        except Exception:  # the run goes on; this result is just not reusable
                            log.exception("cache: cannot record the result of %s", f.act.name)
                recorded += len(batch)
        except Exception:
            log.exception("cache: cannot record the results of %d attempts", len(finished))
        finally:
            if (current := asyncio.current_task()) and current.cancelling():
                finished = finished[:recorded]  # the rest are recorded by drain
            del self._finished[: len(finished)]
            for f in finished:
                f.act.wf.releasing -= 1
                self._t.maybe_finish(f.act.wf)

    def _batches(
        self, finished: list[Finished], reads: list[Reads]
    ) -> list[list[tuple[Finished, Reads]]]:
        """``finished`` with their reads, in order, cut before each big one whose key is
        computed (in a thread, before the entries of its batch are recorded) and that depends
        on an earlier one of its batch: its key needs that one's fingerprint, known once its
        entry is (a resumed run records its upstream activities' entries and its own in one
        chunk; its entry said one of them was unknown)."""
        batches: list[list[tuple[Finished, Reads]]] = [[]]
        ids: set[int] = set()
        for f, found in zip(finished, reads, strict=True):
            act = f.act
            if (
                ids
                and _big(act)
                and act.id not in self._keys
                and not ids.isdisjoint(dep.id for dep in act.deps)
            ):
                batches.append([])
                ids = set()
            batches[-1].append((f, found))
            ids.add(act.id)
        return batches

    def _reads_of(
        self, f: Finished, mechanism: str, *, file_work: bool = True
    ) -> tuple[list[tuple[str, str, float]], str] | None:
        """(path, sha256, mtime) the attempt read, and how they are known (observed or
        declared), else why it cannot be reused. Without ``file_work`` (on the event loop):
        None when finding them needs more than the store (then called again in a thread)."""
        act = f.act
        if mechanism.startswith(OBSERVED) and f.observed:
            reads: list[tuple[str, str, float]] = []
            used = self.store.used(act.id, f.number)
            if not file_work and (
                any(sha is None for *_, sha in used) or (f.listing is not None and f.listing[0])
            ):
                return None
            for path, size, mtime, sha in used:
                if sha is None:  # too big to be checksummed by the lineage: hashed here
                    sha = self._hash_unchanged(act.wf, path, size, mtime)
                if sha is None:
                    return reads, f"the file {display(path)} it read changed before it ended"
                reads.append((path, sha, mtime))
            if f.listing is None:
                return reads, "what it listed was not recorded"
            listed, made, links, makers = f.listing
            if links:  # a read through one lands outside the data dir: never observed
                return reads, (
                    f"{display(links[0])} links to outside the data dir: what it read "
                    "through such a link is not observed"
                )
            if f.writes is None:
                return reads, "what it wrote was not recorded"
            if f.writes.unsettled:
                # Another activity wrote there while it ran: what it made may never be
                # attributed (a crash loses the wait), and a reuse would restore nothing.
                return reads, (
                    f"what it wrote to {display(f.writes.unsettled[0])} was not attributed "
                    "when it ended (another activity wrote it at the same time)"
                )
            for path, sha, mtime in f.writes.prior:
                # Changed in place without being read (an append): its result is that
                # version and its own bytes, so that version is an input.
                if sha is None:
                    return reads, (
                        f"it changed {display(path)} in place without reading it, and the "
                        "version it changed was too big to checksum"
                    )
                reads.append((path, sha, mtime))
            # The names it listed as it could find them at its start, and as a next run can
            # hold them when it decides: without what was made there since it began, nor
            # what activities it does not depend on made (a sibling's file is there or not,
            # as they race).
            if listed:
                upstream = upstream_ids(act)
                made = made | self._unrelated(act, upstream)
                made.update(p for p, keys in makers.items() if not _by_any(keys, upstream))
            for path, names in sorted(listed.items()):
                reads.append((path, names_digest(path, names, made), 0.0))
            return reads, OBSERVED
        if act.spec.inputs and f.declared is not None:
            return f.declared, DECLARED
        # Its reads are a guess (timing) or unknown: known only for the fingerprint.
        guessed = [
            (path, sha or f"{size}:{mtime}", mtime)
            for path, size, mtime, sha in self.store.used(act.id, f.number)
        ]
        if mechanism.startswith(OBSERVED) and f.recovered:
            why = "the engine stopped after it ended and before recording what it read"
        elif mechanism.startswith(OBSERVED):
            why = "its processes were not observed (an engine restart adopted it)"
        else:
            why = f"what it read was not observed (provenance: {mechanism})"
        if act.spec.inputs:
            return guessed, f"{why}, and its declared inputs could not all be read"
        return guessed, f"{why}, and it declares no inputs"

    def _unrelated(self, act: ActivityRun, upstream: set[int] | None = None) -> set[str]:
        """The paths generated in ``act``'s run so far by activities it does not depend on
        (itself included). Runs in a thread."""
        if upstream is None:
            upstream = upstream_ids(act)
        generators = self.store.generators(act.wf.id)
        return {path for path, ids in generators.items() if not ids & upstream}

    def _hash_unchanged(self, wf: WorkflowRun, path: str, size: int, mtime: float) -> str | None:
        try:
            info = os.stat(wf.data_dir / path, follow_symlinks=False)
        except OSError:
            return None
        if info.st_size != size or abs(info.st_ctime - mtime) > 1e-6:
            return None
        return self.hasher.sha256(wf.data_dir, path)

    def _add_entry(
        self,
        f: Finished,
        reads: list[tuple[str, str, float]],
        how: str,
        computed: KeyOf | None = None,
    ) -> None:
        """Record the entry: one INSERT, the only write (callers rely on that to need no
        savepoint around it). ``computed``: its key, computed in a thread (a big one)."""
        act = f.act
        known = self._keys.pop(act.id, None)
        if known is not None:
            parts, key, unknown = (*known, None)
        else:
            parts, key, unknown = computed if computed is not None else self._key(act)
        why = None if how in (OBSERVED, DECLARED) else how
        if unknown is not None:
            why = f"the fingerprint of upstream {unknown} is unknown"
        slot = self._slots.get(act.runtime)
        if slot is not None and slot.runtime.files_stay_remote:
            why = f"its files stay on runtime {act.runtime} (remote results are not reused)"
        if not act.spec.cache:
            why = "cache: false"
        fp = fingerprint(key, ((encoded(p), sha) for p, sha, _ in reads))
        self.store.add_entry(
            workflow_id=act.wf.id,
            activity_id=act.id,
            attempt=f.number,
            workflow_name=act.wf.name,
            activity_name=act.name,
            key=key,
            fingerprint=fp,
            components={**parts, READS: how if why is None else ""},
            reads=reads,
            not_reusable=why,
        )
        self._fp[act.id] = fp

    # ------------------------------------------------------------------ decisions

    def _request(self, act: ActivityRun, computed: KeyOf | None = None) -> Request | None:
        """What the decider is asked about ``act``; None when an upstream fingerprint is
        unknown (its entry could not be recorded: nothing can match): then it runs.
        ``computed``: its key, computed in a thread (a big one)."""
        parts, key, unknown = computed if computed is not None else self._key(act)
        if unknown is None:
            if len(self._keys) >= KEYS_KEPT:
                self._keys.clear()
            self._keys[act.id] = (parts, key)
        else:  # its entry computes the key again: the upstream may be known by then
            log.info("%s runs: the fingerprint of upstream %s is unknown", act.name, unknown)
            self._slots[act.runtime].queue.append(act)
            self._wake_processor()
            return None
        return Request(
            act.wf.id,
            act.wf.name,
            act.name,
            key,
            parts,
            act.wf.data_dir,
            act.spec.inputs,
            act.spec.outputs,
            unrelated=functools.partial(self._unrelated, act),  # asked once: Request.left_out
        )

    def _runs(self, act: ActivityRun, miss: Miss) -> None:
        """``act`` is not reused: to its runtime's line, with the reason logged."""
        if miss.declared_reads is not None:
            self._declared[act.id] = miss.declared_reads
        # Why a result was not reused is worth a line; that a first run runs is not
        # (100,000 such lines held a server's loop, rendered by its log handler).
        level = logging.DEBUG if miss.reason == NO_EARLIER_RUN else logging.INFO
        log.log(level, "%s runs: %s", act.name, miss.reason)
        self._slots[act.runtime].queue.append(act)

    async def _resolve(self, queue: list[ActivityRun]) -> None:
        acts = []
        requests = []
        keys = await self._keys_in_thread(act for act in queue if _big(act))
        # A key never seen is a miss the store tells at once; a thread (file work: hashing,
        # copies) only for the others: a hop per decision was most of a chain's link.
        for index, act in enumerate(queue):
            if act.state is not A.READY or act.wf.cancelling:
                continue
            if index % SERVE_EVERY == SERVE_EVERY - 1:
                self._serve_runtimes()
            request = self._request(act, keys.get(act.id))
            if request is not None:
                acts.append(act)
                requests.append(request)
        quick = self._quick_many(requests)
        slow = [r for r, d in zip(requests, quick, strict=True) if d is None]
        done = iter(await asyncio.to_thread(self._decide_all, slow) if slow else ())
        decisions = [d if d is not None else next(done) for d in quick]
        try:
            self._apply(acts, decisions)
        except Exception as exc:
            raise CacheFailure(f"recording reused results failed: {exc}") from exc

    def _quick(self, request: Request) -> Miss | None:
        try:
            return self.decider.without_files(request)
        except Exception:  # decided again in the thread, which says why it cannot
            return None

    def _quick_many(self, requests: list[Request]) -> list[Decision | None]:
        try:
            return list(self.decider.without_files_many(requests))
        except Exception:  # decided again in the thread, which says why it cannot
            return [None] * len(requests)

    def _decide_all(self, requests: list[Request]) -> list[Decision]:
        decisions: list[Decision] = []
        for request in requests:
            try:
                decisions.append(self.decider.decide(request))
            except Exception as exc:  # a bug or an unreadable file: it runs, as without cache
                log.exception("cache: cannot decide whether %s may be reused", request.activity)
                decisions.append(Miss(f"the cache could not decide: {exc}"))
        return decisions

    def _apply(self, acts: list[ActivityRun], decisions: list[Decision]) -> None:
        touched: set[WorkflowRun] = set()
        with self._t.txn():
            for act, decision in zip(acts, decisions, strict=True):
                if act.state is not A.READY or act.wf.cancelling:  # cancelled meanwhile
                    if isinstance(decision, Hit):
                        decision.staged.discard()
                    continue
                if isinstance(decision, Hit):
                    try:
                        decision.staged.commit(self.hasher)
                    except OSError as exc:
                        decision.staged.discard()
                        decision = Miss(f"its outputs could not be put in place: {exc}")
                if isinstance(decision, Hit):
                    self._reuse(act, decision)
                    touched.add(act.wf)
                    continue
                self._runs(act, decision)
        for wf in touched:
            self._t.maybe_finish(wf)
        self._wake_processor()

    def _reuse(self, act: ActivityRun, hit: Hit) -> None:
        now = time.time()
        number = act.attempt + 1
        self._t.move(act, A.CACHED)
        act.attempt = number
        act.exit_code = 0
        act.reason = hit.reason
        if act.started_at is None:
            act.started_at = now
        self.store.record_hit(
            activity_id=act.id, number=number, runtime=act.runtime, reason=hit.reason, at=now
        )
        if self._provenance.enabled:
            # Its lineage in this run: it used what it read, it generated what was restored
            # (PROV adds the reuse: akoflow:cachedFrom, wasDerivedFrom the earlier versions).
            self.store.add_files(
                act.id, number, "used", [(p, v.size, v.mtime, v.sha256) for p, v in hit.reads]
            )
            self.store.add_files(
                act.id,
                number,
                "generated",
                [(p, v.size, v.mtime, v.sha256) for p, v in hit.outputs],
            )
            for path, _ in hit.outputs:
                self._provenance.copied_in(act.wf, path, "")
        self.store.add_entry(
            workflow_id=act.wf.id,
            activity_id=act.id,
            attempt=number,
            workflow_name=act.wf.name,
            activity_name=act.name,
            key=hit.entry.key,
            fingerprint=hit.entry.fingerprint,
            components=hit.entry.components,
            reads=[(p, v.sha256, v.mtime) for p, v in hit.reads]
            + [(p, digest, 0.0) for p, digest in hit.listings],
            outputs=[Output(p, v.size, v.sha256, v.mtime) for p, v in hit.outputs],
            cached_from=hit.entry.id,
        )
        self._fp[act.id] = hit.entry.fingerprint
        self._keys.pop(act.id, None)
        self._t.ended(act, A.CACHED, now)


def _by_any(keys: set[object], upstream: set[int]) -> bool:
    """Whether an attempt of an activity of ``upstream`` is among ``keys``."""
    return any(isinstance(k, tuple) and k[0] in upstream for k in keys)


__all__ = ["CacheFailure", "CacheStage", "cache_wanted"]
