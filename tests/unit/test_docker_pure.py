"""The docker runtime's pure parts, without a daemon: what it asks the daemon for (name,
labels, environment, mounts, limits), how it reads the daemon's answers (``inspect``, ``ps``,
events, stats, info: the shapes below were captured from dockerd 20.10 and trimmed to the
fields that matter, keys and types as the daemon sends them), the attempt's files, settings."""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Any

import docker
import pytest

from akoflow.config import RuntimeConfig
from akoflow.errors import SettingError
from akoflow.runtimes.base import JobSpec, Outcome, SubmitError
from akoflow.runtimes.docker import container_name, files
from akoflow.runtimes.docker import status as st
from akoflow.runtimes.docker.container import (
    GATE_DIR,
    OUT_DIR,
    SCRIPT_PATH,
    USAGE,
    WRAPPER,
    container_request,
    die_events_filter,
    environment,
    labels,
    run_filter,
)
from akoflow.runtimes.docker.settings import Settings, read_settings
from akoflow.spec.workflow import Activity

SCOPE = "0123456789ab"
CID = "012a4535f28e22fb6abb5b316eb7fe8f97413e4b83440176529923b918e7cc36"
OTHER_CID = "6c5f628eb9f6b6d5b0234a67022106d1667d54f9963219110c65f489a9fb4b3b"
NEVER = "0001-01-01T00:00:00Z"


def inspected(status: str, code: int = 0, *, oom: bool = False, **labels: str) -> dict[str, Any]:
    """``docker inspect`` of a container, as dockerd 20.10 answers it (trimmed)."""
    running = status == "running"
    return {
        "Id": CID,
        "Created": "2026-12-04T19:06:52.097396523Z",
        "Path": "sh",
        "Args": ["-c", WRAPPER, "sh"],
        "State": {
            "Status": status,
            "Running": running,
            "Paused": status == "paused",
            "Restarting": status == "restarting",
            "OOMKilled": oom,
            "Dead": False,
            "Pid": 29411 if running else 0,
            "ExitCode": code,
            "Error": "",
            "StartedAt": NEVER if status == "created" else "2026-12-04T19:06:52.24348577Z",
            "FinishedAt": "2026-12-04T19:06:52.245371098Z" if status == "exited" else NEVER,
        },
        "Name": f"/akoflow-{SCOPE}-wf1-align-a1",
        "Config": {
            "Image": "akoflow-test/busybox:1",
            "Labels": {"akoflow.key": "wf1-align-a1", "akoflow.scope": SCOPE, **labels},
        },
    }


DIE_EVENT = {
    "status": "die",
    "id": CID,
    "from": "akoflow-test/busybox:1",
    "Type": "container",
    "Action": "die",
    "Actor": {
        "ID": CID,
        "Attributes": {
            "akoflow.key": "wf1-align-a1",
            "akoflow.scope": SCOPE,
            "akoflow.workflow": "1",
            "exitCode": "3",
            "image": "akoflow-test/busybox:1",
            "name": f"akoflow-{SCOPE}-wf1-align-a1",
        },
    },
    "scope": "local",
    "time": 1796411212,
    "timeNano": 1796411212267030297,
}

STATS_RUNNING = {  # one-shot stats of a busy container, cgroup v1
    "read": "2026-12-04T19:06:53.963949897Z",
    "preread": NEVER,
    "pids_stats": {"current": 2},
    "cpu_stats": {
        "cpu_usage": {
            "total_usage": 1529989840,
            "percpu_usage": [1521214664, 8775176],
            "usage_in_kernelmode": 10000000,
            "usage_in_usermode": 1510000000,
        },
        "system_cpu_usage": 21428970000000,
        "online_cpus": 2,
    },
    "memory_stats": {
        "usage": 573440,
        "max_usage": 3821568,
        "stats": {"cache": 0, "inactive_file": 0, "total_inactive_file": 0, "rss": 110592},
        "limit": 25276071936,
    },
    "name": "/akoflow-running",
    "id": OTHER_CID,
}

