"""The local spawner under hostile conditions (hostile pass on issue 20's spawner).

An engine that goes away is played by a runtime stopped while its attempts run (its spawners
stay and record, as after a SIGKILL); a second runtime is the resumed engine and adopts them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from pathlib import Path

import psutil
import pytest

from akoflow.config import RuntimeConfig
from akoflow.runtimes import cgroups, spawner_link
from akoflow.runtimes import local as local_module
from akoflow.runtimes.base import Adopted, JobSpec, Outcome
from tests.conftest import wait_for
from tests.e2e.test_local_trust import started_runtime
from tests.scenarios import direct_job


async def one_attempt(spec: JobSpec) -> Outcome:
    """Run ``spec`` on a fresh runtime to its end."""
    rt, events = await started_runtime()
    try:
        await rt.submit(spec)
        await wait_async(lambda: spec.key in events.finished, "end")
        return events.finished[spec.key]
    finally:
        await rt.stop()


async def wait_async(predicate: object, what: str) -> None:
    for _ in range(600):
        if callable(predicate) and predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what}: not reached in time")


def record(spec: JobSpec) -> str:
    try:
        return Path(f"{spec.attempt_prefix}.exit").read_text()
    except FileNotFoundError:
        return ""


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.parametrize("cgroups", ["auto", "off"])
def test_a_script_that_clears_its_environment_is_adopted_running(
    tmp_path: Path, cgroups: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `exec env -i prog` leaves nothing of the attempt in the process's environment; it is
    # still the spawner's child. The resumed engine took it for ended: it waited for a
    # record, then killed it (cgroups) or left it running beside its retry (no cgroups),
    # and counted it lost either way.
    monkeypatch.setenv("LOCAL_CGROUPS", cgroups)
    monkeypatch.setattr(local_module, "RECORD_WAIT", 0.3)  # what it took for an end: brief
    spec = direct_job(
        tmp_path,
        "cleared",
        "exec env -i /bin/sh -c 'touch started; while [ ! -e go ]; do sleep 0.05; done;"
        " echo end > ended'",
        "local",
        None,
    )
    data = tmp_path / "data"

    async def scenario() -> tuple[Adopted, Outcome]:
        first, _ = await started_runtime()
        await first.submit(spec)
        await wait_async(lambda: (data / "started").exists(), "started")
        await first.stop()  # the engine is gone; its spawner stays and records
        second, events = await started_runtime()
        try:
            adopted = await second.adopt(spec, {"prefix": str(spec.attempt_prefix)})
            (data / "go").touch()
            if adopted.kind == "running":
                await wait_async(lambda: spec.key in events.finished, "end")
                return adopted, events.finished[spec.key]
            assert adopted.outcome is not None
            return adopted, adopted.outcome
        finally:
            await second.stop()

    adopted, outcome = asyncio.run(scenario())
    assert adopted.kind == "running"
    assert outcome.succeeded, outcome
    assert (data / "ended").read_text() == "end\n"
    wait_for(lambda: record(spec) == "exit 0\n")
    spawner_link.reap_left()


def test_a_spawner_stalled_on_a_claim_never_starts_the_attempt_after_a_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The spawner claimed the attempt ("spawning now by S") and then stalls before starting it
    # (here: it moves itself into the attempt's cgroup for the start, and that cgroup is
    # frozen; as well SIGSTOP, a hung disk). The resumed engine waits RECORD_WAIT, then
    # counts the attempt lost and may retry it; the spawner, alive, started it later, beside
    # its retry. It must be stopped before the attempt is given up.
    monkeypatch.setattr(local_module, "RECORD_WAIT", 0.3)
    spec = direct_job(tmp_path, "stalled", "echo ran >> ran", "local", None)
    frozen: list[str] = []

    async def scenario() -> tuple[int, Adopted]:
        first, _ = await started_runtime()
        base = first._cgroup_base
        assert base is not None, "cgroup v2 with a writable engine cgroup is needed"
        frozen.append(cgroups.attempt_cgroup(base, str(spec.attempt_prefix)))
        os.mkdir(frozen[0])
        Path(frozen[0], "cgroup.freeze").write_text("1")
        await first.submit(spec)
        await wait_async(lambda: record(spec).startswith("spawning now by "), "claimed")
        stalled = int(record(spec).split()[3])
        await first.stop()
        second, _ = await started_runtime()
        try:
            return stalled, await second.adopt(spec, {"prefix": str(spec.attempt_prefix)})
        finally:
            await second.stop()

    stalled = 0
    try:
        stalled, adopted = asyncio.run(scenario())
        assert adopted.kind == "finished" and adopted.outcome is not None
        assert not adopted.outcome.succeeded
        assert not alive(stalled)  # stopped before the attempt was given up
        if os.path.isdir(frozen[0]):  # its stall ends: nothing is left to start the attempt
            Path(frozen[0], "cgroup.freeze").write_text("0")
        spawner_link.reap_left()
        assert record(spec).startswith("spawning now by ")
        assert not (tmp_path / "data" / "ran").exists()
    finally:
        if stalled and alive(stalled):  # this test failing: no spawner left frozen
            os.kill(stalled, signal.SIGKILL)
            spawner_link.reap_left()
        if frozen and os.path.isdir(frozen[0]):
            Path(frozen[0], "cgroup.freeze").write_text("0")
            cgroups.remove(frozen[0])


def test_a_fifo_or_a_symlink_over_an_attempts_files_fails_it_and_hangs_nothing(
    tmp_path: Path,
) -> None:
    """An attempt's file names are predictable: another script may put a FIFO nobody reads
    (or a symlink) where its stdout, stderr or script goes. The spawner opened it and waited
    for a reader for ever, and with it every later start and end it handles (the run hung).
    Now that attempt fails, saying why, and the next one runs."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("untouched\n")

    async def scenario() -> list[Outcome]:
        rt, events = await started_runtime(RuntimeConfig.from_env("local", {"LOCAL_SPAWNERS": "1"}))
        outcomes = []
        try:
            for n, (suffix, plant) in enumerate(
                [
                    (".stdout", lambda p: os.mkfifo(p)),
                    (".stderr", lambda p: os.mkfifo(p)),
                    (".sh", lambda p: os.mkfifo(p)),
                    (".stdout", lambda p: os.symlink(elsewhere, p)),
                ]
            ):
                spec = direct_job(tmp_path, f"planted{n}", f"echo {n} >> ran{n}", "local", None)
                plant(f"{spec.attempt_prefix}{suffix}")
                await rt.submit(spec)
                await wait_async(lambda s=spec: s.key in events.finished, "end")
                outcomes.append(events.finished[spec.key])
            after = direct_job(tmp_path, "after", "echo after >> ran_after", "local", None)
            await rt.submit(after)
            await wait_async(lambda: after.key in events.finished, "end")
            outcomes.append(events.finished[after.key])
        finally:
            await rt.stop()
        return outcomes

    *planted, after = asyncio.run(scenario())
    for outcome in planted:
        assert not outcome.succeeded
        assert "not a regular file" in (outcome.reason or ""), outcome.reason
    assert after.succeeded
    assert not any((tmp_path / "data" / f"ran{n}").exists() for n in range(4))
    assert (tmp_path / "data" / "ran_after").read_text() == "after\n"
    assert elsewhere.read_text() == "untouched\n"


