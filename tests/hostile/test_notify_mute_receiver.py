"""A webhook whose HTTPS receiver accepts connections and never answers the TLS handshake:
each try is cut (at its timeout, or by the engine stopping) and its socket closed at once.

httpcore closes a stream whose handshake fails, not one whose handshake is cancelled: the
socket stayed open until the garbage collector found it (a connection the receiver kept, and
an 'unclosed transport' warning)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import warnings
from pathlib import Path

from akoflow import service
from akoflow.notify import store
from akoflow.notify.sender import Notifier
from akoflow.notify.settings import NotifySettings
from tests.mute_peer import mute_peer

TOKEN = "s3cret-in-the-url-91c2"


async def _one_try(tmp_path: Path, *, stop_engine: bool) -> tuple[bytes, str | None]:
    """What the mute receiver read from the try's connection until its end of file (bounded:
    10 s), and the try's outcome (None if it was cancelled)."""
    repo = service.open_repository(tmp_path / "state")
    notifier = Notifier(repo, settings=NotifySettings(timeout=0.5 if not stop_engine else 60))
    try:
        async with mute_peer() as (port, accepted):
            url = f"https://127.0.0.1:{port}/hook?token={TOKEN}"
            delivery = store.Delivery(1, 1, "workflow.succeeded", url, None, b"{}", 1)
            call = asyncio.ensure_future(notifier._post(delivery))
            reader = await asyncio.wait_for(accepted.get(), 10)
            hello = await asyncio.wait_for(reader.read(5), 10)
            assert hello[:1] == b"\x16", hello  # a TLS handshake record: the ClientHello
            problem = None
            if stop_engine:
                call.cancel()  # as Notifier.close() cuts the tries in flight
                with contextlib.suppress(asyncio.CancelledError):
                    await call
            else:
                problem = await asyncio.wait_for(call, 10)
            try:
                return hello + await asyncio.wait_for(reader.read(), 10), problem
            except TimeoutError:
                raise AssertionError("the cut try's socket is still open 10 s later") from None
    finally:
        await notifier.close()
        repo.close()


def _run(tmp_path: Path, *, stop_engine: bool) -> tuple[bytes, str | None]:
    # An unclosed socket freed by the collector (instead of closed) warns: recorded here.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        read, problem = asyncio.run(_one_try(tmp_path, stop_engine=stop_engine))
        gc.collect()
    unclosed = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert not unclosed, unclosed
    assert read.startswith(b"\x16\x03")  # the ClientHello, then nothing more: closed
    return read, problem


def test_a_try_cut_at_its_timeout_in_the_tls_handshake_closes_its_socket(tmp_path: Path) -> None:
    _, problem = _run(tmp_path, stop_engine=False)
    assert problem == "no answer within 0.5 s"


def test_a_try_cancelled_in_the_tls_handshake_closes_its_socket(tmp_path: Path) -> None:
    _run(tmp_path, stop_engine=True)
