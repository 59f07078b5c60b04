"""The HPC runtime's settings, read from ``{NAME}_{KEY}`` variables and checked up front.

Seed keys: ``USER``, ``HOST_CLUSTER``, ``QUEUE``, ``MOUNT_PATH``, ``GATEWAY``, ``GROUP``,
``PROJECT``. Upstream's: ``TIME``, ``NTASKS``, ``NODES``, ``GPUS``, ``CPUS_PER_GPU``, ``MEM``,
``SBATCHTEMPLATE`` (base64), ``SSHKEYPRIVK`` (base64 private key), ``PASSWORD``. Ours: ``PORT``,
``KEY_FILE``, ``KEY_PASSPHRASE``, ``KNOWN_HOSTS``, ``ACCEPT_NEW_HOST_KEY``, ``SINGULARITY``,
``POLL_INTERVAL``, ``SUBMIT_RATE``, ``MAX_QUEUED``, ``ARRAYS``, ``ARRAY_MAX``, ``MAX_SESSIONS``,
``KEEPALIVE``, ``CONNECT_TIMEOUT``, ``COMMAND_TIMEOUT``, ``RECONNECT_MAX``, ``ACCOUNTING``,
``METRICS_INTERVAL``, ``SBATCHTEMPLATE_FILE``, ``TRANSPORT``, ``JUMP_HOST``, ``SSH_CONFIG_FILE``;
the seed's SSH config injection: ``SSHCONFIG`` (base64 of an ssh_config snippet) and
``SSHKEYPUBLK`` (base64 public key or certificate of ``SSHKEYPRIVK``). Secrets stay in this
object; they are never formatted into a message.

Over SSH, ``HOST_CLUSTER`` may be a ``Host`` alias of the user's OpenSSH config
(``~/.ssh/config``, or ``SSH_CONFIG_FILE``; ``none`` reads no file): what the settings leave
unset (``PORT``, ``USER``, ``KEY_FILE``, ``KNOWN_HOSTS``, ``JUMP_HOST``) comes from that config,
then from OpenSSH's defaults (ssh-agent, ``~/.ssh/id_*``, ``~/.ssh/known_hosts``). A setting
that is set always wins over the config. No credential at all is not an error here: the agent
or the config may hold one, and the login says so when none works.

``TRANSPORT`` is ``ssh`` (the default: a login node reached over SSH) or ``local`` (the engine
runs on the login node itself, as the user whose jobs these are): then ``HOST_CLUSTER`` and the
SSH keys are neither needed nor read, and ``USER``, when set, must be that user.

Values that end up in ``#SBATCH`` lines or in paths of the job script are restricted to safe
characters: a newline in a queue name must not become a second directive.
"""

from __future__ import annotations

import base64
import binascii
import os
import pwd
import re
from dataclasses import dataclass
from pathlib import Path

from akoflow.config import RuntimeConfig, env_prefix
from akoflow.errors import SettingError
from akoflow.runtimes.hpc import keys
from akoflow.runtimes.hpc.transport import TRANSPORTS

_DIRECTIVE_VALUE = re.compile(r"^[A-Za-z0-9_.:,/@+=%-]+$")
_SAFE_PATH = re.compile(r"^/[A-Za-z0-9_.@+=%/-]*$")
_HOST = re.compile(r"^[A-Za-z0-9_.:-]+$")
_JUMP = re.compile(r"^([A-Za-z0-9_.-]+@)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)(:[0-9]{1,5})?$")
ACCOUNTING_MODES = ("auto", "sacct", "jobcomp", "none")
# A host or user name reaches command lines (a ProxyCommand's %h and %r): never as an option.
_OPTION_LIKE = "starts with '-' (a host or user name never does: it would be read as an option)"


SettingsError = SettingError  # the shared settings error, under the name this module gave it


