"""Fuzz the real server from its own OpenAPI schema (schemathesis): whatever the input, no
answer is a server error (5xx), and the server logs no unhandled exception.

Bounded (examples per operation, request timeout) to stay well under a minute. The seed is
fixed so a run is reproducible; set AKOFLOW_FUZZ_SEED to explore others.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from tests.conftest import EXAMPLES, cli_env
from tests.server.conftest import API, Server, submit, wait_workflow

MAX_EXAMPLES = 20
SEED = os.environ.get("AKOFLOW_FUZZ_SEED", "20261125")


def test_api_fuzzed_from_its_openapi_has_no_server_errors(server: Server, tmp_path: Path) -> None:
    with server.client() as api:
        # Real objects to hit: a succeeded run (id 1, activity `say-hello` as in the schema's
        # examples) and a failed one.
        schema = api.get("/openapi.json").json()
        body = schema["paths"][API + "/workflows/"]["post"]["requestBody"]
        example = body["content"]["application/json"]["schema"]["examples"][0]
        assert api.post(API + "/workflows/", json=example).status_code == 200
        failing = submit(api, (EXAMPLES / "failing.yaml").read_text())
        wait_workflow(api, 1)
        wait_workflow(api, failing)
    assert len(schema["paths"]) >= 15
    argv = [
        sys.executable,
        "-c",
        "import sys; from schemathesis.cli import schemathesis; sys.exit(schemathesis())",
        "run",
        f"{server.url}/openapi.json",
        "--header",
        f"Authorization: Bearer {server.token}",
        "--checks",
        "not_a_server_error",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        SEED,
        "--request-timeout",
        "20",
        "--generation-database",
        "none",
        "--no-color",
    ]
    res = subprocess.run(
        argv, cwd=tmp_path, capture_output=True, text=True, timeout=240, env=cli_env()
    )
    report = res.stdout + res.stderr
    assert res.returncode == 0, report[-6000:]
    assert "generated" in report and " passed" in report
    assert "failed" not in report.split("SUMMARY")[-1], report[-3000:]
    output = server.output()
    assert "Traceback" not in output and "unhandled error" not in output
    assert '" 500' not in output
    # The server is still healthy afterwards.
    assert httpx.get(server.url + "/akoflow-server/check-service/").text == "ok"
