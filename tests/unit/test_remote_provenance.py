"""Remote provenance: the listing a job takes of its working directory, and the attribution of
remote file versions to attempts (akoflow.provenance.remote)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest

from akoflow.provenance.remote import (
    CLOCK_SKEW,
    LIST_FUNCTION,
    Claim,
    RemoteFiles,
    Writer,
    attribute,
    parse_listing,
    remote_files,
)
from akoflow.provenance.snapshot import FileState

BUSYBOX = shutil.which("busybox")


def _tree(root: Path) -> None:
    (root / ".akoflow" / "attempt").mkdir(parents=True)
    (root / ".akoflow" / "attempt" / "exit").write_text("0\n")
    (root / "sub dir").mkdir()
    (root / "sub dir" / "b c.txt").write_text("bb")
    (root / "x").write_text("a")
    (root / "tab\there").write_text("ttt")
    (root / "akoflow_finished_1_2.txt").write_text("AKOFLOW_JOB_FINISHED\n")
    (root / "sub dir" / ".x.s1-wf2.akoflow-part").write_text("half a cop")  # a copy being made
    os.utime(root / "x", (1_700_000_000.25, 1_700_000_000.25))


def _list(root: Path, path_env: str | None = None) -> str:
    env = dict(os.environ)
    if path_env is not None:
        env["PATH"] = path_env
    sh = "sh" if path_env is None else str(Path(path_env) / "sh")
    result = subprocess.run(
        [sh, "-c", LIST_FUNCTION + "\nakf_list_files"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout


def test_listing_with_gnu_find(tmp_path: Path) -> None:
    _tree(tmp_path)
    parsed = parse_listing(_list(tmp_path))
    assert parsed is not None
    taken, files = parsed
    assert taken is not None and abs(taken - time.time()) < 5 and taken != int(taken)  # ns
    # The control dir, the sentinel and a copy being made are left out.
    assert set(files) == {"x", "sub dir/b c.txt", "tab\there"}
    assert files["x"] == FileState(1, 1_700_000_000.25)
    assert files["sub dir/b c.txt"].size == 2


def test_listing_with_busybox_only(tmp_path: Path) -> None:
    """A minimal image: BusyBox find has no -printf, so the stat fallback runs."""
    assert BUSYBOX is not None, "busybox (Debian busybox-static) is required by the test suite"
    tools = tmp_path / "bin"
    tools.mkdir()
    for applet in ("sh", "find", "stat", "date", "printf"):
        (tools / applet).symlink_to(BUSYBOX)
    work = tmp_path / "work"
    work.mkdir()
    _tree(work)
    parsed = parse_listing(_list(work, str(tools)))
    assert parsed is not None
    taken, files = parsed
    assert taken is not None and abs(taken - time.time()) < 5  # no %N: whole seconds
    assert set(files) == {"x", "sub dir/b c.txt", "tab\there"}
    assert files["x"] == FileState(1, 1_700_000_000.0)  # whole seconds from BusyBox stat


ODD_NAMES = [
    b"bad\xffname.txt",
    b"x\n5\t1.0\tforged",  # a newline and what would read as a second entry
    b"trailing\n",
    "\u202eevil.txt".encode(),
    b"\x01\x7f\x80",
    b"q\"u'o te",
    b"%41",
    b"\xff" * 255,
    b"odd dir\xfe\n/inner\tfile",
]


def _odd_tree(root: Path) -> None:
    base = os.fsencode(root)
    os.mkdir(os.path.join(base, b"odd dir\xfe\n"))
    for raw in ODD_NAMES:
        with open(os.path.join(base, raw), "wb") as f:
            f.write(raw)
    (root / "plain.txt").write_text("p")


@pytest.mark.parametrize("tools", ["gnu", "busybox"])
def test_listing_keeps_every_name_and_forges_no_entry(tmp_path: Path, tools: str) -> None:
    """Any byte but '/' and NUL in a name: the listing carries it exactly, through a channel
    that turns bytes that are not UTF-8 into U+FFFD (as the runtimes read it), and a newline
    in a name cannot add an entry."""
    work = tmp_path / "work"
    work.mkdir()
    _odd_tree(work)
    path_env = None
    if tools == "busybox":
        assert BUSYBOX is not None
        path_env = str(tmp_path / "bin")
        os.mkdir(path_env)
        for applet in ("sh", "find", "stat", "date", "printf", "od", "awk"):
            os.symlink(BUSYBOX, os.path.join(path_env, applet))
    text = _list(work, path_env)
    assert text.isascii()  # whatever the names, the listing itself is plain ASCII
    parsed = parse_listing(text.encode().decode("utf-8", errors="replace"))
    assert parsed is not None
    files = parsed[1]
    assert {os.fsencode(name) for name in files} == {*ODD_NAMES, b"plain.txt"}
    for raw in ODD_NAMES:
        assert files[os.fsdecode(raw)].size == len(raw)


def test_parse_rejects_what_is_not_a_listing() -> None:
    assert parse_listing("") is None
    assert parse_listing("sh: find: not found\n") is None
    assert remote_files("hpc:/x", "# akoflow-files 1 5\n", None) is None
    taken, files = parse_listing("# akoflow-files 1 12\n3\t4.5\ta\nbroken line\nx\t1\tb\n") or (
        None,
        {},
    )
    assert taken == 12.0
    assert files == {"a": FileState(3, 4.5)}
    # Hex entries: malformed ones are left out, bytes come back exactly.
    text = "# akoflow-files 1 1\n1\t2\t/zz\n1\t2\t/\n1\t2\t/2f61\n1\t2\t/61ff0a62\n"
    assert parse_listing(text) == (1.0, {os.fsdecode(b"a\xff\nb"): FileState(1, 2.0)})
    assert parse_listing(text.encode()) == parse_listing(text)


def _files(before: dict[str, float], after: dict[str, float], end: float) -> RemoteFiles:
    return RemoteFiles(
        "hpc:/scratch",
        {p: FileState(1, m) for p, m in before.items()},
        {p: FileState(1, m) for p, m in after.items()},
        end - 10,
        end,
    )


LOC = "hpc:/scratch"


def _claim(mtime: float, *writers: Writer) -> Claim:
    return Claim(1, mtime, writers)


PREPARE = Writer(1, 1, "prepare")
SIBLING = Writer(2, 1, "sibling")


def test_attribute_used_and_generated() -> None:
    claims = {(LOC, "input"): _claim(4.0, PREPARE), (LOC, "other"): _claim(4.0, SIBLING)}
    files = _files(
        {"input": 4.0, "other": 4.0, "raw": 1.0}, {"input": 4.0, "raw": 1.0, "out": 9.0}, 10
    )
    found = attribute(files, claims, Writer(3, 1, "step"), {"prepare"})
    # Its dependency's output; not the sibling's, nor what was there before the run (the
    # engine records that once, as the run's inputs).
    assert set(found.used) == {"input"}
    assert set(found.generated) == {"out"}
    assert found.claims == {"out": (None, _claim(9.0, Writer(3, 1, "step")))}
    assert found.claims["out"][1].generator == Writer(3, 1, "step")


def test_a_version_in_the_listings_of_overlapping_attempts_is_ambiguous() -> None:
    """Two attempts that ran at the same time both list a new out.txt: a listing cannot tell
    which wrote it, whichever ended first and whatever order the engine hears of them in."""
    early, late = Writer(1, 1, "early"), Writer(2, 1, "late")
    for first, second in ((early, late), (late, early)):
        found = attribute(_files({}, {"out.txt": 15.0}, 20), {}, first, set())
        old, claim = found.claims["out.txt"]
        assert old is None and claim.generator == first
        claims = {(LOC, "out.txt"): claim}
        found = attribute(_files({}, {"out.txt": 15.0}, 30), claims, second, set())
        assert found.claims["out.txt"] == (claim, _claim(15.0, first, second))
        assert found.claims["out.txt"][1].generator is None
        assert "listings" in found.claims["out.txt"][1].reason
    # And a third one that ran with them joins the candidates.
    both = _claim(15.0, early, late)
    third = Writer(3, 1, "third")
    found = attribute(_files({}, {"out.txt": 15.0}, 40), {(LOC, "out.txt"): both}, third, set())
    assert found.claims["out.txt"][1] == _claim(15.0, early, late, third)


def test_a_dependency_or_an_earlier_try_is_no_candidate_of_a_later_change() -> None:
    """Listed again with the same size and time (a copy keeping its time), after the first
    writer ended: what the later attempt's listings show is its own."""
    first = _claim(15.0, Writer(1, 1, "first"))
    for me, deps in ((Writer(2, 1, "second"), {"first"}), (Writer(1, 2, "first"), set())):
        found = attribute(_files({}, {"out.txt": 15.0}, 30), {(LOC, "out.txt"): first}, me, deps)
        assert found.claims["out.txt"] == (first, _claim(15.0, me))


