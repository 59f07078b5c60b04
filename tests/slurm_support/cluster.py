"""A private single-node SLURM cluster with an SSH login node, for tests and benchmarks.

Everything lives under one directory and is stopped by PID: a munged on its own socket (so it
never touches the machine's /run/munge), slurmctld and slurmd on free loopback ports
(accounting off; finished jobs go to a jobcomp/filetxt log that ``sacct -c`` reads), and an
sshd on 127.0.0.1 whose sessions get ``SLURM_CONF`` through ``SetEnv``. Optionally a second
sshd runs as a "remote" login node in a network namespace of its own (198.18.99.10, hostname
``login01``) whose SLURM clients reach slurmctld through the veth (198.18.99.1), and behind it
a bastion (:meth:`SlurmCluster.start_bastion`): a third namespace (198.18.98.2) that is the only
way to a second sshd of the login node (198.18.97.10), which this host has no route to.

    python -m tests.slurm_support.cluster up DIR     # start; prints the settings to use
    python -m tests.slurm_support.cluster down DIR   # stop everything started under DIR
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

NETNS = "akf-hpcsim"
NETNS_HOST_ADDR = "198.18.99.1"
NETNS_LOGIN_ADDR = "198.18.99.10"
BASTION_NETNS = "akf-bastion"
BASTION_HOST_ADDR = "198.18.98.1"  # this host's end of the veth to the bastion
BASTION_ADDR = "198.18.98.2"
HIDDEN_BASTION_ADDR = "198.18.97.1"  # the bastion's end of the veth to the login node
HIDDEN_LOGIN_ADDR = "198.18.97.10"  # the login node as only the bastion reaches it
PAM_WRAPPER = "/usr/lib/x86_64-linux-gnu/libpam_wrapper.so"
PAM_MATRIX = "/usr/lib/x86_64-linux-gnu/pam_wrapper/pam_matrix.so"
PARTITION = "debug"
NODE_CPUS = 32  # more than the machine has (config_overrides): short test jobs run side by side
REQUIRED = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "sacct", "sdiag", "sshd", "rsync")


class ClusterError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(predicate: object, timeout: float, what: str, log: Path | None = None) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    tail = ""
    if log is not None and log.exists():
        tail = "\n" + "\n".join(log.read_text(errors="replace").splitlines()[-20:])
    raise ClusterError(f"{what} not reached in {timeout}s{tail}")


def _kill_pidfile(pidfile: Path, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
    try:
        pid = int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(pid):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.05)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        pidfile.unlink()


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for init to reap it counts as ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def process_table() -> dict[int, tuple[int, str]]:
    """Each process's parent and command name (from /proc)."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        name, _, rest = stat.partition("(")[2].rpartition(")")
        found[int(entry)] = (int(rest.split()[1]), name)
    return found


def _children(pid: int) -> list[int]:
    """Direct children of ``pid``, e.g. an sshd's per-connection processes."""
    return [child for child, (parent, _) in process_table().items() if parent == pid]


def _spawn(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,  # a Ctrl-C of the test run is not the daemon's
        )


