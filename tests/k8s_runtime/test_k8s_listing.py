"""Pure parts of remote provenance on Kubernetes: the wrapper the container runs (executed for
real with dash, bash and BusyBox sh on a temp dir) and the filter of the pod's log."""

from __future__ import annotations

import random
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from akoflow.provenance.remote import remote_files
from akoflow.runtimes.kubernetes.listing import WRAPPER, LogCopy, LogFilter, files_token
from tests.docker_support.dockerd import BUSYBOX

TOKEN = files_token("wf1-align-a1-0123456789")

# Quotes of every kind, $0, $#, a here-doc, stderr, a last line without newline, exit 3.
SCRIPT = r"""printf '%s|%s|%s\n' "$0" "$#" 'it'"'"'s "q" \$HOME `x`'
cat <<'EOF'
$(not run) "and" 'kept' \n
EOF
echo to-stderr >&2
mkdir -p sub && cat input.txt input.txt > sub/double.txt
printf 'no newline at the end'
exit 3"""


def busybox_path(tmp_path: Path, without: tuple[str, ...] = ()) -> str:
    """A PATH with BusyBox applets only (as in the test image), minus ``without``."""
    bindir = tmp_path / "bb-bin"
    bindir.mkdir()
    applets = subprocess.run(
        [BUSYBOX, "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    for applet in applets:
        if applet not in without:
            (bindir / applet).symlink_to(BUSYBOX)
    return str(bindir)


def workdir(root: Path) -> Path:
    d = root
    d.mkdir()
    (d / "input.txt").write_text("seed\n")
    (d / ".akoflow").mkdir()  # AkôFlow's own control dir: never listed
    (d / ".akoflow" / "x").write_text("x")
    (d / "akoflow_finished_1").write_text("")
    return d


def shells(tmp_path: Path) -> dict[str, tuple[str, dict[str, str] | None]]:
    assert shutil.which("dash") and shutil.which("bash")
    return {
        "dash": ("dash", None),
        "bash": ("bash", None),
        "busybox": ("sh", {"PATH": busybox_path(tmp_path)}),
    }


@pytest.mark.parametrize("name", ["dash", "bash", "busybox"])
def test_the_wrapper_keeps_output_and_exit_code_and_lists_the_directory(
    tmp_path: Path, name: str
) -> None:
    shell, env = shells(tmp_path)[name]
    plain = subprocess.run(
        [shell, "-c", SCRIPT, "akoflow-align"],
        cwd=workdir(tmp_path / "plain"),
        capture_output=True,
        env=env,
    )
    wrapped = subprocess.run(
        [shell, "-c", WRAPPER, "akoflow-align", SCRIPT, shell, TOKEN],
        cwd=workdir(tmp_path / "wrapped"),
        capture_output=True,
        env=env,
    )
    assert plain.returncode == wrapped.returncode == 3
    assert wrapped.stderr == plain.stderr == b"to-stderr\n"  # nothing of the wrapper's
    assert plain.stdout.startswith(b'akoflow-align|0|it\'s "q" \\$HOME `x`\n')
    assert b"$(not run)" in plain.stdout and plain.stdout.endswith(b"at the end")
    f = LogFilter(TOKEN)
    assert f.feed(wrapped.stdout) + f.close() == plain.stdout  # the script's, byte for byte
    files = remote_files("k8s:pvc/p", f.listings.get("before"), f.listings.get("after"))
    assert files is not None
    assert set(files.before) == {"input.txt"}
    assert set(files.after) == {"input.txt", "sub/double.txt"}
    assert files.after["sub/double.txt"].size == 10
    assert files.before_time is not None and files.after_time is not None


def test_the_wrapper_succeeds_and_keeps_zero(tmp_path: Path) -> None:
    d = workdir(tmp_path / "d")
    done = subprocess.run(
        ["dash", "-c", WRAPPER, "akoflow-a", "echo ok", "dash", TOKEN], cwd=d, capture_output=True
    )
    assert done.returncode == 0
    f = LogFilter(TOKEN)
    assert f.feed(done.stdout) + f.close() == b"ok\n"
    assert set(f.listings) == {"before", "after"}


@pytest.mark.parametrize("missing", ["find", "stat"])  # BusyBox find has no -printf
def test_an_image_without_find_runs_the_script_and_lists_nothing(
    tmp_path: Path, missing: str
) -> None:
    # dash: BusyBox's sh would run its own applets whatever the PATH says.
    dash = shutil.which("dash")
    assert dash
    env = {"PATH": busybox_path(tmp_path, without=(missing,))}
    done = subprocess.run(
        [dash, "-c", WRAPPER, "akoflow-a", "echo ok; exit 5", dash, TOKEN],
        cwd=workdir(tmp_path / "d"),
        capture_output=True,
        env=env,
    )
    assert (done.returncode, done.stdout, done.stderr) == (5, b"ok\n", b"")
    f = LogFilter(TOKEN)
    assert f.feed(done.stdout) + f.close() == b"ok\n"
    assert f.listings == {}


def test_the_wrapper_has_nothing_kubernetes_would_expand() -> None:
    """Kubernetes expands $(VAR) and turns $$ into $ in a container's command."""
    assert "$$" not in WRAPPER
    assert not re.search(r"\$\([A-Za-z_][A-Za-z0-9_]*\)", WRAPPER)


def block(label: str, *lines: str, token: str = TOKEN) -> bytes:
    body = "".join(line + "\n" for line in lines)
    return (f"\x1eakoflow-files {token} {label}\n{body}\x1eakoflow-files {token} end\n").encode()


BEFORE = ("# akoflow-files 1 1700000000", "5\t1699999999.5\tinput.txt")
AFTER = (*BEFORE, "3\t1700000001.25\tout.txt", "7\t1700000001\tsub/x y.txt")
LOG = (
    block("before", *BEFORE)
    + b"line one\n\xff\xfebinary\x1e not a marker\n"
    + block("before", *BEFORE, token="0000000000000000")  # another attempt's token: output
    + b"no newline"
    # stderr lines the container runtime put inside the block: output, not listing
    + block("after", *AFTER[:2], "oops: racing", f"x\x1eakoflow-files {TOKEN} y", *AFTER[2:])
)
EXPECTED = (
    b"line one\n\xff\xfebinary\x1e not a marker\n"
    + block("before", *BEFORE, token="0000000000000000")
    + f"no newlineoops: racing\nx\x1eakoflow-files {TOKEN} y\n".encode()
)


def text(lines: tuple[str, ...]) -> str:
    return "".join(line + "\n" for line in lines)


def filtered(chunks: list[bytes]) -> tuple[bytes, dict[str, str]]:
    f = LogFilter(TOKEN)
    out = b"".join(f.feed(c) for c in chunks) + f.close()
    return out, f.listings


def test_the_filter_keeps_the_output_and_the_listings() -> None:
    out, listings = filtered([LOG])
    assert out == EXPECTED
    assert listings == {"before": text(BEFORE), "after": text(AFTER)}


def test_the_filter_does_not_depend_on_chunk_boundaries() -> None:
    whole = filtered([LOG])
    for i in range(len(LOG) + 1):  # one cut anywhere, incl. inside each marker
        assert filtered([LOG[:i], LOG[i:]]) == whole, i
    rng = random.Random(7)
    for _ in range(300):  # many cuts
        cuts = sorted(rng.sample(range(1, len(LOG)), rng.randint(2, 40)))
        chunks = [LOG[a:b] for a, b in zip([0, *cuts], [*cuts, len(LOG)], strict=True)]
        assert filtered(chunks) == whole
    assert filtered([bytes([b]) for b in LOG]) == whole  # byte by byte


def test_output_is_not_held_back_except_a_possible_marker_start() -> None:
    f = LogFilter(TOKEN)
    assert f.feed(b"started\n") == b"started\n"  # shown while the script runs
    assert f.feed(b"x\x1eakoflow-fi") == b"x"  # may be a marker: wait for more
    assert f.feed(b"les nope\n") == b"\x1eakoflow-files nope\n"


def test_a_stderr_line_inside_a_block_stays_in_the_output() -> None:
    log = block("before", *BEFORE) + b"ok\n" + block("after", AFTER[0], "oops: racing", AFTER[1])
    out, listings = filtered([log])
    assert out == b"ok\noops: racing\n"
    assert listings["after"] == text(AFTER[:2])


def test_an_unfinished_block_has_no_listing() -> None:
    log = block("before", *BEFORE) + b"ok\n" + block("after", *AFTER)[:-30]
    out, listings = filtered([log])
    assert out == b"ok\n"
    assert set(listings) == {"before"}
    assert remote_files("k", listings.get("before"), listings.get("after")) is None


def test_a_reconnect_anywhere_neither_loses_nor_duplicates() -> None:
    """What ``_follow`` does after a cut: read the log again from its start and skip as many
    filtered bytes as are stored."""
    whole, listings = filtered([LOG])
    rng = random.Random(11)
    for cut in range(len(LOG) + 1):
        first = LogCopy(TOKEN, 0)
        stored = first.feed(LOG[:cut])  # the stream broke here: not closed
        again = LogCopy(TOKEN, len(stored))
        pieces = sorted(rng.sample(range(1, len(LOG)), 5))
        chunks = [LOG[a:b] for a, b in zip([0, *pieces], [*pieces, len(LOG)], strict=True)]
        stored += b"".join(again.feed(c) for c in chunks) + again.close()
        assert stored == whole, cut
        assert again.listings == listings


def test_tokens_are_per_attempt_and_stable() -> None:
    assert files_token("wf1-a-a1-x") == files_token("wf1-a-a1-x")
    assert files_token("wf1-a-a1-x") != files_token("wf1-a-a2-x")
    assert re.fullmatch(r"[0-9a-f]{16}", TOKEN)
