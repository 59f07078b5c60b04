"""A big workflow is stored through a connection of its own (service.store, Repository.aside):
through the repository's, its insert held the repository's lock throughout (about 2 s for
100,000 activities), and a server's event loop, reading the same repository (the API pages,
the webhook sender), stood still."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from akoflow import service


def wide(n: int) -> str:
    return "name: big\nspec:\n  activities:\n" + "".join(
        f"    - name: a{i}\n      run: 'true'\n" for i in range(n)
    )


def test_a_big_workflow_is_stored_while_a_reader_holds_the_repository(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service, "STORE_ASIDE", 10)
    state = tmp_path / "state"
    repo = service.open_repository(state)
    prepared = service.validate_text(wide(50), "big.yaml")
    stored: list[int] = []
    thread = threading.Thread(target=lambda: stored.append(service.store(repo, state, prepared)))
    with repo._lock:  # a reader on the event loop, busy for as long as the store takes
        thread.start()
        thread.join(30)
        assert stored, "the store waited for the repository's lock"
    record = repo.get_workflow(stored[0])
    assert record is not None and record.name == "big"
    count = repo._exec("SELECT count(*) FROM activities WHERE workflow_id = ?", (stored[0],))
    assert count.fetchone()[0] == 50
    repo.close()


def test_a_big_workflow_stored_inside_a_transaction_goes_through_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `akoflow run` stores a new run inside the transaction that claims it: another
    # connection would wait for that transaction for ever (30 s, then "database is locked").
    monkeypatch.setattr(service, "STORE_ASIDE", 10)
    state = tmp_path / "state"
    repo = service.open_repository(state)
    prepared = service.validate_text(wide(50), "big.yaml")
    claim = service.claim_run(repo, state, prepared)
    assert not claim.resumed and claim.busy_pid is None
    count = repo._exec("SELECT count(*) FROM activities WHERE workflow_id = ?", (claim.wf_id,))
    assert count.fetchone()[0] == 50
    repo.close()
