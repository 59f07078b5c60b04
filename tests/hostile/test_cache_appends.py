"""False cache hits found by the regression hostile pass (issue 18's promise): an activity
that changes a file in place without reading it (an append), and an activity whose write to
a file another activity also wrote was not attributed when a SIGKILL came. Each is run
through the real CLI; a false hit shows the activity `cached` while the file lacks what its
run would have written."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from tests.conftest import Akoflow, cli_env, start_cli, wait_for
from tests.hostile.test_cache_false_hits import ran, run_ok, states


@pytest.fixture
def counters(tmp_path: Path) -> Path:
    path = tmp_path / "counters"
    path.mkdir()
    return path


STAMP_THEN_APPEND = """\
name: stamped
spec:
  runtime: local
  activities:
    - name: stamp
      cache: false
      run: date +%s%N > stamp
    - name: mark
      dependsOn: [stamp]
      run: |
        echo ran >> {counters}/mark
        echo done >> stamp
"""


def test_an_append_to_a_file_it_did_not_read_depends_on_that_file(
    akoflow: Akoflow, tmp_path: Path, counters: Path
) -> None:
    wf = tmp_path / "stamped.yaml"
    wf.write_text(STAMP_THEN_APPEND.format(counters=counters))
    for run in (1, 2):
        data = tmp_path / f"data{run}"
        run_ok(akoflow, str(wf), "--data-dir", str(data))
        lines = (data / "stamp").read_text().splitlines()
        # This run's stamp and the append: never the stamp of run 1 restored in run 2.
        assert len(lines) == 2 and lines[1] == "done", lines
        if run == 2:
            assert lines[0] != (tmp_path / "data1" / "stamp").read_text().splitlines()[0]
    assert states(akoflow, 2)["mark"] == "succeeded"
    assert ran(counters, "mark") == 2


APPEND_ONLY = """\
name: appender
spec:
  runtime: local
  activities:
    - name: add
      run: echo a >> log
"""


def test_an_append_to_a_file_already_in_the_data_dir_is_not_replayed_over_another(
    akoflow: Akoflow, tmp_path: Path
) -> None:
    wf = tmp_path / "appender.yaml"
    wf.write_text(APPEND_ONLY)
    first, second = tmp_path / "d1", tmp_path / "d2"
    for data, content in ((first, "x\n"), (second, "y\n")):
        data.mkdir()
        (data / "log").write_text(content)
        run_ok(akoflow, str(wf), "--data-dir", str(data))
    assert (first / "log").read_text() == "x\na\n"
    assert (second / "log").read_text() == "y\na\n"  # the user's "y" kept, "a" appended
    assert states(akoflow, 2)["add"] == "succeeded"
    # The same file as before the first run: now the result can be reused.
    third = tmp_path / "d3"
    third.mkdir()
    (third / "log").write_text("x\n")
    run_ok(akoflow, str(wf), "--data-dir", str(third))
    assert (third / "log").read_text() == "x\na\n"
    assert states(akoflow, 3)["add"] == "cached"


SHARED_LOG = """\
name: shared
spec:
  runtime: local
  activities:
    - name: quick
      run: echo quick >> log
    - name: slow
      run: |
        echo slow >> log
        sleep 3
"""


def test_a_write_not_attributed_when_the_engine_died_is_never_reused(
    akoflow: Akoflow, tmp_path: Path, state_dir: Path
) -> None:
    # `quick` ends while `slow`, which wrote the same file, still runs: which version is
    # whose waits for `slow`'s end, and the engine is SIGKILLed meanwhile. A next run must
    # not take `quick` for done (its line would be missing from the log).
    wf = tmp_path / "shared.yaml"
    wf.write_text(SHARED_LOG)
    data = tmp_path / "data1"
    engine = start_cli(
        ["run", str(wf), "--quiet", "--state-dir", str(state_dir), "--data-dir", str(data)],
        env=cli_env(),
    )
    exit_file = state_dir / "runs" / "1-shared" / "attempts" / "quick.1.exit"
    wait_for(lambda: exit_file.exists() and exit_file.read_text() == "exit 0\n")
    time.sleep(0.5)  # its end is processed (and its cache entry recorded) by the engine
    os.kill(engine.pid, signal.SIGKILL)
    engine.communicate(timeout=10)
    res = akoflow("resume", "1", "--json")
    assert res.returncode == 0, res.stderr + res.stdout
    fresh = tmp_path / "data2"
    run_ok(akoflow, str(wf), "--data-dir", str(fresh))
    assert states(akoflow, 2) == {"quick": "succeeded", "slow": "succeeded"}, akoflow(
        "status", "2", "--json"
    ).stdout
    assert sorted((fresh / "log").read_text().splitlines()) == ["quick", "slow"]
    doc = json.loads(akoflow("status", "2", "--json").stdout)
    assert {a["name"] for a in doc["activities"]} == {"quick", "slow"}
