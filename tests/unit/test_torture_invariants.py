"""The torture's judge (tests/torture/invariants.py) on hand-made ledgers and stores: each
violation it exists for is reported, and a clean run passes."""

from __future__ import annotations

from tests.torture.invariants import ActivityView, AttemptView, StoreView, check
from tests.torture.ledger import parse
from tests.torture.workflows import TortureWorkflow

WF = TortureWorkflow(name="chain-2", text="", deps={"a": [], "b": ["a"]}, last="b")


def act(name: str, state: str, *attempts: str, exit_code: int | None = 0) -> ActivityView:
    views = tuple(AttemptView(i + 1, s, None, None) for i, s in enumerate(attempts))
    return ActivityView(name, state, len(attempts), exit_code, None, views)


def judge(ledger: str, *acts: ActivityView, run: str = "succeeded", **kw: bool) -> list[str]:
    store = StoreView(((1, run),), {a.name: a for a in acts})
    entries, bad = parse(ledger)
    return check(WF, store, entries, bad, cancelled=kw.get("cancelled", False))


CLEAN = "start a 1 10\nend a 1 10\nstart b 1 11\nend b 1 11\n"
A_OK = act("a", "succeeded", "succeeded")
B_OK = act("b", "succeeded", "succeeded")


def test_a_clean_run_passes() -> None:
    assert judge(CLEAN, A_OK, B_OK) == []


def test_false_success_is_reported() -> None:
    v = judge(
        "start a 1 10\nend a 1 10\n",
        A_OK,
        B_OK,
    )
    assert any("b: recorded SUCCEEDED" in x and "false success" in x for x in v), v


def test_running_twice_and_overlap_are_reported() -> None:
    ledger = "start a 1 10\nstart a 2 12\nend a 1 10\nend a 2 12\nstart b 1 11\nend b 1 11\n"
    v = judge(ledger, act("a", "succeeded", "failed", "succeeded"), B_OK)
    assert any("a: ran to its end 2 times" in x for x in v), v
    assert any("a: attempts [2] started while attempt 1 ran" in x for x in v), v
    v = judge(
        "overlap a 2 12\n" + CLEAN,
        A_OK,
        B_OK,
    )
    assert any("overlapped" in x for x in v), v


def test_an_attempt_recorded_never_started_must_not_have_run() -> None:
    ledger = "start a 1 10\nstart a 2 12\nend a 2 12\nstart b 1 11\nend b 1 11\n"
    v = judge(ledger, act("a", "succeeded", "lost", "succeeded"), B_OK)
    assert any("a: attempt 1 ran (start) but is recorded as never started" in x for x in v), v


def test_dependency_order_and_run_state_are_checked() -> None:
    ledger = "start a 1 10\nstart b 1 11\nend b 1 11\nend a 1 10\n"
    v = judge(ledger, A_OK, B_OK)
    assert any("b: attempt 1 started before its dependency a ended" in x for x in v), v
    v = judge(
        CLEAN,
        A_OK,
        act("b", "cancelled", "cancelled"),
        run="cancelled",
    )
    assert "run ended cancelled, expected succeeded" in v
    assert any("b: reached its end" in x for x in v), v
    # A cancel may stop an attempt that had just reached its end: that is not a violation.
    assert (
        judge(
            CLEAN,
            A_OK,
            act("b", "cancelled", "cancelled", exit_code=None),
            run="cancelled",
            cancelled=True,
        )
        == []
    )


def test_store_inconsistencies_are_reported() -> None:
    v = judge(CLEAN, A_OK, act("b", "running", "running"))
    assert "b: left running" in v and "b: attempt 1 left running" in v, v
    v = judge("torn li", A_OK, B_OK)
    assert any("malformed ledger line" in x for x in v), v
