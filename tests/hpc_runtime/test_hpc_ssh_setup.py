"""The HPC runtime reaching its cluster the way users reach theirs, against the private SLURM
cluster and real sshds: a ``Host`` alias of an ssh config with only the specification's keys
set, a key held by a real ssh-agent, hashed known_hosts, a login node behind a bastion
(ProxyJump, or JUMP_HOST without a config file), keyboard-interactive questions answered once
on the terminal of ``akoflow run`` for a whole workflow with volumes (one login in sshd's log),
and each setup that will not heal failing at once with its reason and the fix."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from akoflow.runtimes.base import SubmitError
from akoflow.runtimes.hpc.ssh import SshLink
from akoflow.runtimes.hpc.transport import HpcMisconfigured
from akoflow.spec import Volume
from tests.conftest import cli_env
from tests.hpc_runtime.conftest import runtime_env
from tests.hpc_runtime.test_hpc_runtime import Recorder, job_spec, make, wait_finished
from tests.slurm_support.cluster import (
    BASTION_ADDR,
    HIDDEN_BASTION_ADDR,
    HIDDEN_LOGIN_ADDR,
    PARTITION,
    SlurmCluster,
    free_port,
)

BOUND = 30.0  # a wrong setup must be told within this; a hang fails the test here


def hashed_known_hosts(cluster: SlurmCluster, path: Path, *hosts: str) -> Path:
    """A known_hosts file of hashed entries (``ssh-keygen -H``) for ``hosts``."""
    kind, key = cluster.host_key.with_suffix(".pub").read_text().split()[:2]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{h} {kind} {key}\n" for h in hosts))
    subprocess.run(["ssh-keygen", "-q", "-H", "-f", str(path)], check=True, capture_output=True)
    Path(str(path) + ".old").unlink()
    assert all(line.startswith("|1|") for line in path.read_text().splitlines())
    return path


def spec_only_env(cluster: SlurmCluster, mount: str, host: str, **extra: str) -> dict[str, str]:
    """The specification's four keys (and fast polling): everything else from the config."""
    env = runtime_env(cluster, "hpc", mount, **extra)
    for key in ("PORT", "KEY_FILE", "KNOWN_HOSTS", "SSH_CONFIG_FILE"):
        env.pop(f"HPC_{key}")
    env["HPC_HOST_CLUSTER"] = host
    env["HPC_USER"] = "root"
    env["HPC_QUEUE"] = PARTITION
    return env


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A HOME of the test's own (``~/.ssh`` is where OpenSSH and the runtime look), no agent."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    os.chmod(home / ".ssh", 0o700)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    return home


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[str]:
    """A real ssh-agent on a socket of the test's own; killed by its pid."""
    sock = str(tmp_path / "agent.sock")
    out = subprocess.run(
        ["ssh-agent", "-s", "-a", sock], capture_output=True, text=True, check=True
    ).stdout
    pid = int(out.split("SSH_AGENT_PID=")[1].split(";")[0])
    try:
        yield sock
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)


def test_a_host_alias_of_the_users_ssh_config_with_only_the_spec_keys(
    slurm_cluster: SlurmCluster, home: Path, tmp_path: Path
) -> None:
    port = slurm_cluster.ssh_port
    key = home / ".ssh" / "id_cluster"
    shutil.copy(slurm_cluster.client_key, key)
    (home / ".ssh" / "config").write_text("Include config.d/*\nHost *\n  ServerAliveInterval 30\n")
    (home / ".ssh" / "config.d").mkdir()
    (home / ".ssh" / "config.d" / "cluster").write_text(
        f"Host mycluster\n  HostName 127.0.0.1\n  Port {port}\n  User root\n"
        f"  IdentityFile ~/.ssh/id_cluster\n  IdentitiesOnly yes\n"
    )
    hashed_known_hosts(slurm_cluster, home / ".ssh" / "known_hosts", f"[127.0.0.1]:{port}")
    env = spec_only_env(slurm_cluster, "mount/alias", "mycluster")
    mount = Path(env["HPC_MOUNT_PATH"])
    mount.mkdir(parents=True, exist_ok=True)
    data = tmp_path / "data" / "inputs"
    data.mkdir(parents=True)
    (data / "in.txt").write_text("through the alias\n")
    before = slurm_cluster.sshd.connections()
    events = Recorder()

    async def scenario() -> None:
        rt = make(env, events)
        await rt.start()
        try:
            health = await rt.health()
            assert health.ready, health.reason
            assert isinstance(rt._transport, SshLink)
            assert rt._transport.where == f"root@mycluster (127.0.0.1):{port}"
            job = job_spec(tmp_path, "upper", "tr a-z A-Z < staged/in.txt > staged/out.txt")
            job = dataclasses.replace(job, volumes=(Volume(local="inputs/", remote="staged"),))
            await rt.submit(job)
            outcome = await wait_finished(events, job.key)
            assert outcome.succeeded, outcome
        finally:
            await rt.stop()

    asyncio.run(scenario())
    assert (data / "out.txt").read_text() == "THROUGH THE ALIAS\n"
    assert slurm_cluster.sshd.connections() - before == 1  # commands, SFTP and both rsyncs