def test_a_later_rewrite_is_a_new_version() -> None:
    """By an attempt dispatched after the first writer's end was seen (engine clock)."""
    claims = {(LOC, "out.txt"): _claim(15.0, Writer(1, 1, "first", ran_from=1, ran_until=10))}
    second = Writer(2, 1, "second", ran_from=11, ran_until=20)
    found = attribute(_files({"out.txt": 15.0}, {"out.txt": 25.0}, 30), claims, second, set())
    assert found.claims == {"out.txt": (None, _claim(25.0, second))}
    # The same time but another size: another version too.
    bigger = RemoteFiles(LOC, {}, {"out.txt": FileState(2, 15.0)})
    found = attribute(bigger, claims, second, set())
    assert found.claims["out.txt"][0] is None


def _versions(size: int, mtime: float) -> RemoteFiles:
    return RemoteFiles(LOC, {}, {"out/r.txt": FileState(size, mtime)})


def test_a_file_caught_mid_write_by_an_overlapping_attempts_listing_is_not_its_own() -> None:
    """``maker`` creates out/r.txt empty, then writes it; ``other``, running beside it, lists
    its directory in between: its listings show an empty out/r.txt appear (seen once in CI,
    recorded as generated by ``other``). Either may have written either version: the later
    is kept, the earlier taken back, whichever end the engine hears of first."""
    for declares in (True, False):
        outputs = ("out/*.txt",) if declares else ()
        maker = Writer(1, 1, "maker", ran_from=0, ran_until=10)
        other = Writer(2, 1, "other", ran_from=0, ran_until=9)
        # other ends first (its version is the empty one), then maker.
        first = attribute(_versions(0, 5.0), {}, other, set()).claims["out/r.txt"]
        assert first == (None, Claim(0, 5.0, (other,)))
        found = attribute(_versions(2, 5.5), {(LOC, "out/r.txt"): first[1]}, maker, set(), outputs)
        old, new = found.claims["out/r.txt"]
        assert old == first[1]  # taken back
        assert (new.size, new.mtime) == (2, 5.5)
        assert {w.activity for w in new.writers} == {"maker", "other"}
        assert new.generator == (Writer(1, 1, "maker", declared=True) if declares else None)
        # maker ends first, then other: the later version stays, other among its writers.
        first = attribute(_versions(2, 5.5), {}, maker, set(), outputs).claims["out/r.txt"]
        found = attribute(_versions(0, 5.0), {(LOC, "out/r.txt"): first[1]}, other, set())
        old, new = found.claims["out/r.txt"]
        assert old == first[1]
        assert (new.size, new.mtime) == (2, 5.5)
        assert {w.activity for w in new.writers} == {"maker", "other"}
        assert new.generator == (Writer(1, 1, "maker", declared=True) if declares else None)