@dataclass(frozen=True, slots=True)
class HpcSettings:
    host: str
    port: int | None  # None: the ssh config's Port, else 22
    user: str | None  # None: the ssh config's User, else this machine's login name
    mount_path: str
    queue: str | None = None
    group: str | None = None
    project: str | None = None
    gateway: tuple[str, int] | None = None
    key_file: str | None = None
    key_data: bytes | None = None  # decoded SSHKEYPRIVK; written 0600 by the runtime
    key_passphrase: str | None = None
    password: str | None = None
    known_hosts: str | None = None  # None: the ssh config's UserKnownHostsFile, else ~/.ssh's
    accept_new_host_key: bool = False
    public_key: bytes | None = None  # decoded SSHKEYPUBLK: the key's public half or certificate
    jump_host: str | None = None  # [user@]host[:port][,...], as OpenSSH's ProxyJump
    ssh_config_file: str | None = "~/.ssh/config"  # None: read no config file
    ssh_config_snippet: str | None = None  # decoded SSHCONFIG, read before the file
    variable_prefix: str = "HPC_"  # {NAME}_, to name variables in messages
    time: str | None = None
    ntasks: str | None = None
    nodes: str | None = None
    gpus: str | None = None
    cpus_per_gpu: str | None = None
    mem: str | None = None
    template: str | None = None
    singularity: str | None = None
    poll_interval: float = 5.0
    submit_rate: float = 1.0
    max_queued: int = 100
    arrays: bool = True  # attempts with the same sbatch options go as one job array
    array_max: int = 1000  # elements per array (SLURM's MaxArraySize is 1001 by default)
    max_sessions: int = 8
    keepalive: float = 15.0
    connect_timeout: float = 10.0
    command_timeout: float = 60.0
    reconnect_max: float = 30.0
    accounting: str = "auto"
    metrics_interval: float = 30.0
    transport: str = "ssh"
    run_dirs: bool = False  # each run works in MOUNT_PATH/runs/<scope>-wf<id>, not MOUNT_PATH

    def __repr__(self) -> str:  # never print the key or the password
        if self.transport == "local":
            return f"HpcSettings(transport='local', user={self.user!r})"
        return f"HpcSettings(host={self.host!r}, port={self.port}, user={self.user!r})"

    @property
    def known_hosts_path(self) -> str | None:
        return os.path.expanduser(self.known_hosts) if self.known_hosts is not None else None


