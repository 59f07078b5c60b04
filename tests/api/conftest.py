from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import cli_env
from tests.server.conftest import Server, free_port


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One real `akoflow server` for a test module."""
    srv = Server(
        state_dir=tmp_path_factory.mktemp("api-server") / "state", port=free_port(), env=cli_env()
    )
    srv.start()
    yield srv
    srv.stop()
