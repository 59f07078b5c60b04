"""Checks of an HPC runtime: its settings, the SSH login as it will be made (the ssh config
resolved, the host key known, the login itself), then on the cluster ``sinfo -p QUEUE``,
``sbatch --version``, write access to MOUNT_PATH and a real rsync transfer into it through
the runtime's own connection. An engine on the login node (``TRANSPORT=local``) skips the SSH
steps."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import socket
import tempfile

from akoflow.config import RuntimeConfig
from akoflow.runtimes.checks import Checklist, Probe, StepFailed
from akoflow.runtimes.hpc import prompt, slurm, staging
from akoflow.runtimes.hpc.runtime import transport_for
from akoflow.runtimes.hpc.settings import HpcSettings, read_settings
from akoflow.runtimes.hpc.ssh import SshLink
from akoflow.runtimes.hpc.transport import Completed, Transport

UNKNOWN_NAME = {socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)}
NOT_FOUND = 127  # the remote shell's status for a command it cannot find
SLURM_ON_PATH = (
    "install SLURM's client commands there, or make a non-interactive login find them "
    "(`module load slurm` or a PATH line in ~/.bashrc before its interactive check)"
)


def _tail(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no message)"


async def check(config: RuntimeConfig, checks: Checklist) -> None:
    settings: list[HpcSettings] = []

    async def read() -> str:
        s = read_settings(config)
        settings.append(s)
        where = "this host (TRANSPORT=local)" if s.transport == "local" else s.host
        return f"{where}, QUEUE {s.queue or '(the default partition)'}, MOUNT_PATH {s.mount_path}"

    ok = await checks.run("settings", read, fix="fix the setting the message names", required=True)
    if not ok:
        return
    s = settings[0]
    transport = transport_for(s)
    try:
        if isinstance(transport, SshLink):
            await _ssh_steps(s, transport, checks)
        else:
            await checks.run("connect", _opened(transport), required=True)
        await _cluster_steps(s, transport, checks)
    finally:
        await transport.close()


async def _ssh_steps(s: HpcSettings, link: SshLink, checks: Checklist) -> None:
    prefix = s.variable_prefix

    async def ssh_config() -> str:
        r = await link.read_config()
        shown = checks.report.resolved
        shown["login"] = r.where
        shown["host"], shown["port"], shown["user"] = r.host, str(r.port), r.user
        shown["known_hosts"] = ", ".join(r.known_hosts)
        if r.jump:
            shown["jump"] = ",".join(map(str, r.jump))
        if r.proxy_command:
            shown["proxy_command"] = r.proxy_command
        shown["identity"] = ", ".join(r.identity_files) or "ssh-agent and ~/.ssh/id_*"
        shown["ssh_config"] = ", ".join(link.target.config_paths) or "none"
        alias = "" if r.alias == r.host else f" (Host {r.alias} of the ssh config)"
        return f"{r.where}{alias}"

    await checks.run("ssh config", ssh_config, required=True)

    async def address() -> str:
        r = link.resolved
        assert r is not None
        if r.jump or r.proxy_command:
            via = "the jump host" if r.jump else "the ProxyCommand"
            return f"{r.host} is reached through {via} (named there, not here)"
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(r.host, r.port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            if exc.errno not in UNKNOWN_NAME:
                raise StepFailed(
                    f"cannot look up {r.host} now: {exc.strerror}",
                    "check this machine's DNS (or VPN); it may be temporary",
                ) from None
            files = ", ".join(link.target.config_paths) or "any ssh config"
            alias = f" (it is no Host alias of {files})"
            raise StepFailed(
                f"host {r.host} is unknown" + (alias if r.looks_unknown else ""),
                f"set {prefix}HOST_CLUSTER to the alias `ssh ALIAS` uses (a Host block of "
                f"~/.ssh/config or {prefix}SSH_CONFIG_FILE) or to the login node's name",
            ) from None
        first = str(infos[0][4][0]) if infos else "?"
        return r.host if first == r.host else f"{r.host} is {first}"

    await checks.run("host address", address, required=True)

    async def host_key() -> str:
        r = link.resolved
        assert r is not None
        files = link.known_host_files(r)
        accept = f"{prefix}ACCEPT_NEW_HOST_KEY"
        known = bool(files) and await asyncio.to_thread(link.host_key_known, r, files)
        if known:
            return f"{r.host}:{r.port} has an entry in {', '.join(files)}"
        if s.accept_new_host_key:
            return f"not known yet: accepted and recorded at the first login ({accept}=true)"
        where = ", ".join(files or r.known_hosts)
        raise StepFailed(
            f"no host key of {r.host}:{r.port} in {where}",
            f"check the key's fingerprint with the cluster's admins, then record it with one "
            f"`ssh {r.alias}` by hand (or ssh-keyscan -p {r.port} {r.host} >> {r.known_hosts[0]}); "
            f"or set {prefix}KNOWN_HOSTS to a file that has it, or {accept}=true",
        )

    await checks.run("host key", host_key, required=True)
    login_time = checks.timeout + s.connect_timeout
    if prompt.default_prompter() is not None:
        login_time += prompt.ANSWER_TIMEOUT  # questions (MFA) wait on the terminal
    await checks.run(
        "connect",
        _opened(link),
        fix=f"check that `ssh {s.host}` works from this machine (VPN, bastion, the node is up)",
        required=True,
        timeout=login_time,
    )


def _opened(transport: Transport) -> Probe:
    async def probe() -> str:
        await transport.open()
        user = f" as {transport.user}" if transport.user else ""
        return f"logged in{user} at {transport.where}"

    return probe


async def _cluster_steps(s: HpcSettings, transport: Transport, checks: Checklist) -> None:
    where = transport.where
    queue_var = f"{s.variable_prefix}QUEUE"

    async def run(argv: list[str]) -> Completed:
        res = await transport.run(argv)
        if res.exit_status == NOT_FOUND:
            raise StepFailed(f"{argv[0]} not found on the PATH of {where}", SLURM_ON_PATH)
        return res

    async def sinfo() -> str:
        res = await run(slurm.sinfo_argv(s.queue))
        if res.exit_status != 0:
            raise StepFailed(
                f"sinfo failed on {where}: {_tail(res.stderr)}",
                "check that the cluster's controller answers (`sinfo` on the login node)",
            )
        nodes = slurm.parse_sinfo_nodes(res.stdout)
        partition = f"partition {s.queue}" if s.queue else "the default partition"
        if not nodes and s.queue:
            listed = await run(["sinfo", "--noheader", "--format=%R"])
            known = sorted(set(listed.stdout.split()))
            if s.queue not in known:
                raise StepFailed(
                    f"partition {s.queue} does not exist on {where}",
                    f"set {queue_var} to one of: {', '.join(known) or '(sinfo lists none)'}",
                )
        if not nodes:
            raise StepFailed(f"{partition} has no nodes", "ask the cluster's admins")
        up = sum(1 for n in nodes if n.ready)
        if not up:
            raise StepFailed(
                f"no node of {partition} is up ({len(nodes)} down or drained)",
                f"work waits until one is; `sinfo -p {s.queue or ''}` shows their state",
            )
        return f"{partition}: {len(nodes)} node(s), {up} up"

    await checks.run("sinfo", sinfo)

    async def sbatch() -> str:
        res = await run(["sbatch", "--version"])
        if res.exit_status != 0:
            raise StepFailed(f"sbatch --version failed: {_tail(res.stderr)}", SLURM_ON_PATH)
        return res.stdout.strip() or "sbatch answers"

    await checks.run("sbatch", sbatch)
    probe = f".akoflow-check-{secrets.token_hex(6)}"
    mount_var = f"{s.variable_prefix}MOUNT_PATH"

    async def mount_path() -> str:
        try:
            await transport.makedirs(s.mount_path)
            await transport.write_files(f"{s.mount_path}/{probe}", {"probe": b"akoflow check\n"})
        except Exception as exc:
            raise StepFailed(
                f"cannot write in {s.mount_path} on {where}: {exc}",
                f"make it writable by {transport.user or 'the login user'}, or set {mount_var} "
                "to a directory that is (on a file system the compute nodes share)",
            ) from None
        return f"{s.mount_path} is writable"

    wrote = await checks.run("MOUNT_PATH", mount_path)

    async def rsync() -> str:
        if shutil.which("rsync") is None:
            raise StepFailed(
                "rsync is not installed on this machine", "install rsync (spec.volumes need it)"
            )
        route = await transport.rsync_route()
        if not route.is_local and await transport.missing_programs(["rsync"]):
            raise StepFailed(
                f"rsync not found on the PATH of {where}",
                "install rsync on the login node (spec.volumes are staged with it)",
            )
        with tempfile.TemporaryDirectory(prefix="akoflow-check-") as local:
            with open(os.path.join(local, "staged"), "wb") as f:
                f.write(b"staged by akoflow runtimes check\n")
            remote = f"{s.mount_path}/{probe}/rsync"
            transfer = staging.Transfer(local, remote, is_dir=True)
            await staging.run_rsync(staging.rsync_argv(route, transfer, upload=True))
            back = await transport.read_whole(f"{remote}/staged")
        if back != b"staged by akoflow runtimes check\n":
            raise StepFailed(
                f"rsync reported success but {remote}/staged is not there",
                "check the login node's rsync",
            )
        how = "on this host" if route.is_local else "through the login's own connection"
        return f"a file went into MOUNT_PATH {how}"

    if wrote:
        await checks.run("rsync", rsync, fix="check that rsync works on both sides")
        try:
            await transport.run(["rm", "-rf", "--", f"{s.mount_path}/{probe}"])
        except Exception:  # the probe stays: a small dot-directory, harmless
            pass
    else:
        checks.skip("rsync", "MOUNT_PATH")