def read_settings(config: RuntimeConfig) -> HpcSettings:
    """Parse and check every setting; raises :class:`SettingError` naming the variable."""
    prefix = env_prefix(config.name)
    text = config.get_text

    def required(key: str) -> str:
        value = text(key)
        if value is None:
            raise config.invalid(key, "is not set")
        return value

    def directive(key: str) -> str | None:
        value = text(key)
        if value is not None and not _DIRECTIVE_VALUE.match(value):
            raise config.invalid(key, "may only contain letters, digits and _ . : , / @ + = % -")
        return value

    transport = config.get_choice("TRANSPORT", TRANSPORTS, "ssh")
    local = transport == "local"
    host = text("HOST_CLUSTER") if local else required("HOST_CLUSTER")
    if host is not None and not _HOST.match(host):
        raise config.invalid("HOST_CLUSTER", "must be a host name or address")
    if host is not None and host.startswith("-"):
        raise config.invalid("HOST_CLUSTER", _OPTION_LIKE)
    mount = required("MOUNT_PATH")
    if not _SAFE_PATH.match(mount) or "/../" in mount + "/":
        raise config.invalid(
            "MOUNT_PATH", "must be an absolute path of letters, digits and _ . @ + = % - /"
        )
    key_data, key_file, password = (None, None, None) if local else _credentials(config)
    template = None
    raw_template = text("SBATCHTEMPLATE")
    template_file = text("SBATCHTEMPLATE_FILE")
    if raw_template is not None:
        try:
            template = base64.b64decode(raw_template, validate=True).decode()
        except (binascii.Error, ValueError):
            raise config.invalid("SBATCHTEMPLATE", "must be a base64 sbatch script") from None
    elif template_file is not None:
        try:
            template = Path(template_file).expanduser().read_text()
        except OSError as exc:
            variable = f"{prefix}SBATCHTEMPLATE_FILE"
            raise SettingError(f"{variable}: {exc.strerror}", variable=variable) from None
    if template is not None and "#COMMAND#" not in template:
        variable = f"{prefix}SBATCHTEMPLATE" if raw_template else f"{prefix}SBATCHTEMPLATE_FILE"
        raise SettingError(
            f"the sbatch template of {prefix[:-1]} has no #COMMAND# placeholder ({variable})",
            variable=variable,
        )
    gateway = None
    raw_gateway = text("GATEWAY")
    if raw_gateway is not None:
        gw_host, sep, gw_port = raw_gateway.rpartition(":")
        if not sep:
            gw_host, gw_port = raw_gateway, "22"
        if not _HOST.match(gw_host) or not gw_port.isdigit():
            raise config.invalid("GATEWAY", "must be HOST or HOST:PORT")
        gateway = (gw_host, int(gw_port))
    singularity = text("SINGULARITY")
    if singularity is not None and not _DIRECTIVE_VALUE.match(singularity):
        raise config.invalid("SINGULARITY", "must be a program name or path")
    user = _local_user(config) if local else text("USER")
    if user is not None and not _DIRECTIVE_VALUE.match(user):
        raise config.invalid("USER", "is not a valid user name")
    if user is not None and user.startswith("-"):
        raise config.invalid("USER", _OPTION_LIKE)
    jump = None if local else text("JUMP_HOST")
    if jump is not None and not all(_JUMP.match(hop) for hop in jump.split(",")):
        raise config.invalid("JUMP_HOST", "must be [USER@]HOST[:PORT], several joined by commas")
    if jump is not None and any(
        part.startswith("-") for hop in jump.split(",") for part in hop.split("@")
    ):
        raise config.invalid(
            "JUMP_HOST",
            "has a user or host starting with '-' (it would be read as an option): "
            "use [USER@]HOST[:PORT]",
        )
    config_file = text("SSH_CONFIG_FILE") or "~/.ssh/config"
    snippet = None
    raw_snippet = None if local else text("SSHCONFIG")
    if raw_snippet is not None:
        try:
            snippet = base64.b64decode(raw_snippet, validate=True).decode()
        except (binascii.Error, ValueError):
            raise config.invalid("SSHCONFIG", "must be base64 (of an ssh_config snippet)") from None
    public_key = None
    raw_public = None if local else text("SSHKEYPUBLK")
    if raw_public is not None:
        try:
            public_key = base64.b64decode(raw_public, validate=True)
        except (binascii.Error, ValueError):
            raise config.invalid("SSHKEYPUBLK", "must be base64 (of a public key)") from None
        if key_data is None:
            raise config.invalid("SSHKEYPUBLK", "needs the private key in SSHKEYPRIVK")
    return HpcSettings(
        host=host or "localhost",
        port=_port(config),
        user=user,
        mount_path=mount.rstrip("/") or "/",
        queue=directive("QUEUE"),
        group=directive("GROUP"),
        project=directive("PROJECT"),
        gateway=gateway,
        key_file=key_file,
        key_data=key_data,
        key_passphrase=config.get("KEY_PASSPHRASE") or None,
        password=password,
        known_hosts=text("KNOWN_HOSTS"),
        accept_new_host_key=config.get_bool("ACCEPT_NEW_HOST_KEY", False),
        run_dirs=config.get_bool("RUN_DIRS", False),
        public_key=public_key,
        jump_host=jump,
        ssh_config_file=None if config_file.lower() == "none" else config_file,
        ssh_config_snippet=snippet,
        variable_prefix=prefix,
        time=directive("TIME"),
        ntasks=directive("NTASKS"),
        nodes=directive("NODES"),
        gpus=directive("GPUS"),
        cpus_per_gpu=directive("CPUS_PER_GPU"),
        mem=directive("MEM"),
        template=template,
        singularity=singularity,
        poll_interval=config.get_seconds("POLL_INTERVAL", 5.0, minimum=0.1),
        submit_rate=config.get_float("SUBMIT_RATE", 1.0, minimum=0.001),
        max_queued=config.get_int("MAX_QUEUED", 100, minimum=1),
        arrays=config.get_bool("ARRAYS", True),
        array_max=config.get_int("ARRAY_MAX", 1000, minimum=2, maximum=1_000_000),
        max_sessions=config.get_int("MAX_SESSIONS", 8, minimum=1),
        keepalive=config.get_seconds("KEEPALIVE", 15.0, minimum=1.0),
        connect_timeout=config.get_seconds("CONNECT_TIMEOUT", 10.0, minimum=0.1),
        command_timeout=config.get_seconds("COMMAND_TIMEOUT", 60.0, minimum=1.0),
        reconnect_max=config.get_seconds("RECONNECT_MAX", 30.0, minimum=0.1),
        accounting=config.get_choice("ACCOUNTING", ACCOUNTING_MODES, "auto"),
        metrics_interval=config.get_seconds("METRICS_INTERVAL", 30.0, minimum=0.0),
        transport=transport,
    )