STATS_STOPPED = {  # what one-shot stats of a container that just stopped look like
    "read": NEVER,
    "preread": NEVER,
    "pids_stats": {},
    "cpu_stats": {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0}},
    "memory_stats": {},
    "name": "/akoflow-running",
    "id": OTHER_CID,
}

PS = [  # `docker ps -a` with the run's label filters
    {
        "Id": CID,
        "Names": [f"/akoflow-{SCOPE}-wf1-align-a1"],
        "Image": "akoflow-test/busybox:1",
        "Command": f"sh -c '{WRAPPER}' sh",
        "Created": 1796411213,
        "Labels": {"akoflow.key": "wf1-align-a1", "akoflow.scope": SCOPE, "akoflow.workflow": "1"},
        "State": "exited",
        "Status": "Exited (137) Less than a second ago",
        "HostConfig": {"NetworkMode": "none"},
        "Mounts": [],
    },
    {
        "Id": OTHER_CID,
        "Names": ["/not-ours"],
        "Labels": {"akoflow.scope": SCOPE, "akoflow.workflow": "1"},
        "State": "running",
    },
]


def job(tmp_path: Path, **activity: Any) -> JobSpec:
    act = Activity(name="align", run="echo 'it''s' \"$HOME\" `id`\n", runtime="docker", **activity)
    return JobSpec(
        key="wf1-align-a1",
        workflow_id=1,
        workflow_name="genomics.v2",
        activity_id=7,
        activity=act,
        attempt=1,
        data_dir=tmp_path / "data",
        attempt_dir=tmp_path / "attempts",
        env={"AKOFLOW_WORKFLOW_ID": "1", "SHARED": "engine"},
        scope=SCOPE,
    )


# ---------------------------------------------------------------- what is created


def test_container_name_keeps_only_what_docker_accepts(tmp_path: Path) -> None:
    assert container_name(job(tmp_path)) == f"akoflow-{SCOPE}-wf1-align-a1"
    odd = dataclasses.replace(job(tmp_path), key="wf1-ação a1/../\n\x00" + os.fsdecode(b"\xff"))
    name = container_name(odd)
    assert re.fullmatch(r"[a-zA-Z0-9_.-]+", name), name
    assert name == f"akoflow-{SCOPE}-wf1-a--o-a1-..----"


def test_container_name_of_an_unscoped_job_is_its_runs(tmp_path: Path) -> None:
    unscoped = dataclasses.replace(job(tmp_path), scope="")
    assert not (tmp_path / "attempts" / ".scope").exists()
    name = container_name(unscoped)
    made = (tmp_path / "attempts" / ".scope").read_text().strip()
    assert name == f"akoflow-{made}-wf1-align-a1" and made != SCOPE


def test_labels_say_whose_container_it_is(tmp_path: Path) -> None:
    assert labels(job(tmp_path)) == {
        "akoflow.workflow": "1",
        "akoflow.workflow-name": "genomics.v2",
        "akoflow.activity": "align",
        "akoflow.attempt": "1",
        "akoflow.key": "wf1-align-a1",
        "akoflow.scope": SCOPE,
    }


def test_the_activitys_environment_wins_over_the_engines(tmp_path: Path) -> None:
    spec = job(tmp_path, env={"SHARED": "activity", "AKOFLOW_DATA_DIR": "/mine"})
    assert environment(spec) == {
        "AKOFLOW_WORKFLOW_ID": "1",
        "SHARED": "activity",
        "ACTIVITY_MOUNT_PATH": "/data",
        "AKOFLOW_DATA_DIR": "/mine",
    }
    assert environment(job(tmp_path, mount_path="/work"))["ACTIVITY_MOUNT_PATH"] == "/work"