@dataclass
class Sshd:
    """An sshd (key-only root login) whose sessions see ``SLURM_CONF``."""

    root: Path
    name: str
    listen: str
    port: int
    slurm_conf: Path
    netns: str | None = None
    hostname: str = "login01"
    extra: str = ""  # sshd_config lines put first (the first value of a keyword wins)
    environ: dict[str, str] = field(default_factory=dict)  # e.g. pam_wrapper's variables
    setenv: str = ""  # more NAME=VALUE words for the sessions' SetEnv
    reachable: bool = True  # this host can connect to it (else its log tells it listens)

    @property
    def pidfile(self) -> Path:
        return self.root / f"{self.name}.pid"

    @property
    def log(self) -> Path:
        return self.root / f"{self.name}.log"

    @property
    def config(self) -> Path:
        return self.root / f"{self.name}_config"

    def write_config(self, host_key: Path, authorized_keys: Path) -> None:
        self.config.write_text(
            self.extra + f"Port {self.port}\nListenAddress {self.listen}\nHostKey {host_key}\n"
            f"PidFile {self.pidfile}\nAuthorizedKeysFile {authorized_keys}\n"
            "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nPubkeyAuthentication yes\nUsePAM no\n"
            "StrictModes no\nMaxStartups 100:30:200\nMaxSessions 32\nLogLevel VERBOSE\n"
            "Subsystem sftp internal-sftp\n"
            # A HOME of its own: the machine's root profile (pyenv init) would cost 0.5 s of
            # CPU per command; a cluster account's shell starts clean.
            f"SetEnv SLURM_CONF={self.slurm_conf} HOME={self.root / 'home'} {self.setenv}\n"
        )
        (self.root / "home").mkdir(exist_ok=True)

    def start(self) -> None:
        Path("/run/sshd").mkdir(exist_ok=True)  # privilege separation dir sshd insists on
        argv = ["/usr/sbin/sshd", "-f", str(self.config), "-E", str(self.log)]
        subprocess.run([*argv[:3], "-t"], check=True, capture_output=True)
        if self.netns is not None:
            argv = ["ip", "netns", "exec", self.netns, "unshare", "--uts", "sh", "-c",
                    'hostname "$0" && exec "$@"', self.hostname, *argv]  # fmt: skip
        env = {**os.environ, **self.environ}
        subprocess.run(argv, check=True, capture_output=True, env=env)  # sshd forks
        _wait(self.accepts if self.reachable else self.listening, 10,
              f"sshd {self.name} listening", self.log)  # fmt: skip

    def listening(self) -> bool:
        return self.log.exists() and f"listening on {self.listen} port" in self.log.read_text()

    def accepts(self) -> bool:
        try:
            with socket.create_connection((self.listen, self.port), timeout=0.5) as s:
                return s.recv(4).startswith(b"SSH")
        except OSError:
            return False

    def stop(self, *, sessions: bool = True) -> None:
        """Stop the listener and (by default) every session it serves, as when the login node
        goes down; with ``sessions=False`` live connections keep working."""
        try:
            pid = int(self.pidfile.read_text())
        except (OSError, ValueError):
            return
        children = _children(pid) if sessions else []
        _kill_pidfile(self.pidfile)
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)

    def connections(self) -> int:
        """SSH connections accepted so far (from sshd's log)."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return 0
        return len(re.findall(r"Accepted \S+ for ", text))

    def logins(self, method: str) -> int:
        """Logins completed with ``method`` (``publickey``, ``keyboard-interactive/pam``)."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return 0
        return text.count(f"Accepted {method} for ")


