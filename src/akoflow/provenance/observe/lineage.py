"""Which attempt a process belongs to, from its ancestry (pure: no system calls).

The observer feeds process forks and exits (:mod:`.procevents`) and registrations (an
attempt's first process, or a process found in an attempt's cgroup); :meth:`Lineage.owner`
then names the attempt of any pid seen in a fanotify event: the owner of its nearest
registered ancestor. A process keeps its owner after its parent exits (a background child)
and after it exits itself, until :meth:`Lineage.retire` says no event of it can still be
unread.

Pids are reused (``pid_max`` can be 32768). An exited pid's entries stay until retired; when
the pid is forked again before that, an event naming it may come from either process, and
``owner`` says :class:`Ambiguous` unless both belong to the same attempt. Never a guess.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Iterable
from dataclasses import dataclass

from akoflow.provenance.observe.procevents import Exit, Fork, ProcEvent

Key = Hashable
MAX_DEPTH = 4096  # ancestry walks stop there (a chain that long is a bug, not a script)


@dataclass(frozen=True, slots=True)
class Ambiguous:
    """The process may belong to any of ``candidates``, or to none (not an attempt's)."""

    candidates: frozenset[Key]


class Lineage:
    def __init__(self) -> None:
        self.epoch = 0  # numbers the batches of process events applied
        self._parent: dict[int, int] = {}
        self._children: dict[int, set[int]] = {}
        self._owner: dict[int, Key] = {}
        self._exited: dict[int, int] = {}  # pid -> epoch of the batch that told its exit
        # pid -> (epoch after which the old process's events are all read, its owner)
        self._reused: dict[int, tuple[int, Key | None]] = {}

    def __len__(self) -> int:
        return len(self._parent) + len(self._owner)

    # ---------------------------------------------------------------- input

    def apply(self, events: Iterable[ProcEvent]) -> int:
        """Apply a batch of process events, in order; returns the batch's epoch."""
        self.epoch += 1
        for event in events:
            if isinstance(event, Fork):
                self._fork(event.parent, event.child)
            elif isinstance(event, Exit):
                self._exited[event.pid] = self.epoch
        return self.epoch

    def assign(self, pid: int, key: Key) -> None:
        """``pid`` (alive now) belongs to attempt ``key``, and so do its descendants."""
        self._owner[pid] = key

    def forget(self, key: Key) -> None:
        """The attempt's processes are all gone and its events read: drop its owners."""
        for pid in [p for p, k in self._owner.items() if k == key]:
            del self._owner[pid]

    def retire(self, epoch: int, keep: Collection[int] = ()) -> None:
        """Every event of processes that exited by ``epoch`` has been read: forget them,
        except ``keep`` (pids of events still waiting for their attempt's registration).
        Children of a forgotten process hang from its parent, keeping their ancestry."""
        for pid in [p for p, e in self._exited.items() if e <= epoch and p not in keep]:
            del self._exited[pid]
            self._splice(pid)
            self._owner.pop(pid, None)
        for pid in [p for p, (e, _) in self._reused.items() if e <= epoch]:
            del self._reused[pid]

    # ---------------------------------------------------------------- output

    def owner(self, pid: int) -> Key | Ambiguous | None:
        """The attempt ``pid`` belongs to; None when no registered ancestor is known."""
        current = self._walk(pid)
        if pid in self._reused:
            old = self._reused[pid][1]
            if old == current and current is not None:
                return current
            return Ambiguous(frozenset(k for k in (old, current) if k is not None))
        return current

    def ancestry(self, pid: int) -> list[int]:
        """``pid`` and its known ancestors, nearest first."""
        chain = [pid]
        node = self._parent.get(pid)
        while node is not None and len(chain) < MAX_DEPTH:
            chain.append(node)
            node = self._parent.get(node)
        return chain

    def uncertain(self, pid: int) -> bool:
        """Whether ``pid`` exited or was reused since it was first seen: what /proc says of
        it now may be another process."""
        return pid in self._exited or pid in self._reused

    # ---------------------------------------------------------------- internals

    def _walk(self, pid: int) -> Key | None:
        chain: list[int] = []
        node = pid
        while node not in self._owner and len(chain) < MAX_DEPTH:
            parent = self._parent.get(node)
            if parent is None:
                return None
            chain.append(node)
            node = parent
        owner = self._owner.get(node)
        if owner is not None:
            for member in chain:  # remembered: the ancestry may be forgotten later
                self._owner[member] = owner
        return owner

    def _fork(self, parent: int, child: int) -> None:
        if child in self._exited:  # a pid reused before the old process's events were read
            epoch = self._exited.pop(child)
            self._reused[child] = (epoch, self._walk(child))
            self._splice(child)
            self._owner.pop(child, None)
        elif child in self._parent or child in self._owner:  # its exit was never seen
            self._reused[child] = (self.epoch, self._walk(child))
            self._splice(child)
            self._owner.pop(child, None)
        self._parent[child] = parent
        self._children.setdefault(parent, set()).add(child)

    def _splice(self, pid: int) -> None:
        """Remove ``pid`` from the tree; its children now hang from its parent."""
        parent = self._parent.pop(pid, None)
        if parent is not None:
            siblings = self._children.get(parent)
            if siblings is not None:
                siblings.discard(pid)
                if not siblings:
                    del self._children[parent]
        owner = self._owner.get(pid)
        for child in self._children.pop(pid, set()):
            if owner is not None and child not in self._owner:
                self._owner[child] = owner  # its ancestry ends here: keep what it implied
            if parent is not None:
                self._parent[child] = parent
                self._children.setdefault(parent, set()).add(child)
            else:
                self._parent.pop(child, None)


__all__ = ["Ambiguous", "Key", "Lineage"]
