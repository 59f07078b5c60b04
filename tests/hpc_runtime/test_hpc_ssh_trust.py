"""How the HPC runtime trusts and reaches a login node, against real sshds: a host key signed by
a certificate authority (``@cert-authority`` in known_hosts, sshd's ``HostCertificate``), a
``ProxyCommand`` (``ssh -W`` through the bastion namespace) and ``ACCEPT_NEW_HOST_KEY`` for a
login node behind a jump host (the login node's key is learned through the bastion; a jump
host's own key never is)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

from akoflow.runtimes.hpc.transport import HpcMisconfigured
from tests.hpc_runtime.conftest import runtime_env
from tests.hpc_runtime.test_hpc_runtime import make
from tests.slurm_support.cluster import (
    BASTION_ADDR,
    HIDDEN_BASTION_ADDR,
    HIDDEN_LOGIN_ADDR,
    SlurmCluster,
    free_port,
)

BOUND = 30.0


def health(env: dict[str, str]) -> tuple[bool, str, bool, str]:
    """Ready, the reason, misconfigured, and ``hostname`` on the login node when ready."""

    async def scenario() -> tuple[bool, str, bool, str]:
        rt = make(env)
        await rt.start()
        try:
            h = await asyncio.wait_for(rt.health(), BOUND)
            name = (await rt._run(["hostname"])).stdout.strip() if h.ready else ""
            return h.ready, h.reason or "", isinstance(rt.misconfigured, HpcMisconfigured), name
        finally:
            await rt.stop()

    return asyncio.run(scenario())


def keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


def test_a_host_certificate_signed_by_a_known_cert_authority(
    slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    ca, other_ca = keygen(tmp_path / "host_ca"), keygen(tmp_path / "other_ca")
    host_key = tmp_path / "host_ed25519"
    shutil.copy(slurm_cluster.host_key, host_key)
    shutil.copy(slurm_cluster.host_key.with_suffix(".pub"), tmp_path / "host_ed25519.pub")
    subprocess.run(
        ["ssh-keygen", "-q", "-s", str(ca), "-I", "login01", "-h", "-n", "127.0.0.1",
         "-V", "-5m:+1h", str(host_key) + ".pub"],
        check=True,
    )  # fmt: skip
    cert = tmp_path / "host_ed25519-cert.pub"
    assert cert.exists()
    sshd = slurm_cluster.sshd.__class__(
        slurm_cluster.root, "sshd-cert", "127.0.0.1", free_port(), slurm_cluster.conf,
        extra=f"HostCertificate {cert}\n",
    )  # fmt: skip
    sshd.write_config(host_key, slurm_cluster.root / "authorized_keys")
    sshd.start()
    try:
        known = tmp_path / "known_hosts"

        def trusting(authority: Path) -> dict[str, str]:
            kind, key = authority.with_suffix(".pub").read_text().split()[:2]
            known.write_text(f"@cert-authority [127.0.0.1]:* {kind} {key}\n")  # no host key
            return runtime_env(slurm_cluster, "hpc", "mount/cert", PORT=str(sshd.port),
                               KNOWN_HOSTS=str(known))  # fmt: skip

        Path(trusting(ca)["HPC_MOUNT_PATH"]).mkdir(parents=True, exist_ok=True)
        ready, reason, _, _ = health(trusting(ca))
        assert ready, reason  # known_hosts holds only the authority: the certificate did it
        assert sshd.connections() == 1
        # Signed by a CA nobody trusts: refused, as a setup problem with its fix.
        ready, reason, misconfigured, _ = health(trusting(other_ca))
        assert not ready and misconfigured, reason
        assert "host key verification failed" in reason and "ssh-keygen -R" in reason
        assert sshd.connections() == 1  # only the trusted login went through
    finally:
        sshd.stop()


def test_proxycommand_and_accept_new_host_key_through_a_jump_host(
    bastion: SlurmCluster, tmp_path: Path
) -> None:
    cluster = bastion
    hidden, gate = cluster.hidden_login_sshd, cluster.bastion_sshd
    kind, key = cluster.host_key.with_suffix(".pub").read_text().split()[:2]
    gate_only = tmp_path / "known_gate"
    gate_only.write_text(f"{BASTION_ADDR} {kind} {key}\n")
    mount = "mount-netns/trust"

    # ProxyCommand: OpenSSH's own client carries the connection through the bastion.
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host hidden\n  HostName {HIDDEN_LOGIN_ADDR}\n  User root\n"
        f"  ProxyCommand ssh -F none -i {cluster.client_key} -o BatchMode=yes "
        f"-o UserKnownHostsFile={gate_only} -o StrictHostKeyChecking=yes "
        f"-W %h:%p root@{BASTION_ADDR}\n"
    )
    full = tmp_path / "known_full"
    full.write_text(f"{BASTION_ADDR} {kind} {key}\n{HIDDEN_LOGIN_ADDR} {kind} {key}\n")
    env = runtime_env(cluster, "hpc", mount, HOST_CLUSTER="hidden",
                      SSH_CONFIG_FILE=str(config), KNOWN_HOSTS=str(full))  # fmt: skip
    for k in ("HPC_PORT", "HPC_USER"):
        env.pop(k)
    Path(env["HPC_MOUNT_PATH"]).mkdir(parents=True, exist_ok=True)
    hidden_before, gate_before = hidden.connections(), gate.connections()
    ready, reason, _, name = health(env)
    assert ready, reason
    assert name == "login01"
    assert (hidden.connections() - hidden_before, gate.connections() - gate_before) == (1, 1)
    assert hidden.log.read_text().count(f"from {HIDDEN_BASTION_ADDR} port") >= 1

    # JUMP_HOST with the login node's key unknown: refused without ACCEPT_NEW_HOST_KEY ...
    learn = tmp_path / "known_learn"
    learn.write_text(gate_only.read_text())
    jump = runtime_env(cluster, "hpc", mount, HOST_CLUSTER=HIDDEN_LOGIN_ADDR, PORT="22",
                       JUMP_HOST=f"root@{BASTION_ADDR}", KNOWN_HOSTS=str(learn))  # fmt: skip
    ready, reason, misconfigured, _ = health(jump)
    assert not ready and misconfigured and "host key verification failed" in reason, reason
    assert learn.read_text() == gate_only.read_text()
    # ... learned through the bastion with it, recorded once, then used as any known key.
    accept = {**jump, "HPC_ACCEPT_NEW_HOST_KEY": "true"}
    ready, reason, _, name = health(accept)
    assert ready and name == "login01", reason
    assert learn.read_text() == gate_only.read_text() + f"{HIDDEN_LOGIN_ADDR} {kind} {key}\n"
    ready, reason, _, _ = health(accept)
    assert ready, reason
    assert learn.read_text().count(HIDDEN_LOGIN_ADDR) == 1

    # A jump host's own key is never accepted on trust: the reason names the jump host.
    nothing = tmp_path / "known_nothing"
    nothing.write_text(f"{HIDDEN_LOGIN_ADDR} {kind} {key}\n")
    unknown_gate = {**accept, "HPC_KNOWN_HOSTS": str(nothing)}
    ready, reason, misconfigured, _ = health(unknown_gate)
    assert not ready and misconfigured, reason
    assert f"ssh jump host root@{BASTION_ADDR} (on the way to" in reason, reason
    assert "HPC_ACCEPT_NEW_HOST_KEY covers the login node only" in reason, reason
    assert nothing.read_text() == f"{HIDDEN_LOGIN_ADDR} {kind} {key}\n"
