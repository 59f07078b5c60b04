"""Build -> run -> inspect, in this process and (for signals) in a child Python."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from rich.console import Console

import akoflow
from akoflow import ActivityState as A
from akoflow import WorkflowState as W
from tests.conftest import EXAMPLES, cli_env, wait_for


def fan_out(side_effects: Path) -> akoflow.Workflow:
    """prep -> (upper, count) -> report, each one adding a line to ``side_effects``."""
    wf = akoflow.Workflow("fan", runtime="local", env={"LEDGER": str(side_effects)})
    note = 'echo "$AKOFLOW_ACTIVITY_NAME" >> "$LEDGER"\n'
    prep = wf.activity(
        "prep", run=note + "printf 'a\\nb\\n' > words.txt\necho wrote", outputs=["words.txt"]
    )
    upper = wf.activity("upper", run=note + "tr a-z A-Z < words.txt > upper.txt", depends_on=prep)
    count = wf.activity(
        "count", run=note + "wc -l < words.txt > count.txt\necho counted >&2", depends_on=[prep]
    )
    wf.activity("report", run=note + "cat upper.txt count.txt", depends_on=[upper, count])
    return wf


def test_build_run_inspect(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    run = akoflow.run(fan_out(ledger), tmp_path / "state")
    assert run.ok and run.state is W.SUCCEEDED and run.done
    assert {n: a.state for n, a in run.activities.items()} == dict.fromkeys(
        ["prep", "upper", "count", "report"], A.SUCCEEDED
    )
    assert all(a.exit_code == 0 and a.attempts == 1 for a in run.activities.values())
    assert sorted(ledger.read_text().split()) == ["count", "prep", "report", "upper"]
    assert ledger.read_text().split()[0] == "prep" and ledger.read_text().split()[-1] == "report"
    assert run.logs("report") == "A\nB\n2\n"
    assert run.logs("count", stream="stderr") == "counted\n"
    assert run.logs("count", stream="stdout") == ""
    data = run.data_dir
    assert run.files("upper") == [data / "upper.txt"]
    assert (data / "upper.txt").read_text() == "A\nB\n"
    assert run.files() == sorted(data / n for n in ("words.txt", "upper.txt", "count.txt"))
    (attempt,) = run.attempts("prep")
    assert (attempt.number, attempt.state, attempt.exit_code) == (1, "succeeded", 0)
    with pytest.raises(KeyError):
        run.logs("nope")


def test_failure_retries_and_skips(tmp_path: Path) -> None:
    wf = akoflow.Workflow("flaky", runtime="local")
    wf.activity(
        "flaky",
        retries=2,
        run="n=$(cat tries 2>/dev/null || echo 0); echo $((n+1)) > tries\n"
        'echo "try $AKOFLOW_ATTEMPT"; [ "$AKOFLOW_ATTEMPT" -ge 3 ] || exit 1',
    )
    wf.activity("broken", run="echo bad >&2; exit 7", depends_on="flaky")
    wf.activity("after", run="echo never > never.txt", depends_on="broken")
    run = akoflow.run(wf, tmp_path / "state")
    assert not run.ok and run.state is W.FAILED
    flaky, broken, after = (run[n] for n in ("flaky", "broken", "after"))
    assert (flaky.state, flaky.attempts) == (A.SUCCEEDED, 3)
    assert [a.exit_code for a in run.attempts("flaky")] == [1, 1, 0]
    assert run.logs("flaky", attempt=1) == "try 1\n" and run.logs("flaky") == "try 3\n"
    assert (broken.state, broken.exit_code, broken.reason) == (A.FAILED, 7, "exit code 7")
    assert after.state is A.SKIPPED and not (run.data_dir / "never.txt").exists()


def test_a_file_runs_as_akoflow_run_file_and_the_cli_sees_it(tmp_path: Path) -> None:
    state = tmp_path / "state"
    run = akoflow.run(EXAMPLES / "hello.yaml", state)
    assert run.ok and run.logs("report").startswith("workflow: hello (run 1)")
    shown = subprocess.run(
        [sys.executable, "-m", "akoflow", "status", "1", "--json", "--state-dir", str(state)],
        capture_output=True,
        text=True,
        env=cli_env(),
        check=True,
    )
    doc = json.loads(shown.stdout)
    assert doc["workflow"]["state"] == "succeeded" and len(doc["activities"]) == 5
    text_run = akoflow.run((EXAMPLES / "failing.yaml").read_text(), state)
    assert text_run.id == 2 and text_run.state is W.FAILED


def test_file_names_that_are_not_utf8(tmp_path: Path) -> None:
    wf = akoflow.Workflow("bytes", runtime="local")
    wf.activity("write", run="printf x > $'caf\\xe9.txt'; printf y > plain.txt")
    run = akoflow.run(wf, tmp_path / "state")
    assert run.ok
    names = sorted(os.fsencode(p.name) for p in run.files("write"))
    assert names == [b"caf\xe9.txt", b"plain.txt"]
    assert sorted(os.fsencode(p.name) for p in run.files()) == names
    assert (run.data_dir / os.fsdecode(b"caf\xe9.txt")).read_bytes() == b"x"


def test_run_async_and_inside_a_running_loop(tmp_path: Path) -> None:
    async def main() -> tuple[akoflow.Run, akoflow.Run]:
        first = await akoflow.run_async(fan_out(tmp_path / "a"), tmp_path / "state", new=True)
        # A notebook's loop already runs: the blocking call runs the engine on a thread.
        second = akoflow.run(fan_out(tmp_path / "b"), tmp_path / "state", new=True)
        return first, second

    first, second = asyncio.run(main())
    assert first.ok and second.ok and (first.id, second.id) == (1, 2)
    assert second.logs("report") == "A\nB\n2\n"


def test_progress_shows_the_cli_views(tmp_path: Path) -> None:
    for terminal in (False, True):
        out = io.StringIO()
        console = Console(file=out, force_terminal=terminal, width=120, color_system=None)
        wf = akoflow.Workflow("shown", runtime="local")
        wf.activity("ok", run="true")
        wf.activity("bad", run="echo oops >&2; exit 2", depends_on="ok")
        run = akoflow.run(wf, tmp_path / "state", console=console, new=True)
        text = out.getvalue()
        assert f"workflow shown #{run.id} failed" in text
        assert "✗ bad (exit code 2)" in text and "oops" in text
        assert ("succeeded ok" in text) is not terminal  # the line view outside terminals


CHILD = """
import sys, akoflow
wf = akoflow.Workflow("long", runtime="local")
wf.activity("sleeper", run="echo $$ > sleeper.pid; exec sleep 60")
wf.activity("later", run="true", depends_on="sleeper")
try:
    run = akoflow.run(wf, sys.argv[1], data_dir=sys.argv[2])