def test_the_script_is_a_mounted_file_never_an_argument(tmp_path: Path) -> None:
    spec = job(tmp_path)
    request = container_request(spec, "img:1", "the-name", Settings(shell="bash"))
    assert request.image == "img:1" and request.name == "the-name"
    assert request.container["command"] == []
    assert request.container["entrypoint"] == ["bash", "-c", WRAPPER, "bash", "600"]
    assert f' "$0" {SCRIPT_PATH} >{OUT_DIR}/stdout 2>{OUT_DIR}/stderr & c=$!;' in WRAPPER
    assert WRAPPER.endswith(f" done >{USAGE} 2>/dev/null; exit $r")
    assert spec.activity.run not in repr(request)
    mounts = {m["Target"]: m for m in request.host["mounts"]}
    prefix = str(spec.attempt_prefix)
    assert mounts[SCRIPT_PATH]["Source"] == prefix + ".sh" and mounts[SCRIPT_PATH]["ReadOnly"]
    assert mounts[OUT_DIR]["Source"] == prefix + ".out" and not mounts[OUT_DIR]["ReadOnly"]
    assert mounts[GATE_DIR]["Source"] == prefix + ".ctl" and mounts[GATE_DIR]["ReadOnly"]
    assert mounts["/data"]["Source"] == str(tmp_path / "data")
    assert {m["Type"] for m in mounts.values()} == {"bind"}
    assert request.container["working_dir"] == "/data"


def test_limits_network_and_init_as_the_daemon_receives_them(tmp_path: Path) -> None:
    spec = job(tmp_path, memory_bytes=64 << 20, cpu_cores=0.5, mount_path="/work")
    settings = Settings(network="host", init=False)
    request = container_request(spec, "img:1", "n", settings)
    client = docker.APIClient(base_url="unix:///nonexistent.sock", version="1.41")
    try:  # the SDK's own check of the arguments (no request is sent)
        host = client.create_host_config(**request.host)
    finally:
        client.close()
    assert host["NanoCpus"] == 500_000_000
    assert host["Memory"] == host["MemorySwap"] == 64 << 20  # no swap beyond the limit
    assert host["NetworkMode"] == "host" and host["Init"] is False
    assert [m["Target"] for m in host["Mounts"]] == ["/work", SCRIPT_PATH, OUT_DIR, GATE_DIR]
    unlimited = container_request(job(tmp_path), "img:1", "n", Settings()).host
    assert unlimited["nano_cpus"] is None and unlimited["mem_limit"] is None
    assert unlimited["network_mode"] == "none" and unlimited["init"] is True


def test_a_data_dir_with_odd_but_utf8_bytes_keeps_them(tmp_path: Path) -> None:
    raw = os.fsencode(tmp_path) + "/dat\u00e9 \n$(x)".encode()
    spec = dataclasses.replace(job(tmp_path), data_dir=Path(os.fsdecode(raw)))
    mounts = container_request(spec, "img", "n", Settings()).host["mounts"]
    assert os.fsencode(mounts[0]["Source"]) == raw


def test_a_data_dir_that_is_not_utf8_is_refused_not_bound_elsewhere(tmp_path: Path) -> None:
    # dockerd's JSON API would receive U+FFFD for the stray byte: another path entirely.
    raw = os.fsencode(tmp_path) + b"/d\xffat"
    spec = dataclasses.replace(job(tmp_path), data_dir=Path(os.fsdecode(raw)))
    with pytest.raises(SubmitError, match="not valid UTF-8"):
        container_request(spec, "img", "n", Settings())


def test_filters_find_die_events_and_one_runs_containers() -> None:
    assert die_events_filter() == {"type": "container", "event": ["die"], "label": ["akoflow.key"]}
    assert run_filter(SCOPE, 12) == {"label": [f"akoflow.scope={SCOPE}", "akoflow.workflow=12"]}


# ---------------------------------------------------------------- reading the daemon


def test_states_of_inspected_containers() -> None:
    for status, running, created, live in (
        ("created", False, True, True),
        ("running", True, False, True),
        ("paused", False, False, True),
        ("restarting", False, False, True),
        ("exited", False, False, False),
        ("dead", False, False, False),
    ):
        info = inspected(status)
        assert (st.is_running(info), st.is_created(info), st.is_live(info)) == (
            running,
            created,
            live,
        ), status
    assert st.exit_of(inspected("exited", 3)) == (3, False)
    assert st.exit_of(inspected("exited", 137, oom=True)) == (137, True)
    assert st.exit_of({"State": {"Status": "exited"}}) == (-1, False)


