"""Reading an exported PROV document back in tests: which attempt used or generated which
file (data-dir files by path, remote ones as ``<location>/<path>``; the run's inputs
collection as ``<inputs>``)."""

from __future__ import annotations

from prov.model import ProvDocument, ProvGeneration, ProvUsage

INPUTS = "<inputs>"


def paths_of(doc: ProvDocument) -> dict[str, str]:
    """Entity id -> the file's path, qualified by its location when it has one."""
    paths = {}
    for e in doc.get_records():
        if e.is_element() and e.get_attribute("akoflow:path"):
            path = str(next(iter(e.get_attribute("akoflow:path"))))
            location = e.get_attribute("akoflow:location")
            paths[str(e.identifier)] = f"{next(iter(location))}/{path}" if location else path
    return paths


def relations(doc: ProvDocument) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """(activity, file) pairs for used and for wasGeneratedBy, of the attempts (the data
    plane's copies, ``akoflow:Copy`` activities, are left out)."""
    paths = paths_of(doc)
    for e in doc.get_records():
        if e.is_element() and str(e.identifier).endswith("inputs"):
            paths[str(e.identifier)] = INPUTS

    def activity(identifier: object) -> str:
        return str(identifier).split("activity/")[1].split("/")[0]

    used, generated = set(), set()
    for record in doc.get_records():
        if isinstance(record, ProvUsage):
            act, entity = record.formal_attributes[0][1], record.formal_attributes[1][1]
            if "activity/" in str(act):  # an attempt's (not one of the data plane's copies)
                used.add((activity(act), paths[str(entity)]))
        elif isinstance(record, ProvGeneration):
            entity, act = record.formal_attributes[0][1], record.formal_attributes[1][1]
            if "activity/" in str(act):
                generated.add((activity(act), paths[str(entity)]))
    return used, generated


def ambiguous(doc: ProvDocument) -> dict[str, set[str]]:
    """Path -> the candidate activities of each file version exported as ambiguous."""
    found: dict[str, set[str]] = {}
    for e in doc.get_records():
        if e.is_element() and "ambiguous" in {
            str(v) for v in e.get_attribute("akoflow:attribution")
        }:
            path = str(next(iter(e.get_attribute("akoflow:path"))))
            candidates = {
                str(c).split("activity/")[1].split("/")[0]
                for c in e.get_attribute("akoflow:candidate")
            }
            found.setdefault(path, set()).update(candidates)
    return found


def derivations(doc: ProvDocument) -> set[tuple[str, str]]:
    """(generated file, file it was derived from) pairs, by path."""
    from prov.model import ProvDerivation

    paths = paths_of(doc)
    return {
        (paths[str(r.formal_attributes[0][1])], paths[str(r.formal_attributes[1][1])])
        for r in doc.get_records(ProvDerivation)
    }


def mechanism(doc: ProvDocument) -> str:
    for e in doc.get_records():
        if e.is_element() and e.get_attribute("akoflow:provenanceMechanism"):
            return str(next(iter(e.get_attribute("akoflow:provenanceMechanism"))))
    return ""
