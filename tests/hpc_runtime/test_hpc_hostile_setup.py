"""Hostile or broken HPC login settings, refused before anything runs.

- A host, user or jump host that could be read as an option (a leading ``-``, blanks, control
  characters), whether set as ``{NAME}_*`` or coming from the ssh config (``HostName``,
  ``User``, ``ProxyJump``): a settings error naming the variable, or ``HpcMisconfigured``
  naming the config, before any ProxyCommand or login is started.
- A private key that is no key (``/etc/shadow``, a directory, a missing file, a public key,
  garbage base64, an encrypted key without its passphrase): ``akoflow runtimes check`` fails
  at its settings step (the key parsed offline) and never prints what the file holds; the
  runtime is misconfigured with the reason.
- ``KEY_FILE`` is a path, shown as such in every view of the settings; the key itself and
  passwords never are.
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from akoflow.config import RuntimeConfig
from akoflow.runtimes.hpc.settings import SettingsError, read_settings
from akoflow.runtimes.hpc.transport import HpcMisconfigured
from tests.conftest import cli_env
from tests.hpc_runtime.test_hpc_runtime import job_spec, make
from tests.server.conftest import API, Server, start_server  # noqa: F401  (fixture)

PRIVATE_KEY = asyncssh.generate_private_key("ssh-ed25519").export_private_key()


def base_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A runtime ``hpc`` whose login node nobody runs (nothing here may get that far)."""
    key = tmp_path / "id_good"
    if not key.exists():
        key.write_bytes(PRIVATE_KEY)
    env = {
        "HPC_HOST_CLUSTER": "127.0.0.1", "HPC_PORT": "9", "HPC_USER": "me",
        "HPC_MOUNT_PATH": "/scratch/me", "HPC_KEY_FILE": str(key),
        "HPC_KNOWN_HOSTS": str(tmp_path / "known_hosts"), "HPC_SSH_CONFIG_FILE": "none",
        "HPC_CONNECT_TIMEOUT": "5",
    }  # fmt: skip
    env.update({f"HPC_{k}": v for k, v in extra.items()})
    return env


def health_and_submit(env: dict[str, str], tmp_path: Path) -> tuple[str, str]:
    """The runtime's health reason (misconfigured) and what submitting to it raises."""

    async def scenario() -> tuple[str, str]:
        rt = make(env)
        await rt.start()
        try:
            health = await asyncio.wait_for(rt.health(), 30)
            assert not health.ready and health.misconfigured, health
            assert isinstance(rt.misconfigured, HpcMisconfigured)
            with pytest.raises(HpcMisconfigured) as info:
                await asyncio.wait_for(rt.submit(job_spec(tmp_path, "never", "true")), 30)
            return health.reason or "", str(info.value)
        finally:
            await rt.stop()

    return asyncio.run(scenario())


def check(env: dict[str, str]) -> tuple[int, dict[str, Any], str]:
    proc = subprocess.run(
        [sys.executable, "-m", "akoflow", "runtimes", "check", "hpc", "--json"],
        capture_output=True, text=True, env=cli_env(**env), timeout=60,
    )  # fmt: skip
    return proc.returncode, json.loads(proc.stdout), proc.stdout + proc.stderr


# ------------------------------------------------------------------ option-like names


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("HOST_CLUSTER", "-oProxyCommand", "HPC_HOST_CLUSTER starts with '-'"),
        ("HOST_CLUSTER", "login\tnode", "HPC_HOST_CLUSTER must be a host name"),
        ("HOST_CLUSTER", "login\x1b[2J", "HPC_HOST_CLUSTER must be a host name"),
        ("USER", "-oProxyCommand=id", "HPC_USER starts with '-'"),
        ("USER", "me\nroot", "HPC_USER is not a valid user name"),
        ("JUMP_HOST", "-oProxyCommand", "HPC_JUMP_HOST has a user or host starting with '-'"),
        ("JUMP_HOST", "-l@gate", "HPC_JUMP_HOST has a user or host starting with '-'"),
        ("JUMP_HOST", "gate,-x:22", "HPC_JUMP_HOST has a user or host starting with '-'"),
        ("JUMP_HOST", "gate, other", "HPC_JUMP_HOST must be [USER@]HOST[:PORT]"),
        ("JUMP_HOST", "ga\x00te", "HPC_JUMP_HOST must be [USER@]HOST[:PORT]"),
    ],
)
def test_option_like_settings_are_refused_naming_the_variable(
    key: str, value: str, message: str, tmp_path: Path
) -> None:
    env = base_env(tmp_path, **{key: value})
    with pytest.raises(SettingsError) as info:
        read_settings(RuntimeConfig.from_env("hpc", env))
    assert str(info.value).startswith(message), info.value


