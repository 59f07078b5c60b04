"""End-to-end: real workflows through the real CLI, checking files, logs and exit codes."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.conftest import EXAMPLES, Akoflow, cli_env


def status_json(akoflow: Akoflow, ref: str = "1") -> dict:  # type: ignore[type-arg]
    res = akoflow("status", ref, "--json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)  # type: ignore[no-any-return]


def by_name(status: dict) -> dict:  # type: ignore[type-arg]
    return {a["name"]: a for a in status["activities"]}


def test_hello_fan_out_fan_in_passes_files(akoflow: Akoflow) -> None:
    res = akoflow("run", str(EXAMPLES / "hello.yaml"))
    assert res.returncode == 0, res.stderr + res.stdout
    st = status_json(akoflow)
    assert st["workflow"]["state"] == "succeeded"
    assert {a["state"] for a in st["activities"]} == {"succeeded"}
    data = Path(st["workflow"]["data_dir"])
    report = (data / "report.txt").read_text()
    assert "letters: 26" in report  # alpha beta gamma delta epsilon
    assert "first upper: ALPHA" in report
    assert "first reversed: ahpla" in report
    assert "workflow: hello (run 1)" in report
    # stdout captured into the store, readable with `akoflow logs`
    logs = akoflow("logs", "1", "report")
    assert logs.returncode == 0
    assert "first upper: ALPHA" in logs.stdout
    # the summary table names every activity
    for name in ("make-input", "count-letters", "upper-case", "reverse", "report"):
        assert name in res.stdout


def test_failure_skips_downstream_but_independent_branch_finishes(akoflow: Akoflow) -> None:
    res = akoflow("run", str(EXAMPLES / "failing.yaml"))
    assert res.returncode == 1
    # the summary points at the failure and shows the end of its stderr
    assert "akoflow logs 1 broken-step" in res.stdout
    assert "    about to fail" in res.stdout
    acts = by_name(status_json(akoflow))
    assert acts["broken-step"]["state"] == "failed"
    assert acts["broken-step"]["exit_code"] == 3
    assert acts["after-broken"]["state"] == "skipped"
    assert "broken-step" in acts["after-broken"]["reason"]
    assert acts["independent"]["state"] == "succeeded"
    assert status_json(akoflow)["workflow"]["state"] == "failed"
    err = akoflow("logs", "failing", "broken-step", "--stream", "stderr")
    assert err.stdout == "about to fail\n"


def test_retries_until_success(akoflow: Akoflow) -> None:
    res = akoflow("run", str(EXAMPLES / "retries.yaml"), "--json")
    assert res.returncode == 0, res.stderr
    result = json.loads(res.stdout)
    acts = {a["name"]: a for a in result["activities"]}
    assert acts["flaky"]["attempts"] == 3
    assert acts["uses-flaky"]["state"] == "succeeded"
    first = akoflow("logs", "1", "flaky", "--attempt", "1")
    assert "attempt 1 (try 1)" in first.stdout
    assert "transient failure" in first.stderr
    last = akoflow("logs", "1", "flaky")
    assert "attempt 3 (try 3)" in last.stdout


def test_timeout_stops_the_activity(akoflow: Akoflow) -> None:
    start = time.monotonic()
    res = akoflow("run", str(EXAMPLES / "timeout.yaml"))
    assert res.returncode == 1
    assert time.monotonic() - start < 20
    act = by_name(status_json(akoflow))["too-slow"]
    assert act["state"] == "failed"
    assert act["reason"] == "timed out after 1s"


def test_quiet_prints_nothing_and_json_is_machine_readable(akoflow: Akoflow) -> None:
    quiet = akoflow("run", str(EXAMPLES / "hello.yaml"), "--quiet")
    assert quiet.returncode == 0
    assert quiet.stdout == ""
    res = akoflow("run", str(EXAMPLES / "hello.yaml"), "--json", "--new")
    doc = json.loads(res.stdout)
    assert doc["workflow"]["id"] == 2
    assert doc["workflow"]["state"] == "succeeded"
    assert len(doc["activities"]) == 5


def test_script_text_is_never_interpolated(akoflow: Akoflow, tmp_path: Path) -> None:
    """Quotes, $(...), ; and backticks in run and in paths reach bash verbatim, as data."""
    wf = tmp_path / "meta.yaml"
    wf.write_text(
        "name: meta\n"
        "spec:\n"
        "  env:\n"
        "    TRICKY: \"'; touch pwned-env; echo '\"\n"
        "  activities:\n"
        "    - name: quoting\n"
        "      run: |\n"
        '        echo "it\'s \\"quoted\\" and \\$(not run) and `echo ran`" > out.txt\n'
        "        printf '%s\\n' \"$TRICKY\" >> out.txt\n"
        "        pwd >> out.txt\n"
    )
    data = tmp_path / "data dir; $(touch pwned-path) `touch pwned-tick`"
    res = akoflow("run", str(wf), "--data-dir", str(data))
    assert res.returncode == 0, res.stderr
    lines = (data / "out.txt").read_text().splitlines()
    assert lines[0] == 'it\'s "quoted" and $(not run) and ran'
    assert lines[1] == "'; touch pwned-env; echo '"
    assert lines[2] == str(data)
    assert not list(tmp_path.rglob("pwned*"))
    assert not list(Path.cwd().glob("pwned*"))


def test_env_inherits_from_spec_and_activity_overrides(akoflow: Akoflow, tmp_path: Path) -> None:
    wf = tmp_path / "env.yaml"
    wf.write_text(
        "name: envs\n"
        "spec:\n"
        "  env: {COLOR: blue, SHAPE: circle}\n"
        "  activities:\n"
        "    - name: a\n"
        "      env: {SHAPE: square}\n"
        '      run: echo "$COLOR $SHAPE $ACTIVITY_NAME $WORKFLOW_NAME" > a.txt\n'
        "    - name: b\n"
        '      run: echo "$COLOR $SHAPE" > b.txt\n'
    )
    assert akoflow("run", str(wf), "--data-dir", str(tmp_path / "d")).returncode == 0
    assert (tmp_path / "d" / "a.txt").read_text() == "blue square a envs\n"
    assert (tmp_path / "d" / "b.txt").read_text() == "blue circle\n"


def test_concurrency_is_bounded_per_runtime(akoflow: Akoflow, tmp_path: Path) -> None:
    acts = "".join(
        f"    - name: p{i}\n"
        f"      run: |\n"
        f"        echo start $(date +%s.%N) >> spans.{i}\n"
        f"        sleep 0.3\n"
        f"        echo end $(date +%s.%N) >> spans.{i}\n"
        for i in range(6)
    )
    wf = tmp_path / "par.yaml"
    wf.write_text("name: par\nspec:\n  activities:\n" + acts)
    data = tmp_path / "d"
    res = akoflow("run", str(wf), "--data-dir", str(data), env=cli_env(LOCAL_MAX_PARALLEL="2"))
    assert res.returncode == 0, res.stderr
    events: list[tuple[float, int]] = []
    for i in range(6):
        start, end = (
            float(line.split()[1]) for line in (data / f"spans.{i}").read_text().splitlines()
        )
        events += [(start, 1), (end, -1)]
    running = peak = 0
    for _, delta in sorted(events):
        running += delta
        peak = max(peak, running)
    assert peak == 2


def test_status_lists_runs(akoflow: Akoflow) -> None:
    assert akoflow("run", str(EXAMPLES / "hello.yaml"), "--quiet").returncode == 0
    res = akoflow("status")
    assert res.returncode == 0
    assert "hello" in res.stdout and "succeeded" in res.stdout and "5/5" in res.stdout


def test_retry_resumes_a_failed_run_from_where_it_failed(akoflow: Akoflow, tmp_path: Path) -> None:
    wf = tmp_path / "fix.yaml"
    wf.write_text(
        "name: fixable\nspec:\n  activities:\n"
        "    - name: ok\n      run: echo run >> count.ok\n"
        "    - name: needs-fix\n      dependsOn: [ok]\n"
        "      run: |\n        echo run >> count.fix\n        test -e fixed\n"
        "    - name: after\n      dependsOn: [needs-fix]\n      run: echo run >> count.after\n"
    )
    data = tmp_path / "d"
    assert akoflow("run", str(wf), "--data-dir", str(data)).returncode == 1
    assert by_name(status_json(akoflow))["after"]["state"] == "skipped"
    (data / "fixed").touch()
    res = akoflow("retry", "fixable", "--json")
    assert res.returncode == 0, res.stderr
    acts = {a["name"]: a for a in json.loads(res.stdout)["activities"]}
    assert {a["state"] for a in acts.values()} == {"succeeded"}
    assert acts["needs-fix"]["attempts"] == 2
    assert (data / "count.ok").read_text() == "run\n"  # not run again
    assert (data / "count.fix").read_text() == "run\nrun\n"
    assert (data / "count.after").read_text() == "run\n"
    again = akoflow("retry", "1")
    assert again.returncode == 1
    assert "only a failed or cancelled workflow can be retried" in again.stderr


def test_cancel_from_another_terminal(akoflow: Akoflow, tmp_path: Path, state_dir: Path) -> None:
    import subprocess
    import sys

    wf = tmp_path / "slow.yaml"
    wf.write_text("name: slow\nspec:\n  activities:\n    - name: s\n      run: sleep 60\n")
    engine = subprocess.Popen(
        [sys.executable, "-m", "akoflow", "run", str(wf), "--quiet", "--state-dir", str(state_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
    )
    try:
        deadline = time.monotonic() + 30
        exit_file = state_dir / "runs" / "1-slow" / "attempts" / "s.1.exit"
        while not exit_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        start = time.monotonic()
        res = akoflow("cancel", "1")
        assert res.returncode == 0, res.stderr
        assert "cancel requested" in res.stdout
        engine.communicate(timeout=30)
        assert time.monotonic() - start < 15
    finally:
        if engine.poll() is None:
            engine.kill()
            engine.communicate()
    assert engine.returncode == 1
    assert by_name(status_json(akoflow))["s"]["state"] == "cancelled"


def test_activities_do_not_inherit_runtime_secrets(
    akoflow: Akoflow, tmp_path: Path, state_dir: Path
) -> None:
    wf = tmp_path / "env.yaml"
    wf.write_text("name: envdump\nspec:\n  activities:\n    - name: a\n      run: env > env.txt\n")
    res = akoflow(
        "run",
        str(wf),
        "--data-dir",
        str(tmp_path / "d"),
        env=cli_env(K8S_AWS_API_SERVER_TOKEN="tok-supersecret", MY_SETTING="visible"),
    )
    assert res.returncode == 0, res.stderr
    dumped = (tmp_path / "d" / "env.txt").read_text()
    assert "MY_SETTING=visible" in dumped
    assert "tok-supersecret" not in dumped
    assert state_dir.stat().st_mode & 0o777 == 0o700
