"""Provenance of files that stay on a remote runtime (an HPC mount path, a Kubernetes volume).

The engine cannot scan those directories, so the job lists its working directory itself,
right before and right after the activity's command, with :data:`LIST_FUNCTION` (POSIX sh, GNU
or BusyBox ``find``). The runtime brings both listings back (a file fetched over SFTP, a block
of the pod's log) and hands them to the engine in :class:`RemoteFiles`; the engine records what
the attempt used and generated from the difference of the two listings, under the location the
runtime names. Times in a listing are the remote machine's clock, compared only with each other.
A listing cannot observe who wrote: a file that changed between the listings of attempts
that ran at the same time is ambiguous between them, unless exactly one of them declared it as
an output (:class:`Claim`).

Remote files carry no checksum (size and modification time identify a version): hashing a
remote volume from inside every job would cost more than it tells.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace

from akoflow.provenance.declared import declares
from akoflow.provenance.names import from_bytes
from akoflow.provenance.snapshot import FileState, Snapshot, changes

HEADER = "# akoflow-files 1"

# Listings of jobs on different nodes carry different clocks: which was taken later is used to
# rule a writer out only when they are further apart than a cluster's clocks may differ.
CLOCK_SKEW = 1.0

# Lists the current directory: a header with the remote clock (ns where `date` has %N, which
# orders the ends of concurrent attempts), then one line per regular file,
# "size<TAB>mtime<TAB>path". AkôFlow's own control dir, sentinels and copies being made
# (renamed into place when complete) are left out. GNU find
# prints sub-second times with -printf; BusyBox find has no -printf and goes through stat -c.
#
# A name may hold any byte but '/' and NUL, a newline too, which would end its line early and
# could forge a second entry; and the channel back (a pod's log) may not carry bytes that are
# not UTF-8. So only paths of printable ASCII are printed as they are (the first pass); any
# other (a byte outside ' '..'~' anywhere in it: LC_ALL=C makes the bracket match bytes) goes
# in a second pass as "size<TAB>mtime<TAB>/<hex of the path's bytes>": a listed path never
# starts with '/' otherwise (it is relative), and hex is plain ASCII. The second pass prints
# NUL-ended records, turned into hex by one od and into lines by one awk (BusyBox: plus one
# stat per such file).
LIST_FUNCTION = r"""akf_list_files() {
  akf_now=$(date +%s.%N 2>/dev/null)
  case $akf_now in *[!0-9.]*|'') akf_now=$(date +%s) ;; esac
  printf '%s %s\n' '# akoflow-files 1' "$akf_now"
  akf_odd='*[! -~]*'
  if find . -maxdepth 0 -printf '' >/dev/null 2>&1; then akf_gnu=1; else akf_gnu=; fi
  if [ -n "$akf_gnu" ]; then
    LC_ALL=C find . -path ./.akoflow -prune -o -name 'akoflow_finished_*' -prune \
      -o -name '*.akoflow-part' -prune -o -type f \
      ! -path "$akf_odd" -printf '%s\t%T@\t%P\n' 2>/dev/null
  else
    LC_ALL=C find . -path ./.akoflow -prune -o -name 'akoflow_finished_*' -prune \
      -o -name '*.akoflow-part' -prune -o -type f \
      ! -path "$akf_odd" -exec stat -c '%s	%Y	%n' {} + 2>/dev/null
  fi
  if [ -n "$akf_gnu" ]; then
    LC_ALL=C find . -path ./.akoflow -prune -o -name 'akoflow_finished_*' -prune \
      -o -name '*.akoflow-part' -prune -o -type f \
      -path "$akf_odd" -printf '%s\t%T@\t%P\0' 2>/dev/null
  else
    LC_ALL=C find . -path ./.akoflow -prune -o -name 'akoflow_finished_*' -prune \
      -o -name '*.akoflow-part' -prune -o -type f \
      -path "$akf_odd" -exec sh -c 'for f; do
        s=$(stat -c "%s	%Y" "$f") && printf "%s\t%s\000" "$s" "${f#./}"; done' sh {} + 2>/dev/null
  fi | od -An -tx1 -v | awk '
    BEGIN { for (i = 0; i < 10; i++) c[sprintf("%02x", 48 + i)] = i; c["2e"] = "."; c["2d"] = "-" }
    { for (i = 1; i <= NF; i++) {
        if (s == 2) { if ($i == "00") { print r; r = ""; s = 0 } else r = r $i }
        else if ($i == "09") { r = r "\t"; if (++s == 2) r = r "/" }
        else r = r c[$i]
    } }' 2>/dev/null
  return 0
}"""


def _entry_path(field: str) -> str | None:
    """The path of a listing entry in memory form (:mod:`akoflow.provenance.names`), or
    ``None`` when it is malformed."""
    if field.startswith("/"):  # hex of the path's bytes
        try:
            raw = bytes.fromhex(field[1:])
        except ValueError:
            return None
        if not raw or b"\0" in raw or raw.startswith(b"/"):
            return None
        return from_bytes(raw)
    return field[2:] if field.startswith("./") else field


@dataclass(frozen=True, slots=True)
class RemoteFiles:
    """The working directory of a remote attempt before and after its command."""

    location: str
    """Where the files live, as shown to users: ``<runtime>:<directory>``, e.g.
    ``hpc:/scratch/akoflow`` or ``k8s-aws:pvc/akoflow-wf3-data``."""
    before: Snapshot
    after: Snapshot
    before_time: float | None = None
    """The remote clock when each listing was taken (``None`` when unknown)."""
    after_time: float | None = None


def parse_listing(text: str | bytes) -> tuple[float | None, Snapshot] | None:
    """``(remote time, snapshot)`` of one listing, or ``None`` when ``text`` is not one (the
    job never got that far, or ``find`` is missing from its image). Lines that do not parse
    are left out."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "surrogateescape")
    lines = text.split("\n")
    if not lines or not lines[0].startswith(HEADER):
        return None
    try:
        taken: float | None = float(lines[0][len(HEADER) :].strip())
    except ValueError:
        taken = None
    files: Snapshot = {}
    for line in lines[1:]:
        size, sep1, rest = line.partition("\t")
        mtime, sep2, field = rest.partition("\t")
        path = _entry_path(field) if sep1 and sep2 else None
        if not path:
            continue
        try:
            files[path] = FileState(int(size), float(mtime))
        except ValueError:
            continue
    return taken, files


