"""Checks of a docker runtime: its settings, the daemon answering, the API version both sides
speak, and (``--image``) an image present on the daemon."""

from __future__ import annotations

import asyncio
from typing import Any

from akoflow.config import RuntimeConfig
from akoflow.runtimes.checks import Checklist, StepFailed


async def check(config: RuntimeConfig, checks: Checklist, *, image: str | None) -> None:
    import docker

    from akoflow.runtimes.docker.daemon import Daemon
    from akoflow.runtimes.docker.settings import read_settings

    try:
        settings = read_settings(config)
    except Exception as exc:
        problem = str(exc)

        async def failed() -> str:
            raise StepFailed(problem, "fix the setting the message names")

        await checks.run("settings", failed, required=True)
        return
    daemon = Daemon(config.name, settings)
    checks.report.resolved["daemon"] = settings.where
    host_var = config.variable("HOST") if config.get_text("HOST") else "DOCKER_HOST"

    async def read() -> str:
        version = settings.api_version or "negotiated with the daemon"
        return f"daemon at {settings.where}, API version {version}"

    await checks.run("settings", read, required=True)
    client: list[Any] = []

    def ping() -> str:
        daemon.probe()
        api = daemon.guarded(daemon.client)
        client.append(api)
        daemon.guarded(api.ping)
        return f"{settings.where} answers"

    await checks.run(
        "daemon",
        lambda: asyncio.to_thread(ping),
        fix=f"start the docker daemon, check {host_var}, and that this user may use its socket "
        "(the docker group, or rootless docker's DOCKER_HOST)",
        required=True,
    )

    def versions() -> str:
        api = client[0]
        info = daemon.guarded(api.version, False)
        server, oldest = str(info.get("ApiVersion")), str(info.get("MinAPIVersion", "1.12"))
        used = str(api.api_version)
        if docker.utils.version_lt(server, used) or docker.utils.version_lt(used, oldest):
            raise StepFailed(
                f"the daemon speaks API {oldest}..{server}, this client is set to {used}",
                f"unset {config.variable('API_VERSION')} (negotiated then) or set one in range",
            )
        return f"Docker {info.get('Version', '?')}, API {used} (daemon: up to {server})"

    await checks.run("API version", lambda: asyncio.to_thread(versions))

    if image is not None:

        def present() -> str:
            api = client[0]
            try:
                info = daemon.guarded(api.inspect_image, image)
            except docker.errors.ImageNotFound:
                raise StepFailed(
                    f"image {image} is not on the daemon",
                    f"`docker pull {image}`, or leave {config.variable('PULL_POLICY')} at "
                    f"if-missing (now {settings.pull_policy}) so the runtime pulls it",
                ) from None
            size = int(info.get("Size") or 0) / 1e6
            return f"{image} present ({str(info.get('Id', ''))[:19]}, {size:.0f} MB)"

        await checks.run("image", lambda: asyncio.to_thread(present))
    await asyncio.to_thread(daemon.detach())
