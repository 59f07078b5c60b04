"""Who ended with a remote version in place (``Claim.final``) survives a later listing that adds
a writer to it or replaces it (h91). A claim that forgot it let a version listed earlier, more
than CLOCK_SKEW before, be taken for a moment of the later one: its writer was added to the
later version, and its own version stayed recorded as the first lister's alone (a model of
the listings: 3 of 160,000 runs, seeds 5, 10, 12; tests/hostile/test_remote_final_listing.py
on real SLURM)."""

from __future__ import annotations

from akoflow.provenance.remote import CLOCK_SKEW, Claim, RemoteFiles, Writer, attribute
from akoflow.provenance.snapshot import FileState

LOC = "hpc:/scratch"


def _run(a: float, b: float, name: str, n: int) -> Writer:
    return Writer(n, 1, name, ran_from=a, ran_until=b)


def test_a_later_version_listed_within_clock_skew_is_ended_with_by_its_lister() -> None:
    """``j0`` lists no log, then version 2 (at 11.6), less than CLOCK_SKEW after j2's listing
    of version 1 (at 11.2): version 2 replaces it, ended with by j0. ``j1``'s version 0,
    listed at 6.2, is then an earlier version beside it, not a moment of version 2."""
    j0, j1, j2 = _run(0, 103, "j0", 1), _run(0, 104, "j1", 2), _run(0, 102, "j2", 3)
    v1 = Claim(1, 10.99, (j2,), 11.2, frozenset({j2.key}))
    found = attribute(
        RemoteFiles(LOC, {}, {"log": FileState(2, 11.35)}, 9.8, 11.6), {(LOC, "log"): v1}, j0, set()
    )
    old, v2 = found.claims["log"]
    assert old == v1 and v2.final == {j0.key}
    assert 11.6 - 11.2 < CLOCK_SKEW
    found = attribute(
        RemoteFiles(LOC, {"log": FileState(2, 4.5)}, {"log": FileState(4, 5.7)}, 4.8, 6.2),
        {(LOC, "log"): v2},
        j1,
        set(),
    )
    assert "log" not in found.claims  # version 2 stays as it was
    assert found.older["log"][1].same_version(FileState(4, 5.7))
    assert j1 in found.older["log"][1].writers


def test_an_earlier_version_listed_close_keeps_who_ended_with_the_later_one() -> None:
    """``b``'s listing of an earlier version, less than CLOCK_SKEW before a's of the later
    one: b is added to the later version, which a still ended with."""
    a, b = _run(0, 10, "a", 1), _run(0, 11, "b", 2)
    later = Claim(1, 7.0, (a,), 8.0, frozenset({a.key}))
    found = attribute(
        RemoteFiles(LOC, {}, {"log": FileState(1, 5.0)}, 1.0, 8.0 - CLOCK_SKEW / 2),
        {(LOC, "log"): later},
        b,
        set(),
    )
    old, kept = found.claims["log"]
    assert old == later and kept.writers == (a, b) and kept.final == {a.key}


def test_a_version_an_attempt_may_have_made_and_removed_keeps_who_ended_with_it() -> None:
    """``c``'s listings (at 1 and 9) show log at version 1, then none; z's version 2, listed at
    5, may be c's (made and removed): c joins it, and z still ended with it."""
    z, c = _run(0, 10, "z", 1), _run(0, 11, "c", 2)
    v2 = Claim(1, 4.0, (z,), 5.0, frozenset({z.key}))
    found = attribute(
        RemoteFiles(LOC, {"log": FileState(2, 1.0)}, {}, 1.0, 9.0),
        {(LOC, "log"): v2},
        c,
        set(),
        caught={"log"},
        listed={"log": [v2]},
    )
    old, joined = found.claims["log"]
    assert old == v2 and joined.writers == (z, c) and joined.final == {z.key}