def remote_files(
    location: str, before: str | bytes | None, after: str | bytes | None
) -> RemoteFiles | None:
    """Both listings of an attempt parsed, or ``None`` when either is missing or malformed."""
    first = parse_listing(before) if before is not None else None
    last = parse_listing(after) if after is not None else None
    if first is None or last is None:
        return None
    return RemoteFiles(location, first[1], last[1], first[0], last[0])


@dataclass(frozen=True, slots=True)
class Writer:
    """An attempt whose two listings show a version of a remote file appear between them."""

    activity_id: int
    attempt: int
    activity: str
    declared: bool = False
    """The file is one of that activity's declared outputs."""
    ran_from: float = field(default=-math.inf, compare=False)
    ran_until: float = field(default=math.inf, compare=False)
    """When the attempt may have run, on the engine's clock: from its dispatch to when the
    engine learned of its end, so never narrower than when it really ran. Unknown (a claim
    read back after a restart): always."""

    @property
    def key(self) -> tuple[int, int]:
        return self.activity_id, self.attempt

    def ran_with(self, other: Writer) -> bool:
        """The two attempts may have run at the same time."""
        return self.ran_from < other.ran_until and other.ran_from < self.ran_until


OVERLAPPING = (
    "changed between the listings of attempts that ran at the same time (the job's listings "
    "cannot tell which wrote it)"
)


@dataclass(frozen=True, slots=True)
class Claim:
    """One version of a remote file (its size and time) and the attempts that may have
    written it: every attempt whose listings show it appear. A listing cannot observe who
    wrote, so the version is an attempt's only when that attempt is its one possible writer,
    or the only one of them that declared it as an output; else it is ambiguous."""

    size: int
    mtime: float
    writers: tuple[Writer, ...]
    seen: float | None = field(default=None, compare=False)
    """The remote clock when the last listing that showed this version was taken (``None``:
    unknown, a claim read back after a restart)."""
    final: frozenset[tuple[int, int]] = field(default=frozenset(), compare=False)
    """The writers (keys) whose listing after their command showed this version: it was
    there when their command had ended, so a later version is not theirs. Empty: unknown
    (a claim read back after a restart)."""

    @property
    def generator(self) -> Writer | None:
        """The attempt that generated this version, or ``None``: ambiguous."""
        declared = [w for w in self.writers if w.declared]
        if len(declared) == 1:
            return declared[0]
        if len(self.writers) == 1:
            return self.writers[0]
        return None

    @property
    def reason(self) -> str:
        """Why the version is ambiguous (when it is)."""
        declared = [w.activity for w in self.writers if w.declared]
        if len(declared) > 1:
            return f"{OVERLAPPING}; declared as an output by {', '.join(sorted(declared))}"
        return OVERLAPPING

    def same_version(self, f: FileState | None) -> bool:
        return f is not None and self.mtime == f.mtime and self.size == f.size


