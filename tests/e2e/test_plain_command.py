"""A script that is one plain command runs without bash in between, and nothing else changes.

``python3 fit.py --steps=100`` asks bash only to find the program and start it; the local
runtime's spawner now starts it itself (akoflow.runtimes.plain_command): one process fewer
per attempt. What the command sees, how it ends, is stopped, and is adopted after an engine
crash stay as with bash; whatever bash would refuse or treat specially still goes to bash.
Real CLI, real spawners, real processes.
"""

from __future__ import annotations

import json
import os
import signal
import stat
from pathlib import Path

import psutil

from tests.conftest import Akoflow, cli_env, running_cli, wait_for


def _workflow(path: Path, *runs: str, extra: str = "") -> Path:
    acts = "".join(
        f"    - name: a{i}\n{extra}      run: {json.dumps(run)}\n" for i, run in enumerate(runs)
    )
    path.write_text(f"name: plain\nspec:\n  activities:\n{acts}")
    return path


def _run(akoflow: Akoflow, wf: Path, data: Path, env: dict[str, str] | None = None) -> dict:
    res = akoflow("run", str(wf), "--json", "--data-dir", str(data), env=env)
    doc = json.loads(res.stdout)
    return {a["name"]: a for a in doc["activities"]}


def _attempt(state: Path, name: str, suffix: str) -> Path:
    (match,) = state.glob(f"runs/*/attempts/{name}.1{suffix}")
    return match


def test_the_command_sees_what_bash_would_give_it(
    akoflow: Akoflow, tmp_path: Path, state_dir: Path
) -> None:
    """`env` run plain and through bash (`env;`) prints the same environment, with the
    inherited PWD, SHLVL and OLDPWD bash acts on set oddly."""
    data = tmp_path / "data"
    wf = _workflow(tmp_path / "wf.yaml", "env", "env;")
    env = {**os.environ, "SHLVL": "+3", "OLDPWD": "no-such-dir", "PWD": "/"}
    acts = _run(
        akoflow, wf, data, env={k: v for k, v in env.items() if not k.startswith("AKOFLOW_")}
    )
    assert {a["state"] for a in acts.values()} == {"succeeded"}
    plain = sorted(_attempt(state_dir, "a0", ".stdout").read_text().splitlines())
    shell = sorted(_attempt(state_dir, "a1", ".stdout").read_text().splitlines())
    differing = set(plain) ^ set(shell)
    # Only the names of the attempts differ.
    assert all(
        line.split("=")[0]
        in {
            "AKOFLOW_ATTEMPT_FILES",
            "ACTIVITY_NAME",
            "AKOFLOW_ACTIVITY_NAME",
            "AKOFLOW_ACTIVITY_ID",
            "ACTIVITY_ID",
        }
        for line in differing
    ), differing
    assert "SHLVL=4" in plain and f"PWD={data}" in plain
    assert not any(line.startswith("OLDPWD=") for line in plain)


def test_the_attempt_is_the_program_itself(
    akoflow: Akoflow, tmp_path: Path, state_dir: Path
) -> None:
    """Its process is `sleep`, a child of the spawner (before: bash, running sleep); an engine
    SIGKILLed meanwhile adopts it, and it runs once."""
    data = tmp_path / "data"
    data.mkdir()
    wf = _workflow(tmp_path / "wf.yaml", "sleep 2")
    argv = ["run", str(wf), "--quiet", "--state-dir", str(state_dir), "--data-dir", str(data)]
    with running_cli(argv) as engine:
        wait_for(lambda: list(state_dir.glob("runs/*/attempts/a0.1.exit")))
        exit_file = _attempt(state_dir, "a0", ".exit")
        wait_for(lambda: exit_file.read_text().startswith("pid "))
        pid = int(exit_file.read_text().split()[1])
        process = psutil.Process(pid)
        assert process.name() == "sleep"
        assert process.cmdline() == ["sleep", "2"]
        assert os.getsid(pid) == pid  # its own session, as bash had
        os.kill(engine.pid, signal.SIGKILL)
        engine.communicate(timeout=10)
    res = akoflow("resume", "--json")
    assert res.returncode == 0, res.stderr
    (act,) = json.loads(res.stdout)["activities"]
    assert (act["state"], act["attempts"]) == ("succeeded", 1)
    assert exit_file.read_text() == "exit 0\n"


def test_side_effects_once_across_a_crash(
    akoflow: Akoflow, tmp_path: Path, state_dir: Path
) -> None:
    """Plain `mkdir` activities (a second run of one fails: the directory exists), the engine
    SIGKILLed mid-run and resumed: each ran once."""
    data = tmp_path / "data"
    data.mkdir()
    n = 60
    wf = _workflow(tmp_path / "wf.yaml", *(f"mkdir made{i}" for i in range(n)))
    argv = ["run", str(wf), "--quiet", "--state-dir", str(state_dir), "--data-dir", str(data)]
    with running_cli(argv) as engine:
        wait_for(lambda: len(list(data.glob("made*"))) >= 5)
        os.kill(engine.pid, signal.SIGKILL)
        engine.communicate(timeout=10)
    res = akoflow("resume", "--json")
    assert res.returncode == 0, res.stderr + res.stdout
    acts = json.loads(res.stdout)["activities"]
    assert {a["state"] for a in acts} == {"succeeded"}
    assert sorted(p.name for p in data.iterdir()) == sorted(f"made{i}" for i in range(n))


