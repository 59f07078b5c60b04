"""A big workflow is stored through a connection of its own (service.store, Repository.aside):
through the repository's, its insert held the repository's lock throughout (about 2 s for
100,000 activities), and a server's event loop, reading the same repository (the API pages,
the webhook sender), stood still."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from akoflow import service
from akoflow.store import Repository


def wide(n: int) -> str:
    return "name: big\nspec:\n  activities:\n" + "".join(
        f"    - name: a{i}\n      run: 'true'\n" for i in range(n)
    )


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Repository]:
    """A state dir's repository, where 10 activities make a big workflow."""
    monkeypatch.setattr(service, "STORE_ASIDE", 10)
    opened = service.open_repository(tmp_path / "state")
    yield opened
    opened.close()


def activities_stored(repo: Repository, wf_id: int) -> int:
    rows = repo._exec("SELECT count(*) FROM activities WHERE workflow_id = ?", (wf_id,))
    return int(rows.fetchone()[0])


def test_a_big_workflow_is_stored_while_a_reader_holds_the_repository(
    tmp_path: Path, repo: Repository
) -> None:
    state = tmp_path / "state"
    prepared = service.validate_text(wide(50), "big.yaml")
    stored: list[int] = []
    thread = threading.Thread(target=lambda: stored.append(service.store(repo, state, prepared)))
    with repo._lock:  # a reader on the event loop, busy for as long as the store takes
        thread.start()
        thread.join(30)
        assert stored, "the store waited for the repository's lock"
    record = repo.get_workflow(stored[0])
    assert record is not None and record.name == "big"
    assert activities_stored(repo, stored[0]) == 50


def test_a_big_workflow_stored_inside_a_transaction_goes_through_it(
    tmp_path: Path, repo: Repository
) -> None:
    # `akoflow run` stores a new run inside the transaction that claims it: another
    # connection would wait for that transaction for ever (30 s, then "database is locked").
    prepared = service.validate_text(wide(50), "big.yaml")
    claim = service.claim_run(repo, tmp_path / "state", prepared)
    assert not claim.resumed and claim.busy_pid is None
    assert activities_stored(repo, claim.wf_id) == 50
