"""File names are bytes (akoflow.provenance.names): the display form, the percent-encoded form
and the copy's portable name of every byte, and the SQLite store keeping any name exactly
(TEXT when UTF-8, a BLOB otherwise), including databases written before."""

from __future__ import annotations

import os
import random
import sqlite3
from pathlib import Path
from urllib.parse import unquote_to_bytes

from akoflow.provenance.names import (
    decoded,
    display,
    encoded,
    from_db,
    portable_name,
    to_db,
)
from akoflow.spec import load_workflow
from akoflow.store import Repository
from akoflow.store.migrate import SCHEMA_VERSION

TRICKY = [bytes([b]) for b in range(1, 256) if b not in (0x2E, 0x2F)] + [
    b"bad\xffname.txt",
    b"new\nline",
    b"\xed\xa0\x80",  # an encoded surrogate: not valid UTF-8
    "\u202eevil.txt".encode(),
    b"%41",
    b"%2541",
    b"a\\x41",
    b"a b\"c'd<e>{f}|g^h`i#j?k@l:m",
    b"\xff" * 255,
    "é".encode() * 127 + b"x",
    b"L" * 255,
]


def test_every_name_round_trips_through_its_encoded_form() -> None:
    rng = random.Random(7)
    names = TRICKY + [bytes(rng.randrange(1, 256) for _ in range(40)) for _ in range(200)]
    for raw in names:
        name = os.fsdecode(raw)
        assert unquote_to_bytes(encoded(name)) == raw
        assert decoded(encoded(name)) == name
        assert all(c.isalnum() and c.isascii() or c in "-._~%/" for c in encoded(name))
        assert from_db(to_db(name)) == name


def test_display_is_printable_and_tells_names_apart() -> None:
    shown = {}
    for raw in TRICKY:
        text = display(os.fsdecode(raw))
        assert text.isprintable(), text  # no controls, bidi, surrogates
        text.encode("utf-8")  # valid Unicode
        assert text not in shown, (raw, shown.get(text))
        shown[text] = raw
    assert display(os.fsdecode(b"bad\xffname.txt")) == "bad\\xffname.txt"
    assert display("new\nline") == "new\\x0aline"
    assert display("\u202eevil") == "\\u202eevil"
    assert display("a\\x41") == "a\\\\x41"  # a literal backslash is not an escape
    assert display("données.txt") == "données.txt"


def test_portable_names_are_distinct_plain_and_short() -> None:
    seen: dict[str, bytes] = {}
    for raw in TRICKY:
        copy = portable_name(os.fsdecode(raw))
        assert copy.isprintable() and "/" not in copy and copy not in (".", ".."), copy
        assert len(copy.encode("utf-8")) <= 255
        assert copy not in seen, (raw, seen.get(copy))
        seen[copy] = raw
    assert portable_name("a file.txt") == "a file.txt"  # plain text stays as it is
    assert portable_name("données.txt") == "données.txt"
    assert portable_name(os.fsdecode(b"bad\xffname")) == "bad%FFname"
    assert portable_name("%41") == "%2541"


WORKFLOW = "name: w\nspec:\n  activities:\n    - name: a\n      run: 'true'\n"


def _repo(path: Path) -> tuple[Repository, int, int]:
    repo = Repository(path)
    wf_id = repo.create_workflow(
        load_workflow(WORKFLOW),
        spec_yaml=WORKFLOW,
        spec_hash="h",
        source=None,
        runs_root=path.parent / "runs",
    )
    return repo, wf_id, repo.list_activities(wf_id)[0].id


def test_the_store_keeps_any_name_and_queries_by_it(tmp_path: Path) -> None:
    repo, wf_id, act_id = _repo(tmp_path / "akoflow.db")
    names = [os.fsdecode(raw) for raw in TRICKY]
    where = os.fsdecode(b"hpc:/scratch/\xff")
    repo.add_files(act_id, 1, "generated", [(n, 1, 2.0, None) for n in names])
    repo.add_files(act_id, 1, "generated", [(n, 1, 2.0, None) for n in names], location=where)
    repo.add_initial_files(wf_id, [(n, 3, 4.0, "h") for n in names])
    assert [f.path for f in repo.list_files(wf_id)] == names + names
    assert {f.location for f in repo.list_files(wf_id)} == {"", where}
    assert [f.path for f in repo.list_initial_files(wf_id)] == names
    assert repo.initial_locations(wf_id) == {""}
    bad = os.fsdecode(b"bad\xffname.txt")
    repo.remove_generated(act_id, 1, where, bad, mtime=2.0)  # an equality query on a BLOB
    repo.remove_generated(act_id, 1, "", "A", mtime=2.0)  # and on TEXT
    repo.remove_generated(act_id, 1, "", "B", mtime=3.0)  # another version: kept
    left = [(f.location, f.path) for f in repo.list_files(wf_id)]
    assert (where, bad) not in left and ("", bad) in left
    assert ("", "A") not in left and (where, "A") in left
    assert len(left) == 2 * len(names) - 2
    repo.close()
    # UTF-8 names stay readable text in the database; the others are their exact bytes.
    with sqlite3.connect(tmp_path / "akoflow.db") as db:
        rows = dict(db.execute("SELECT path, typeof(path) FROM initial_files").fetchall())
    assert rows["a b\"c'd<e>{f}|g^h`i#j?k@l:m"] == "text"
    assert rows[b"bad\xffname.txt"] == "blob"


def test_a_database_written_before_reads_unchanged(tmp_path: Path) -> None:
    """Schema 4 as written by earlier versions (every name TEXT, a U+FFFD where a byte was
    not UTF-8): read as it was, and new rows go beside it."""
    db_path = tmp_path / "akoflow.db"
    repo, wf_id, act_id = _repo(db_path)
    repo.close()
    with sqlite3.connect(db_path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        db.execute(
            "INSERT INTO files (activity_id, attempt, role, path, size, mtime, sha256, location) "
            "VALUES (?, 1, 'generated', 'old \ufffd.txt', 1, 2.0, NULL, '')",
            (act_id,),
        )
        db.execute(
            "INSERT INTO initial_files (workflow_id, location, path, size, mtime, sha256) "
            "VALUES (?, 'hpc:/x', 'in.txt', 1, 2.0, NULL)",
            (wf_id,),
        )
    repo = Repository(db_path)
    repo.add_files(act_id, 2, "generated", [(os.fsdecode(b"new\xff"), 1, 3.0, None)])
    assert [f.path for f in repo.list_files(wf_id)] == ["old \ufffd.txt", os.fsdecode(b"new\xff")]
    assert [(f.location, f.path) for f in repo.list_initial_files(wf_id)] == [("hpc:/x", "in.txt")]
    assert repo.initial_locations(wf_id) == {"hpc:/x"}
    repo.close()