def test_an_option_like_jump_host_fails_the_runtime_and_the_checks_settings_step(
    tmp_path: Path,
) -> None:
    env = base_env(tmp_path, JUMP_HOST="-oProxyCommand")
    health, submit = health_and_submit(env, tmp_path)
    assert "HPC_JUMP_HOST has a user or host starting with '-'" in health
    assert "use [USER@]HOST[:PORT]" in health
    assert "HPC_JUMP_HOST" in submit and "fix the setting" in submit
    code, report, _ = check(env)
    assert code == 1
    assert [(s["name"], s["status"]) for s in report["steps"]] == [("settings", "failed")]
    assert "HPC_JUMP_HOST" in report["steps"][0]["detail"]


@pytest.mark.parametrize(
    ("config", "named"),
    [
        ("Host evil\n  HostName -oProxyCommand=x\n", "the ssh host '-oProxyCommand=x'"),
        ("Host evil\n  HostName 127.0.0.1\n  User -oProxyCommand=x\n", "the ssh user"),
        ("Host evil\n  HostName 127.0.0.1\n  ProxyJump -oProxyCommand=x\n", "the ssh jump host"),
    ],
)
def test_option_like_names_from_the_ssh_config_stop_before_anything_runs(
    config: str, named: str, tmp_path: Path
) -> None:
    marker = tmp_path / "proxy-command-ran"
    snippet = config + f"  ProxyCommand touch {marker}\n"
    env = base_env(
        tmp_path, HOST_CLUSTER="evil", SSHCONFIG=base64.b64encode(snippet.encode()).decode()
    )
    del env["HPC_USER"], env["HPC_PORT"]  # the config's own
    health, submit = health_and_submit(env, tmp_path)
    assert named in health and "starts with '-'" in health, health
    assert "of the ssh config (" in health and "ssh -G evil" in health, health
    assert named in submit
    assert not marker.exists()  # no ProxyCommand started, no login tried


# ------------------------------------------------------------------ keys that are no keys


def encrypted_key(tmp_path: Path) -> Path:
    path = tmp_path / "id_encrypted"
    key = asyncssh.generate_private_key("ssh-ed25519")
    path.write_bytes(key.export_private_key("pkcs8-pem", passphrase="right"))
    return path