def test_a_container_is_ours_by_key_and_scope_or_by_recorded_id(tmp_path: Path) -> None:
    spec = job(tmp_path)
    assert st.belongs_to(inspected("running"), spec)
    old_state_dir = inspected("running", **{"akoflow.scope": "ffffffffffff"})
    assert not st.belongs_to(old_state_dir, spec)  # same key, another run
    assert st.belongs_to(old_state_dir, spec, recorded=CID)  # the one the submission made
    assert not st.belongs_to(old_state_dir, spec, recorded=OTHER_CID)
    other_key = inspected("running", **{"akoflow.key": "wf1-align-a2"})
    assert not st.belongs_to(other_key, spec, recorded=CID)
    assert not st.belongs_to({**inspected("running"), "Config": None}, spec)
    unlabelled = {**inspected("running"), "Config": {"Labels": None}}
    assert not st.belongs_to(unlabelled, spec, recorded=CID)


def test_die_events_as_the_daemon_sends_them() -> None:
    event = st.die_event(DIE_EVENT)
    assert event == st.DieEvent(key="wf1-align-a1", cid=CID, time=1796411212, exit_code=3)
    assert st.die_event({}) == st.DieEvent(None, None, None, None)
    assert st.die_event({"Actor": None, "id": 5, "time": "soon"}) == st.DieEvent(
        None, None, None, None
    )
    weird = {"Actor": {"Attributes": {"akoflow.key": 7, "exitCode": "²"}}, "time": True}
    assert st.die_event(weird) == st.DieEvent(None, None, None, None)


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("0", 0),
        ("143", 143),
        ("-1", -1),
        (7, 7),
        ("--5", None),
        (" 5", None),
        ("5\n", None),
        ("²", None),  # a digit to str.isdigit, not to int()
        ("٣", None),
        ("0x10", None),
        ("", None),
        (None, None),
        (True, None),
        (3.0, None),
    ],
)
def test_an_events_exit_code_is_a_decimal_or_nothing(raw: object, code: int | None) -> None:
    assert st.event_exit_code(raw) == code


def test_how_a_tracked_container_ended() -> None:
    assert st.ended(inspected("running"), None, None) is None
    die = st.die_event(DIE_EVENT)
    assert st.ended(inspected("exited", 3), die, None) == st.End(3, False)
    assert st.ended(inspected("exited", 137, oom=True), None, "x") == st.End(137, True, "x")
    # removed behind our back: the event's code is all there is
    assert st.ended(None, die, None) == st.End(3, False, st.REMOVED)
    assert st.ended(None, None, None) == st.End(None, False, st.REMOVED)
    assert st.ended(None, None, "while down") == st.End(None, False, "while down")
    # A die event that says exit code 0 is the end (no inspect); any other needs one.
    zero = dataclasses.replace(die, exit_code=0)
    assert st.succeeded_at_die(zero) == st.End(0, False)
    assert st.succeeded_at_die(die) is None  # exit code 3: OOM or not, the inspect says
    assert st.succeeded_at_die(dataclasses.replace(die, exit_code=None)) is None


