"""A resident engine (akoflow.resident) under a careless user: closed standard streams, usage
errors, a command killed while its copy runs. What the command prints, exits with and leaves
behind is what it would on its own.

Real processes throughout: the server, its copies, the command, the activities."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import wait_for
from tests.e2e.test_resident import REPO_SRC, Resident, resident, resident_env, write

__all__ = ["resident"]  # the fixture, used by name

CONSOLE_SCRIPT = Path(sys.executable).parent / "akoflow"


@pytest.mark.parametrize("how", ["module", "script"])
def test_usage_errors_name_the_command(resident: Resident, how: str) -> None:
    """click names the program from ``__main__``: the copy's is the server's module, which
    made every usage line say ``python -m akoflow.resident.akoflow``."""
    # scripts/setup installs the package: its console script is beside the interpreter
    assert how == "module" or CONSOLE_SCRIPT.exists(), f"no {CONSOLE_SCRIPT}"
    start = [sys.executable, "-m", "akoflow"] if how == "module" else [str(CONSOLE_SCRIPT)]
    command = [*start, "run", "--no-such-option", "wf.yaml"]

    def ran(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)

    there, alone = ran(resident.env), ran({**resident.env, "AKOFLOW_RESIDENT": "0"})
    assert resident.served() == 1
    assert there.returncode == alone.returncode == 2
    assert there.stderr == alone.stderr
    assert "akoflow.resident" not in there.stderr


def _copies(server: int) -> list[int]:
    found = []
    for p in Path("/proc").iterdir():
        try:
            if p.name.isdigit() and b"akoflow.resident.server" in (p / "cmdline").read_bytes():
                stat = (p / "stat").read_bytes().rsplit(b")", 1)[-1].split()
                if int(stat[1]) == server and stat[0] != b"Z":
                    found.append(int(p.name))
        except OSError:
            pass
    return found


def test_a_killed_command_with_stdout_closed_takes_its_copy(
    resident: Resident, tmp_path: Path
) -> None:
    """With its stdout closed the command's connection to the server was its fd 1, handed to
    the copy as its stdout: the copy held the connection open, so killing the command did not
    end the copy and the run went on without it."""
    side = tmp_path / "side"
    side.mkdir()
    wf = write(
        tmp_path / "wf.yaml",
        "name: closed\nspec:\n  activities:\n"
        f"    - name: a\n      run: 'echo a >> {side}/a; sleep 2'\n"
        f"    - name: b\n      run: 'echo b >> {side}/b'\n      dependsOn: [a]\n",
    )
    status = resident.status()
    assert status is not None
    server = int(status["pid"])  # type: ignore[call-overload]
    proc = subprocess.Popen(
        ["sh", "-c", 'exec "$@" >&-', "sh", sys.executable, "-m", "akoflow", "run", str(wf)]
        + ["--state-dir", str(tmp_path / "state")],
        env=resident.env,
        stderr=subprocess.DEVNULL,
    )
    wait_for(lambda: (side / "a").exists())
    assert _copies(server), "the command's copy is not running"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    wait_for(lambda: not _copies(server), timeout=10)
    time.sleep(2.5)  # a's sleep is over: b would have run by now
    assert not (side / "b").exists()


def test_a_stopped_engine_with_stderr_closed_still_runs_the_command(tmp_path: Path) -> None:
    """The note that the engine's code changed went to sys.stderr, None with fd 2 closed: the
    command failed (exit 1) with nothing run."""
    src = tmp_path / "src"
    shutil.copytree(
        REPO_SRC / "akoflow", src / "akoflow", ignore=shutil.ignore_patterns("__pycache__")
    )
    home = tmp_path / "home"
    res = Resident(home, resident_env(home, PYTHONPATH=str(src)))
    assert res.cli("resident", "start").returncode == 0
    status = res.status()
    assert status is not None
    try:
        side = tmp_path / "side"
        wf = write(
            tmp_path / "wf.yaml",
            f"name: one\nspec:\n  activities:\n    - name: a\n      run: 'echo a >> {side}'\n",
        )
        changed = src / "akoflow" / "humanize.py"
        changed.write_text(changed.read_text() + "\n# changed\n")
        done = subprocess.run(
            ["sh", "-c", 'exec "$@" 2>&-', "sh", sys.executable, "-m", "akoflow", "run", str(wf)],
            env=res.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0
        assert side.read_text() == "a\n"
    finally:
        res.cli("resident", "stop", "--wait", "5")
        try:
            os.kill(int(status["pid"]), signal.SIGKILL)  # type: ignore[call-overload]
        except ProcessLookupError:
            pass


def test_a_copy_killed_by_sigkill_kills_its_command_the_same_way(
    resident: Resident, tmp_path: Path
) -> None:
    """A copy that died of SIGKILL: the command dies of it too (as the engine on its own
    would), not an exit with code 137 (signal.signal(SIGKILL) fails, and took os.kill with
    it)."""
    side = tmp_path / "side"
    side.mkdir()
    wf = write(
        tmp_path / "wf.yaml",
        "name: k\nspec:\n  activities:\n"
        f"    - name: a\n      run: 'echo a >> {side}/a; sleep 30'\n",
    )
    status = resident.status()
    assert status is not None
    server = int(status["pid"])  # type: ignore[call-overload]
    proc = subprocess.Popen(
        [sys.executable, "-m", "akoflow", "run", str(wf), "--state-dir", str(tmp_path / "s")],
        env=resident.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for(lambda: (side / "a").exists())
    copies = _copies(server)
    assert len(copies) == 1
    os.kill(copies[0], signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL


def _two_steps(tmp_path: Path) -> tuple[Path, Path]:
    """a sleeps 1 s, then b appends a line to a file (outside the state dir)."""
    side = tmp_path / "side"
    wf = write(
        tmp_path / "wf.yaml",
        "name: two\nspec:\n  activities:\n    - name: a\n      run: 'sleep 1'\n"
        f"    - name: b\n      run: 'echo b >> {side}'\n      dependsOn: [a]\n",
    )
    return wf, side


@pytest.mark.parametrize("alone", [False, True])
def test_ctrl_z_stops_the_run_with_the_command(
    resident: Resident, tmp_path: Path, alone: bool
) -> None:
    """SIGTSTP stopped the command but not its copy: the run went on (the next activity
    started, output went on) under a shell that said the job was stopped."""
    wf, side = _two_steps(tmp_path)
    env = {**resident.env, "AKOFLOW_RESIDENT": "0"} if alone else resident.env
    proc = subprocess.Popen(
        [sys.executable, "-m", "akoflow", "run", str(wf), "--state-dir", str(tmp_path / "s")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        # A group of its own in this session: never orphaned, whatever started the tests (the
        # kernel drops SIGTSTP sent to an orphaned group: nothing would stop, as in CI).
        process_group=0,
    )
    try:
        time.sleep(0.5)  # a runs
        proc.send_signal(signal.SIGTSTP)
        time.sleep(2.5)  # a ended long ago
        assert not side.exists()
        proc.send_signal(signal.SIGCONT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.returncode is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert side.read_text() == "b\n"
    assert resident.served() == (0 if alone else 1)


@pytest.mark.parametrize("alone", [False, True])
def test_signals_the_command_ignores_are_ignored_by_its_copy(
    resident: Resident, tmp_path: Path, alone: bool
) -> None:
    """A command started ignoring SIGUSR2 and SIGQUIT (``trap ''``, nohup, a script's
    background job) ignores them on its own: its copy died of them."""
    wf, side = _two_steps(tmp_path)
    env = {**resident.env, "AKOFLOW_RESIDENT": "0"} if alone else resident.env
    proc = subprocess.Popen(
        ["sh", "-c", "trap '' USR2 QUIT; exec \"$@\"", "sh", sys.executable, "-m", "akoflow"]
        + ["run", str(wf), "--state-dir", str(tmp_path / "s")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(0.5)
    proc.send_signal(signal.SIGUSR2)
    proc.send_signal(signal.SIGQUIT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert side.read_text() == "b\n"
    assert resident.served() == (0 if alone else 1)


FAKE_SERVER = """
import os, socket, sys
os.setgid(65534)
os.setgroups([])
os.setuid(65534)
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.bind(sys.argv[1])
os.chmod(sys.argv[1], 0o777)
sock.listen(1)
print("ready", flush=True)
conn, _ = sock.accept()
conn.settimeout(10)
try:
    got = conn.recv(1 << 20)
