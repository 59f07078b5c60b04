"""Which attempt a pid belongs to, from forks and exits (akoflow.provenance.observe.lineage),
and the decoding of the kernel's process event messages."""

from __future__ import annotations

import struct

from akoflow.provenance.observe.lineage import Ambiguous, Lineage
from akoflow.provenance.observe.procevents import Exit, Fork, decode


def test_descendants_belong_to_the_registered_process_also_after_their_parents_exit() -> None:
    lineage = Lineage()
    lineage.apply([Fork(1, 100), Fork(100, 101), Fork(101, 102)])  # before registration
    lineage.assign(100, "A")
    epoch = lineage.apply([Exit(101), Fork(102, 103), Exit(102)])
    lineage.retire(epoch)  # 101 and 102 forgotten; 103 (a background child) hangs on
    assert lineage.owner(103) == "A"
    assert lineage.owner(100) == "A"
    assert lineage.owner(1) is None and lineage.owner(999) is None


def test_ancestry_survives_a_forgotten_unregistered_middle_process() -> None:
    lineage = Lineage()
    epoch = lineage.apply([Fork(100, 101), Fork(101, 102), Exit(101)])
    lineage.retire(epoch)
    lineage.assign(100, "A")  # registered after its child exited and was forgotten
    assert lineage.owner(102) == "A"


def test_a_reused_pid_is_ambiguous_until_the_old_process_is_retired() -> None:
    lineage = Lineage()
    lineage.apply([Fork(100, 101), Fork(200, 201)])
    lineage.assign(100, "A")
    lineage.assign(200, "B")
    exited = lineage.apply([Exit(101)])
    lineage.apply([Fork(201, 101)])  # pid 101 again, now B's, before A's events were read
    assert lineage.owner(101) == Ambiguous(frozenset({"A", "B"}))
    lineage.retire(exited)
    assert lineage.owner(101) == "B"


def test_a_pid_reused_within_the_same_attempt_is_not_ambiguous() -> None:
    lineage = Lineage()
    lineage.apply([Fork(100, 101)])
    lineage.assign(100, "A")
    lineage.apply([Exit(101), Fork(100, 101)])
    assert lineage.owner(101) == "A"


def test_forget_drops_an_attempts_processes() -> None:
    lineage = Lineage()
    lineage.apply([Fork(100, 101)])
    lineage.assign(100, "A")
    assert lineage.owner(101) == "A"
    lineage.forget("A")
    assert lineage.owner(101) is None


def _message(what: int, body: bytes) -> bytes:
    event = struct.pack("=IIQ", what, 0, 123) + body
    cn = struct.pack("=IIIIHH", 1, 1, 0, 0, len(event), 0) + event
    return struct.pack("=IHHII", 16 + len(cn), 3, 0, 0, 0) + cn + b"\0" * (-len(cn) % 4)


def test_process_event_messages() -> None:
    data = (
        _message(1, struct.pack("=iiii", 10, 10, 11, 11))  # a process forked
        + _message(1, struct.pack("=iiii", 10, 10, 12, 11))  # a thread: left out
        + _message(2, struct.pack("=ii", 11, 11))  # exec: left out
        + _message(0x80000000, struct.pack("=iiIIii", 12, 11, 0, 17, 10, 10))  # thread exit
        + _message(0x80000000, struct.pack("=iiIIii", 11, 11, 0, 17, 10, 10))
    )
    assert decode(data) == [Fork(10, 11), Exit(11)]
    assert decode(data[:20]) == []  # a truncated message is not read past its end


def test_retire_keeps_processes_whose_events_wait_for_a_registration() -> None:
    lineage = Lineage()
    epoch = lineage.apply([Fork(100, 101), Exit(101)])  # 101 wrote, exited, was reaped
    lineage.retire(epoch, keep={101})  # its events were read before 100 was registered
    lineage.assign(100, "A")
    assert lineage.owner(101) == "A"
