"""Every route but the health check and the web UI's static pages needs the bearer token;
the token is generated once, stored 0600, shown only at the first start; AKOFLOW_API_TOKEN
overrides it; no CORS."""

from __future__ import annotations

import re
import stat
from collections.abc import Callable

import httpx

from tests.server.conftest import API, HEALTH, Server


def concrete(path: str) -> str:
    """A path of the schema with its parameters filled in."""
    return re.sub(r"\{[^}]+\}", lambda m: "x" if "name" in m[0] or "runtime" in m[0] else "1", path)


def test_health_and_root_need_no_token(server: Server) -> None:
    res = httpx.get(server.url + HEALTH)
    assert res.status_code == 200
    assert res.text == "ok"
    res = httpx.get(server.url + "/", follow_redirects=False)
    assert res.status_code == 302
    assert res.headers["location"] == "/akoflow-admin/"
    # The web UI's pages are static (no data): the browser asks for the token, then calls the API.
    assert httpx.get(server.url + "/akoflow-admin/").status_code == 200


def test_every_other_route_refuses_a_missing_or_wrong_token(server: Server) -> None:
    with server.client() as api:
        spec = api.get("/openapi.json").json()
        assert api.get("/akoflow-admin/").status_code == 200
    operations = [
        (method.upper(), concrete(path))
        for path, ops in spec["paths"].items()
        for method in ops
        if path != HEALTH
    ]
    operations += [("GET", "/openapi.json")]
    assert len(operations) >= 18
    for method, path in operations:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic eDp5"}):
            res = httpx.request(method, server.url + path, headers=headers, json={})
            assert res.status_code == 401, (method, path, headers, res.text)
            assert res.headers["www-authenticate"].startswith("Bearer"), (method, path)
            assert res.json()["detail"]


def test_token_file_is_private_and_shown_only_at_first_start(
    start_server: Callable[..., Server],
) -> None:
    server = start_server()
    path = server.state_dir / "api-token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    token = path.read_text().strip()
    assert len(token) >= 32
    first = server.output()
    assert first.count(token) == 1  # printed once, at the first start
    with server.client() as api:
        assert api.get(API + "/workflows/").status_code == 200
    server.stop()
    server.start()
    assert server.token == token  # the same token after a restart
    assert server.output().count(token) == 1  # not printed again
    with server.client() as api:
        assert api.get(API + "/workflows/").status_code == 200


def test_env_token_overrides_and_is_not_written(start_server: Callable[..., Server]) -> None:
    server = start_server(AKOFLOW_API_TOKEN="from-env-token-123")
    assert not (server.state_dir / "api-token").exists()
    with server.client("from-env-token-123") as api:
        assert api.get(API + "/workflows/").status_code == 200
    with server.client("something-else") as api:
        assert api.get(API + "/workflows/").status_code == 401
    assert "from-env-token-123" not in server.output()


def test_cors_is_off_by_default(server: Server) -> None:
    origin = {"Origin": "https://evil.example"}
    pre = httpx.options(
        server.url + API + "/workflows/",
        headers={**origin, "Access-Control-Request-Method": "GET"},
    )
    assert "access-control-allow-origin" not in pre.headers
    res = httpx.get(server.url + HEALTH, headers=origin)
    assert "access-control-allow-origin" not in res.headers


def test_a_refused_request_body_is_not_read(server: Server) -> None:
    # A chunked body without a token: the server answers 401 and closes the connection
    # instead of reading (and discarding) the rest, however much the client sends.
    import socket

    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(
            f"POST {API}/workflows/ HTTP/1.1\r\nHost: x\r\n"
            "Transfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n".encode()
        )
        chunk = b"x" * 65536
        frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
        sent = 0
        answer = b""
        sock.settimeout(0.05)
        closed = False
        while sent < 4 << 30:  # bounded: 4 GiB would be read in full if it were drained
            try:
                sock.sendall(frame)
                sent += len(chunk)
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            try:
                data = sock.recv(65536)
            except TimeoutError:
                continue
            except ConnectionResetError:
                closed = True
                break
            if not data:
                closed = True
                break
            answer += data
    assert closed
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    assert b"connection: close" in answer.lower()
    assert sent < 256 << 20  # cut off early, not after the whole body