def test_a_key_held_by_ssh_agent_and_nothing_else(
    slurm_cluster: SlurmCluster, home: Path, agent: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = slurm_cluster.ssh_port
    (home / ".ssh" / "config").write_text(
        f"Host agentcluster\n  HostName 127.0.0.1\n  Port {port}\n"
    )
    hashed_known_hosts(slurm_cluster, home / ".ssh" / "known_hosts", f"[127.0.0.1]:{port}")
    env = spec_only_env(slurm_cluster, "mount/agent", "agentcluster")
    monkeypatch.setenv("SSH_AUTH_SOCK", agent)

    async def health() -> tuple[bool, str | None]:
        rt = make(env)
        await rt.start()
        try:
            h = await asyncio.wait_for(rt.health(), BOUND)
            return h.ready, h.reason
        finally:
            await rt.stop()

    ready, reason = asyncio.run(health())  # the agent holds nothing yet: no credential
    assert not ready and reason is not None and "authentication failed" in reason
    subprocess.run(
        ["ssh-add", "-q", str(slurm_cluster.client_key)],
        env={**os.environ, "SSH_AUTH_SOCK": agent},
        check=True,
        capture_output=True,
    )
    ready, reason = asyncio.run(health())
    assert ready, reason


def _no_direct_route(host: str) -> bool:
    try:
        with socket.create_connection((host, 22), timeout=1.0):
            return False
    except OSError:
        return True


def test_login_node_behind_a_bastion_by_proxyjump_or_jump_host(
    bastion: SlurmCluster, home: Path
) -> None:
    cluster = bastion
    assert _no_direct_route(HIDDEN_LOGIN_ADDR)  # only the bastion reaches it
    key = home / ".ssh" / "id_ed25519"  # a default identity file: no IdentityFile needed
    shutil.copy(cluster.client_key, key)
    (home / ".ssh" / "config").write_text(
        f"Host gate\n  HostName {BASTION_ADDR}\n  User root\n"
        f"Host hidden\n  HostName {HIDDEN_LOGIN_ADDR}\n  User root\n  ProxyJump gate\n"
    )
    known = hashed_known_hosts(
        cluster, home / ".ssh" / "known_hosts", BASTION_ADDR, HIDDEN_LOGIN_ADDR
    )
    via_config = spec_only_env(cluster, "mount-netns/proxyjump", "hidden")
    explicit = runtime_env(
        cluster, "hpc", "mount-netns/jumphost", HOST_CLUSTER=HIDDEN_LOGIN_ADDR, PORT="22",
        JUMP_HOST=f"root@{BASTION_ADDR}:22", KNOWN_HOSTS=str(known),
    )  # fmt: skip
    hidden, gate = cluster.hidden_login_sshd, cluster.bastion_sshd

    async def run_one(env: dict[str, str], tmp: Path) -> str:
        rt = make(env)
        await rt.start()
        try:
            health = await asyncio.wait_for(rt.health(), BOUND)
            assert health.ready, health.reason
            events = Recorder()
            rt.events = events  # type: ignore[misc]
            job = job_spec(tmp, "where", "hostname > host.where")
            await rt.submit(job)
            outcome = await wait_finished(events, job.key)
            assert outcome.succeeded, outcome
            res = await rt._run(["hostname"])
            return res.stdout.strip()
        finally:
            await rt.stop()

    for n, env in enumerate((via_config, explicit)):
        Path(env["HPC_MOUNT_PATH"]).mkdir(parents=True, exist_ok=True)
        hidden_before, gate_before = hidden.connections(), gate.connections()
        tmp = home.parent / f"run{n}"
        tmp.mkdir()
        assert asyncio.run(run_one(env, tmp)) == "login01"  # the login node's namespace
        assert (hidden.connections() - hidden_before, gate.connections() - gate_before) == (1, 1)
    # The login node saw the bastion's address, never this host's.
    assert f"from {HIDDEN_BASTION_ADDR} port" in hidden.log.read_text()


def test_keyboard_interactive_is_asked_once_for_a_workflow_with_volumes(
    slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    sshd = slurm_cluster.pam_sshd(answer="424242")
    sshd.write_config(slurm_cluster.host_key, slurm_cluster.root / "authorized_keys")
    sshd.start()
    try:
        _run_mfa_workflow(slurm_cluster, sshd.port, tmp_path)
        assert sshd.logins("keyboard-interactive/pam") == 1
        assert sshd.connections() == 1
    finally:
        sshd.stop()


def test_keyboard_interactive_is_asked_on_the_commands_terminal_when_resident(
    slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    """A resident engine's copy has no controlling terminal of its own (akoflow.resident):
    the question goes to the command's, which the command passed (akoflow.terminal)."""
    sshd = slurm_cluster.pam_sshd(answer="424242")
    sshd.write_config(slurm_cluster.host_key, slurm_cluster.root / "authorized_keys")
    sshd.start()
    home = tmp_path / "home"
    env = cli_env(AKOFLOW_HOME=str(home))
    del env["AKOFLOW_RESIDENT"]
    control = [sys.executable, "-m", "akoflow", "resident"]
    started = subprocess.run([*control, "start", "--idle", "2m"], env=env, capture_output=True)
    assert started.returncode == 0, started.stderr
    try:
        _run_mfa_workflow(slurm_cluster, sshd.port, tmp_path, resident_home=home)
        status = subprocess.run([*control, "status", "--json"], env=env, capture_output=True)
        assert json.loads(status.stdout)["served"] == 1  # the run was the resident's
        assert sshd.logins("keyboard-interactive/pam") == 1
    finally:
        subprocess.run([*control, "stop"], env=env, capture_output=True)
        sshd.stop()


def known_hosts(cluster: SlurmCluster, port: int, tmp_path: Path) -> Path:
    """A known_hosts file holding the cluster's host key for an sshd on 127.0.0.1:port."""
    known = tmp_path / "known_hosts"
    kind, key = cluster.host_key.with_suffix(".pub").read_text().split()[:2]
    known.write_text(f"[127.0.0.1]:{port} {kind} {key}\n")
    return known


def _run_mfa_workflow(
    cluster: SlurmCluster, port: int, tmp_path: Path, resident_home: Path | None = None
) -> None:
    known = known_hosts(cluster, port, tmp_path)
    env = cli_env(**runtime_env(cluster, "hpc", "mount/mfa", PORT=str(port),
                                KNOWN_HOSTS=str(known)))  # fmt: skip
    env["TERM"] = "dumb"
    if resident_home is not None:  # served by the resident engine of this state dir
        env["AKOFLOW_HOME"] = str(resident_home)
        del env["AKOFLOW_RESIDENT"]
    mount = Path(env["HPC_MOUNT_PATH"])
    mount.mkdir(parents=True, exist_ok=True)
    data = tmp_path / "data"
    (data / "inputs").mkdir(parents=True)
    (data / "inputs" / "in.txt").write_text("mfa\n")
    step = "cat staged/{src} > staged/{dst}; echo {dst} >> staged/{dst}\n"
    acts = [("a1", [], "in.txt"), ("a2", ["a1"], "a1.txt"), ("a3", ["a1"], "a1.txt"),
            ("a4", ["a2", "a3"], "a2.txt"), ("a5", ["a4"], "a4.txt")]  # fmt: skip
    text = f"name: mfa\nspec:\n  runtime: hpc\n  volumes:\n    - inputs:{mount}/staged\n"
    text += "  activities:\n"
    for name, deps, src in acts:
        text += f"    - name: {name}\n      dependsOn: {deps}\n      run: |\n"
        text += "        " + step.format(src=src, dst=f"{name}.txt")
    wf = tmp_path / "mfa.yaml"
    wf.write_text(text)
    argv = [sys.executable, "-m", "akoflow", "run", str(wf), "--data-dir", str(data),
            "--state-dir", str(tmp_path / "state")]  # fmt: skip
    started = time.monotonic()
    output, code = run_on_a_terminal(argv, env, answer=b"424242\n", question=b"Password:")
    elapsed = time.monotonic() - started
    print(f"5 activities with volumes behind keyboard-interactive: {elapsed:.1f}s")
    text_out = output.decode(errors="replace")
    assert code == 0, text_out[-3000:]
    assert text_out.count("asks for keyboard-interactive login") == 1
    assert "424242" not in text_out  # not echoed
    assert (data / "inputs" / "a5.txt").read_text() == "mfa\na1.txt\na2.txt\na4.txt\na5.txt\n"


def run_on_a_terminal(
    argv: list[str], env: dict[str, str], *, answer: bytes, question: bytes
) -> tuple[bytes, int]:
    """Run ``argv`` on a new pseudo-terminal (its controlling terminal), type ``answer`` each
    time ``question`` appears; return all it wrote and its exit status."""
    master, slave = os.openpty()

    def controlling_terminal() -> None:
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen(
        argv, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True,
        preexec_fn=controlling_terminal,
    )  # fmt: skip
    os.close(slave)
    output = b""
    answered = 0
    deadline = time.monotonic() + 180
    try:
        while time.monotonic() < deadline:
            ready = select.select([master], [], [], 0.5)[0]
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # the terminal closed: the process ended
                    break
                if not chunk:
                    break
                output += chunk
                if output.count(question) > answered:
                    answered += 1
                    os.write(master, answer)
            elif proc.poll() is not None:
                break
        else:
            raise AssertionError("akoflow run did not end in 180s:\n" + output.decode()[-3000:])
        return output, proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)


# ------------------------------------------------------------------ setups that will not heal


def wrong(env: dict[str, str], tmp_path: Path) -> tuple[str, str]:
    """What health says and what submit raises, each within BOUND seconds."""

    async def scenario() -> tuple[str, str]:
        rt = make(env)
        await rt.start()
        try:
            health = await asyncio.wait_for(rt.health(), BOUND)
            assert not health.ready
            assert isinstance(rt.misconfigured, HpcMisconfigured), health.reason
            with pytest.raises(HpcMisconfigured) as info:
                await asyncio.wait_for(rt.submit(job_spec(tmp_path, "never", "true")), BOUND)
            assert isinstance(info.value, SubmitError)  # not transient: the attempt fails
            return health.reason or "", str(info.value)
        finally:
            await rt.stop()

    return asyncio.run(scenario())


def test_wrong_setups_fail_at_once_with_the_reason_and_the_fix(
    slurm_cluster: SlurmCluster, home: Path, tmp_path: Path
) -> None:
    port = slurm_cluster.ssh_port
    (home / ".ssh" / "config").write_text(f"Host known\n  HostName 127.0.0.1\n  Port {port}\n")
    hashed_known_hosts(slurm_cluster, home / ".ssh" / "known_hosts", f"[127.0.0.1]:{port}")
    spec = spec_only_env(slurm_cluster, "mount/wrong", "known")
    not_a_key = tmp_path / "not_a_key"
    not_a_key.write_text("this is no key\n")
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    cases = {
        "no credential": (spec, "authentication failed", "HPC_KEY_FILE"),
        "a key the server refuses": (
            {**spec, "HPC_KEY_FILE": str(other)},
            "authentication failed",
            "ssh known",
        ),
        "an unreadable key": (
            {**spec, "HPC_KEY_FILE": str(tmp_path / "missing")},
            "cannot read",
            "HPC_KEY_FILE",
        ),
        "not a key": ({**spec, "HPC_KEY_FILE": str(not_a_key)}, "is not a private key", "ssh -i"),
        "an unknown host alias": (
            {**spec, "HPC_HOST_CLUSTER": "nosuchcluster"},
            "host nosuchcluster is unknown (it is no Host alias of",
            "HPC_HOST_CLUSTER",
        ),
        "no known_hosts entry": (
            {
                **spec,
                "HPC_KNOWN_HOSTS": str(tmp_path / "none"),
                "HPC_KEY_FILE": str(slurm_cluster.client_key),
            },
            "does not exist",
            "HPC_ACCEPT_NEW_HOST_KEY",
        ),  # fmt: skip
    }
    for case, (env, reason, fix) in cases.items():
        health, submit = wrong(env, tmp_path)
        assert reason in health and fix in health, (case, health)
        assert reason in submit, (case, submit)
    assert "HPC_SSHKEYPRIVK" not in str(cases)  # (no secret was set in any case)


def test_missing_sbatch_or_an_unknown_queue_is_a_setup_problem(
    slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    bare = tmp_path / "bin"
    bare.mkdir()
    (bare / "sh").symlink_to("/bin/sh")
    sshd = slurm_cluster.sshd.__class__(
        slurm_cluster.root, "sshd-nopath", "127.0.0.1", free_port(), slurm_cluster.conf,
        setenv=f"PATH={bare}",
    )  # fmt: skip
    sshd.write_config(slurm_cluster.host_key, slurm_cluster.root / "authorized_keys")
    sshd.start()
    try:
        known = known_hosts(slurm_cluster, sshd.port, tmp_path)
        env = runtime_env(slurm_cluster, "hpc", "mount/nopath", PORT=str(sshd.port),
                          KNOWN_HOSTS=str(known))  # fmt: skip
        health, submit = wrong(env, tmp_path)
        assert "sbatch, squeue, sinfo, scancel not found on the PATH of" in health
        assert "module load slurm" in health and "not found on the PATH" in submit
    finally:
        sshd.stop()
    env = runtime_env(slurm_cluster, "hpc", "mount/noqueue", QUEUE="nosuchqueue")
    health, submit = wrong(env, tmp_path)
    assert "partition nosuchqueue does not exist" in health and "HPC_QUEUE" in health
    assert "Invalid partition name" in submit and "HPC_QUEUE" in submit


def test_keyboard_interactive_without_a_terminal_fails_with_the_reason(
    slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    sshd = slurm_cluster.pam_sshd(answer="424242")
    sshd.write_config(slurm_cluster.host_key, slurm_cluster.root / "authorized_keys")
    sshd.start()
    try:
        known = known_hosts(slurm_cluster, sshd.port, tmp_path)
        env = runtime_env(slurm_cluster, "hpc", "mount/noterm", PORT=str(sshd.port),
                          KNOWN_HOSTS=str(known))  # fmt: skip
        assert not sys.stdin.isatty()  # pytest's stdin: no terminal to ask on
        health, submit = wrong(env, tmp_path)
        assert "asks keyboard-interactive questions" in health and "no terminal" in health
        assert "akoflow run" in health and "no terminal" in submit
        assert sshd.logins("keyboard-interactive/pam") == 0
    finally:
        sshd.stop()


def test_each_wrong_setup_ends_akoflow_run_with_the_reason(
    slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    """Through the CLI, without a terminal: ``akoflow run`` exits 1 with the reason on screen
    (a run that hangs is cut at BOUND seconds and fails the test)."""
    good = runtime_env(slurm_cluster, "hpc", "mount/cli-wrong")
    Path(good["HPC_MOUNT_PATH"]).mkdir(parents=True, exist_ok=True)
    empty_known = tmp_path / "empty_known_hosts"
    empty_known.write_text("")
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    cases = {
        "an unknown alias": (
            {"HPC_HOST_CLUSTER": "nosuchcluster"},
            "host nosuchcluster is unknown",
        ),
        "an unknown host key": ({"HPC_KNOWN_HOSTS": str(empty_known)}, "host key verification"),
        "a key the server refuses": ({"HPC_KEY_FILE": str(other)}, "authentication failed"),
        "a partition sinfo does not know": (
            {"HPC_QUEUE": "nosuchqueue"},
            "partition nosuchqueue does not exist",
        ),
    }
    wf = tmp_path / "one.yaml"
    wf.write_text(
        "name: one\nspec:\n  runtime: hpc\n  activities:\n    - name: a\n      run: 'true'\n"
    )
    for n, (case, (extra, reason)) in enumerate(cases.items()):
        argv = [sys.executable, "-m", "akoflow", "run", str(wf), "--state-dir",
                str(tmp_path / f"state{n}"), "--data-dir", str(tmp_path / f"data{n}")]  # fmt: skip
        started = time.monotonic()
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=BOUND, stdin=subprocess.DEVNULL,
            env=cli_env(**{**good, **extra}),
        )  # fmt: skip
        print(f"{case}: akoflow run ended in {time.monotonic() - started:.1f}s")
        shown = proc.stdout + proc.stderr
        assert proc.returncode == 1, (case, shown[-2000:])
        assert reason in shown, (case, shown[-2000:])
        assert "Traceback" not in shown, case
