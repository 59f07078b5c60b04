"""``pods/exec`` over WebSocket and the tar copies built on it, against the emulated cluster.

The emulated API server serves exec as the real one does (v5/v4 channel subprotocols, the
status on channel 3) and runs each command with ``docker exec`` in the pod's container, so
the copies below go through a real ``tar`` and ``sha256sum`` in a real container that sees
the pod's PVC. Every test's result is read back from the PVC's directory on this host.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import ssl
import tarfile
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import trustme
from websockets.asyncio.client import connect

from akoflow.config import RuntimeConfig
from akoflow.runtimes.kubernetes.exec_stream import (
    ExecFailed,
    ExecRefused,
    ExecTimeouts,
    ExecTransportError,
    exec_in_pod,
)
from akoflow.runtimes.kubernetes.pod_copy import (
    CopyError,
    PodTarget,
    copy_from_pod,
    copy_to_pod,
)
from akoflow.runtimes.kubernetes.settings import read_settings
from akoflow.runtimes.kubernetes.tarstream import TarReceiver
from tests.conftest import wait_for
from tests.docker_support.dockerd import PrivateDockerd
from tests.k8s_runtime.conftest import IMAGE, _start_cluster
from tests.k8s_support.cluster import EmulatedCluster

NS, CLAIM, MOUNT = "xfer", "work", "/data"
BOUND = ExecTimeouts(connect=5, ping_interval=2, ping_timeout=4, close=2)


def start_pod(cluster: EmulatedCluster, name: str) -> None:
    """A bare Pod (as a transfer pod is) that mounts the PVC at /data, running."""

    def create() -> None:
        store = cluster.store
        if store.get("v1/namespaces", "", NS) is None:
            store.create("v1/namespaces", {"metadata": {"name": NS}})
            claim = {"metadata": {"name": CLAIM, "namespace": NS}, "spec": {}}
            store.create("v1/persistentvolumeclaims", claim)
        container = {
            "name": "main",
            "image": IMAGE,
            "command": ["sleep", "3600"],
            "volumeMounts": [{"name": "data", "mountPath": MOUNT}],
        }
        volume = {"name": "data", "persistentVolumeClaim": {"claimName": CLAIM}}
        pod = {
            "metadata": {"name": name, "namespace": NS},
            "spec": {"containers": [container], "volumes": [volume]},
        }
        store.create("v1/pods", pod)

    cluster.call(create)

    def running() -> bool:
        return cluster.call(
            lambda: (pod := cluster.kubelet.pods.get((NS, name))) is not None and pod.running
        )

    wait_for(running, 60)


def target_of(cluster: EmulatedCluster, pod: str = "p1", **env: str) -> PodTarget:
    _, config = read_settings(RuntimeConfig.from_env("k8s", cluster.env("k8s", **env)))
    return PodTarget(config, NS, pod, "main", BOUND)


def pvc(cluster: EmulatedCluster) -> Path:
    return cluster.kubelet.pvc_dir(NS, CLAIM)


@pytest.fixture(scope="module")
def shared(
    tmp_path_factory: pytest.TempPathFactory, k8s_dockerd: PrivateDockerd
) -> Iterator[EmulatedCluster]:
    c = _start_cluster(tmp_path_factory.mktemp("exec"), k8s_dockerd, "exec")
    try:
        start_pod(c, "p1")
        yield c
    finally:
        c.close()


async def chunks(data: bytes, size: int = 7) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


# ------------------------------------------------------------------ exec


def test_output_exit_codes_and_stderr(shared: EmulatedCluster) -> None:
    t = target_of(shared)
    out: list[bytes] = []

    async def sink(data: bytes) -> None:
        out.append(data)

    async def main() -> None:
        ok = await exec_in_pod(
            t.cluster, NS, "p1", ["sh", "-c", "echo hi; echo oops >&2"], stdout=sink
        )
        assert (ok.exit_code, ok.stderr, ok.protocol) == (0, b"oops\n", "v5.channel.k8s.io")
        assert b"".join(out) == b"hi\n"
        with pytest.raises(ExecFailed) as failed:
            await exec_in_pod(t.cluster, NS, "p1", ["sh", "-c", "echo bad >&2; exit 3"])
        assert failed.value.exit_code == 3 and failed.value.stderr == b"bad\n"
        assert "bad" in str(failed.value)
        unchecked = await exec_in_pod(t.cluster, NS, "p1", ["sh", "-c", "exit 42"], check=False)
        assert unchecked.exit_code == 42
        # the pod sees its PVC where it mounts it
        (pvc(shared) / "seen.txt").write_bytes(b"from the host\n")
        out.clear()
        await exec_in_pod(t.cluster, NS, "p1", ["cat", f"{MOUNT}/seen.txt"], stdout=sink)
        assert b"".join(out) == b"from the host\n"

    asyncio.run(main())
    assert shared.counts()["exec pods"] >= 4


def test_stdin_is_streamed_and_closed(shared: EmulatedCluster) -> None:
    """v5's close of stdin reaches the command as end of file (cat and wc end)."""
    t = target_of(shared)
    data = bytes(range(256)) * 41
    out: list[bytes] = []

    async def sink(chunk: bytes) -> None:
        out.append(chunk)

    async def main() -> None:
        await exec_in_pod(
            t.cluster,
            NS,
            "p1",
            ["sh", "-c", "cat > /tmp/in && wc -c < /tmp/in && sha256sum < /tmp/in"],
            stdin=chunks(data, 1000),
            stdout=sink,
        )
        out.clear()
        await exec_in_pod(
            t.cluster,
            NS,
            "p1",
            ["sh", "-c", "wc -c < /tmp/in; sha256sum < /tmp/in"],
            stdout=sink,
        )
        size, digest = b"".join(out).decode().split("\n")[:2]
        assert int(size) == len(data)
        assert digest.split()[0] == hashlib.sha256(data).hexdigest()
        out.clear()
        empty = await exec_in_pod(
            t.cluster, NS, "p1", ["sh", "-c", "cat; echo end"], stdin=chunks(b""), stdout=sink
        )
        assert empty.exit_code == 0 and b"".join(out) == b"end\n"

    asyncio.run(main())