@dataclass
class SlurmCluster:
    root: Path
    with_netns: bool = False
    ctld_port: int = field(default_factory=free_port)
    slurmd_port: int = field(default_factory=free_port)
    ssh_port: int = field(default_factory=free_port)
    munge_dir: Path | None = None
    netns_up: bool = False
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    # ------------------------------------------------------------------ paths

    @property
    def conf(self) -> Path:
        return self.root / "slurm.conf"

    @property
    def netns_conf(self) -> Path:
        return self.root / "netns" / "slurm.conf"

    @property
    def jobcomp(self) -> Path:
        return self.root / "log" / "jobcomp.txt"

    @property
    def client_key(self) -> Path:
        return self.root / "client_key"

    @property
    def host_key(self) -> Path:
        return self.root / "host_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.root / "known_hosts"

    @property
    def sshd(self) -> Sshd:
        return Sshd(self.root, "sshd", "127.0.0.1", self.ssh_port, self.conf)

    @property
    def login_sshd(self) -> Sshd:
        return Sshd(self.root, "sshd-login01", NETNS_LOGIN_ADDR, 22, self.netns_conf, NETNS)

    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def settings(self, name: str, *, netns: bool = False) -> dict[str, str]:
        """``{NAME}_*`` variables of a runtime using this cluster."""
        prefix = name.upper().replace("-", "_") + "_"
        host, port = (NETNS_LOGIN_ADDR, 22) if netns else ("127.0.0.1", self.ssh_port)
        mount = self.root / ("mount-netns" if netns else "mount")
        return {
            prefix + "HOST_CLUSTER": host,
            prefix + "PORT": str(port),
            prefix + "USER": "root",
            prefix + "KEY_FILE": str(self.client_key),
            prefix + "KNOWN_HOSTS": str(self.known_hosts),
            prefix + "QUEUE": PARTITION,
            prefix + "MOUNT_PATH": str(mount),
        }

    # ------------------------------------------------------------------ lifecycle

    def check_installed(self) -> None:
        missing = [b for b in REQUIRED if shutil.which(b) is None and not Path(b).exists()]
        if missing:
            raise ClusterError(
                f"missing {', '.join(missing)}: install the Debian packages in scripts/test-deps "
                "(slurm-wlm slurmctld slurmd slurm-client munge openssh-server rsync)"
            )

    def start(self) -> None:
        self.check_installed()
        for d in ("spool/ctld", "spool/d", "log", "run", "mount", "mount-netns", "netns"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        (self.root / "ports.json").write_text(
            json.dumps({"ctld": self.ctld_port, "slurmd": self.slurmd_port, "ssh": self.ssh_port})
        )
        try:
            self._start_munged()
            self._write_slurm_conf()
            self.procs.append(
                _spawn(["slurmctld", "-D", "-c", "-f", str(self.conf)], self.root / "log/ctld.out")
            )
            _wait(self._ctld_answers, 30, "slurmctld answering", self.root / "log/slurmctld.log")
            self.procs.append(
                _spawn(["slurmd", "-D", "-f", str(self.conf)], self.root / "log/slurmd.out")
            )
            _wait(self._node_idle, 30, "node idle", self.root / "log/slurmd.log")
            self._keys()
            self.sshd.write_config(self.host_key, self.root / "authorized_keys")
            self.sshd.start()
            if self.with_netns:
                self.start_netns()
        except BaseException:
            self.stop()
            raise

    def stop_ctld(self) -> None:
        """Stop slurmctld (by PID): the controller goes away, slurmd and the jobs stay."""
        _kill_pidfile(self.root / "run" / "slurmctld.pid")

    def start_ctld(self) -> None:
        """Start slurmctld again, recovering its saved state (jobs, node)."""
        self.procs.append(
            _spawn(["slurmctld", "-D", "-f", str(self.conf)], self.root / "log/ctld.out")
        )
        _wait(self._ctld_answers, 30, "slurmctld answering", self.root / "log/slurmctld.log")
        _wait(self._node_idle, 30, "node up again", self.root / "log/slurmctld.log")

    def _start_munged(self) -> None:
        self.munge_dir = Path(tempfile.mkdtemp(prefix="akf-munge-"))
        (self.root / "munge_dir").write_text(str(self.munge_dir))
        shutil.chown(self.munge_dir, "munge", "munge")
        os.chmod(self.munge_dir, 0o755)  # munged wants its socket's dir searchable by all
        key = self.munge_dir / "munge.key"
        key.write_bytes(os.urandom(128))
        os.chmod(key, 0o400)
        shutil.chown(key, "munge", "munge")
        sock = self.munge_dir / "munge.sock"
        subprocess.run(
            [
                "runuser",
                "-u",
                "munge",
                "--",
                "munged",
                f"--socket={sock}",
                f"--key-file={key}",
                f"--pid-file={self.munge_dir}/munged.pid",
                f"--log-file={self.munge_dir}/munged.log",
                f"--seed-file={self.munge_dir}/munged.seed",
            ],  # fmt: skip
            check=True,
            capture_output=True,
        )
        _wait(sock.exists, 10, "munged socket")

    def _write_slurm_conf(self) -> None:
        d = self.root
        assert self.munge_dir is not None
        node_line = (
            f"NodeName=localhost NodeHostname=localhost NodeAddr=127.0.0.1 CPUs={NODE_CPUS} "
            "RealMemory=4096 State=UNKNOWN"
        )
        common = f"""ClusterName=akftest
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.munge_dir}/munge.sock
SlurmctldPort={self.ctld_port}
SlurmdPort={self.slurmd_port}
StateSaveLocation={d}/spool/ctld
SlurmdSpoolDir={d}/spool/d
SlurmctldPidFile={d}/run/slurmctld.pid
SlurmdPidFile={d}/run/slurmd.pid
SlurmctldLogFile={d}/log/slurmctld.log
SlurmdLogFile={d}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=2
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc={self.jobcomp}
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=64
ReturnToService=2
MpiDefault=none
SwitchType=switch/none
MinJobAge=300
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=2
SlurmdParameters=config_overrides
{node_line}
PartitionName={PARTITION} Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""
        self.conf.write_text("SlurmctldHost=localhost\n" + common)
        self.netns_conf.write_text(f"SlurmctldHost=localhost({NETNS_HOST_ADDR})\n" + common)

    def _run(self, *argv: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(argv), capture_output=True, text=True, env=self.env(), timeout=30, check=check
        )

    def _ctld_answers(self) -> bool:
        return self._run("scontrol", "ping").stdout.find("is UP") >= 0

    def _node_idle(self) -> bool:
        state = self._run("sinfo", "-h", "-o", "%t").stdout
        return "idle" in state or "mix" in state

    def _keys(self) -> None:
        for key in (self.host_key, self.client_key):
            if not key.exists():
                subprocess.run(
                    ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True
                )
        pub = self.client_key.with_suffix(".pub").read_text()
        (self.root / "authorized_keys").write_text(pub)
        host_pub = self.host_key.with_suffix(".pub").read_text().split()
        self.known_hosts.write_text(
            f"[127.0.0.1]:{self.ssh_port} {host_pub[0]} {host_pub[1]}\n"
            f"{NETNS_LOGIN_ADDR} {host_pub[0]} {host_pub[1]}\n"
        )

    def start_netns(self) -> None:
        routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout
        if "198.18.99." in routes:
            raise ClusterError("198.18.99.0/24 is already routed here; remove that netns first")
        ip = ["ip"]
        subprocess.run([*ip, "netns", "add", NETNS], check=True)
        self.netns_up = True
        (self.root / "netns.up").write_text(NETNS)
        host_if, ns_if = "veth-akfhpc", "eth-akfhpc"
        for argv in (
            [*ip, "link", "add", host_if, "type", "veth", "peer", "name", ns_if],
            [*ip, "link", "set", ns_if, "netns", NETNS],
            [*ip, "addr", "add", f"{NETNS_HOST_ADDR}/24", "dev", host_if],
            [*ip, "link", "set", host_if, "up"],
            [
                *ip,
                "netns",
                "exec",
                NETNS,
                "ip",
                "addr",
                "add",
                f"{NETNS_LOGIN_ADDR}/24",
                "dev",
                ns_if,
            ],  # fmt: skip
            [*ip, "netns", "exec", NETNS, "ip", "link", "set", ns_if, "up"],
            [*ip, "netns", "exec", NETNS, "ip", "link", "set", "lo", "up"],
        ):
            subprocess.run(argv, check=True, capture_output=True)
        login = self.login_sshd
        login.write_config(self.host_key, self.root / "authorized_keys")
        login.start()

    def stop_netns(self) -> None:
        """Stop the login node's sshd and delete its namespace (by name; the veth goes too)."""
        with contextlib.suppress(Exception):
            self.login_sshd.stop()
        if self.netns_up or (self.root / "netns.up").exists():
            subprocess.run(["ip", "netns", "del", NETNS], capture_output=True)
            with contextlib.suppress(OSError):
                (self.root / "netns.up").unlink()
            self.netns_up = False

    @property
    def bastion_sshd(self) -> Sshd:
        return Sshd(self.root, "sshd-bastion", BASTION_ADDR, 22, self.conf, BASTION_NETNS,
                    hostname="bastion")  # fmt: skip

    @property
    def hidden_login_sshd(self) -> Sshd:
        return Sshd(self.root, "sshd-hidden", HIDDEN_LOGIN_ADDR, 22, self.netns_conf, NETNS,
                    reachable=False)  # fmt: skip

    def start_bastion(self) -> None:
        """A bastion namespace between this host and the login node's namespace (started
        first, :meth:`start_netns`): this host reaches the bastion (198.18.98.0/24), the
        bastion reaches the login node's second sshd (198.18.97.0/24); this host has no route
        to that one."""
        routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout
        if "198.18.98." in routes or "198.18.97." in routes:
            raise ClusterError("198.18.97-98.0/24 are already routed here; remove them first")
        ip = ["ip"]
        subprocess.run([*ip, "netns", "add", BASTION_NETNS], check=True)
        (self.root / "bastion.up").write_text(BASTION_NETNS)
        in_bastion = [*ip, "netns", "exec", BASTION_NETNS, "ip"]
        in_login = [*ip, "netns", "exec", NETNS, "ip"]
        for argv in (
            [*ip, "link", "add", "veth-akfbh", "type", "veth", "peer", "name", "eth-akfbh"],
            [*ip, "link", "set", "eth-akfbh", "netns", BASTION_NETNS],
            [*ip, "addr", "add", f"{BASTION_HOST_ADDR}/24", "dev", "veth-akfbh"],
            [*ip, "link", "set", "veth-akfbh", "up"],
            [*in_bastion, "addr", "add", f"{BASTION_ADDR}/24", "dev", "eth-akfbh"],
            [*in_bastion, "link", "set", "eth-akfbh", "up"],
            [*in_bastion, "link", "set", "lo", "up"],
            [*in_bastion, "link", "add", "veth-akfbl", "type", "veth", "peer", "name", "eth-akfbl"],
            [*in_bastion, "link", "set", "eth-akfbl", "netns", NETNS],
            [*in_bastion, "addr", "add", f"{HIDDEN_BASTION_ADDR}/24", "dev", "veth-akfbl"],
            [*in_bastion, "link", "set", "veth-akfbl", "up"],
            [*in_login, "addr", "add", f"{HIDDEN_LOGIN_ADDR}/24", "dev", "eth-akfbl"],
            [*in_login, "link", "set", "eth-akfbl", "up"],
            # Not even by way of this host's default gateway (which may answer for anything).
            [*ip, "route", "add", "unreachable", "198.18.97.0/24"],
        ):
            subprocess.run(argv, check=True, capture_output=True)
        for sshd in (self.bastion_sshd, self.hidden_login_sshd):
            sshd.write_config(self.host_key, self.root / "authorized_keys")
            sshd.start()

    def stop_bastion(self) -> None:
        """Stop both sshds and delete the bastion's namespace (its veths go with it)."""
        for sshd in (self.bastion_sshd, self.hidden_login_sshd):
            with contextlib.suppress(Exception):
                sshd.stop()
        if (self.root / "bastion.up").exists():
            subprocess.run(["ip", "netns", "del", BASTION_NETNS], capture_output=True)
            subprocess.run(["ip", "route", "del", "unreachable", "198.18.97.0/24"],
                           capture_output=True)  # fmt: skip
            with contextlib.suppress(OSError):
                (self.root / "bastion.up").unlink()

    def pam_sshd(self, answer: str) -> Sshd:
        """An sshd on 127.0.0.1 that asks, after the key, a keyboard-interactive question
        (PAM through pam_wrapper's private service dir: the machine's PAM is not touched)
        whose answer is ``answer``, like a centre's MFA code."""
        pam = self.root / "pam.d"
        pam.mkdir(exist_ok=True)
        passdb = self.root / "pam_matrix.passdb"
        passdb.write_text(f"root:{answer}:sshd\n")
        os.chmod(passdb, 0o600)
        module = f"{PAM_MATRIX} passdb={passdb}"
        (pam / "sshd").write_text(
            "".join(f"{kind} required {module}\n" for kind in ("auth", "account", "session"))
        )
        (self.root / "sshd-mfa.log").unlink(missing_ok=True)  # its logins are counted
        return Sshd(
            self.root, "sshd-mfa", "127.0.0.1", free_port(), self.conf,
            extra="AuthenticationMethods publickey,keyboard-interactive\nPermitRootLogin yes\n"
            "KbdInteractiveAuthentication yes\nUsePAM yes\n",
            environ={"LD_PRELOAD": PAM_WRAPPER, "PAM_WRAPPER": "1",
                     "PAM_WRAPPER_SERVICE_DIR": str(pam)},
        )  # fmt: skip

    def stop(self) -> None:
        self.stop_bastion()
        if self.conf.exists():  # jobs of this private cluster only: no stray job steps
            with contextlib.suppress(Exception):
                self._run("scancel", f"--user={os.getuid()}")
        self.stop_netns()
        with contextlib.suppress(Exception):
            self.sshd.stop()
        _kill_pidfile(self.root / "run" / "slurmd.pid")
        _kill_pidfile(self.root / "run" / "slurmctld.pid")
        self._kill_job_steps()
        for proc in self.procs:  # our own children: reap them
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
        self.procs.clear()
        munge_dir = self.munge_dir
        if munge_dir is None and (self.root / "munge_dir").exists():
            munge_dir = Path((self.root / "munge_dir").read_text())
        if munge_dir is not None:
            _kill_pidfile(munge_dir / "munged.pid")
            shutil.rmtree(munge_dir, ignore_errors=True)
            self.munge_dir = None

    def _kill_job_steps(self) -> None:
        """Job steps outlive slurmd (a run cut short may skip the scancel above): kill the
        job processes of THIS cluster (their environment names its slurm.conf), their
        children and the slurmstepd above them (whose own environment its title overwrote)."""
        victims: dict[int, psutil.Process] = {}
        for proc in psutil.process_iter():
            try:
                if proc.environ().get("SLURM_CONF") != str(self.conf):
                    continue
                parent = proc.parent()
                if proc.name().startswith(("slurmd", "slurmctld", "sshd", "munged")):
                    continue  # the daemons are stopped by their pid files
                for p in [proc, *proc.children(recursive=True)]:
                    victims[p.pid] = p
                if parent is not None and parent.name().startswith("slurmstepd"):
                    victims[parent.pid] = parent
            except psutil.Error:
                continue
        for victim in victims.values():
            with contextlib.suppress(psutil.Error):
                victim.kill()
        psutil.wait_procs(list(victims.values()), timeout=5)

    # ------------------------------------------------------------------ inspection

    def sdiag_rpcs(self) -> dict[str, int]:
        """slurmctld RPC counts by message type since the last reset (``sdiag``)."""
        out = self._run("sdiag").stdout
        counts: dict[str, int] = {}
        section = False
        for line in out.splitlines():
            if line.startswith("Remote Procedure Call statistics by message type"):
                section = True
                continue
            if section and line.startswith("Remote Procedure Call statistics by user"):
                break
            m = re.match(r"\s*(\w+)\s*\(\s*\d+\)\s*count:(\d+)", line)
            if section and m:
                counts[m.group(1)] = int(m.group(2))
        return counts

    def sdiag_reset(self) -> None:
        self._run("sdiag", "-r", check=True)

    def jobcomp_records(self) -> list[dict[str, str]]:
        """Finished jobs from the jobcomp/filetxt log (``Key=Value`` per field)."""
        try:
            lines = self.jobcomp.read_text().splitlines()
        except FileNotFoundError:
            return []
        records = []
        for line in lines:
            rec = {}
            for part in line.split():
                k, sep, v = part.partition("=")
                if sep:
                    rec[k] = v
            records.append(rec)
        return records

    def running_job_ids(self, name: str) -> list[str]:
        """Ids of the running jobs named ``name``."""
        return self._run("squeue", "-h", "-t", "running", "-n", name, "-o", "%i").stdout.split()

    def end_soon(self, job_id: str, seconds: int = 1) -> None:
        """Move a running job's end to ``seconds`` from now (``scontrol update EndTime``, as an
        administrator may): slurmctld ends it as TIMEOUT at its next time-limit check (every
        30 s) instead of once its limit (whole minutes) is spent. Its TimeLimit stays."""
        self._run("scontrol", "update", f"JobId={job_id}", f"EndTime=now+{seconds}", check=True)

    def squeue_names(self) -> list[str]:
        out = self._run("squeue", "-h", "-t", "all", "-o", "%j").stdout
        return out.split()


def load(root: Path) -> SlurmCluster:
    ports = json.loads((root / "ports.json").read_text())
    return SlurmCluster(root, ctld_port=ports["ctld"], slurmd_port=ports["slurmd"],
                        ssh_port=ports["ssh"])  # fmt: skip


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] not in ("up", "down"):
        print(__doc__, file=sys.stderr)
        return 2
    root = Path(argv[1]).resolve()
    if argv[0] == "up":
        cluster = SlurmCluster(root, with_netns="--netns" in argv)
        cluster.start()
        for k, v in cluster.settings("hpc").items():
            print(f"export {k}={v}")
        print(f"export SLURM_CONF={cluster.conf}")
        return 0
    load(root).stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