def test_outcomes_name_why_an_attempt_failed() -> None:
    assert st.outcome(0, False) == Outcome(True, 0)
    assert st.outcome(0, True) == Outcome(True, 0)  # a child OOM-killed: the script went on
    assert st.outcome(3, False) == Outcome(False, 3, "exit code 3")
    assert st.outcome(137, True) == Outcome(False, 137, "out of memory")
    assert st.outcome(143, False).reason == "exit code 143 (killed by SIGTERM)"
    assert st.outcome(128 + 35, False).reason == "exit code 163"  # a real-time signal
    assert st.outcome(None, False).reason == "the container ended but its exit code was lost"
    assert st.outcome(0, False, cancelled=True) == Outcome(False, 0, "cancelled")
    # The wrapper's own exit when no go came: the command never ran (no exit code of it).
    late = st.outcome(125, False, command_ran=False, go_timeout="DOCKER_GO_TIMEOUT")
    assert (late.succeeded, late.exit_code) == (False, None)
    assert late.reason is not None and "did not run" in late.reason
    assert "DOCKER_GO_TIMEOUT" in late.reason
    assert st.outcome(125, False) == Outcome(False, 125, "exit code 125")  # the command's
    noted = st.outcome(143, False, cancelled=True, note="it ended while the daemon was down")
    assert noted.reason == "cancelled; it ended while the daemon was down"


def test_memory_without_the_page_cache_and_cpu_between_samples() -> None:
    assert st.memory_used(STATS_RUNNING) == 573440
    assert st.memory_used(STATS_STOPPED) is None  # it stopped meanwhile
    v1 = {"memory_stats": {"usage": 10_000, "stats": {"total_inactive_file": 4_000}}}
    v2 = {"memory_stats": {"usage": 10_000, "stats": {"inactive_file": 3_000}}}
    assert (st.memory_used(v1), st.memory_used(v2)) == (6_000, 7_000)
    assert st.memory_used({"memory_stats": {"usage": 1, "stats": {"inactive_file": 5}}}) == 0
    assert st.cpu_time_ns(STATS_RUNNING) == 1529989840
    assert st.cpu_time_ns({"cpu_stats": None}) is None
    assert st.cpu_percent(None, 10**9, 5.0) is None
    assert st.cpu_percent((0, 4.0), 10**9, 6.0) == pytest.approx(50.0)  # 1 s of CPU in 2 s
    assert st.cpu_percent((2 * 10**9, 4.0), 10**9, 6.0) == 0.0  # a counter reset
    assert st.cpu_percent((0, 6.0), 10**9, 6.0) is None  # no time between the samples


# What the wrapper copies from its cgroup (the first as this machine's dockerd 20.10 mounts
# cgroup v1; the second a cgroup v2 namespace, kernel 6.1).
USAGE_V1 = b"""/proc/self/cgroup 9:name=systemd:/docker/4ea44ce7d2a2
/proc/self/cgroup 4:cpu,cpuacct:/docker/4ea44ce7d2a2
/sys/fs/cgroup/cpuacct/cpuacct.usage 529395214
/sys/fs/cgroup/memory/memory.max_usage_in_bytes 51310592
"""
USAGE_V2 = b"""/proc/self/cgroup 0::/
/sys/fs/cgroup/cpu.stat usage_usec 1529989
/sys/fs/cgroup/cpu.stat user_usec 1200000
/sys/fs/cgroup/cpu.stat system_usec 329989
/sys/fs/cgroup/memory.peak 7340032
"""


def test_cpu_time_and_peak_memory_from_the_cgroup_files_the_wrapper_copied() -> None:
    assert st.usage_of(USAGE_V1) == st.Usage(0.529395214, 51310592)
    assert st.usage_of(USAGE_V2) == st.Usage(1.529989, 7340032)
    # cgroup v2 without a namespace of its own: the files are the host's root's, not its own.
    hosts = USAGE_V2.replace(b"0::/\n", b"0::/system.slice/docker-4ea4.scope\n")
    assert st.usage_of(hosts) == st.Usage()
    # An old kernel (no memory.peak), a torn or foreign file: what is there, else nothing.
    assert st.usage_of(USAGE_V2.split(b"/sys/fs/cgroup/memory.peak")[0]).max_bytes is None
    assert st.usage_of(b"") == st.Usage()
    assert st.usage_of(b"/sys/fs/cgroup/cpuacct/cpuacct.usage 12x\n\xff\xfe") == st.Usage()