def _port(config: RuntimeConfig) -> int | None:
    if config.get_text("PORT") is None:
        return None
    port = config.get_int("PORT", 22, minimum=1)
    if port > 65535:
        raise config.invalid("PORT", "must be at most 65535")
    return port


def _credentials(config: RuntimeConfig) -> tuple[bytes | None, str | None, str | None]:
    """The SSH key (as data or a file) and password, when set. None of them is fine: the
    login then uses what the ssh config, the agent and ``~/.ssh`` offer."""
    text = config.get_text
    key_data = None
    raw_key = text("SSHKEYPRIVK")
    if raw_key is not None:
        try:
            key_data = base64.b64decode(raw_key, validate=True)
        except (binascii.Error, ValueError):
            raise config.invalid("SSHKEYPRIVK", "must be base64 (of a private key)") from None
    key_file = text("KEY_FILE")
    if key_file is not None:
        key_file = os.path.expanduser(key_file)
    passphrase = config.get("KEY_PASSPHRASE") or None
    passphrase_var = config.variable("KEY_PASSPHRASE")
    if key_data is not None:
        problem = keys.key_problem(key_data, passphrase, passphrase_var)
        if problem is not None:
            raise config.invalid("SSHKEYPRIVK", problem)
    elif key_file is not None:  # SSHKEYPRIVK wins when both are set: it is the one used
        try:
            problem = keys.key_problem(keys.read_key_file(key_file), passphrase, passphrase_var)
        except keys.KeyProblem as exc:
            raise config.invalid(
                "KEY_FILE", f"{exc}: set it to the private key `ssh -i KEY` would use"
            ) from None
        if problem is not None:
            raise config.invalid(
                "KEY_FILE", f"{key_file} {problem}; it must be the private key `ssh -i KEY` uses"
            )
    password = config.get("PASSWORD") or None
    return key_data, key_file, password


def _local_user(config: RuntimeConfig) -> str:
    """The user the engine runs as (its jobs are this user's); ``USER`` may only repeat it."""
    try:
        me = pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:  # a uid without a passwd entry (containers): SLURM takes the number
        me = str(os.geteuid())
    wanted = config.get_text("USER")
    if wanted is not None and wanted != me:
        raise config.invalid(
            "USER",
            f"is {wanted!r}, but with TRANSPORT=local jobs are submitted as the user the "
            f"engine runs as ({me!r}): unset it or run the engine as {wanted!r}",
        )
    return me
