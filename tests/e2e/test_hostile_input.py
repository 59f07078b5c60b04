"""A hostile-input corpus through every door: the loader in-process (every case on its own),
`akoflow validate` (the special cases and a sample of each byte table, all in one run of the
real CLI) and the real server's API (every case; the escaped-byte tables batched into one
workflow a table, each byte still checked by its own error path).

For each case the answer is clear (valid, or rejected with a message naming the problem), and
nothing breaks: no 5xx, no traceback in any output or in the server's log, no hang (every
call is bounded), and nothing stored on rejection (the server's workflow list only ever holds
the one odd-but-valid workflow this module runs on purpose).
"""

from __future__ import annotations

import base64
import json
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from akoflow.runtimes.registry import check_runtime_name
from akoflow.spec import WorkflowValidationError, load_workflow_file
from tests.conftest import cli_env
from tests.server.conftest import API, Server, free_port, wait_workflow

CALL_TIMEOUT = 60.0  # s, any one request or CLI run: past it the case hangs and fails

DNS_LABEL_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-")
ENV_NAME_CHARS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
RAW_ALLOWED = {0x09, *range(0x20, 0x7F)}  # what may stand raw in a YAML plain scalar


@dataclass(frozen=True)
class Case:
    id: str
    data: bytes  # the workflow file, as bytes
    valid: bool
    needle: str = ""  # in an error message when rejected


def workflow(activity: str = "", spec: str = "", name: str = "wf") -> str:
    """A one-activity workflow; ``activity`` and ``spec`` are extra lines (indented)."""
    run = "" if "run:" in activity else "      run: echo hi\n"
    return f"name: {name}\nspec:\n{spec}  activities:\n    - name: a\n{run}{activity}"


def case(id_: str, text: str | bytes, valid: bool, needle: str = "") -> Case:
    data = text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass")
    return Case(id_, data, valid, needle)


# --- per-byte tables: every byte 0x00-0xff where YAML can carry it (as a "\xNN" escape) -------

BYTE_TABLES = {
    # name: (activity line, is the byte accepted, message when not)
    "name": ('name: "a\\x{b:02x}b"', lambda b: chr(b) in DNS_LABEL_CHARS, "invalid activity name"),
    "run": ('run: "echo a\\x{b:02x}b"', lambda b: b != 0, "NUL byte"),
    "env-value": ('env: {{V: "a\\x{b:02x}b"}}', lambda b: b != 0, "NUL byte"),
    "env-name": (
        'env: {{"A\\x{b:02x}B": v}}',
        lambda b: chr(b) in ENV_NAME_CHARS,
        "invalid environment variable name",
    ),
}


def byte_cases() -> list[Case]:
    cases = []
    for table, (line, accepted, needle) in BYTE_TABLES.items():
        for b in range(256):
            lines = {"name": "name: a", "run": "run: echo hi", table: line.format(b=b)}
            if table not in ("name", "run"):
                lines["extra"] = line.format(b=b)
                del lines[table]
            body = "".join(f"      {item}\n" for item in lines.values())
            text = "name: wf\nspec:\n  activities:\n    -" + body[5:]
            cases.append(case(f"{table}-byte-{b:02x}", text, accepted(b), needle))
    for b in range(256):  # the byte itself in the file, not escaped
        raw = (
            b"name: wf\nspec:\n  activities:\n    - name: a\n      run: echo a"
            + bytes([b])
            + b"b\n"
        )
        needle = "not valid UTF-8" if b >= 0x80 else "invalid YAML"
        cases.append(case(f"raw-byte-{b:02x}", raw, b in RAW_ALLOWED, needle))
    return cases


# --- everything else: size, depth, aliases, the shell, paths, types, encodings ----------------

BIG = "x" * (1 << 20)
ODD = (
    "".join(map(chr, range(1, 256)))
    + "".join(map(chr, [*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F]))
    + "🦀"
)
EVERY_BIDI = "".join(map(chr, [*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F]))