@dataclass(frozen=True, slots=True)
class Attribution:
    """What a remote attempt's listings say it used and generated."""

    used: dict[str, FileState]
    generated: dict[str, FileState]
    """The versions that changed between the attempt's listings (decided or not)."""
    claims: dict[str, tuple[Claim | None, Claim]]
    """For each of those: what was recorded for that same version before (``None``:
    nothing, it is new) and what is now, with this attempt among its writers."""
    older: dict[str, tuple[Claim | None, Claim]] = field(default_factory=dict)
    """Versions older than the one the path's claim keeps, recorded beside it, as ``claims``
    (``None``: nothing recorded for that version before): a version an attempt's listing
    showed once its command had ended, that an attempt beside it replaced."""
    between: list[tuple[str, Claim, Claim]] = field(default_factory=list)
    """Other versions of paths (path, what was recorded, what is now) that another attempt's
    listing showed between this attempt's two listings and its listings do not show: made
    while it ran, maybe by it (it is among their writers now)."""


def attribute(
    files: RemoteFiles,
    claims: Mapping[tuple[str, str], Claim],
    me: Writer,
    dependencies: set[str],
    outputs: Collection[str] = (),
    ancestors: Callable[[], Collection[int]] = tuple,
    caught: Collection[str] = (),
    listed: Mapping[str, Collection[Claim]] | None = None,
    straddled: Collection[tuple[Writer, Collection[str]]] = (),
) -> Attribution:
    """What one remote attempt (``me``) used and which versions it may have generated.

    Used: the versions its dependencies generated, or may have (among their writers), that
    were there before it ran (what the run found in place is recorded once for all
    activities, as the run's inputs). Generated: what changed between the two listings. A
    file that also changed between the listings of another attempt that may have run at the
    same time (:meth:`Writer.ran_with`) is decided between them (:attr:`Claim.generator`),
    whatever order the engine learns of their ends in: ambiguous, unless exactly one of them
    declared it (``outputs``: ``me``'s declared paths or globs). So is a file they list at two
    versions. Listings after a command show what was there once it had ended: a writer whose
    listing showed the earlier version (at a known time, more than :data:`CLOCK_SKEW` before
    the listing that showed the later one) did not write the later one, and the earlier
    version stays, recorded beside it (``older``), with ``me`` among its writers unless
    ``me``'s first listing showed it already. Otherwise (listing times unknown, as after a
    restart, or too close) one listing may have caught a file mid-write: the later version is
    kept, the earlier taken back. ``ancestors``: the ids of what ``me`` depends on, directly
    or not (asked for only when an earlier writer may have run with it). A file another
    attempt that ran with ``me`` listed new (``caught``: paths recorded since ``me`` was
    dispatched) that ``me``'s listings show neither before nor after, though taken before and
    after that listing, was made and removed or renamed while ``me`` ran, maybe by ``me``:
    ``me`` is among its writers; so is a version of a path they show at another one, or
    absent, before (made, then changed again, removed or put back as it was). ``listed``:
    every version of those paths recorded since ``me`` was dispatched (``None``: the latest
    only); one that is not the path's latest claim, nor decided here, is among ``between``
    when so (an earlier version an attempt's listing caught, that ``me`` may have made
    before the later one its own listing shows). ``straddled``: attempts (with their
    declared outputs) whose end the engine heard already, that may have run with ``me`` and
    whose listings were taken before and after ``me``'s last one: a file ``me`` lists new
    that no attempt claimed may have been made there, then removed or renamed before their
    last listing (their end heard first: the other way round): they are among its writers.
    The caller records each new claim in place of the old one.
    """
    loc = files.location
    used: dict[str, FileState] = {}
    for path, f in files.before.items() if dependencies else ():
        claim = claims.get((loc, path))
        if (
            claim is not None
            and claim.same_version(f)
            and any(w.activity in dependencies for w in claim.writers)
        ):
            used[path] = f
    generated: dict[str, FileState] = {}
    decided: dict[str, tuple[Claim | None, Claim]] = {}
    older: dict[str, tuple[Claim | None, Claim]] = {}  # versions the path's claim replaced
    change = changes(files.before, files.after)
    # An attempt that ended before this one started (a dependency, an earlier try of the same
    # activity, one whose end the engine saw before dispatching this one) did not write what
    # changed while this one ran.
    before_me = dependencies | {me.activity}
    earlier: set[int] | None = None
    seen = files.after_time
    # Ended already, their listings around this one's last: a version it lists may have been
    # theirs, made then removed or replaced before their own last listing.
    beside = [
        (w, theirs)
        for w, theirs in straddled
        if w.activity not in before_me and w.key != me.key and w.ran_with(me)
    ]
    for path, f in {**change.created, **change.modified}.items():
        declared = bool(outputs) and declares(outputs, path)
        mine = replace(me, declared=declared)
        old = claims.get((loc, path))
        if old is not None and any(w.key == mine.key for w in old.writers):
            continue  # already counted (an attempt's listings seen twice)
        ran_with = (
            ()
            if old is None
            else tuple(w for w in old.writers if w.activity not in before_me and w.ran_with(mine))
        )
        if ran_with and earlier is None:
            # Not known from the engine's clock (a claim read back after a restart): what it
            # depends on, also through others, ended before it was dispatched all the same.
            earlier = set(ancestors())
        if ran_with and earlier:
            ran_with = tuple(w for w in ran_with if w.activity_id not in earlier)
        alone = frozenset({mine.key})
        around = tuple(
            replace(w, declared=True) if theirs and declares(theirs, path) else w
            for w, theirs in beside
        )
        if old is None or not ran_with and not old.same_version(f):
            # (the old one stays)
            decided[path] = (None, Claim(f.size, f.mtime, (*around, mine), seen, alone))
        elif old.same_version(f):
            last = seen if old.seen is None or seen is None else max(old.seen, seen)
            final = old.final & {w.key for w in ran_with} | alone
            writers = _distinct(*ran_with, *around, mine)
            decided[path] = (old, Claim(f.size, f.mtime, writers, last, final))
        elif (
            seen is not None and old.seen is not None and seen > old.seen + CLOCK_SKEW and old.final
        ):
            # A later version than one a writer's listing showed once its command had ended:
            # not that writer's. That version stays (a version of its own, not a moment of a
            # write), with this attempt among its writers unless it was there before it ran.
            maybe = _distinct(*(w for w in ran_with if w.key not in old.final), *around, mine)
            decided[path] = (None, Claim(f.size, f.mtime, maybe, seen, alone))
            if not old.same_version(files.before.get(path)):
                writers = (*old.writers, mine)
                older[path] = (old, Claim(old.size, old.mtime, writers, old.seen, old.final))
        elif (
            seen is not None and old.seen is not None and seen < old.seen - CLOCK_SKEW and old.final
        ):
            # This attempt's version is the earlier one: its listing after its command showed
            # it, so the later one is not its. Recorded beside it, maybe by any that ran with it.
            writers = _distinct(*ran_with, *around, mine)
            older[path] = (None, Claim(f.size, f.mtime, writers, seen, alone))
        elif later_version(f, seen, old):
            # Another version, listed new by an attempt that ran at the same time: either may
            # have written either (one listing may catch a file its writer was still writing,
            # created empty). The earlier version is taken back: it was there a moment only.
            # (who ended with it in place: this attempt, whose listing after its command showed it)
            writers = _distinct(*ran_with, *around, mine)
            decided[path] = (old, Claim(f.size, f.mtime, writers, seen, alone))
        else:  # this attempt's version is the earlier one: the later stays, and it may be mine
            # (still ended with by those whose listings showed it, not by this attempt)
            writers = (*old.writers, mine)
            decided[path] = (old, Claim(old.size, old.mtime, writers, old.seen, old.final))
        generated[path] = f
    start, end = files.before_time, files.after_time
    between: list[tuple[str, Claim, Claim]] = []
    for path in caught:
        if start is None or end is None:
            break
        latest = claims.get((loc, path))
        for old in [latest] if listed is None else listed.get(path, ()):
            if old is None or old.seen is None or not start < old.seen < end:
                continue  # not known to have been listed while this attempt ran
            version = FileState(old.size, old.mtime)
            if old.same_version(files.before.get(path)):
                continue  # there before this attempt ran
            if any(w.key == me.key for w in old.writers) or not any(
                w.activity not in before_me and w.ran_with(me) for w in old.writers
            ):
                continue
            here = (*decided.get(path, ()), *older.get(path, ()))
            if any(c is not None and c.same_version(version) for c in here):
                continue  # decided above
            mine = replace(me, declared=bool(outputs) and declares(outputs, path))
            new = Claim(old.size, old.mtime, (*old.writers, mine), old.seen)
            if latest is not None and latest.same_version(version) and path not in decided:
                # (ended with by those whose listings after their commands showed it, as before)
                writers = (*latest.writers, mine)
                decided[path] = (latest, replace(new, writers=writers, final=latest.final))
            else:
                between.append((path, old, replace(new, final=old.final)))
    return Attribution(used, generated, decided, older, between)


def _distinct(*writers: Writer) -> tuple[Writer, ...]:
    """``writers`` without a second one of the same attempt (the first stays)."""
    first: dict[tuple[int, int], Writer] = {}
    for w in writers:
        first.setdefault(w.key, w)
    return tuple(first.values())


def later_version(f: FileState, seen: float | None, old: Claim) -> bool:
    """``f``, listed at ``seen`` (remote clock), is a later version of the file than ``old``:
    the listing that showed it was taken later (a writer may set a file's time back: ``cp -p``,
    ``rsync -t``, ``tar x`` keep the source's; two writes within one tick of the file clock
    have one time). By the file's time only when the listings' times are unknown or equal."""
    if seen is not None and old.seen is not None and seen != old.seen:
        return seen > old.seen
    return f.mtime >= old.mtime