def test_a_key_file_or_key_data_that_is_no_key_fails_the_settings_step(tmp_path: Path) -> None:
    shadow = Path("/etc/shadow").read_text(errors="replace").splitlines()
    secret_lines = [line for line in shadow if line.count(":") >= 2 and len(line) > 12]
    public = tmp_path / "id.pub"
    public.write_bytes(asyncssh.import_private_key(PRIVATE_KEY).export_public_key())
    garbage = base64.b64encode(b"-----BEGIN OPENSSH PRIVATE KEY-----\nnot-a-key\n").decode()
    cases = {
        "/etc/shadow": (
            {"KEY_FILE": "/etc/shadow"},
            "HPC_KEY_FILE /etc/shadow is not a private key",
        ),
        "a directory": ({"KEY_FILE": str(tmp_path)}, f"HPC_KEY_FILE {tmp_path} is a directory"),
        "a missing file": (
            {"KEY_FILE": str(tmp_path / "missing")},
            f"HPC_KEY_FILE cannot read {tmp_path / 'missing'}: No such file",
        ),
        "a public key": ({"KEY_FILE": str(public)}, "is not a private key"),
        "garbage key data": ({"SSHKEYPRIVK": garbage}, "HPC_SSHKEYPRIVK is not a private key"),
        "no passphrase": (
            {"KEY_FILE": str(encrypted_key(tmp_path))},
            "is encrypted: set HPC_KEY_PASSPHRASE to its passphrase",
        ),
        "a wrong passphrase": (
            {"KEY_FILE": str(encrypted_key(tmp_path)), "KEY_PASSPHRASE": "wrong"},
            "cannot be decrypted with the passphrase given: check HPC_KEY_PASSPHRASE",
        ),
    }
    for case, (extra, reason) in cases.items():
        env = base_env(tmp_path, **extra)
        code, report, output = check(env)
        assert code == 1, (case, output)
        statuses = [(s["name"], s["status"]) for s in report["steps"]]
        assert statuses == [("settings", "failed")], (case, report)  # nothing else tried
        assert reason in report["steps"][0]["detail"], (case, report["steps"][0])
        assert all(line not in output for line in secret_lines), case  # nothing of the file
        assert garbage not in output and "not-a-key" not in output, case
        health, submit = health_and_submit(env, tmp_path)
        assert reason in health and reason in submit, (case, health, submit)
    # A good key with its passphrase passes the step (then fails to log in: nobody listens).
    env = base_env(tmp_path, KEY_FILE=str(encrypted_key(tmp_path)), KEY_PASSPHRASE="right")
    code, report, _ = check(env)
    assert report["steps"][0]["status"] == "ok", report


# ------------------------------------------------------------------ a path is shown, a key never


def test_key_file_is_shown_as_a_path_everywhere_and_secrets_never(
    start_server: Callable[..., Server],  # noqa: F811  (the fixture imported above)
    tmp_path: Path,
) -> None:
    env = base_env(tmp_path, PASSWORD="pw-s3cr3t", KEY_PASSPHRASE="pp-s3cr3t")
    key_file = env["HPC_KEY_FILE"]
    code, report, output = check(env)
    assert report["settings"]["HPC_KEY_FILE"] == key_file
    assert report["resolved"]["identity"] == key_file  # the same path in both places
    assert report["settings"]["HPC_PASSWORD"] == "***"
    assert report["settings"]["HPC_KEY_PASSPHRASE"] == "***"
    data = base64.b64encode(PRIVATE_KEY).decode()
    with_data = base_env(tmp_path, SSHKEYPRIVK=data)
    del with_data["HPC_KEY_FILE"]
    _, report, output = check(with_data)
    assert report["settings"]["HPC_SSHKEYPRIVK"] == "***" and data not in output
    server = start_server(**env)
    with server.client() as api:
        listed = _runtime_row(api)  # a server brings up every configured runtime
        assert listed["metadata"]["HPC_KEY_FILE"] == key_file
        assert listed["metadata"]["HPC_PASSWORD"] == "***"
        checked = api.get(API + "/runtimes/hpc/check").json()["data"]
        assert checked["settings"]["HPC_KEY_FILE"] == key_file
        assert checked["resolved"]["identity"] == key_file
    shown = subprocess.run(
        [sys.executable, "-m", "akoflow", "runtimes", "--server", server.url, "--state-dir",
         str(server.state_dir)],
        capture_output=True, text=True, timeout=60, env=cli_env(COLUMNS="400"),
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert f"HPC_KEY_FILE={key_file}" in shown.stdout and "HPC_PASSWORD=***" in shown.stdout
    server.stop()
    assert "pw-s3cr3t" not in server.output() and "pp-s3cr3t" not in server.output()


def _runtime_row(api: Any) -> dict[str, Any]:
    import time

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        rows = [r for r in api.get(API + "/runtimes/").json()["data"] if r["name"] == "hpc"]
        if rows:
            return rows[0]
        time.sleep(0.2)
    raise AssertionError("runtime hpc never listed")