def test_a_claim_read_back_after_a_restart_may_have_run_with_any_attempt() -> None:
    """When its writer ran is not known: another version listed new later is ambiguous
    between them (not the later writer's for sure)."""
    claims = {(LOC, "out.txt"): _claim(15.0, Writer(1, 1, "first"))}
    later = Writer(2, 1, "second", ran_from=100, ran_until=110)
    found = attribute(_files({"out.txt": 15.0}, {"out.txt": 25.0}, 30), claims, later, set())
    assert found.claims["out.txt"][1].generator is None


def test_an_attempts_listings_seen_twice_count_once() -> None:
    me = Writer(1, 1, "first")
    claims = {(LOC, "out.txt"): _claim(15.0, me)}
    found = attribute(_files({}, {"out.txt": 15.0}, 30), claims, me, set())
    assert found.claims == {}


def test_claims_read_back_after_a_restart_take_part() -> None:
    """A claim stored before a restart is one writer of the version like any other."""
    claims = {(LOC, "out.txt"): _claim(15.0, Writer(1, 1, "first"))}
    found = attribute(_files({}, {"out.txt": 15.0}, 30), claims, Writer(2, 1, "b"), set())
    assert found.claims["out.txt"][1].generator is None


@pytest.mark.parametrize("text", [None, "garbage"])
def test_no_listing_no_remote_files(text: str | None) -> None:
    assert remote_files("k8s:pvc/x", text, "# akoflow-files 1 3\n") is None


