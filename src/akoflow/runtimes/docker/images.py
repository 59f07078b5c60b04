"""Images on the daemon, by pull policy: each image checked once, one pull per image at a
time (later submits wait for it), a pull bounded by ``{NAME}_PULL_TIMEOUT``."""

from __future__ import annotations

import asyncio

import docker.errors
import docker.utils

from akoflow.runtimes.base import SubmitError
from akoflow.runtimes.docker.daemon import Daemon, explain
from akoflow.runtimes.docker.settings import Settings


class Images:
    def __init__(self, daemon: Daemon, policy_variable: str) -> None:
        self._daemon = daemon
        self._policy_variable = policy_variable  # named in the "never" message
        self._present: set[str] = set()  # present on the daemon (not re-checked per submit)
        self._pulls: dict[str, asyncio.Future[None]] = {}

    def forget(self, image: str) -> None:
        """The daemon said it has no such image (removed since): check it again next time."""
        self._present.discard(image)

    async def ensure(self, image: str, settings: Settings) -> None:
        if image in self._present:
            return
        if settings.pull_policy != "always":
            if await self._daemon.call(self._is_present, image):
                self._present.add(image)
                return
            if settings.pull_policy == "never":
                raise SubmitError(
                    f"image {image!r} is not present on the docker daemon at "
                    f"{self._daemon.where} and {self._policy_variable} is never: load, import "
                    "or build it there first"
                )
        pending = self._pulls.get(image)
        if pending is None:  # one pull per image at a time; later submits wait for it
            pending = asyncio.ensure_future(self._pull(image, settings.pull_timeout))
            self._pulls[image] = pending
            pending.add_done_callback(lambda _: self._pulls.pop(image, None))
        await asyncio.shield(pending)
        if settings.pull_policy != "always":
            self._present.add(image)

    def _is_present(self, image: str) -> bool:
        try:
            self._daemon.client().inspect_image(image)  # type: ignore[no-untyped-call]
        except docker.errors.ImageNotFound:
            return False
        return True

    async def _pull(self, image: str, timeout: int) -> None:
        try:
            await asyncio.wait_for(self._daemon.call(self._pull_blocking, image), timeout)
        except TimeoutError:
            raise SubmitError(f"pulling image {image!r} took more than {timeout}s") from None
        except docker.errors.APIError as exc:
            raise SubmitError(f"cannot pull image {image!r}: {explain(exc)}") from exc

    def _pull_blocking(self, image: str) -> None:
        repository, tag = docker.utils.parse_repository_tag(image)
        pulled = self._daemon.client().pull(
            repository, tag=tag or "latest", stream=True, decode=True
        )
        for line in pulled:
            if isinstance(line, dict) and line.get("error"):
                raise SubmitError(f"cannot pull image {image!r}: {line['error']}")
