"""Observed lineage under a hostile probe (issue 15): a file changed under another name (a
hard link), a rewrite that read nothing, and changes that bypass the data dir's names (a hard
link or a symlink to a file outside it, a memory-mapped write). Each test runs a real workflow
through the CLI and checks the store and the exported PROV read back with ``prov``."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from prov.model import PROV_TYPE, ProvDerivation, ProvDocument, ProvGeneration, ProvUsage

from akoflow import service
from akoflow.store import AmbiguousFile, FileRecord
from tests.e2e.test_exact_lineage import run_workflow, workflow

pytestmark = pytest.mark.needs_root  # fanotify filesystem marks need CAP_SYS_ADMIN


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def stored(tmp_path: Path) -> tuple[list[FileRecord], list[AmbiguousFile]]:
    repo = service.open_repository(tmp_path / "state")
    try:
        return repo.list_files(1), repo.list_ambiguous_files(1)
    finally:
        repo.close()


def versions(records: list[FileRecord], role: str) -> set[tuple[str, str, str | None]]:
    """(activity, path, sha256) of the stored records of ``role``."""
    return {(r.activity, r.path, r.sha256) for r in records if r.role == role}


def entity_versions(doc: ProvDocument) -> dict[str, tuple[str, str]]:
    """Entity id -> (path, sha256) of every file entity."""
    found = {}
    for e in doc.get_records():
        if e.is_element() and e.get_attribute("akoflow:path"):
            path = str(next(iter(e.get_attribute("akoflow:path"))))
            digest = e.get_attribute("akoflow:sha256")
            found[str(e.identifier)] = (path, str(next(iter(digest))) if digest else "")
    return found


def activity_of(identifier: object) -> str:
    return str(identifier).split("activity/")[1].split("/")[0]


def prov_versions(doc: ProvDocument) -> tuple[set[tuple[str, str, str]], set[tuple[str, str, str]]]:
    """(activity, path, sha256) for used and for wasGeneratedBy, as exported."""
    entities = entity_versions(doc)
    used, generated = set(), set()
    for r in doc.get_records(ProvUsage):
        act, ent = r.formal_attributes[0][1], r.formal_attributes[1][1]
        if str(ent) in entities:
            used.add((activity_of(act), *entities[str(ent)]))
    for r in doc.get_records(ProvGeneration):
        ent, act = r.formal_attributes[0][1], r.formal_attributes[1][1]
        generated.add((activity_of(act), *entities[str(ent)]))
    return used, generated


def prov_derivations(doc: ProvDocument) -> set[tuple[str, str, str, str, bool]]:
    """(path, sha256, from path, from sha256, is a prov:Revision) of every derivation."""
    entities = entity_versions(doc)
    found = set()
    for r in doc.get_records(ProvDerivation):
        new = entities[str(r.formal_attributes[0][1])]
        old = entities[str(r.formal_attributes[1][1])]
        revision = "prov:Revision" in {str(t) for t in r.get_attribute(PROV_TYPE)}
        found.add((*new, *old, revision))
    return found


def prov_ambiguous(doc: ProvDocument) -> dict[tuple[str, str], set[str]]:
    """(path, sha256) -> candidate activities of each version exported as ambiguous."""
    found: dict[tuple[str, str], set[str]] = {}
    entities = entity_versions(doc)
    for e in doc.get_records():
        if e.is_element() and "ambiguous" in {
            str(v) for v in e.get_attribute("akoflow:attribution")
        }:
            candidates = {activity_of(c) for c in e.get_attribute("akoflow:candidate")}
            found.setdefault(entities[str(e.identifier)], set()).update(candidates)
    return found


# ==================================================================== 2: derived from what it read


def test_a_version_is_derived_only_from_what_its_writer_read(tmp_path: Path) -> None:
    """`rewrite` overwrites f.txt and renames a new file over out.txt, reading nothing: their
    new versions derive from nothing (not from the versions they replaced). `edit` (sed -i)
    and `append` read f.txt before writing it: each new f.txt is a prov:Revision of the
    version read; a version also derives from the other files its writer read."""
    doc = run_workflow(
        tmp_path,
        workflow(
            ("make", "echo v1 > f.txt; echo o1 > out.txt", []),
            ("rewrite", "echo v2 > f.txt; echo t > tmp.txt; mv tmp.txt out.txt", ["make"]),
            ("edit", "sed -i s/v2/v3/ f.txt; cat out.txt > copy.txt", ["rewrite"]),
            ("append", "grep -q v3 f.txt && echo v4 >> f.txt", ["edit"]),
        ),
    )
    v2, v3, v4, t = sha("v2\n"), sha("v3\n"), sha("v3\nv4\n"), sha("t\n")
    records, unsure = stored(tmp_path)
    assert versions(records, "used") == {
        ("edit", "f.txt", v2),
        ("edit", "out.txt", t),
        ("append", "f.txt", v3),
    }
    assert versions(records, "generated") == {
        ("make", "f.txt", sha("v1\n")),
        ("make", "out.txt", sha("o1\n")),
        ("rewrite", "f.txt", v2),
        ("rewrite", "out.txt", t),
        ("edit", "f.txt", v3),
        ("edit", "copy.txt", t),
        ("append", "f.txt", v4),
    }
    assert unsure == []
    used, generated = prov_versions(doc)
    assert (used, generated) == (versions(records, "used"), versions(records, "generated"))
    assert prov_derivations(doc) == {
        ("f.txt", v3, "f.txt", v2, True),
        ("f.txt", v3, "out.txt", t, False),
        ("copy.txt", t, "f.txt", v2, False),
        ("copy.txt", t, "out.txt", t, False),
        ("f.txt", v4, "f.txt", v3, True),
    }
