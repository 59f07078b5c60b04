"""A resident engine (akoflow.resident) runs commands as they run on their own: the same
output, exit codes, environment, working directory and umask for the activities; signals
passed on; killed commands and killed servers take their copies with them (resume goes on,
nothing runs twice); a process unlike the server's, or changed code, runs on its own.

Real processes throughout: the server, its copies, the command, the activities."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import cli_env, wait_for

REPO_SRC = Path(__file__).resolve().parents[2] / "src"


class Resident:
    def __init__(self, home: Path, env: dict[str, str]) -> None:
        self.home = home
        self.env = env

    def cli(
        self, *args: str, cwd: Path | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "akoflow", *args],
            capture_output=True,
            text=True,
            env=self.env,
            cwd=cwd,
            timeout=timeout,
        )

    def own(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        """The same command on its own (no resident engine)."""
        return subprocess.run(
            [sys.executable, "-m", "akoflow", *args],
            capture_output=True,
            text=True,
            env={**self.env, "AKOFLOW_RESIDENT": "0"},
            cwd=cwd,
            timeout=120,
        )

    def status(self) -> dict[str, object] | None:
        done = self.cli("resident", "status", "--json")
        reply: dict[str, object] | None = json.loads(done.stdout)
        return reply

    def served(self) -> int:
        status = self.status()
        assert status is not None
        return int(status["served"])  # type: ignore[call-overload]

    @property
    def log(self) -> str:
        return (self.home / "resident" / "engine.log").read_text(errors="replace")


def resident_env(home: Path, **extra: str) -> dict[str, str]:
    env = cli_env(AKOFLOW_HOME=str(home))
    del env["AKOFLOW_RESIDENT"]  # cli_env's "0"
    env.update(extra)
    return env


@pytest.fixture
def resident(tmp_path: Path) -> Iterator[Resident]:
    home = tmp_path / "home"
    res = Resident(home, resident_env(home))
    started = res.cli("resident", "start", "--idle", "2m")
    assert started.returncode == 0, started.stderr
    status = res.status()
    assert status is not None
    pid = int(status["pid"])  # type: ignore[call-overload]
    try:
        yield res
    finally:
        res.cli("resident", "stop", "--wait", "5")
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


TIMES = re.compile(r"\d+(\.\d+)?(ms|s)\b")


def comparable(text: str, *dirs: Path) -> str:
    for d in dirs:
        text = text.replace(str(d), "<dir>")
    # Times differ, and with them the table's column widths.
    return "\n".join(" ".join(line.split()) for line in TIMES.sub("<t>", text).splitlines())


def test_a_run_is_the_same_as_on_its_own(resident: Resident, tmp_path: Path) -> None:
    wf = write(
        tmp_path / "wf.yaml",
        "name: same\nspec:\n  activities:\n"
        "    - name: a\n      run: echo hello\n"
        "    - name: b\n      run: exit 3\n      dependsOn: [a]\n",
    )
    there = resident.cli("run", str(wf), "--state-dir", str(tmp_path / "s1"))
    assert resident.served() == 1
    alone = resident.own("run", str(wf), "--state-dir", str(tmp_path / "s2"))
    assert there.returncode == alone.returncode == 1
    s1, s2 = tmp_path / "s1", tmp_path / "s2"
    assert comparable(there.stdout, s1) == comparable(alone.stdout, s2)
    assert comparable(there.stderr, s1) == comparable(alone.stderr, s2)
    # Bad input too: the same error, the same code.
    bad = write(tmp_path / "bad.yaml", "name: [unclosed\n")
    there, alone = resident.cli("run", str(bad)), resident.own("run", str(bad))
    assert there.returncode == alone.returncode == 2
    assert there.stderr == alone.stderr and "bad.yaml" in there.stderr
    assert resident.served() == 2


def test_activities_get_the_commands_environment_directory_and_umask(
    resident: Resident, tmp_path: Path
) -> None:
    work = tmp_path / "work dir \udcff"
    work.mkdir()
    out = tmp_path / "seen"
    write(
        work / "wf.yaml",
        "name: env\nspec:\n  activities:\n"
        f'    - name: a\n      run: \'printf "%s|%s|%s" "$MY_VAR" "$(umask)" "$TZ" > {out}\'\n',
    )
    resident.env.update(MY_VAR="from the command", TZ="Asia/Kolkata")
    done = subprocess.run(
        ["bash", "-c", 'umask 027; exec "$0" -m akoflow run wf.yaml', sys.executable],
        capture_output=True,
        text=True,
        env=resident.env,
        cwd=work,  # a relative workflow path, resolved where the command runs
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert out.read_text() == "from the command|0027|Asia/Kolkata"
    assert resident.served() == 1
    # The server's own environment never had MY_VAR: the copy took the command's.
    status = resident.status()
    assert status is not None
    server_env = Path(f"/proc/{status['pid']}/environ").read_bytes()
    assert b"MY_VAR" not in server_env


def test_secrets_stay_out_of_every_start_up_environment(tmp_path: Path) -> None:
    home = tmp_path / "home"
    res = Resident(home, resident_env(home, K8S_PROD_TOKEN="s3cr3t-token"))
    assert res.cli("resident", "start", "--idle", "2m").returncode == 0
    status = res.status()
    assert status is not None
    try:
        seen = tmp_path / "seen"
        wf = write(
            tmp_path / "wf.yaml",
            "name: sec\nspec:\n  activities:\n"
            f"    - name: a\n      run: 'cat /proc/$PPID/environ > {seen}; env >> {seen}; "
            f"ps -o ppid= -p $PPID > {tmp_path / 'ppid'}; sleep 1'\n",
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", "akoflow", "run", str(wf)],
            env=res.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_for(lambda: (tmp_path / "ppid").exists() and (tmp_path / "ppid").read_text().strip())
        server_block = Path(f"/proc/{status['pid']}/environ").read_bytes()
        server = int(status["pid"])  # type: ignore[call-overload]
        children = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _ppid(p) == server]
        assert any(_is_copy(p, server) for p in children), "the command's copy is not running"
        # The copy's block, and the spawners' the server started ahead (empty).
        blocks = [server_block] + [(p / "environ").read_bytes() for p in children]
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert all(b"s3cr3t-token" not in block for block in blocks)
        assert b"s3cr3t-token" not in seen.read_bytes()  # the activity's view
        assert res.served() == 1
    finally:
        res.cli("resident", "stop")


def _ppid(proc_dir: Path) -> int:
    try:
        return int((proc_dir / "stat").read_bytes().rsplit(b")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1


def _is_copy(proc_dir: Path, server: int) -> bool:
    """A copy of the server (not one of the local spawners it starts ahead for copies)."""
    try:
        return (
            _ppid(proc_dir) == server
            and b"akoflow.resident.server" in (proc_dir / "cmdline").read_bytes()
        )
    except OSError:
        return False


def _copy_of(resident: Resident) -> int:
    status = resident.status()
    assert status is not None
    found: list[int] = []

    def one() -> bool:
        server = int(status["pid"])  # type: ignore[call-overload]
        found[:] = [
            int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _is_copy(p, server)
        ]
        return bool(found)

    wait_for(one)
    return found[0]


def long_run(tmp_path: Path, n: int = 3) -> tuple[Path, Path]:
    """``n`` activities, each appending its name to a file once and sleeping, one at a time."""
    side = tmp_path / "side"
    side.mkdir()
    acts = "".join(
        f"    - name: a{i}\n      run: 'echo a{i} >> {side}/a{i}; sleep 1.5'\n"
        + (f"      dependsOn: [a{i - 1}]\n" if i else "")
        for i in range(n)
    )
    return write(tmp_path / "long.yaml", f"name: long\nspec:\n  activities:\n{acts}"), side


def running(resident: Resident, wf: Path, side: Path) -> subprocess.Popen[str]:
    """``akoflow run wf`` served by ``resident``, in the background, once its first activity
    runs (:func:`long_run`); its stderr a pipe."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "akoflow", "run", str(wf)],
        env=resident.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(lambda: (side / "a0").exists())
    return proc