def test_the_later_version_is_the_one_the_later_listing_saw_whatever_its_time() -> None:
    """``maker`` writes out/r.txt as ``cp -p`` does (the content, then the source's older
    time); ``other``'s listing caught it half made, at a newer time. The version the later
    listing saw is kept, whichever end the engine hears of first; by the file's time only when
    a listing's time is unknown or the two are equal."""
    maker = Writer(1, 1, "maker", ran_from=0, ran_until=10)
    other = Writer(2, 1, "other", ran_from=0, ran_until=9)
    half = RemoteFiles(LOC, {}, {"out/r.txt": FileState(9, 5.0)}, 1.0, 6.0)
    final = RemoteFiles(LOC, {}, {"out/r.txt": FileState(2, 1.0)}, 1.0, 8.0)
    first = attribute(half, {}, other, set()).claims["out/r.txt"][1]
    found = attribute(final, {(LOC, "out/r.txt"): first}, maker, set())
    old, new = found.claims["out/r.txt"]
    assert old is None and (new.size, new.mtime, new.seen) == (2, 1.0, 8.0)
    # other's listing at 6 showed the half-made one after its command: the final one, listed
    # at 8, is not other's. The half-made one stays beside it, maybe maker's too.
    assert new.generator == maker
    was, half_made = found.older["out/r.txt"]
    assert was == first and half_made.writers == (other, maker) and half_made.generator is None
    # maker's end heard of first: its version stays as it is, the half-made one beside it.
    first = attribute(final, {}, maker, set()).claims["out/r.txt"][1]
    found = attribute(half, {(LOC, "out/r.txt"): first}, other, set())
    assert found.claims == {}
    was, half_made = found.older["out/r.txt"]
    assert was is None and (half_made.size, half_made.mtime, half_made.seen) == (9, 5.0, 6.0)
    assert half_made.writers == (maker, other) and half_made.generator is None
    # Listing times unknown (a claim read back after a restart) or equal: by the file's time.
    for seen in (None, 8.0):
        known = Claim(9, 5.0, (other,), seen)
        found = attribute(final, {(LOC, "out/r.txt"): known}, maker, set()).claims["out/r.txt"]
        assert (found[1].size, found[1].mtime) == (9, 5.0)


def test_what_an_attempt_depends_on_through_others_is_no_candidate_after_a_restart() -> None:
    """A claim read back after a restart may have run with any attempt, but not with one that
    depends on its writer, even through another activity (``ancestors``, asked for only
    then)."""
    claims = {(LOC, "out.txt"): _claim(15.0, Writer(1, 1, "first"))}
    later = Writer(3, 1, "third", ran_from=100, ran_until=110)
    files = _files({"out.txt": 15.0}, {"out.txt": 25.0}, 30)
    found = attribute(files, claims, later, {"second"}, (), lambda: {2, 1})  # their ids
    assert found.claims["out.txt"] == (None, _claim(25.0, later))
    asked = []
    attribute(files, {}, later, {"second"}, (), lambda: asked.append(1) or ())
    assert not asked


def test_a_file_made_and_removed_while_an_attempt_ran_may_be_its_own() -> None:
    """``other`` listed tmp new (at 6); ``maker``'s listings (at 1 and 8) show it neither
    before nor after: maker may have made it and renamed it away."""
    other = Writer(2, 1, "other", ran_from=0, ran_until=7)
    maker = Writer(1, 1, "maker", ran_from=0, ran_until=9)
    claims = {(LOC, "tmp"): Claim(1, 5.0, (other,), 6.0)}
    files = RemoteFiles(LOC, {}, {"result": FileState(1, 7.0)}, 1.0, 8.0)
    found = attribute(files, claims, maker, set(), caught={"tmp"})
    old, new = found.claims["tmp"]
    assert old == claims[LOC, "tmp"] and new.writers == (other, maker) and new.generator is None
    # Listed before this attempt's first listing, or after its last, or by an attempt that
    # did not run with it: not its.
    for seen, who in ((0.5, other), (8.5, other), (6.0, Writer(3, 1, "x", ran_until=-1))):
        claims = {(LOC, "tmp"): Claim(1, 5.0, (who,), seen)}
        assert "tmp" not in attribute(files, claims, maker, set(), caught={"tmp"}).claims