def _raw_url(cluster: EmulatedCluster, query: str) -> str:
    return f"wss://127.0.0.1:{cluster.port}/api/v1/namespaces/{NS}/pods/p1/exec?{query}"


def _tls(cluster: EmulatedCluster) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cluster.ca_file))


async def _frames(cluster: EmulatedCluster, query: str, protocol: str) -> list[bytes]:
    headers = {"Authorization": f"Bearer {cluster.token}"}
    frames: list[bytes] = []
    async with connect(
        _raw_url(cluster, query),
        ssl=_tls(cluster),
        additional_headers=headers,
        subprotocols=[protocol],  # type: ignore[list-item]
        proxy=None,
    ) as ws:
        assert ws.subprotocol == protocol
        async for message in ws:
            assert isinstance(message, bytes)
            frames.append(message)
    return frames


def test_wire_format_v4_and_v5(shared: EmulatedCluster) -> None:
    """What a client sees on the wire: an empty message on stdout first, the output on its
    channel, then the Status on channel 3, then a normal close; v4 as v5."""

    async def main() -> None:
        cmd = "command=sh&command=-c&command=echo+out%3B+echo+err+%3E%262%3B+exit+7"
        for protocol in ("v4.channel.k8s.io", "v5.channel.k8s.io"):
            frames = await _frames(shared, f"{cmd}&stdout=true&stderr=true", protocol)
            assert frames[0] == b"\x01"
            body = {ch: b"".join(f[1:] for f in frames if f[0] == ch) for ch in (1, 2)}
            assert body == {1: b"out\n", 2: b"err\n"}
            assert frames[-1][0] == 3
            status = json.loads(frames[-1][1:])
            assert status["status"] == "Failure"
            assert status["reason"] == "NonZeroExitCode"
            assert status["details"]["causes"] == [{"reason": "ExitCode", "message": "7"}]
        frames = await _frames(shared, "command=true&stderr=true", "v5.channel.k8s.io")
        assert frames[0] == b"\x02"
        assert json.loads(frames[-1][1:]) == {"metadata": {}, "status": "Success"}

    asyncio.run(main())


def test_missing_pod_and_refusals(shared: EmulatedCluster) -> None:
    t = target_of(shared)

    async def main() -> None:
        with pytest.raises(ExecRefused) as missing:
            await exec_in_pod(t.cluster, NS, "nope", ["true"])
        assert missing.value.code == 404 and missing.value.reason == "NotFound"
        assert 'pods "nope" not found' in str(missing.value)
        with pytest.raises(ExecRefused) as bad_container:
            await exec_in_pod(t.cluster, NS, "p1", ["true"], container="other")
        assert bad_container.value.code == 400
        assert "container other is not valid for pod p1" in str(bad_container.value)
        gone = PodTarget(t.cluster, NS, "nope", None, BOUND)
        with pytest.raises(ExecRefused):
            await copy_to_pod(gone, Path("/"), ["etc/hostname"], "/data")

    asyncio.run(main())