def runs_at_once(
    env: dict[str, str], wf: Path, tmp_path: Path, count: int
) -> list[subprocess.Popen[str]]:
    """``count`` runs of ``wf`` started together, each with a state dir of its own."""
    return [
        subprocess.Popen(
            [sys.executable, "-m", "akoflow", "run", str(wf), "--state-dir", f"{tmp_path}/s{i}"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(count)
    ]


def _interrupted(env: dict[str, str], tmp_path: Path) -> tuple[int, str, dict[str, str]]:
    """A run interrupted (SIGINT) while its first activity runs: exit code, stderr, states."""
    tmp_path.mkdir()
    wf, side = long_run(tmp_path)
    state = tmp_path / "state"
    proc = subprocess.Popen(
        [sys.executable, "-m", "akoflow", "run", str(wf), "--state-dir", str(state)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(lambda: (side / "a0").exists())
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    status = subprocess.run(
        [sys.executable, "-m", "akoflow", "status", "1", "--json", "--state-dir", str(state)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    run = json.loads(status.stdout)
    return proc.returncode, err, {a["name"]: a["state"] for a in run["activities"]}


def test_ctrl_c_reaches_the_run(resident: Resident, tmp_path: Path) -> None:
    there = _interrupted(resident.env, tmp_path / "there")
    assert resident.served() == 2  # the run and the status
    alone = _interrupted({**resident.env, "AKOFLOW_RESIDENT": "0"}, tmp_path / "alone")
    assert there[0] == alone[0] != 0
    assert there[2] == alone[2]
    assert there[2]["a0"] == "cancelled", there
    assert "cancelling" in there[1]


def test_a_killed_command_takes_its_engine_with_it_and_resume_runs_each_once(
    resident: Resident, tmp_path: Path
) -> None:
    wf, side = long_run(tmp_path)
    proc = running(resident, wf, side)
    copy = _copy_of(resident)
    proc.kill()
    proc.communicate()
    wait_for(lambda: not Path(f"/proc/{copy}").exists() or _ppid(Path(f"/proc/{copy}")) == -1)
    done = resident.cli("resume", "1")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in side.iterdir()) == ["a0", "a1", "a2"]
    assert all(p.read_text() == f"{p.name}\n" for p in side.iterdir())  # once each


def test_a_killed_server_takes_its_copies_with_it(resident: Resident, tmp_path: Path) -> None:
    wf, side = long_run(tmp_path)
    proc = running(resident, wf, side)
    copy = _copy_of(resident)
    status = resident.status()
    assert status is not None
    os.kill(int(status["pid"]), signal.SIGKILL)  # type: ignore[call-overload]
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGKILL
    assert "resident engine stopped during the command" in err
    assert (
        not Path(f"/proc/{copy}/stat").exists() or b" Z " in Path(f"/proc/{copy}/stat").read_bytes()
    )
    # The next command finds no server (its socket is left behind): it runs on its own.
    done = resident.cli("resume", "1")
    assert done.returncode == 0, done.stderr
    assert all(p.read_text() == f"{p.name}\n" for p in side.iterdir())
    assert sorted(p.name for p in side.iterdir()) == ["a0", "a1", "a2"]


def test_a_command_unlike_the_server_runs_on_its_own(resident: Resident, tmp_path: Path) -> None:
    wf = write(
        tmp_path / "wf.yaml", "name: one\nspec:\n  activities:\n    - name: a\n      run: 'true'\n"
    )
    # A lower limit of open files than the server's: a copy of the server would not have it.
    done = subprocess.run(
        ["bash", "-c", 'ulimit -n 512; exec "$0" -m akoflow run "$1"', sys.executable, str(wf)],
        capture_output=True,
        text=True,
        env=resident.env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert resident.served() == 0
    assert "refused a command: the command's process differs in limits" in resident.log
    said = resident.cli("resident", "status")
    assert (
        "1 commands ran on their own; the last because the command's process differs in "
        "limits" in " ".join(said.stdout.split())
    )


def test_changed_code_stops_the_server(tmp_path: Path) -> None:
    """A server runs the code it imported: once a source file changes, it refuses (the
    command runs the new code on its own, saying why) and stops."""
    src = tmp_path / "src"
    shutil.copytree(
        REPO_SRC / "akoflow", src / "akoflow", ignore=shutil.ignore_patterns("__pycache__")
    )
    home = tmp_path / "home"
    res = Resident(home, resident_env(home, PYTHONPATH=str(src)))
    assert res.cli("resident", "start", "--idle", "2m").returncode == 0
    status = res.status()
    assert status is not None
    wf = write(
        tmp_path / "wf.yaml", "name: one\nspec:\n  activities:\n    - name: a\n      run: 'true'\n"
    )
    assert res.cli("run", str(wf)).returncode == 0
    assert res.served() == 1
    changed = src / "akoflow" / "humanize.py"
    changed.write_text(changed.read_text() + "\n# changed\n")
    done = res.cli("run", str(wf))
    assert done.returncode == 0, done.stderr
    assert "the resident engine ran older code and stopped" in done.stderr
    wait_for(lambda: res.status() is None)
    pid = int(status["pid"])  # type: ignore[call-overload]
    wait_for(
        lambda: (
            not Path(f"/proc/{pid}").exists() or b") Z" in Path(f"/proc/{pid}/stat").read_bytes()
        )
    )


def test_stop_lets_running_commands_end(resident: Resident, tmp_path: Path) -> None:
    wf, side = long_run(tmp_path, n=2)
    proc = running(resident, wf, side)
    stopped = resident.cli("resident", "stop", "--wait", "0")
    assert stopped.returncode == 0 and "takes no new commands" in stopped.stderr
    # A new command meanwhile runs on its own.
    one = write(
        tmp_path / "one.yaml", "name: one\nspec:\n  activities:\n    - name: a\n      run: 'true'\n"
    )
    assert resident.cli("run", str(one)).returncode == 0
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert (side / "a1").read_text() == "a1\n"
    wait_for(lambda: resident.status() is None)


def test_it_stops_when_idle(tmp_path: Path) -> None:
    home = tmp_path / "home"
    res = Resident(home, resident_env(home))
    started = res.cli("resident", "start", "--idle", "1s")
    assert started.returncode == 0, started.stderr
    status = res.status()
    assert status is not None
    pid = int(status["pid"])  # type: ignore[call-overload]
    wait_for(
        lambda: (
            not Path(f"/proc/{pid}").exists() or b") Z" in Path(f"/proc/{pid}/stat").read_bytes()
        )
    )
    assert not (home / "resident" / "engine.sock").exists()
    assert "idle for 1 s: stopping" in res.log


def test_start_twice_and_stop_with_none_say_so(resident: Resident) -> None:
    again = resident.cli("resident", "start")
    assert again.returncode == 1 and "runs already" in again.stderr
    assert resident.cli("resident", "stop").returncode == 0
    none = resident.cli("resident", "stop")
    assert none.returncode == 1 and "no resident engine" in none.stderr
    assert resident.cli("resident", "status").returncode == 1
    mode = (resident.home / "resident").stat().st_mode & 0o777
    assert mode == 0o700


def test_two_commands_at_once(resident: Resident, tmp_path: Path) -> None:
    wf, _ = long_run(tmp_path, n=1)
    procs = runs_at_once(resident.env, wf, tmp_path, 2)
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    assert resident.served() == 2
    assert (tmp_path / "side" / "a0").read_text() == "a0\na0\n"


def test_a_command_that_says_nothing_holds_no_other(resident: Resident, tmp_path: Path) -> None:
    import socket

    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    silent.connect(str(resident.home / "resident" / "engine.sock"))
    try:
        silent.send(b"\x00\x00")  # half a frame's length, then nothing
        one = write(
            tmp_path / "one.yaml",
            "name: one\nspec:\n  activities:\n    - name: a\n      run: 'true'\n",
        )
        done = resident.cli("run", str(one), timeout=5)
        assert done.returncode == 0, done.stderr
        assert resident.served() == 1
    finally:
        silent.close()


def test_ctrl_c_reaches_the_run_while_the_server_is_stopped(
    resident: Resident, tmp_path: Path
) -> None:
    """The command signals its copy itself (a pidfd the server handed over): a server that is
    stopped (SIGSTOP) or hung cannot swallow a Ctrl-C. Its exit status then never comes: the
    command says so and exits 1, never 0."""
    wf, side = long_run(tmp_path)
    proc = running(resident, wf, side)
    copy = _copy_of(resident)
    status = resident.status()
    assert status is not None
    server = int(status["pid"])  # type: ignore[call-overload]
    os.kill(server, signal.SIGSTOP)
    try:
        proc.send_signal(signal.SIGINT)
        wait_for(lambda: b") Z" in Path(f"/proc/{copy}/stat").read_bytes(), timeout=30)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 1
        assert "did not say how" in err
    finally:
        os.kill(server, signal.SIGCONT)
    run = json.loads(resident.cli("status", "1", "--json").stdout)
    assert {a["name"]: a["state"] for a in run["activities"]}["a0"] == "cancelled"
    assert not (side / "a1").exists()


def test_a_command_of_another_version_stops_the_server(resident: Resident, tmp_path: Path) -> None:
    """An upgrade while a server runs: the new command's frames begin otherwise. The server
    cannot serve it (nor answer `resident status` or `stop`): it stops at once, and the
    command runs on its own."""
    import socket

    status = resident.status()
    assert status is not None
    newer = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    newer.connect(str(resident.home / "resident" / "engine.sock"))
    try:
        newer.sendall(b"AKR\x02" + (3).to_bytes(4, "big") + b"new")
        assert newer.recv(16) == b""  # dropped
    finally:
        newer.close()
    wait_for(lambda: resident.status() is None)
    assert not (resident.home / "resident" / "engine.sock").exists()
    assert "a command of another version" in resident.log
    again = resident.cli("resident", "start", "--idle", "2m")  # the new one starts at once
    assert again.returncode == 0, again.stderr


def _servers_of(home: Path) -> list[int]:
    """Resident servers listening for ``home`` (not their copies, whose parent is one)."""
    mine = [
        int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _is_server_of(p, home)
    ]
    return [pid for pid in mine if _ppid(Path(f"/proc/{pid}")) not in mine]


def _is_server_of(proc_dir: Path, home: Path) -> bool:
    try:
        argv = (proc_dir / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"akoflow.resident.server" in argv and str(home / "resident").encode() in argv


def test_auto_starts_one_server_for_the_commands_that_follow(tmp_path: Path) -> None:
    """AKOFLOW_RESIDENT=auto: a command with no server runs on its own and starts one in the
    background; the next is served. Several such commands at once start one server."""
    home = tmp_path / "home"
    res = Resident(home, resident_env(home, AKOFLOW_RESIDENT="auto", AKOFLOW_RESIDENT_IDLE="2m"))
    one = write(
        tmp_path / "one.yaml", "name: one\nspec:\n  activities:\n    - name: a\n      run: 'true'\n"
    )
    try:
        for proc in runs_at_once(res.env, one, tmp_path, 3):
            _, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
        wait_for(lambda: res.status() is not None)
        time.sleep(1.0)  # any other server started meanwhile would be up by now
        assert len(_servers_of(home)) == 1, _servers_of(home)
        assert res.served() == 0
        done = res.cli("run", str(one), "--state-dir", str(tmp_path / "s9"))
        assert done.returncode == 0, done.stderr
        assert res.served() == 1
    finally:
        res.cli("resident", "stop")
        for pid in _servers_of(home):
            os.kill(pid, signal.SIGKILL)


def test_a_stopped_server_holds_no_command_and_runs_nothing_twice(
    resident: Resident, tmp_path: Path
) -> None:
    """A server stopped (SIGSTOP) or hung when a command comes: the command waits for its
    answer 10 s, then runs on its own, and ends (its descriptors were not in flight: a pipe
    reading its output ends too). The server, going on, finds the command gone: no copy."""
    side = tmp_path / "side"
    wf = write(
        tmp_path / "wf.yaml",
        f"name: once\nspec:\n  activities:\n    - name: a\n      run: 'echo a >> {side}'\n",
    )
    status = resident.status()
    assert status is not None
    server = int(status["pid"])  # type: ignore[call-overload]
    os.kill(server, signal.SIGSTOP)
    try:
        started = time.monotonic()
        done = resident.cli("run", str(wf), timeout=60)
        waited = time.monotonic() - started
    finally:
        os.kill(server, signal.SIGCONT)
    assert done.returncode == 0, done.stderr
    assert "did not answer in 10 s" in done.stderr and waited < 50
    time.sleep(1.0)  # the server goes on meanwhile
    assert resident.served() == 0
    assert side.read_text() == "a\n"  # once
    again = resident.cli("run", str(wf), "--new", "--no-cache")  # and it serves again
    assert again.returncode == 0, again.stderr
    assert resident.served() == 1
    assert side.read_text() == "a\na\n"