def special_cases() -> list[Case]:
    laughs = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    laughs += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    many = "".join(f"    - {{name: a{i}, run: echo {i}}}\n" for i in range(10_000))
    chain = "".join(
        f"    - {{name: c{i}, run: x, dependsOn: [c{(i + 1) % 1000}]}}\n" for i in range(1000)
    )
    return [
        # Aliases and size
        case("billion-laughs", "\n".join(laughs) + "\n", False, "aliases expand to more than"),
        case(
            "alias-text-bomb",
            workflow(f"      env: {{A: &big {BIG}}}\n")
            + "".join(f"    - {{name: b{i}, run: *big}}\n" for i in range(200)),
            False,
            "64 MiB of text",
        ),
        case("huge-run", workflow(f"      run: '{BIG * 2}'\n"), False, "characters long"),
        case("huge-env-value", workflow(f"      env: {{V: {'v' * 200_000}}}\n"), False, "E2BIG"),
        case(
            "huge-environment",
            workflow(
                "      env: {" + ", ".join(f"V{i}: {'v' * 100_000}" for i in range(11)) + "}\n"
            ),
            False,
            "1,048,576 bytes",
        ),
        case("ten-thousand-activities", f"name: wf\nspec:\n  activities:\n{many}", True),
        case("huge-comment", workflow() + "#" + "c" * 5_000_000 + "\n", True),
        case(
            "long-dependency-list",
            workflow("      dependsOn: [" + ", ".join(["zz"] * 300) + "]\n"),
            False,
            "unknown activity 'zz'",
        ),
        case(
            "cycle-of-1000", f"name: wf\nspec:\n  activities:\n{chain}", False, "dependency cycle"
        ),
        # Depth and recursion
        case("deep-flow-list", "name: " + "[" * 100_000 + "]" * 100_000 + "\n", False, "depth"),
        case(
            "deep-flow-map",
            "name: wf\nspec: " + "{a: " * 50_000 + "b" + "}" * 50_000 + "\n",
            False,
            "depth",
        ),
        case(
            "deep-block-map",
            "name: wf\nspec:\n" + "".join(" " * (i + 1) + f"k{i}:\n" for i in range(3000)),
            False,
            "",
        ),
        case(
            "recursive-alias",
            "name: &n [*n]\nspec: {activities: [{name: a, run: x}]}\n",
            False,
            "expected a string",
        ),
        case(
            "recursive-env",
            "name: wf\nspec: &s\n  env: *s\n  activities:\n    - {name: a, run: x}\n",
            False,
            "expected a string, number or boolean",
        ),
        # What the shell or exec cannot take, or what would subvert the shell's start-up
        *(
            case(
                f"reserved-env-{name}", workflow(f"      env: {{'{name}': x}}\n"), False, "reserved"
            )
            for name in ("BASH_ENV", "ENV", "SHELLOPTS", "BASHOPTS", "POSIXLY_CORRECT", "PS4")
        ),
        case(
            "reserved-env-BASH_XTRACEFD",
            workflow(spec="  env: {BASH_XTRACEFD: '1'}\n"),
            False,
            "reserved",
        ),
        case(
            "reserved-env-exported-function",
            workflow("      env: {BASH_FUNC_ls: '() { :; }'}\n"),
            False,
            "reserved",
        ),
        case(
            "reserved-env-exported-function-%%",
            workflow("      env: {'BASH_FUNC_ls%%': x}\n"),
            False,
            "invalid environment variable name",
        ),
        case(
            "reserved-env-akoflow",
            workflow("      env: {AKOFLOW_ATTEMPT: '1'}\n"),
            False,
            "set by the engine",
        ),
        case(
            "env-name-empty",
            workflow("      env: {'': x}\n"),
            False,
            "invalid environment variable name",
        ),
        case(
            "env-name-with-equals",
            workflow("      env: {'A=B': x}\n"),
            False,
            "invalid environment variable name",
        ),
        case("nul-in-run", workflow('      run: "echo \\0"\n'), False, "NUL byte"),
        case("nul-in-image", workflow('      image: "alpine\\0"\n'), False, "NUL byte"),
        case("nul-in-mount-path", workflow('      mountPath: "/data\\0"\n'), False, "NUL byte"),
        case("nul-in-volume", workflow(spec='  volumes: ["/a\\0:/b"]\n'), False, "NUL byte"),
        case(
            "escape-sequence-in-image",
            workflow('      image: "\\e[31mred"\n'),
            False,
            "control characters",
        ),
        case("blank-run", workflow("      run: '   '\n"), False, "non-empty"),
        # Paths
        case("mount-path-root", workflow("      mountPath: /\n"), False, "must not be '/'"),
        case("mount-path-dotdot", workflow("      mountPath: /data/../..\n"), False, "'..'"),
        case("mount-path-relative", workflow(spec="  mountPath: data\n"), False, "absolute"),
        case(
            "mount-path-unnormalised", workflow("      mountPath: /data/./x\n"), False, "normalised"
        ),
        case(
            "volume-remote-root",
            workflow(spec="  volumes: ['/home/me:/']\n"),
            False,
            "must not be '/'",
        ),
        case(
            "volume-dotdot-local",
            workflow(spec="  volumes: ['../../etc:/scratch']\n"),
            False,
            "'..'",
        ),
        case(
            "volume-dotdot-remote",
            workflow(spec="  volumes: ['/in:/scratch/../..']\n"),
            False,
            "'..'",
        ),
        case("volume-no-colon", workflow(spec="  volumes: ['/in']\n"), False, "local:remote"),
        # Odd but fine
        case(
            "bidi-everywhere",
            workflow(f"      run: echo '{EVERY_BIDI}'\n      env: {{B: '{EVERY_BIDI}'}}\n"),
            True,
        ),
        case("emoji-and-astral", workflow("      run: echo 🦀 𝄞 \U0010ffff\n"), True),
        case(
            "every-escape-but-nul",
            workflow('      run: "' + "".join(f"\\x{b:02x}" for b in range(1, 256)) + '"\n'),
            True,
        ),
        case("crlf-line-ends", workflow().replace("\n", "\r\n"), True),
        case("utf8-bom", "\ufeff" + workflow(), True),
        case("yaml-directive", "%YAML 1.1\n---\n" + workflow(), True),
        case(
            "merge-keys",
            "name: wf\nspec:\n  activities:\n    - &d {name: a, run: x}\n    - {<<: *d, name: b}\n",
            True,
        ),
        # Encodings and documents
        case("utf16", workflow().encode("utf-16"), False, "not valid UTF-8"),
        case(
            "latin1", workflow("      run: echo café\n").encode("latin-1"), False, "not valid UTF-8"
        ),
        case("surrogate-escape", workflow('      run: "\\ud800"\n'), False, "invalid Unicode"),
        case("empty-file", "", False, "empty"),
        case("only-comments", "# nothing\n", False, "empty"),
        case("only-document-marker", "---\n", False, "empty"),
        case("a-list", "- a\n- b\n", False, "mapping"),
        case("a-scalar", "hello\n", False, "mapping"),
        case("two-documents", workflow() + "---\n" + workflow(), False, "single YAML document"),
        case("tab-indentation", "name: wf\nspec:\n\tactivities: []\n", False, "invalid YAML"),
        case("unclosed-flow", "name: wf\nspec: {activities: [\n", False, "invalid YAML"),
        case("bad-yaml-version", "%YAML 9.9\n---\n" + workflow(), False, "invalid YAML"),
        # Types YAML makes easy to get wrong, and tags
        case(
            "python-tag",
            "name: !!python/object/apply:os.system [ls]\nspec: {}\n",
            False,
            "unsupported YAML tag",
        ),
        case(
            "foreign-tag",
            "%TAG ! tag:evil.example,2000:\n---\n" + workflow("      image: !x y\n"),
            False,
            "unsupported YAML tag",
        ),
        case("set-tag", workflow("      env: !!set {a, b}\n"), False, "unsupported YAML tag"),
        case("timestamp-name", workflow(name="2001-12-14"), False, "expected a string"),
        case("boolean-name", workflow(name="yes"), False, "expected a string"),
        case(
            "huge-integer", workflow("      retries: " + "9" * 5000 + "\n"), False, "invalid value"
        ),
        case("retries-too-many", workflow("      retries: 1000000\n"), False, "between 0 and 100"),
        case("timeout-nan", workflow("      timeout: .nan\n"), False, "finite"),
        case("timeout-negative", workflow("      timeout: -5\n"), False, "greater than 0"),
        case("cpu-infinite", workflow("      cpuLimit: .inf\n"), False, "finite"),
        case("memory-1e300", workflow("      memoryLimit: 1e300\n"), False, "too large"),
        case("alpha-nan", workflow(spec="  alpha: .nan\n"), False, "less than or equal to 1"),
        case("merge-of-a-number", workflow("      <<: 1\n"), False, "merge"),
        case("complex-key", workflow("      ? {a: b}\n      : c\n"), False, "must be a scalar"),
        case("null-env-key", workflow("      env: {~: a}\n"), False, "keys must be strings"),
        case(
            "duplicate-keys",
            workflow("      run: echo 1\n      run: echo 2\n"),
            False,
            "duplicate key",
        ),
        case(
            "duplicate-activities",
            workflow() + "    - {name: a, run: x}\n",
            False,
            "duplicate activity name",
        ),
        case("engine-field", workflow("      status: 2\n"), False, "set by the engine"),
        case("self-dependency", workflow("      dependsOn: [a]\n"), False, "depends on itself"),
        case("uppercase-name", workflow(name="Hello"), False, "uppercase"),
        case("fullwidth-name", workflow(name="'ｗｆ'"), False, "invalid workflow name"),
        case("unknown-runtime", workflow("      runtime: lambda\n"), False, "unknown runtime"),
        case("bidi-runtime", workflow('      runtime: "lo\\u202ecal"\n'), False, "unknown runtime"),
    ]