def test_token_required_and_tls_verified(shared: EmulatedCluster, tmp_path: Path) -> None:
    wrong_token = target_of(shared, API_SERVER_TOKEN="not-the-token")
    other_ca = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    wrong_ca = target_of(shared, CA_FILE=str(other_ca))
    before = shared.counts()["unauthorized /api/v1/namespaces/xfer/pods/p1/exec"]

    async def main() -> None:
        with pytest.raises(ExecRefused) as refused:
            await exec_in_pod(wrong_token.cluster, NS, "p1", ["true"])
        assert refused.value.code == 401
        with pytest.raises(ExecTransportError) as untrusted:
            await exec_in_pod(wrong_ca.cluster, NS, "p1", ["true"])
        assert "TLS certificate verification failed" in str(untrusted.value)
        assert "not-the-token" not in str(refused.value) + str(untrusted.value)

    asyncio.run(main())
    assert shared.counts()["unauthorized /api/v1/namespaces/xfer/pods/p1/exec"] == before + 1


# ------------------------------------------------------------------ copies


def _write_random(path: Path, size: int) -> None:
    block = os.urandom(1 << 20)
    with open(path, "wb") as f:
        for i in range(size >> 20):
            f.write(block[i:] + block[:i])  # every MiB differs


class PeakRss:
    """The highest RSS of this process (cluster thread included) while it runs."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        me = psutil.Process()
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, me.memory_info().rss)

    def __enter__(self) -> PeakRss:
        self.base = psutil.Process().memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


def test_50_mib_both_ways_in_bounded_memory(shared: EmulatedCluster, tmp_path: Path) -> None:
    size = 50 << 20
    src = tmp_path / "out"
    (src / "big").mkdir(parents=True)
    _write_random(src / "big" / "file.bin", size)
    (src / "big" / "small.txt").write_bytes(b"small\n")
    want = sha256_file(src / "big" / "file.bin")
    t = target_of(shared)
    back = tmp_path / "back"

    with PeakRss() as rss:
        sent = asyncio.run(copy_to_pod(t, src, ["big"], f"{MOUNT}/run1"))
        got = asyncio.run(copy_from_pod(t, f"{MOUNT}/run1", ["big"], back))
    assert sent.files[b"big/file.bin"].size == size
    assert sent.files[b"big/file.bin"].sha256 == want
    assert sha256_file(pvc(shared) / "run1" / "big" / "file.bin") == want
    assert sha256_file(back / "big" / "file.bin") == want
    assert (back / "big" / "small.txt").read_bytes() == b"small\n"
    assert got.files == sent.files and got.bytes == size + 6
    assert sorted(os.listdir(back / "big")) == ["file.bin", "small.txt"]  # no temporary left
    # Streamed: the process never held the file (50 MiB) or a large part of it.
    assert rss.peak - rss.base < 24 << 20, (rss.base, rss.peak)


def test_names_are_bytes_end_to_end(shared: EmulatedCluster, tmp_path: Path) -> None:
    """Latin-1, a newline, a backslash, a leading dash and spaces: names survive both ways."""
    odd = [b"caf\xe9.txt", b"new\nline", b"back\\slash %b", b"-dash", b" two  spaces "]
    src = tmp_path / "src"
    src.mkdir()
    for i, name in enumerate(odd):
        with open(os.path.join(os.fsencode(src), name), "wb") as f:
            f.write(b"content %d\n" % i)
    dirname = b"d\xff\xfe"
    os.mkdir(os.path.join(os.fsencode(src), dirname))
    with open(os.path.join(os.fsencode(src), dirname, b"inner\xe9"), "wb") as f:
        f.write(b"inner\n")
    t = target_of(shared)
    back = tmp_path / "back"

    async def main() -> None:
        await copy_to_pod(t, src, [*odd, dirname], f"{MOUNT}/names")
        report = await copy_from_pod(t, f"{MOUNT}/names", [*odd, dirname], back)
        assert set(report.files) == {*odd, dirname + b"/inner\xe9"}
        everything = await copy_from_pod(t, f"{MOUNT}/names", ["."], tmp_path / "all")
        assert everything.files == report.files

    asyncio.run(main())
    in_pod = os.fsencode(pvc(shared) / "names")
    assert sorted(os.listdir(in_pod)) == sorted([*odd, dirname])
    for i, name in enumerate(odd):
        with open(os.path.join(os.fsencode(back), name), "rb") as f:
            assert f.read() == b"content %d\n" % i
    with open(os.path.join(os.fsencode(back), dirname, b"inner\xe9"), "rb") as f:
        assert f.read() == b"inner\n"


def test_copies_over_v4(shared: EmulatedCluster, tmp_path: Path) -> None:
    """An API server that speaks only v4 (stdin cannot be closed) still gets whole copies."""
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "one.txt").write_bytes(b"one\n" * 1000)
    (src / "two\xe9.txt".encode("latin-1").decode("utf-8", "surrogateescape")).write_bytes(b"2")
    base = target_of(shared)
    v4 = PodTarget(base.cluster, NS, "p1", "main", BOUND, protocols=("v4.channel.k8s.io",))

    async def main() -> None:
        result = await exec_in_pod(
            v4.cluster, NS, "p1", ["true"], protocols=v4.protocols, check=False
        )
        assert result.protocol == "v4.channel.k8s.io"
        sent = await copy_to_pod(v4, src, ["."], f"{MOUNT}/v4")
        got = await copy_from_pod(v4, f"{MOUNT}/v4", ["."], tmp_path / "back")
        assert got.files == sent.files
        assert set(sent.files) == {b"d/one.txt", b"two\xe9.txt"}

    asyncio.run(asyncio.wait_for(main(), 60))  # a guard: waiting for an EOF would hang
    assert (tmp_path / "back" / "d" / "one.txt").read_bytes() == b"one\n" * 1000


def test_a_failed_copy_out_leaves_nothing(shared: EmulatedCluster, tmp_path: Path) -> None:
    (pvc(shared) / "bad").mkdir(exist_ok=True)
    (pvc(shared) / "bad" / "a.txt").write_bytes(b"a\n")
    link = pvc(shared) / "bad" / "link"
    if not link.is_symlink():
        link.symlink_to("/etc/passwd")
    t = target_of(shared)
    back = tmp_path / "back"

    async def main() -> None:
        with pytest.raises(CopyError, match="link"):
            await copy_from_pod(t, f"{MOUNT}/bad", ["a.txt", "link"], back)
        with pytest.raises(CopyError, match="link"):
            await copy_from_pod(t, f"{MOUNT}/bad", ["."], back)
        with pytest.raises(CopyError, match="No such file"):
            await copy_from_pod(t, f"{MOUNT}/bad", ["a.txt", "missing"], back)

    asyncio.run(main())
    assert not back.exists() or list(back.iterdir()) == []


def test_received_archive_is_not_trusted(tmp_path: Path) -> None:
    """The pod's archive cannot write outside what was asked for, nor links."""

    def archive(name: str, kind: bytes = tarfile.REGTYPE) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
            info = tarfile.TarInfo(name)
            info.type = kind
            if kind == tarfile.SYMTYPE:
                info.linkname = "/etc/passwd"
            tar.addfile(info, io.BytesIO(b""))
        return buf.getvalue()

    async def feed(data: bytes, allowed: list[bytes]) -> None:
        receiver = TarReceiver(tmp_path, allowed)
        try:
            await receiver.feed(data)
        finally:
            receiver.discard()

    async def main() -> None:
        with pytest.raises(CopyError, match=r"'\.\.'"):
            await feed(archive("a/../../evil"), [b"a"])
        with pytest.raises(CopyError, match="absolute"):
            await feed(archive("/etc/evil"), [b"a"])
        with pytest.raises(CopyError, match="not asked for"):
            await feed(archive("b/x"), [b"a"])
        with pytest.raises(CopyError, match="link"):
            await feed(archive("a/l", tarfile.SYMTYPE), [b"a"])
        receiver = TarReceiver(tmp_path, [b"a"])
        await receiver.feed(archive("a/ok")[:700])
        with pytest.raises(CopyError, match="truncated"):
            receiver.check_complete()
        receiver.discard()

    asyncio.run(main())
    assert [p for p in tmp_path.rglob("*") if not p.is_dir()] == []  # no file, not even half


