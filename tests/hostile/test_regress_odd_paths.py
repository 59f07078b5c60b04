"""Regression (hostile pass on issue 13 after later changes): a state dir or data dir whose
path is not UTF-8.

``akoflow run --data-dir $'d\\xff'`` (or such a ``--state-dir``, or ``$AKOFLOW_HOME``) ended
in a UnicodeEncodeError traceback from the database (paths are stored as text), exit 1,
after making the directories. Now: a clear error naming the path (escaped), exit 2, nothing
made.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.conftest import Akoflow, cli_env

WORKFLOW = "name: odd\nspec:\n  activities:\n    - name: a\n      run: echo hi > out.txt\n"


def odd(parent: Path, name: bytes) -> str:
    """A path under ``parent`` whose last name is ``name`` (bytes that are not UTF-8)."""
    return os.fsdecode(os.fsencode(parent) + b"/" + name)


def refused(res: subprocess.CompletedProcess[str], escaped: str) -> None:
    assert res.returncode == 2, res
    stderr = res.stderr
    assert "Traceback" not in stderr and "UnicodeEncodeError" not in stderr, stderr
    assert escaped in stderr and "not valid UTF-8" in stderr, stderr


def test_paths_that_are_not_utf8_are_refused_before_anything_is_made(
    akoflow: Akoflow, tmp_path: Path
) -> None:
    wf = tmp_path / "odd.yaml"
    wf.write_text(WORKFLOW)
    place = tmp_path / "place"
    place.mkdir()

    res = akoflow("run", str(wf), "--quiet", "--state-dir", odd(place, b"state\xff"), state=False)
    refused(res, "state\\xff")
    res = akoflow("status", "--state-dir", odd(place, b"state\xff"), state=False)
    refused(res, "state\\xff")
    res = akoflow(
        "run", str(wf), "--quiet", "--state-dir", str(place / "s"),
        "--data-dir", odd(place, b"data\xfe"), state=False,
    )  # fmt: skip
    refused(res, "data\\xfe")
    env = cli_env(AKOFLOW_HOME=odd(place, b"home\xfd"))
    res = akoflow("run", str(wf), "--quiet", env=env, state=False)
    refused(res, "home\\xfd")
    assert os.listdir(place) == []
    # A UTF-8 name that is odd otherwise (a newline, blanks) is a path like any other.
    fine = place / "da ta\nnew"
    res = akoflow("run", str(wf), "--quiet", "--data-dir", str(fine))
    assert res.returncode == 0, res.stderr
    assert (fine / "out.txt").read_text() == "hi\n"