CASES = byte_cases() + special_cases()
BY_ID = {c.id: c for c in CASES}
assert len(BY_ID) == len(CASES), "case ids must be unique"


# --- the loader, in-process: every case on its own ----------------------------------------------


def loader_verdict(c: Case, path: Path) -> str | None:
    """None when the loader answers ``c`` as expected, else what went wrong."""
    path.write_bytes(c.data)
    try:
        load_workflow_file(path, runtime_check=check_runtime_name)
    except WorkflowValidationError as exc:
        messages = "\n".join(e.message for e in exc.errors)
        if c.valid:
            return f"rejected: {exc.report(3)}"
        if not exc.errors or not all(e.message for e in exc.errors):
            return "rejected without a message"
        return None if c.needle in messages else f"no {c.needle!r} in: {exc.report(3)}"
    return None if c.valid else "accepted"


FAMILIES = sorted({c.id.rsplit("-", 1)[0] for c in CASES if "byte-" in c.id})


@pytest.mark.parametrize("family", FAMILIES)
def test_loader_byte_table(family: str, tmp_path: Path) -> None:
    cases = [c for c in CASES if c.id.startswith(family + "-")]
    assert len(cases) == 256
    wrong = {c.id: v for c in cases if (v := loader_verdict(c, tmp_path / "wf.yaml"))}
    assert not wrong, wrong