def test_api_server_going_away_mid_stream(cluster: EmulatedCluster, tmp_path: Path) -> None:
    """The API stops while stdin is streaming: a transport error, within the bounded
    timeouts, and the command in the pod is ended; while it is down, the same error."""
    start_pod(cluster, "p1")
    t = target_of(cluster)
    started = threading.Event()

    async def endless() -> AsyncIterator[bytes]:
        block = b"x" * 65536
        while True:
            yield block
            started.set()
            await asyncio.sleep(0.01)

    async def main() -> None:
        stopper = asyncio.ensure_future(
            asyncio.to_thread(lambda: (started.wait(30), cluster.stop_api()))
        )
        with pytest.raises(ExecTransportError) as lost:
            await asyncio.wait_for(
                exec_in_pod(t.cluster, NS, "p1", ["sh", "-c", "cat > /dev/null"], stdin=endless()),
                60,  # a guard against a hang, far above the timeouts the exec is given
            )
        await stopper
        assert "Kubernetes API" in str(lost.value)
        with pytest.raises(ExecTransportError):
            await exec_in_pod(t.cluster, NS, "p1", ["true"])

    asyncio.run(main())
    cluster.start_api()
    out: list[bytes] = []

    async def again() -> None:
        async def sink(data: bytes) -> None:
            out.append(data)

        # the first command was ended with its stream; the pod still answers
        check = ["sh", "-c", "pgrep -x cat || echo none"]
        await exec_in_pod(t.cluster, NS, "p1", check, stdout=sink)

    asyncio.run(again())
    assert b"".join(out) == b"none\n"
