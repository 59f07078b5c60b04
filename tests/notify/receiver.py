"""A real HTTP webhook receiver on loopback for the notification tests.

Each request is answered by the next action of its script (the last one repeats): an HTTP
status to answer, or ``"hang"``: read the request, then answer nothing until the test ends.
Every request is recorded (headers, raw body, when) whether it was answered or not.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HANG = "hang"


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    answered: int | None  # the status sent, None: left hanging
    at: float

    @property
    def json(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(self.body)
        return doc

    def signed_with(self, secret: str) -> bool:
        """The receiver's side of the check, as docs/operating.md shows it."""
        expected = "sha256=" + hmac.new(secret.encode(), self.body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, self.headers.get("x-akoflow-signature", ""))


class Receiver:
    def __init__(self, script: list[int | str] | None = None) -> None:
        self.script: list[int | str] = list(script or [200])
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._released = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # http.server's name
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                with receiver._lock:
                    n = len(receiver.received)
                    action = receiver.script[min(n, len(receiver.script) - 1)]
                    answered = None if action == HANG else int(action)
                    receiver.received.append(
                        Received(self.path, headers, body, answered, time.time())
                    )
                if answered is None:
                    receiver._released.wait(60)
                    self.close_connection = True
                    return
                self.send_response(answered)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def answered(self, status: int = 200) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.answered == status]

    def all(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    def set_script(self, script: list[int | str]) -> None:
        """From the next request on (counting those already received)."""
        with self._lock:
            n = len(self.received)
            self.script = [self.script[min(i, len(self.script) - 1)] for i in range(n)] + list(
                script
            )

    def close(self) -> None:
        self._released.set()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(10)