@pytest.mark.parametrize("c", [c for c in CASES if "byte-" not in c.id], ids=lambda c: c.id)
def test_loader_case(c: Case, tmp_path: Path) -> None:
    verdict = loader_verdict(c, tmp_path / "wf.yaml")
    assert verdict is None, verdict


def test_loader_reads_neither_directories_nor_endless_files(tmp_path: Path) -> None:
    for path, needle in ((tmp_path, "directory"), (Path("/dev/zero"), "larger than 64 MiB")):
        with pytest.raises(WorkflowValidationError) as info:
            load_workflow_file(path)
        assert needle in info.value.errors[0].message


# --- the CLI: the cases' files in one `akoflow validate` ----------------------------------------


# The CLI gets every special case and, of each byte table (which the loader and the API
# cover byte by byte), the bytes that matter most: NUL, tab, line ends, ESC, space, '"',
# '-', digits, letters, '_', DEL, the first and last non-ASCII bytes.
CLI_BYTES = (
    0x00,
    0x09,
    0x0A,
    0x0D,
    0x1B,
    0x20,
    0x22,
    0x2D,
    0x30,
    0x41,
    0x5F,
    0x61,
    0x7F,
    0x80,
    0xFF,
)
CLI_CASES = [c for c in CASES if "byte-" not in c.id or int(c.id[-2:], 16) in CLI_BYTES]


