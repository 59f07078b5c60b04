"""A private dockerd (its own data root, socket and pidfile under a tmp dir) with a busybox image
imported locally; the session's one is tests/daemons.py's ``dockerd``. If it cannot be set up,
the tests FAIL: a machine without Docker must not pass them by skipping."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import cli_env
from tests.docker_support.dockerd import IMAGE, DockerdError, PrivateDockerd


def start_private_dockerd(root: Path) -> PrivateDockerd:
    daemon = PrivateDockerd(root)
    try:
        daemon.start()
        daemon.import_image(IMAGE)
        daemon.run_ok(IMAGE)
    except (DockerdError, OSError) as exc:
        daemon.stop()
        pytest.fail(f"cannot set up a private dockerd under {root}: {exc}", pytrace=False)
    except Exception as exc:  # SDK errors too: never a skip
        daemon.stop()
        pytest.fail(
            f"cannot set up a private dockerd under {root}: {exc}\n{daemon.log_tail()}",
            pytrace=False,
        )
    return daemon


@pytest.fixture
def docker_env(dockerd: PrivateDockerd) -> dict[str, str]:
    """Environment of a CLI run whose `docker` runtime is the private daemon."""
    return cli_env(DOCKER_HOST=dockerd.host)