def test_usage_is_read_from_the_attempts_output_dir(tmp_path: Path) -> None:
    prefix = str(tmp_path / "a.1")
    assert files.read_usage(prefix) == st.Usage()  # an older container: none written
    os.mkdir(prefix + ".out")
    Path(prefix + ".out/usage").write_bytes(USAGE_V1)
    assert files.read_usage(prefix) == st.Usage(0.529395214, 51310592)


def test_the_daemons_host_is_the_one_node() -> None:
    info = {"Name": "vm", "NCPU": 2, "MemTotal": 25276071936, "ServerVersion": "20.10.24"}
    node = st.node_info(info, "unix:///run/d.sock")
    assert (node.name, node.ready, node.cpu_capacity, node.memory_capacity) == (
        "vm",
        True,
        2.0,
        25276071936,
    )
    bare = st.node_info({"NCPU": "2", "MemTotal": None}, "tcp://h:2376")
    assert (bare.name, bare.cpu_capacity, bare.memory_capacity) == ("tcp://h:2376", None, None)


def test_leftovers_are_the_listed_containers_with_a_key() -> None:
    assert st.handles_by_key(PS) == {"wf1-align-a1": {"id": CID}}
    assert st.handles_by_key([{"Id": "x", "Labels": None}]) == {}


# ---------------------------------------------------------------- the attempt's files


def test_the_exit_record_round_trips_and_a_bad_one_is_none(tmp_path: Path) -> None:
    prefix = str(tmp_path / "align.1")
    assert files.read_exit_record(prefix) is None
    files.write_exit_record(prefix, 137, True)
    assert files.read_exit_record(prefix) == (137, True)
    assert not os.path.exists(prefix + ".exit.tmp")
    files.write_exit_record(prefix, None, False)
    assert files.read_exit_record(prefix) == (None, False)
    for text in (b'{"exit_co', b"[1, 2]", b"\xff\xfe\x00", b'{"exit_code": true}', b"null"):
        Path(prefix + ".exit").write_bytes(text)
        assert files.read_exit_record(prefix) in (None, (None, False)), text
    assert st.parse_exit_record(b'{"exit_code": true, "oom": 1}') == (None, True)
    assert st.parse_exit_record(b"[1, 2]") is None


def test_logs_are_read_by_byte_offset_whatever_the_bytes(tmp_path: Path) -> None:
    prefix = str(tmp_path / "align.1")
    assert not files.ran(prefix)
    files.prepare(prefix, "printf '\\377'\n")
    assert Path(prefix + ".sh").read_bytes() == b"printf '\\377'\n"
    assert not files.ran(prefix)  # the output dir alone: the wrapper never ran
    assert files.read_logs(prefix, {}) == {}
    Path(prefix + ".out/stdout").write_bytes(b"ab\xff\x00\xe9\ncd")
    assert files.ran(prefix)
    assert files.read_logs(prefix, {}) == {"stdout": b"ab\xff\x00\xe9\ncd"}
    assert files.read_logs(prefix, {"stdout": 3}) == {"stdout": b"\x00\xe9\ncd"}
    assert files.read_logs(prefix, {"stdout": 8}) == {}
    files.append_stderr(prefix, b"wrapper: \xff\n")
    assert files.read_logs(prefix, {"stdout": 8}) == {"stderr": b"wrapper: \xff\n"}


# ---------------------------------------------------------------- settings


def settings_of(environ: dict[str, str], name: str = "docker") -> Settings:
    return read_settings(RuntimeConfig.from_env(name, environ), environ)


def test_defaults_and_the_standard_docker_variables() -> None:
    assert settings_of({}) == Settings()
    assert Settings().where == "unix:///var/run/docker.sock"
    std = {"DOCKER_HOST": "tcp://h:2376", "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": "/c"}
    s = settings_of(std)
    assert (s.host, s.tls_verify, s.cert_path, s.where) == ("tcp://h:2376", "1", "/c", s.host)
    # a named runtime's own host: the standard variables are another daemon's
    own = settings_of({**std, "DOCKER_GPU_HOST": "unix:///run/gpu.sock"}, "docker-gpu")
    assert (own.host, own.tls_verify, own.cert_path) == ("unix:///run/gpu.sock", None, None)