def test_a_version_one_attempt_ended_with_is_its_own_and_the_next_one_is_not() -> None:
    """``a`` appends to log (version 1, listed at 6 after its command), ``b``, dispatched
    before the engine heard of ``a``'s end, found version 1 in place (its first listing, at 3)
    and appended (version 2, listed at 8): version 1 is ``a``'s, version 2 ``b``'s (both were
    ambiguous). Heard of in the other order, version 1 is recorded beside version 2, which
    stays ``b``'s, ambiguous between them (``b``'s first listing is not kept)."""
    a = Writer(1, 1, "a", ran_from=0, ran_until=7)
    b = Writer(2, 1, "b", ran_from=2, ran_until=9)
    v1, v2 = FileState(2, 5.0), FileState(4, 7.0)
    by_a = RemoteFiles(LOC, {}, {"log": v1}, 1.0, 6.0)
    by_b = RemoteFiles(LOC, {"log": v1}, {"log": v2}, 3.0, 8.0)
    first = attribute(by_a, {}, a, set()).claims["log"][1]
    assert first.generator == a
    found = attribute(by_b, {(LOC, "log"): first}, b, set())
    assert found.claims == {"log": (None, Claim(4, 7.0, (b,)))} and found.older == {}
    # A dependency of a found version 1: it used a's (not ambiguous, as before).
    used = attribute(
        RemoteFiles(LOC, {"log": v1}, {"log": v1}, 6.5, 6.6),
        {(LOC, "log"): first},
        Writer(3, 1, "d", ran_from=7, ran_until=8),
        {"a"},
    )
    assert used.used == {"log": v1}
    # b heard of first.
    first = attribute(by_b, {}, b, set()).claims["log"][1]
    found = attribute(by_a, {(LOC, "log"): first}, a, set())
    assert found.claims == {}
    assert found.older == {"log": (None, Claim(2, 5.0, (b, a)))}


def test_a_later_version_is_decided_as_before_when_a_listing_time_is_unknown() -> None:
    """Read back after a restart (no listing time, nor who ended with it): one listing may
    have caught the file mid-write, the later version is kept with every writer that may
    have run with it, and the earlier taken back."""
    a = Writer(1, 1, "a", ran_from=0, ran_until=7)
    b = Writer(2, 1, "b", ran_from=2, ran_until=9)
    read_back = Claim(2, 5.0, (a,))
    found = attribute(
        RemoteFiles(LOC, {}, {"log": FileState(4, 7.0)}, 3.0, 8.0),
        {(LOC, "log"): read_back},
        b,
        set(),
    )
    assert found.claims == {"log": (read_back, Claim(4, 7.0, (a, b)))} and found.older == {}


def test_listings_closer_than_clocks_may_differ_rule_no_writer_out() -> None:
    """Jobs on different nodes list with different clocks: two listings less than
    CLOCK_SKEW apart are not ordered for sure, and the versions are decided as when their
    times are unknown (the later kept with both writers, the earlier taken back)."""
    a = Writer(1, 1, "a", ran_from=0, ran_until=7)
    b = Writer(2, 1, "b", ran_from=2, ran_until=9)
    v1, v2 = FileState(2, 5.0), FileState(4, 7.0)
    close = 6.0 + CLOCK_SKEW / 2
    first = attribute(RemoteFiles(LOC, {}, {"log": v1}, 1.0, 6.0), {}, a, set()).claims["log"][1]
    found = attribute(
        RemoteFiles(LOC, {"log": v1}, {"log": v2}, 3.0, close), {(LOC, "log"): first}, b, set()
    )
    assert found.claims == {"log": (first, Claim(4, 7.0, (a, b)))} and found.older == {}