def test_cli_validate_answers_every_case(tmp_path: Path) -> None:
    files = []
    for n, c in enumerate(CLI_CASES):
        path = tmp_path / f"case-{n:04d}.yaml"
        path.write_bytes(c.data)
        files.append((c, path))
    directory = tmp_path / "a-directory.yaml"
    directory.mkdir()
    argv = [sys.executable, "-m", "akoflow", "validate", *(str(p) for _, p in files)]
    res = subprocess.run(
        [*argv, str(directory)],
        capture_output=True,
        timeout=CALL_TIMEOUT * 2,
        env=cli_env(AKOFLOW_HOME=str(tmp_path / "state")),
    )
    out = res.stdout.decode("utf-8", "replace")
    err = res.stderr.decode("utf-8", "replace")
    assert res.returncode == 2, err[-3000:]
    assert "Traceback" not in out + err
    valid = set(re.findall(r"^valid (\S+): ", out, re.M))
    invalid = set(re.findall(r"^invalid workflow (\S+): \d+ errors?$", err, re.M))
    wrong = [
        c.id
        for c, path in files
        if (str(path) in valid, str(path) in invalid) != (c.valid, not c.valid)
    ]
    assert not wrong, wrong
    assert f"{directory}: cannot read the workflow file: it is a directory" in err
    assert not (tmp_path / "state").exists()  # validate stores nothing


# --- the API: one server for the module ---------------------------------------------------------


@pytest.fixture(scope="module")
def hostile_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(
        state_dir=tmp_path_factory.mktemp("hostile") / "state", port=free_port(), env=cli_env()
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(hostile_server: Server) -> Iterator[httpx.Client]:
    with hostile_server.client() as api:
        api.timeout = httpx.Timeout(CALL_TIMEOUT)
        yield api


def post_workflow(api: httpx.Client, data: bytes, path: str = "/workflows/") -> httpx.Response:
    return api.post(API + path, json={"workflow": base64.b64encode(data).decode()})


def stored(api: httpx.Client) -> int:
    return int(api.get(API + "/workflows/", params={"activities": "false"}).json()["total"])


SPECIAL = [c for c in CASES if "byte-" not in c.id]


@pytest.mark.parametrize("c", SPECIAL, ids=lambda c: c.id)
def test_api_case(c: Case, client: httpx.Client) -> None:
    """Rejected cases are submitted for real (and must store nothing); valid ones are only
    validated (running ten thousand activities is not the point here)."""
    before = stored(client)
    res = post_workflow(client, c.data, "/workflows/validate/" if c.valid else "/workflows/")
    if c.valid:
        assert res.status_code == 200, res.text[:2000]
        assert res.json()["data"]["valid"] is True
        return
    body = res.json()
    # 400: the bytes are not UTF-8 text (a malformed request); 422: an invalid workflow.
    expected = 400 if c.needle == "not valid UTF-8" else 422
    assert res.status_code == expected, res.text[:2000]
    messages = body["detail"] + "\n" + "\n".join(e["message"] for e in body["errors"])
    needle = "does not decode to UTF-8" if expected == 400 else c.needle
    assert needle in messages, messages[:2000]
    assert stored(client) == before


@pytest.mark.parametrize("table", sorted(BYTE_TABLES))
def test_api_byte_table(table: str, client: httpx.Client) -> None:
    """All 256 bytes of a table in one workflow (one activity a byte): the answer names
    exactly the activities whose byte is refused."""
    line, accepted, needle = BYTE_TABLES[table]
    items = []
    for b in range(256):
        entry = line.format(b=b)
        if table == "name":
            items.append(f"    - {{{entry}, run: echo}}\n")
        elif table == "run":
            items.append(f"    - {{name: a{b}, {entry}}}\n")
        else:
            items.append(f"    - {{name: a{b}, run: echo, {entry}}}\n")
    text = "name: bytes\nspec:\n  activities:\n" + "".join(items)
    before = stored(client)
    res = post_workflow(client, text.encode())
    refused = [b for b in range(256) if not accepted(b)]
    assert res.status_code == 422, res.text[:2000]
    errors = res.json()["errors"]
    field = {"name": "name", "run": "run", "env-value": "env.V", "env-name": "env."}[table]
    flagged = sorted(
        int(m.group(1))
        for e in errors
        if (m := re.match(r"spec\.activities\[(\d+)\]\.(.*)$", e["path"], re.S))
        and m.group(2).startswith(field)
    )
    assert flagged == refused
    assert len(errors) == len(refused)
    assert all(needle in e["message"] for e in errors)
    assert stored(client) == before


def test_api_raw_bytes_in_the_file(client: httpx.Client) -> None:
    wrong = {}
    for b in range(256):
        c = BY_ID[f"raw-byte-{b:02x}"]
        res = post_workflow(client, c.data, "/workflows/validate/")
        expected = 200 if c.valid else 400 if b >= 0x80 else 422
        if res.status_code != expected:
            wrong[hex(b)] = (res.status_code, res.text[:300])
    assert not wrong, wrong


MALFORMED_BODIES: list[tuple[str, bytes]] = [
    ("empty", b""),
    ("not-json", b"workflow: yes"),
    ("json-list", b"[1, 2]"),
    ("json-string", b'"abc"'),
    ("workflow-number", b'{"workflow": 3}'),
    ("workflow-null", b'{"workflow": null}'),
    ("workflow-missing", b'{"flow": "eA=="}'),
    ("not-base64", b'{"workflow": "%%%"}'),
    (
        "base64-of-binary",
        json.dumps({"workflow": base64.b64encode(bytes(range(256))).decode()}).encode(),
    ),
    ("deeply-nested-json", b'{"workflow": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
    ("huge-json-number", b'{"workflow": 1' + b"0" * 100_000 + b"}"),
    ("nul-in-json", b'{"workflow": "\\u0000"}'),
    ("invalid-utf8-json", b'{"workflow": "\xff\xfe"}'),
    ("lone-surrogate-json", b'{"workflow": "\\ud800"}'),
]


@pytest.mark.parametrize(("name", "body"), MALFORMED_BODIES, ids=[n for n, _ in MALFORMED_BODIES])
def test_api_malformed_bodies_are_400(name: str, body: bytes, client: httpx.Client) -> None:
    before = stored(client)
    res = client.post(
        API + "/workflows/", content=body, headers={"Content-Type": "application/json"}
    )
    assert res.status_code == 400, res.text[:1000]
    assert res.json()["detail"]
    assert stored(client) == before


def test_api_body_over_the_limit_is_413_and_not_read_to_its_end(
    hostile_server: Server, client: httpx.Client
) -> None:
    before = stored(client)
    # Announced too large: refused before any of it is read.
    head = (
        f"POST {API}/workflows/ HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {hostile_server.token}"
        f"\r\nContent-Length: {1 << 40}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", hostile_server.port), timeout=CALL_TIMEOUT) as s:
        s.sendall(head + b"x" * 65536)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:300]
    # Not announced (chunked): read up to the limit, then refused; the rest is never read.
    sent = 0

    def endless() -> Iterator[bytes]:
        nonlocal sent
        block = b"x" * (1 << 20)
        while sent < 1 << 40:
            sent += len(block)
            yield block

    try:
        res = client.post(API + "/workflows/", content=endless())
        assert res.status_code == 413
    except httpx.TransportError:
        pass  # the server closed the connection while the client was still sending
    assert sent < 200 << 20
    assert stored(client) == before