except OSError:
    got = b""
print("got", len(got), flush=True)
if got:  # a server that lies: a success for a command it never ran
    body = b'{"pid":1}'
    pidfd = os.pidfd_open(os.getpid())
    socket.send_fds(conn, [len(body).to_bytes(4, "big") + body], [pidfd])
    body = b'{"exit":0}'
    conn.sendall(len(body).to_bytes(4, "big") + body)
"""


def test_another_users_server_is_not_trusted(tmp_path: Path) -> None:
    """A state dir others can write to (a shared project's) can hold another user's socket:
    the command gave it its environment (secrets) and streams, and took its word for the
    exit code. It runs on its own instead."""
    assert os.geteuid() == 0, "starting another user's server needs root (CI runs as root)"
    shared = Path(tempfile.mkdtemp(prefix="akoflow-shared-"))  # pytest's dirs are private
    os.chmod(shared, 0o755)
    home = shared / "home"
    (home / "resident").mkdir(parents=True)
    os.chmod(home, 0o777)
    os.chmod(home / "resident", 0o777)
    fake = subprocess.Popen(
        [sys.executable, "-c", FAKE_SERVER, str(home / "resident" / "engine.sock")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert fake.stdout is not None
        assert fake.stdout.readline() == "ready\n"
        side = tmp_path / "side"
        wf = write(
            tmp_path / "wf.yaml",
            "name: one\nspec:\n  activities:\n"
            f"    - name: a\n      run: 'echo a >> {side}; exit 4'\n",
        )
        env = {**resident_env(home), "K8S_X_TOKEN": "s3cr3t"}
        done = subprocess.run(
            [sys.executable, "-m", "akoflow", "run", str(wf), "--state-dir", str(tmp_path / "s")],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 1, done.stderr
        assert side.read_text() == "a\n"
        out, _ = fake.communicate(timeout=30)
        assert out == "got 0\n"
    finally:
        if fake.poll() is None:
            fake.kill()
            fake.wait()
        shutil.rmtree(shared)


@pytest.mark.parametrize("name", ["LD_PRELOAD", "LD_BIND_NOW", "MALLOC_ARENA_MAX", "OPENSSL_CONF"])
def test_a_command_with_other_loader_variables_runs_on_its_own(
    resident: Resident, tmp_path: Path, name: str
) -> None:
    """Variables the dynamic loader, the C library or OpenSSL read as a process starts were
    not compared: a command run with LD_PRELOAD (a library that shifts the clock, say) ran in
    a copy that never loaded it, and recorded other times than on its own."""
    value = {
        "LD_PRELOAD": "libc.so.6",  # loaded anyway: harmless
        "LD_BIND_NOW": "1",
        "MALLOC_ARENA_MAX": "2",
        "OPENSSL_CONF": "/dev/null",
    }[name]
    wf = write(
        tmp_path / "wf.yaml", "name: one\nspec:\n  activities:\n    - name: a\n      run: 'true'\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "akoflow", "run", str(wf), "--state-dir", str(tmp_path / "s")],
        env={**resident.env, name: value},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert resident.served() == 0
    status = resident.status()
    assert status is not None
    assert "startup_env" in str(status.get("last_refusal"))


def test_a_relative_state_dir_is_the_commands(tmp_path: Path) -> None:
    """The server runs in /: with AKOFLOW_HOME=relative it listened under /relative, `start`
    said it did not answer (exit 1) and left it running; commands ran on their own."""
    env = resident_env(Path("rel-home"))
    assert env["AKOFLOW_HOME"] == "rel-home"
    res = Resident(tmp_path / "rel-home", env)
    started = res.cli("resident", "start", "--idle", "2m", cwd=tmp_path)
    try:
        assert started.returncode == 0, started.stderr
        assert (tmp_path / "rel-home" / "resident" / "engine.sock").exists()
        wf = write(
            tmp_path / "wf.yaml",
            "name: one\nspec:\n  activities:\n    - name: a\n      run: 'true'\n",
        )
        assert (
            res.cli("run", str(wf), "--state-dir", str(tmp_path / "s"), cwd=tmp_path).returncode
            == 0
        )
        status = res.cli("resident", "status", "--json", cwd=tmp_path)
        assert '"served": 1' in status.stdout
    finally:
        res.cli("resident", "stop", "--wait", "5", cwd=tmp_path)


@pytest.mark.parametrize("how", ["file", "state"])
def test_a_command_naming_its_own_descriptors_runs_on_its_own(
    resident: Resident, tmp_path: Path, how: str
) -> None:
    """``akoflow run <(envsubst < wf.yaml)`` names /dev/fd/63, a descriptor of the command
    that its copy does not have: the run failed (exit 2, 'No such file or directory')."""
    wf = write(
        tmp_path / "wf.yaml", "name: one\nspec:\n  activities:\n    - name: a\n      run: 'true'\n"
    )
    state = tmp_path / "state"
    state.mkdir()
    fd = os.open(wf if how == "file" else state, os.O_RDONLY)
    args = [f"/dev/fd/{fd}"] if how == "file" else [str(wf), f"--state-dir=/proc/self/fd/{fd}"]
    try:
        done = subprocess.run(
            [sys.executable, "-m", "akoflow", "run", *args],
            env=resident.env,
            capture_output=True,
            text=True,
            timeout=120,
            pass_fds=[fd],
        )
    finally:
        os.close(fd)
    assert done.returncode == 0, done.stderr
    assert resident.served() == 0


def test_a_server_killed_before_it_answers_runs_nothing_twice(
    resident: Resident, tmp_path: Path
) -> None:
    """The server forked the copy, then was held (stopped, descheduled: strace delays its
    answer here) and killed before it answered. The command, its connection closed without
    an answer, ran the workflow on its own, and the copy had run it already: twice."""
    assert shutil.which("strace"), "strace is missing: scripts/test-deps installs it"
    status = resident.status()
    assert status is not None
    server = int(status["pid"])  # type: ignore[call-overload]
    side = tmp_path / "side"
    wf = write(
        tmp_path / "wf.yaml",
        f"name: one\nspec:\n  activities:\n    - name: a\n      run: 'echo a >> {side}'\n",
    )
    holder = subprocess.Popen(
        ["strace", "-q", "-p", str(server), "-e", "trace=sendmsg"]
        + ["-e", "inject=sendmsg:delay_enter=3000000:when=1", "-o", os.devnull],
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(1.0)  # attached
        proc = subprocess.Popen(
            [sys.executable, "-m", "akoflow", "run", str(wf), "--no-cache"]
            + ["--state-dir", str(tmp_path / "s")],
            env=resident.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1.5)  # the copy forked, the answer held
        os.kill(server, signal.SIGKILL)
        assert proc.wait(timeout=60) == 0
    finally:
        holder.kill()
        holder.wait()
    assert side.read_text() == "a\n"


def test_a_state_dir_through_a_dangling_symlink_or_nowhere(tmp_path: Path) -> None:
    """AKOFLOW_HOME a symlink to a directory not made yet (a command follows it and makes
    it): `resident start` failed with a FileExistsError traceback; a state dir that cannot be
    made failed with a traceback too, not an error line."""
    link = tmp_path / "home"
    link.symlink_to(tmp_path / "elsewhere")
    res = Resident(link, resident_env(link))
    started = res.cli("resident", "start", "--idle", "2m")
    try:
        assert started.returncode == 0, started.stderr
        wf = write(
            tmp_path / "wf.yaml",
            "name: one\nspec:\n  activities:\n    - name: a\n      run: 'true'\n",
        )
        assert res.cli("run", str(wf), "--state-dir", str(tmp_path / "s")).returncode == 0
        assert res.served() == 1
    finally:
        res.cli("resident", "stop", "--wait", "5")
    blocked = tmp_path / "file"
    blocked.write_text("")
    nowhere = Resident(blocked / "home", resident_env(blocked / "home"))
    failed = nowhere.cli("resident", "start")
    assert failed.returncode == 1
    assert "Traceback" not in failed.stderr
    assert "cannot create" in failed.stderr


def test_a_server_started_ignoring_sigchld_tells_each_end(tmp_path: Path) -> None:
    """A server started by a process that ignores SIGCHLD (inherited through `resident start`,
    or AKOFLOW_RESIDENT=auto from any command) had its copies reaped by the kernel: each
    command was told its copy died of SIGKILL and died of it too, its run succeeded."""
    home = tmp_path / "home"
    res = Resident(home, resident_env(home))
    ignoring = "import os, signal, sys; signal.signal(signal.SIGCHLD, signal.SIG_IGN); "
    ignoring += "os.execv(sys.executable, [sys.executable, '-m', 'akoflow', *sys.argv[1:]])"
    started = subprocess.run(
        [sys.executable, "-c", ignoring, "resident", "start", "--idle", "2m"],
        env=res.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    try:
        assert started.returncode == 0, started.stderr
        wf = write(
            tmp_path / "wf.yaml",
            "name: one\nspec:\n  activities:\n    - name: a\n      run: 'true'\n",
        )
        done = res.cli("run", str(wf), "--state-dir", str(tmp_path / "s"))
        assert done.returncode == 0, done.stderr
        assert res.cli("status", "--state-dir", str(tmp_path / "s")).returncode == 0
        assert res.served() == 2
    finally:
        res.cli("resident", "stop", "--wait", "5")


BLOCKING = (
    "import os, signal, sys; signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGINT]); "
    "os.execv(sys.executable, [sys.executable, '-m', 'akoflow', *sys.argv[1:]])"
)


@pytest.mark.parametrize("blocked", ["server", "command"])
def test_a_blocked_signal_mask_is_compared(tmp_path: Path, blocked: str) -> None:
    """A signal mask is inherited across fork and exec: a server started with SIGINT blocked
    (AKOFLOW_RESIDENT=auto from such a process) gave each copy a run Ctrl-C could not stop
    (it ran to its end, exit 0; on its own: cancelled, exit 1). A command and a server whose
    masks differ: the command runs on its own."""
    home = tmp_path / "home"
    res = Resident(home, resident_env(home))
    start = [sys.executable, "-c", BLOCKING] if blocked == "server" else res_cli_prefix()
    started = subprocess.run(
        [*start, "resident", "start", "--idle", "2m"],
        env=res.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    try:
        assert started.returncode == 0, started.stderr
        wf = write(
            tmp_path / "wf.yaml",
            "name: one\nspec:\n  activities:\n    - name: a\n      run: 'true'\n",
        )
        command = [sys.executable, "-c", BLOCKING] if blocked == "command" else res_cli_prefix()
        done = subprocess.run(
            [*command, "run", str(wf), "--state-dir", str(tmp_path / "s")],
            env=res.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert res.served() == 0
        status = res.status()
        assert status is not None
        assert "status" in str(status.get("last_refusal"))
    finally:
        res.cli("resident", "stop", "--wait", "5")


def res_cli_prefix() -> list[str]:
    return [sys.executable, "-m", "akoflow"]


def test_an_oom_score_adjustment_is_compared(resident: Resident, tmp_path: Path) -> None:
    """`choom -n 500 akoflow run`: on its own the engine and its activities have 500 (the
    OOM killer takes them first); a copy and its activities had the server's 0."""
    wf = write(
        tmp_path / "wf.yaml",
        "name: one\nspec:\n  activities:\n"
        f"    - name: a\n      run: 'cat /proc/self/oom_score_adj > {tmp_path}/seen'\n",
    )
    adjusted = (
        "import os, sys; open('/proc/self/oom_score_adj', 'w').write('500'); "
        "os.execv(sys.executable, [sys.executable, '-m', 'akoflow', *sys.argv[1:]])"
    )
    done = subprocess.run(
        [sys.executable, "-c", adjusted, "run", str(wf), "--state-dir", str(tmp_path / "s")],
        env=resident.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "seen").read_text() == "500\n"
    assert resident.served() == 0


def test_a_personality_is_compared(resident: Resident, tmp_path: Path) -> None:
    """`setarch -R akoflow run` (no address randomisation): on its own the activities have
    that personality; a copy's activities had the server's."""
    assert shutil.which("setarch"), "setarch is missing: scripts/test-deps installs it"
    wf = write(
        tmp_path / "wf.yaml",
        "name: one\nspec:\n  activities:\n"
        f"    - name: a\n      run: 'cat /proc/self/personality > {tmp_path}/seen'\n",
    )
    done = subprocess.run(
        ["setarch", "-R", sys.executable, "-m", "akoflow", "run", str(wf)]
        + ["--state-dir", str(tmp_path / "s")],
        env=resident.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "seen").read_text() == "00040000\n"
    assert resident.served() == 0
