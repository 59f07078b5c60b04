"""Declared data: an activity's ``inputs:`` and ``outputs:`` (paths or globs relative to the
data dir, or to the runtime's working dir where files stay remote).

A declaration is a promise the engine holds the activity to, as Snakemake and Nextflow do: a
declared input that matches no file when the activity is dispatched fails it without a run;
a declared output that matches no file after a successful attempt fails that attempt with the
list. And it decides attribution where nothing else can and no other attempt is known to
have written the file: by timing, when its activity alone ran while the file changed; on
remote runtimes, when it is the one declarer among the attempts whose listings show the
version (:mod:`akoflow.provenance.pending`, :mod:`akoflow.provenance.remote`). It never
overrides an observation (:mod:`akoflow.provenance.recorder`).

Globs: ``*`` and ``?`` match within one name (never ``/``), ``[...]`` one character of a set
(``[!...]`` not of it), ``**`` as a whole part any number of directories; anything else is
literal. Leading dots are not special. Only regular files match (directories do not), the
same as a remote listing (``find -type f``). Paths are in memory form
(:mod:`akoflow.provenance.names`).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
from collections.abc import Iterable
from pathlib import Path

from akoflow.provenance.names import display
from akoflow.runtimes.base import Outcome
from akoflow.spec.workflow import Activity

_MAGIC = re.compile(r"[*?\[]")
MAX_SHOWN = 20  # paths named in one failure reason


def is_glob(pattern: str) -> bool:
    return _MAGIC.search(pattern) is not None


def _part(part: str) -> str:
    """The regular expression of one ``/``-separated part of a glob."""
    out: list[str] = []
    i, n = 0, len(part)
    while i < n:
        c = part[i]
        i += 1
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = i
            if j < n and part[j] == "!":
                j += 1
            if j < n and part[j] == "]":
                j += 1
            while j < n and part[j] != "]":
                j += 1
            if j >= n:  # no closing bracket: a literal '['
                out.append(re.escape(c))
                continue
            body = part[i:j]
            i = j + 1
            negate = body.startswith("!")
            if negate:
                body = body[1:]
            for special in "\\^[&~|":  # literal in a set (and no set operations)
                body = body.replace(special, "\\" + special)
            out.append(f"[^/{body}]" if negate else f"(?!/)[{body}]")
        else:
            out.append(re.escape(c))
    return "".join(out)


@functools.lru_cache(maxsize=1024)
def compile_glob(pattern: str) -> re.Pattern[str]:
    """The regular expression a relative path must fully match to match ``pattern``."""
    pieces: list[str] = []
    parts = pattern.split("/")
    for k, part in enumerate(parts):
        last = k == len(parts) - 1
        if part == "**":
            pieces.append(".*" if last else "(?:[^/]+/)*")
        else:
            pieces.append(_part(part) + ("" if last else "/"))
    return re.compile("".join(pieces), re.DOTALL)


def matches(pattern: str, path: str) -> bool:
    return compile_glob(pattern).fullmatch(path) is not None


def declares(patterns: Iterable[str], path: str) -> bool:
    """Whether ``path`` is one of the declared ``patterns``."""
    return any(matches(p, path) for p in patterns)


def unmatched(patterns: Iterable[str], paths: Iterable[str]) -> list[str]:
    """The patterns no path of ``paths`` matches (in declaration order)."""
    left = list(dict.fromkeys(patterns))
    for path in paths:
        if not left:
            break
        left = [p for p in left if not matches(p, path)]
    return left


def literal_root(pattern: str) -> str:
    """The directories of ``pattern`` before its first glob part: every path it matches is
    under them (``''``: the top)."""
    fixed: list[str] = []
    for part in pattern.split("/")[:-1]:
        if is_glob(part):
            break
        fixed.append(part)
    return "/".join(fixed)


def missing_on_host(patterns: Iterable[str], data_dir: Path) -> list[str]:
    """The patterns that match no regular file under ``data_dir`` (only the directories a
    glob can reach are walked; symbolic links to directories are not followed)."""
    missing: list[str] = []
    for pattern in dict.fromkeys(patterns):
        if not is_glob(pattern):
            if not (data_dir / pattern).is_file():
                missing.append(pattern)
            continue
        root = literal_root(pattern)
        top = os.path.join(data_dir, root) if root else str(data_dir)
        regex = compile_glob(pattern)
        found = False
        for here, _dirs, names in os.walk(top):
            rel = os.path.relpath(here, data_dir)
            prefix = "" if rel == "." else rel + "/"
            for name in names:
                path = prefix + name
                if regex.fullmatch(path) and os.path.isfile(os.path.join(here, name)):
                    found = True
                    break
            if found:
                break
        if not found:
            missing.append(pattern)
    return missing


def _listed(paths: list[str]) -> str:
    """The paths for people, on one line (a newline in a name forged lines in the views)."""
    shown = ", ".join(display(p) for p in paths[:MAX_SHOWN])
    more = len(paths) - MAX_SHOWN
    return shown + (f" and {more} more" if more > 0 else "")


def inputs_problem(activity: Activity, data_dir: Path) -> str | None:
    """Why ``activity`` cannot start on the engine's host: its declared inputs that match no
    file in ``data_dir`` (None when all are there)."""
    if not activity.inputs:
        return None
    missing = missing_on_host(activity.inputs, data_dir)
    if not missing:
        return None
    return f"declared inputs missing in the data dir: {_listed(missing)}"


def checked_outputs(
    activity: Activity, outcome: Outcome, data_dir: Path, *, remote: bool
) -> Outcome:
    """``outcome``, failed with the missing paths when it succeeded but a declared output
    matches no file: in the data dir on the engine's host, in the job's own listing after
    its command where files stay remote (``remote``; no listing: they cannot be found).
    Remote inputs are checked here too, against the listing before the command."""
    if not outcome.succeeded or not (activity.outputs or (remote and activity.inputs)):
        return outcome
    problems: list[str] = []
    if remote:
        files = outcome.files
        if files is None:
            what = "outputs" if activity.outputs else "inputs"
            problems.append(
                f"declared {what} cannot be checked: the job did not report its working "
                "directory's listing"
            )
        else:
            inputs = unmatched(activity.inputs, files.before)
            if inputs:
                problems.append(f"declared inputs missing when it started: {_listed(inputs)}")
            outputs = unmatched(activity.outputs, files.after)
            if outputs:
                problems.append(f"declared outputs missing: {_listed(outputs)}")
    else:
        outputs = missing_on_host(activity.outputs, data_dir)
        if outputs:
            problems.append(f"declared outputs missing: {_listed(outputs)}")
    if not problems:
        return outcome
    return dataclasses.replace(outcome, succeeded=False, reason="; ".join(problems))


__all__ = [
    "checked_outputs",
    "compile_glob",
    "declares",
    "inputs_problem",
    "is_glob",
    "literal_root",
    "matches",
    "missing_on_host",
    "unmatched",
]