except KeyboardInterrupt as exc:
    print("interrupted:", exc, flush=True)
    raise
print("returned", run.state, run["sleeper"].state, run["later"].state, flush=True)
"""


def start_child(tmp_path: Path) -> tuple[subprocess.Popen[str], Path, int]:
    data = tmp_path / "data"
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(CHILD), str(tmp_path / "state"), str(data)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
    )
    pid_file = data / "sleeper.pid"
    wait_for(lambda: pid_file.exists() and pid_file.read_text().strip())
    return child, tmp_path / "state", int(pid_file.read_text())


def gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1].startswith("Z")
    except OSError:
        return True


def test_ctrl_c_cancels_the_run_then_interrupts(tmp_path: Path) -> None:
    child, state, sleeper = start_child(tmp_path)
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=60)
    assert child.returncode == -signal.SIGINT, err  # KeyboardInterrupt, as Python ends on it
    assert "interrupted: run 1 cancelled" in out
    assert gone(sleeper)
    shown = subprocess.run(
        [sys.executable, "-m", "akoflow", "status", "1", "--json", "--state-dir", str(state)],
        capture_output=True,
        text=True,
        env=cli_env(),
        check=True,
    )
    doc = json.loads(shown.stdout)
    assert doc["workflow"]["state"] == "cancelled"
    assert [a["state"] for a in doc["activities"]] == ["cancelled", "cancelled"]


def test_akoflow_cancel_from_another_process(tmp_path: Path) -> None:
    child, state, sleeper = start_child(tmp_path)
    subprocess.run(
        [sys.executable, "-m", "akoflow", "cancel", "1", "--state-dir", str(state)],
        capture_output=True,
        text=True,
        env=cli_env(),
        check=True,
    )
    out, err = child.communicate(timeout=60)
    assert child.returncode == 0, err
    assert out.strip() == "returned cancelled cancelled cancelled"
    assert gone(sleeper)


STUBBORN = """
import sys, akoflow
wf = akoflow.Workflow("stubborn", runtime="local")
wf.activity("slow", run="trap 'sleep 30; exit 1' TERM\\necho $$ > slow.pid\\nsleep 60 & wait")
try:
    akoflow.run(wf, sys.argv[1], data_dir=sys.argv[2])
except KeyboardInterrupt as exc:
    print("interrupted:", exc, flush=True)
    raise
"""


def cancel_requested(state: Path) -> bool:
    from akoflow.store import Repository

    repo = Repository(state / "akoflow.db")
    try:
        rec = repo.get_workflow(1)
        return rec is not None and rec.cancel_requested
    finally:
        repo.close()


def test_second_ctrl_c_leaves_at_once_and_resume_finishes(tmp_path: Path) -> None:
    state, data = tmp_path / "state", tmp_path / "data"
    child = subprocess.Popen(
        [sys.executable, "-c", STUBBORN, str(state), str(data)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
    )
    pid_file = data / "slow.pid"
    wait_for(lambda: pid_file.exists() and pid_file.read_text().strip())
    slow = int(pid_file.read_text())
    child.send_signal(signal.SIGINT)
    wait_for(lambda: cancel_requested(state))  # the first one asked the activity to stop
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=60)
    assert child.returncode == -signal.SIGINT, err
    assert "left the run with its activities running" in out
    assert not gone(slow)  # still in its TERM trap: left running, not waited for
    resumed = subprocess.run(
        [sys.executable, "-m", "akoflow", "resume", "1", "--json", "--state-dir", str(state)],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=120,
    )
    assert json.loads(resumed.stdout)["workflow"]["state"] == "cancelled", resumed.stderr
    assert gone(slow)