def test_every_setting_is_read_and_checked() -> None:
    s = settings_of(
        {
            "DOCKER_NETWORK": "bridge",
            "DOCKER_SHELL": "bash",
            "DOCKER_PULL_POLICY": "never",
            "DOCKER_PULL_TIMEOUT": "30",
            "DOCKER_CLEANUP": "on-success",
            "DOCKER_STOP_TIMEOUT": "0",
            "DOCKER_INIT": "false",
            "DOCKER_TIMEOUT": "9",
            "DOCKER_API_VERSION": "1.41",
        }
    )
    assert (s.network, s.shell, s.pull_policy, s.pull_timeout, s.cleanup) == (
        "bridge",
        "bash",
        "never",
        30,
        "on-success",
    )
    assert (s.stop_timeout, s.init, s.timeout, s.api_version) == (0, False, 9, "1.41")
    for variable, value in (
        ("DOCKER_PULL_POLICY", "sometimes"),
        ("DOCKER_CLEANUP", "later"),
        ("DOCKER_TIMEOUT", "0"),
        ("DOCKER_STOP_TIMEOUT", "-1"),
        ("DOCKER_GO_TIMEOUT", "0"),
        ("DOCKER_INIT", "perhaps"),
    ):
        with pytest.raises(SettingError) as info:
            settings_of({variable: value})
        assert info.value.variable == variable and variable in str(info.value)


@pytest.mark.parametrize(
    ("variable", "most"),
    [
        ("DOCKER_STOP_TIMEOUT", 600),
        ("DOCKER_TIMEOUT", 3600),
        ("DOCKER_PULL_TIMEOUT", 86400),
        ("DOCKER_GO_TIMEOUT", 86400),
    ],
)
def test_waits_are_bounded(variable: str, most: int) -> None:
    """Past the bound a wait is a mistake: the SDK's socket timeout (TIMEOUT + STOP_TIMEOUT)
    overflowed and a cancel or an activity's timeout waited as long as the script."""
    key = variable.removeprefix("DOCKER_").lower()
    assert getattr(settings_of({variable: str(most)}), key) == most
    for value in (str(most + 1), "2147483648", "99999999999999999999", "1e3", "nan"):
        with pytest.raises(SettingError) as info:
            settings_of({variable: value})
        assert info.value.variable == variable and variable in str(info.value)


def test_api_version_is_a_version_or_auto() -> None:
    assert settings_of({"DOCKER_API_VERSION": "1.41"}).api_version == "1.41"
    assert settings_of({"DOCKER_API_VERSION": " Auto "}).api_version is None  # negotiated
    for value in ("banana", "1", "1.41.0", "v1.41", "1.12", "0.99"):
        with pytest.raises(SettingError) as info:
            settings_of({"DOCKER_API_VERSION": value})
        assert info.value.variable == "DOCKER_API_VERSION"
        assert "must be a Docker API version from 1.24 (e.g. 1.41), or auto" in str(info.value)


def test_a_daemon_address_the_sdk_cannot_use_is_refused_naming_its_variable() -> None:
    for good in ("unix:///run/d.sock", "tcp://h:2376", "ssh://me@h"):
        assert settings_of({"DOCKER_HOST": good}).host == good
    for variable, value in (
        ("DOCKER_HOST", "banana"),  # the standard variable, when {NAME}_HOST is unset
        ("DOCKER_HOST", "ftp://h:21"),
        ("DOCKER_HOST", "tcp://h:99999"),
    ):
        with pytest.raises(SettingError) as info:
            settings_of({variable: value})
        assert info.value.variable == variable
        assert str(info.value).startswith(f"{variable} must be a Docker daemon address")
    with pytest.raises(SettingError) as info:
        settings_of({"DOCKER_GPU_HOST": "banana", "DOCKER_HOST": "tcp://h:2376"}, "docker-gpu")
    assert info.value.variable == "DOCKER_GPU_HOST"