def test_what_bash_reports_it_still_reports(
    akoflow: Akoflow, tmp_path: Path, state_dir: Path
) -> None:
    """A command not found (127), a file that is not executable (126), an executable text
    file with no #! line (bash runs it as a script), a program found on the activity's own
    PATH, exit codes, and a program killed by a signal."""
    data = tmp_path / "data"
    (data / "bin").mkdir(parents=True)
    (data / "not-executable").write_text("echo no\n")
    script = data / "no-shebang"
    script.write_text("echo ran as a script: $0\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    mine = data / "bin" / "mine"
    mine.write_text('#!/bin/sh\necho mine "$@"\n')
    mine.chmod(0o755)
    killed = data / "bin" / "killed"
    killed.write_text("#!/bin/sh\nkill -9 $$\n")
    killed.chmod(0o755)
    wf = _workflow(
        tmp_path / "wf.yaml",
        "no-such-command-here x",
        "./not-executable",
        "./no-shebang",
        "mine one two",
        "false",
        "killed",
        "python3 -c 0",
        extra='      env: {PATH: "bin:/usr/bin:/bin"}\n',
    )
    acts = _run(akoflow, wf, data)
    assert acts["a0"]["state"] == "failed" and acts["a0"]["exit_code"] == 127
    assert (
        "no-such-command-here: command not found"
        in _attempt(state_dir, "a0", ".stderr").read_text()
    )
    assert acts["a1"]["exit_code"] == 126
    assert "Permission denied" in _attempt(state_dir, "a1", ".stderr").read_text()
    assert acts["a2"]["state"] == "succeeded"
    assert _attempt(state_dir, "a2", ".stdout").read_text().startswith("ran as a script: ")
    assert acts["a3"]["state"] == "succeeded"
    assert _attempt(state_dir, "a3", ".stdout").read_text() == "mine one two\n"
    assert (acts["a4"]["state"], acts["a4"]["exit_code"]) == ("failed", 1)
    assert (acts["a5"]["exit_code"], acts["a5"]["reason"]) == (137, "killed by SIGKILL")
    assert acts["a6"]["state"] == "succeeded"


def test_stopped_at_its_timeout(akoflow: Akoflow, tmp_path: Path, state_dir: Path) -> None:
    data = tmp_path / "data"
    wf = _workflow(tmp_path / "wf.yaml", "sleep 60", extra="      timeout: 1s\n")
    acts = _run(akoflow, wf, data)
    assert acts["a0"]["state"] == "failed"
    assert "timed out" in acts["a0"]["reason"]


def test_what_bash_would_run_otherwise_it_runs(
    akoflow: Akoflow, tmp_path: Path, state_dir: Path
) -> None:
    """Commands the spawner started itself, and so ran otherwise than bash: `setsid JOB`
    (setsid leading its group forks and exits 0 at once: 'succeeded' in an instant, its JOB
    killed with the group), a PATH entry `~/bin` (bash looks in $HOME/bin), a `true` or
    `false` program on PATH (bash runs its builtins)."""
    data = tmp_path / "data"
    (data / "bin").mkdir(parents=True)
    home = tmp_path / "home"
    (home / "bin").mkdir(parents=True)
    job = data / "job.sh"
    job.write_text("#!/bin/sh\nsleep 1\ntouch done\n")
    job.chmod(0o755)
    for path, text in (
        (home / "bin" / "prog", "echo home"),
        (data / "bin" / "prog", "echo data"),
        (data / "bin" / "true", "echo my true; exit 3"),
        (data / "bin" / "false", "echo my false"),
    ):
        path.write_text(f"#!/bin/sh\n{text}\n")
        path.chmod(0o755)
    wf = _workflow(
        tmp_path / "wf.yaml",
        "setsid ./job.sh",
        "prog",
        "true",
        "false",
        extra='      env: {PATH: "~/bin:bin:/usr/bin:/bin"}\n',
    )
    acts = _run(akoflow, wf, data, env={**cli_env(), "HOME": str(home)})
    assert acts["a0"]["state"] == "succeeded"
    assert (data / "done").exists()  # setsid waited for its job, as under bash
    assert _attempt(state_dir, "a1", ".stdout").read_text() == "home\n"
    assert (acts["a2"]["state"], _attempt(state_dir, "a2", ".stdout").read_text()) == (
        "succeeded",
        "",
    )
    assert (acts["a3"]["exit_code"], _attempt(state_dir, "a3", ".stdout").read_text()) == (1, "")


def test_an_environment_bash_would_change_goes_to_bash(
    akoflow: Akoflow, tmp_path: Path, state_dir: Path
) -> None:
    """Variables bash drops or resets before its commands see them (PS1, exported by many
    login shells; IFS, OPTIND...) and an LC_ALL this host has no locale for (bash warns on
    stderr): `env` plain prints what `env;` through bash prints, stdout and stderr."""
    data = tmp_path / "data"
    for i, extra in enumerate(
        ({"PS1": r"\u@\h:\w\$ "}, {"IFS": ":", "OPTIND": "5"}, {"LC_ALL": "xx_YY.UTF-8"})
    ):
        command = f"env -u UNSET{i}"
        wf = _workflow(tmp_path / f"wf{i}.yaml", command, command + ";")
        acts = _run(akoflow, wf, data, env={**cli_env(), **extra})
        assert {a["state"] for a in acts.values()} == {"succeeded"}, extra
        (run,) = state_dir.glob(f"runs/{i + 1}-*")

        def lines(name: str, suffix: str, run: Path = run) -> set[str]:
            text = (run / "attempts" / f"{name}.1{suffix}").read_text()
            return {line for line in text.splitlines() if name not in line and "_ID=" not in line}

        assert lines("a0", ".stdout") == lines("a1", ".stdout"), extra
        assert lines("a0", ".stderr") == lines("a1", ".stderr"), extra