def test_an_earlier_version_listed_while_an_attempt_ran_may_be_its_own() -> None:
    """``catcher``'s listing (at 6) showed version 1 of log, recorded as its own; ``third``'s
    later version 2 is the path's latest claim. ``maker``'s listings (at 1 and 9) show no log,
    then version 2 (or version 1 again, listed less than CLOCK_SKEW from version 2's): version
    1 was made while it ran, maybe by it, and it is among its writers (``between``) beside
    what it decides of version 2."""
    catcher = Writer(1, 1, "catcher", ran_from=0, ran_until=7)
    maker = Writer(2, 1, "maker", ran_from=0, ran_until=10)
    third = Writer(3, 1, "third", ran_from=3, ran_until=9)
    v1, v2 = FileState(2, 5.0), FileState(5, 7.0)
    first = Claim(2, 5.0, (catcher,), 6.0, frozenset({catcher.key}))
    latest = Claim(5, 7.0, (third,), 8.5, frozenset({third.key}))
    for after, seen in ((v2, 9.0), (v1, 8.5 - CLOCK_SKEW / 2)):
        found = attribute(
            RemoteFiles(LOC, {}, {"log": after}, 1.0, seen),
            {(LOC, "log"): latest},
            maker,
            set(),
            caught={"log"},
            listed={"log": [first, latest]},
        )
        assert found.between == [("log", first, Claim(2, 5.0, (catcher, maker), 6.0))]
        assert found.between[0][2].generator is None
    # Version 1 was there when maker's first listing was taken: not its.
    found = attribute(
        RemoteFiles(LOC, {"log": v1}, {"log": v2}, 6.5, 9.0),
        {(LOC, "log"): latest},
        maker,
        set(),
        caught={"log"},
        listed={"log": [first, latest]},
    )
    assert found.between == []


def test_a_file_an_attempt_heard_of_first_may_have_made_and_removed_is_not_the_others() -> None:
    """``maker`` (listings at 1 and 9, its end heard first) wrote tmp and removed it while
    ``other``'s listings (at 2 and 6) showed it appear: ``other`` lists tmp new, and no one
    claimed it. It is ambiguous between them (it was other's alone), unless one declared it;
    an attempt whose listings did not straddle other's last one is no candidate."""
    maker = Writer(1, 1, "maker", ran_from=0, ran_until=10)
    other = Writer(2, 1, "other", ran_from=0, ran_until=11)
    files = RemoteFiles(LOC, {}, {"tmp": FileState(1, 5.0)}, 2.0, 6.0)
    found = attribute(files, {}, other, set(), straddled=[(maker, ())])
    assert found.claims["tmp"][1].writers == (maker, other)
    assert found.claims["tmp"][1].generator is None
    found = attribute(files, {}, other, set(), straddled=[(maker, ("tmp",))])
    assert found.claims["tmp"][1].generator == replace(maker, declared=True)
    # A dependency, or one that did not run with it: not a candidate.
    assert attribute(files, {}, other, {"maker"}, straddled=[(maker, ())]).claims["tmp"][
        1
    ].writers == (other,)
    before = Writer(3, 1, "before", ran_from=0, ran_until=-1)
    assert attribute(files, {}, other, set(), straddled=[(before, ())]).claims["tmp"][
        1
    ].writers == (other,)


def test_a_later_version_may_be_one_an_attempt_heard_of_first_made_and_removed() -> None:
    """``a``'s version 1 (listed at 2 once its command had ended); ``x``, its end heard
    already, listed at 5 and 12 and showed no version 2; ``me``, listed at 4 and 10, shows
    version 2 appear: ``x`` may have made it and removed it before its last listing (a model
    of the listings, h90's, gave it to ``me`` alone)."""
    a = Writer(1, 1, "a", ran_from=0, ran_until=3)
    x = Writer(2, 1, "x", ran_from=0, ran_until=13)
    me = Writer(3, 1, "me", ran_from=1, ran_until=14)
    first = attribute(RemoteFiles(LOC, {}, {"f": FileState(1, 1.5)}, 1.0, 2.0), {}, a, set())
    claims = {(LOC, "f"): first.claims["f"][1]}
    files = RemoteFiles(LOC, {"f": FileState(1, 1.5)}, {"f": FileState(2, 6.0)}, 4.0, 10.0)
    alone = attribute(files, claims, me, set()).claims["f"][1]
    assert alone.generator == me  # without x: me's
    found = attribute(files, claims, me, set(), straddled=[(x, ())]).claims["f"][1]
    assert found.writers == (x, me) and found.generator is None