def test_a_silent_spawner_is_logged_and_waited_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A stopped spawner (SIGSTOP, Ctrl-Z of its group by hand) answers nothing: the engine
    # waited for it without a word, for ever if it stayed stopped.
    monkeypatch.setenv("LOCAL_SPAWNERS", "1")
    monkeypatch.setattr(spawner_link, "STALL_WARN", 0.2)
    first = direct_job(tmp_path, "first", "true", "local", None)
    second = direct_job(tmp_path, "second", "echo ran > ran", "local", None)

    async def scenario() -> Outcome:
        rt, events = await started_runtime()
        try:
            await rt.submit(first)
            await wait_async(lambda: first.key in events.finished, "first")
            pid = rt._links[0].pid
            assert pid is not None
            os.kill(pid, signal.SIGSTOP)
            try:
                await rt.submit(second)
                await wait_async(lambda: "has not answered" in caplog.text, "the warning")
                assert second.key not in events.finished  # waited for, never given up
            finally:
                os.kill(pid, signal.SIGCONT)
            await wait_async(lambda: second.key in events.finished, "second")
            return events.finished[second.key]
        finally:
            await rt.stop()

    with caplog.at_level(logging.WARNING, logger="akoflow.runtimes.spawner_link"):
        outcome = asyncio.run(scenario())
    assert outcome.succeeded, outcome
    assert "stopped" in caplog.text  # its state is said
    assert "answers again" in caplog.text
    assert (tmp_path / "data" / "ran").read_text() == "ran\n"


def test_descriptors_the_engine_inherited_reach_no_activity(tmp_path: Path) -> None:
    # A pipe the engine's caller left open in it (a CI runner's, `exec 9>file` in a shell)
    # was held by the spawners and by every activity: its reader waited for them, also after
    # the engine was gone.
    spec = direct_job(
        tmp_path, "fds", "ls /proc/$$/fd > fds; ls /proc/$PPID/fd > parent", "local", None
    )
    reader, writer = os.pipe()
    os.set_inheritable(writer, True)

    try:
        outcome = asyncio.run(one_attempt(spec))
    finally:
        os.close(writer)
    try:
        assert outcome.succeeded, outcome
        data = tmp_path / "data"
        assert str(writer) not in (data / "fds").read_text().split()
        assert str(writer) not in (data / "parent").read_text().split()
        os.set_blocking(reader, False)
        assert os.read(reader, 1) == b""  # no process holds the write end: end of file
    finally:
        os.close(reader)


def test_a_data_dir_removed_before_the_start_is_named_in_the_failure(tmp_path: Path) -> None:
    # The data dir was removed before the spawner entered it: "No such file or directory"
    # alone did not say which.
    spec = direct_job(tmp_path, "gone", "echo ran > ran", "local", None)
    (tmp_path / "data").rmdir()

    outcome = asyncio.run(one_attempt(spec))
    assert not outcome.succeeded
    assert outcome.reason is not None and str(tmp_path / "data") in outcome.reason
    assert not Path(f"{spec.attempt_prefix}.exit").exists()  # the claim was undone: never ran


def test_bytes_that_are_not_utf8_count_once_against_the_kernel_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 60,000 bytes of 0xff in the engine's environment (decoded with surrogateescape) were
    # counted as 180,000: every local activity failed, "over 128 KiB".
    monkeypatch.setenv("HIGH_BYTES", os.fsdecode(b"\xff" * 60_000))
    spec = direct_job(tmp_path, "high", 'printf %s "$HIGH_BYTES" | wc -c > count', "local", None)

    outcome = asyncio.run(one_attempt(spec))
    assert outcome.succeeded, outcome
    assert (tmp_path / "data" / "count").read_text().strip() == "60000"