RUN_ON_PURPOSE: list[int] = []  # workflows this module stores on purpose


def test_an_odd_but_valid_workflow_runs_and_its_output_comes_back(client: httpx.Client) -> None:
    """Every byte 0x01-0xff a script can hold, bidi controls and astral characters: stored,
    run, logged and served back without a hitch."""
    text = workflow(
        "      run: |\n"
        '        printf "%s\\n" "$ODD"\n'
        "        printf 'a\\001b\\033[31mc\\377d\\n'\n"
        "      env:\n"
        '        ODD: "' + "".join(f"\\x{b:02x}" for b in range(1, 256)) + f'{EVERY_BIDI}🦀"\n',
        name="odd",
    )
    res = post_workflow(client, text.encode())
    assert res.status_code == 200, res.text[:2000]
    wf_id = res.json()["workflow_id"]
    RUN_ON_PURPOSE.append(wf_id)
    assert wait_workflow(client, wf_id, timeout=CALL_TIMEOUT)["state"] == "succeeded"
    logs = client.get(f"{API}/workflows/{wf_id}/activities/a/logs/")
    assert logs.status_code == 200
    output = "".join(chunk["data"] for chunk in logs.json()["data"])
    assert ODD in output  # every character back as it was given


def test_the_server_log_has_no_error_and_no_5xx(
    hostile_server: Server, client: httpx.Client
) -> None:
    """Runs last in the module: after every case above."""
    assert stored(client) == len(RUN_ON_PURPOSE)  # no rejected case left anything behind
    assert client.get("/akoflow-server/check-service/").text == "ok"
    output = hostile_server.output()
    assert "Traceback" not in output
    assert "ERROR" not in output and "unhandled error" not in output
    assert not re.search(r'HTTP/1\.1" 5\d\d', output)
