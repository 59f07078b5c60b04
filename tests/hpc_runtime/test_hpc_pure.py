"""The HPC runtime's pure halves: settings, the sbatch script, SLURM output parsing, rsync argv.

The script is checked by running it with bash where that matters (quoting of hostile values),
not only by comparing text.
"""

from __future__ import annotations

import base64
import os
import pwd
import re
import shlex
import subprocess
import sys
from pathlib import Path

import asyncssh
import pytest

from akoflow.config import RuntimeConfig
from akoflow.runtimes.base import JobSpec, Outcome
from akoflow.runtimes.hpc import HpcRuntime, relay, sbatch, slurm, sshconfig, staging
from akoflow.runtimes.hpc.relay import RELAY_SCRIPT
from akoflow.runtimes.hpc.settings import SettingsError, read_settings
from akoflow.runtimes.hpc.transport import HpcMisconfigured, RsyncRoute
from akoflow.spec import Activity

BASE = {
    "HPC_X_HOST_CLUSTER": "login.example.org",
    "HPC_X_USER": "me",
    "HPC_X_QUEUE": "gpu_long",
    "HPC_X_GROUP": "proj42",
    "HPC_X_MOUNT_PATH": "/scratch/me/akoflow",
    "HPC_X_KEY_FILE": "/keys/id",  # a real key file by the fixture below
}
PRIVATE_KEY = asyncssh.generate_private_key("ssh-ed25519").export_private_key()
KEY_B64 = base64.b64encode(PRIVATE_KEY).decode()


@pytest.fixture(autouse=True)
def key_file(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """The settings check the key offline: KEY_FILE must hold a real private key."""
    path = tmp_path_factory.getbasetemp() / "hpc_pure_id"
    if not path.exists():
        path.write_bytes(PRIVATE_KEY)
    monkeypatch.setitem(BASE, "HPC_X_KEY_FILE", str(path))


def settings(**extra: str):  # type: ignore[no-untyped-def]
    env = {**BASE, **{f"HPC_X_{k}": v for k, v in extra.items()}}
    return read_settings(RuntimeConfig.from_env("hpc-x", env))


def runtime(**extra: str) -> HpcRuntime:
    env = {**BASE, **{f"HPC_X_{k}": v for k, v in extra.items()}}

    class Ignore:
        def job_running(self, key: str, node: str | None) -> None: ...
        def job_finished(self, key: str, outcome: Outcome) -> None: ...

    return HpcRuntime("hpc-x", RuntimeConfig.from_env("hpc-x", env), Ignore())


def spec(tmp_path: Path, **activity: object) -> JobSpec:
    act = Activity(name="train", run="echo hi\n", runtime="hpc-x", **activity)  # type: ignore[arg-type]
    return JobSpec(
        key="wf3-train-a2",
        workflow_id=3,
        workflow_name="w",
        activity_id=11,
        activity=act,
        attempt=2,
        data_dir=tmp_path / "data",
        attempt_dir=tmp_path / "attempts",
        env={"AKOFLOW_ACTIVITY_NAME": "train", "AKOFLOW_DATA_DIR": "/engine/side"},
    )


# ------------------------------------------------------------------ settings


def test_settings_read_the_seed_and_upstream_keys() -> None:
    s = settings(TIME="02:00:00", MEM="4G", GPUS="1", PORT="2222", GATEWAY="vpn.example.org")
    assert (s.host, s.port, s.user, s.queue, s.group) == (
        "login.example.org", 2222, "me", "gpu_long", "proj42"
    )  # fmt: skip
    assert (s.time, s.mem, s.gpus) == ("02:00:00", "4G", "1")
    assert s.gateway == ("vpn.example.org", 22)
    assert s.poll_interval == 5.0 and s.submit_rate == 1.0 and s.max_queued == 100
    assert not s.accept_new_host_key


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("QUEUE", "gpu\n#SBATCH --uid=0", "QUEUE may only contain"),
        ("MOUNT_PATH", "relative/path", "MOUNT_PATH must be an absolute path"),
        ("MOUNT_PATH", "/scratch/a b", "MOUNT_PATH must be an absolute path"),
        ("MOUNT_PATH", "/scratch/../etc", "MOUNT_PATH must be an absolute path"),
        ("HOST_CLUSTER", "host;rm -rf /", "HOST_CLUSTER must be a host name"),
        ("SSHKEYPRIVK", "not base64!", "SSHKEYPRIVK must be base64"),
        ("POLL_INTERVAL", "0", "POLL_INTERVAL must be at least 0.1"),
        ("ACCOUNTING", "magic", "ACCOUNTING must be one of"),
        ("SBATCHTEMPLATE", base64.b64encode(b"#!/bin/bash\n").decode(), "no #COMMAND#"),
    ],
)
def test_bad_settings_name_the_variable(key: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=re.escape(message)) as info:
        settings(**{key: value})
    assert f"HPC_X_{key}" in str(info.value) or "HPC_X" in str(info.value)


def test_local_transport_needs_no_host_user_or_credentials() -> None:
    me = pwd.getpwuid(os.geteuid()).pw_name
    env = {"HPC_X_TRANSPORT": "LOCAL", "HPC_X_MOUNT_PATH": "/scratch/me/akoflow"}
    s = read_settings(RuntimeConfig.from_env("hpc-x", env))
    assert (s.transport, s.user, s.key_file, s.password) == ("local", me, None, None)
    assert "login" not in repr(s) and "transport='local'" in repr(s)
    same_user = {**env, "HPC_X_USER": me, "HPC_X_HOST_CLUSTER": "login01"}
    assert read_settings(RuntimeConfig.from_env("hpc-x", same_user)).user == me
    assert settings().transport == "ssh"  # the default


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"HPC_X_TRANSPORT": "telnet"}, "HPC_X_TRANSPORT must be one of ssh, local; got 'telnet'"),
        ({"HPC_X_USER": "someone-else"}, "HPC_X_USER is 'someone-else', but with TRANSPORT=local"),
        ({"HPC_X_HOST_CLUSTER": "a;b"}, "HPC_X_HOST_CLUSTER must be a host name"),
    ],
)
def test_bad_local_transport_settings_name_the_variable(
    extra: dict[str, str], message: str
) -> None:
    env = {"HPC_X_TRANSPORT": "local", "HPC_X_MOUNT_PATH": "/m", **extra}
    with pytest.raises(SettingsError) as info:
        read_settings(RuntimeConfig.from_env("hpc-x", env))
    assert str(info.value).startswith(message)


def test_ssh_transport_still_requires_the_host() -> None:
    env = {k: v for k, v in BASE.items() if k != "HPC_X_HOST_CLUSTER"}
    with pytest.raises(SettingsError, match="HPC_X_HOST_CLUSTER is not set"):
        read_settings(RuntimeConfig.from_env("hpc-x", {**env, "HPC_X_TRANSPORT": "ssh"}))


def test_secrets_never_appear_in_the_settings_repr() -> None:
    s = settings(PASSWORD="hunter2", SSHKEYPRIVK=KEY_B64)
    assert "hunter2" not in repr(s) and "PRIVATE" not in repr(s) and KEY_B64 not in repr(s)


def test_a_runtime_with_bad_settings_is_not_ready_and_refuses_work(tmp_path: Path) -> None:
    import asyncio

    rt = runtime(MOUNT_PATH="nope")

    async def scenario() -> None:
        await rt.start()
        health = await rt.health()
        assert not health.ready and "MOUNT_PATH" in (health.reason or "")
        with pytest.raises(Exception, match="MOUNT_PATH"):
            await rt.submit(spec(tmp_path))
        await rt.stop()

    asyncio.run(scenario())


def test_max_queued_caps_the_jobs_in_the_queue() -> None:
    assert runtime(ARRAYS="off").max_parallel == 100
    assert runtime(ARRAYS="off", MAX_QUEUED="7").max_parallel == 7
    assert runtime(MAX_QUEUED="7", MAX_PARALLEL="3").max_parallel == 3
    # With job arrays (the default) a fan-out of ARRAY_MAX is handed over at once: MAX_QUEUED
    # is then each array's %N (tests/hpc_runtime/test_job_arrays.py).
    assert runtime().max_parallel == 1000
    assert runtime(MAX_QUEUED="7", ARRAY_MAX="50").max_parallel == 50


# ------------------------------------------------------------------ sbatch script


def test_default_script_has_directives_and_runs_the_uploaded_file(tmp_path: Path) -> None:
    rt = runtime(TIME="00:30:00", PROJECT="climate")
    req = rt.request(spec(tmp_path, cpu_cores=1.5, memory_bytes=300 << 20))
    text = sbatch.render(req)
    assert req.name.startswith("akf-") and req.name.endswith("-wf3-train-a2")
    assert req.name == rt.request(spec(tmp_path)).name  # deterministic
    head = [line for line in text.splitlines() if line.startswith("#SBATCH")]
    d = req.paths.dir
    assert d.startswith("/scratch/me/akoflow/.akoflow/") and d.endswith("/wf3-train-a2")
    assert head == [
        f"#SBATCH --job-name={req.name}",
        "#SBATCH --partition=gpu_long",
        "#SBATCH --account=proj42",
        "#SBATCH --comment=akoflow:climate",
        "#SBATCH --time=00:30:00",
        "#SBATCH --cpus-per-task=2",
        "#SBATCH --mem=300M",
        f"#SBATCH --output={d}/slurm.out",
        f"#SBATCH --error={d}/slurm.out",
    ]
    assert f"bash {d}/script.sh </dev/null >{d}/stdout 2>{d}/stderr" in text
    assert "echo hi" not in text  # the activity's script is a file, never inlined
    assert (
        "printf '%s\\n' AKOFLOW_JOB_FINISHED >/scratch/me/akoflow/akoflow_finished_3_11.txt" in text
    )
    assert "\nAKOFLOW_DATA_DIR=/scratch/me/akoflow \\\n" in text  # remote, not the engine's
    assert "export" not in text  # the activity's variables are its command's only
    assert text.startswith("#!/bin/bash\n")


def test_placement_pins_the_job_to_the_chosen_node(tmp_path: Path) -> None:
    import dataclasses

    rt = runtime()
    pinned = rt.request(dataclasses.replace(spec(tmp_path), node="node07"))
    assert "#SBATCH --nodelist=node07" in sbatch.render(pinned)
    hostile = rt.request(dataclasses.replace(spec(tmp_path), node="n1\n#SBATCH --uid=0"))
    assert "nodelist" not in sbatch.render(hostile) and "--uid" not in sbatch.render(hostile)


def test_activity_timeout_becomes_whole_minutes() -> None:
    assert sbatch.time_limit("01:00:00", None) == "01:00:00"
    assert sbatch.time_limit("01:00:00", 30) == "1"
    assert sbatch.time_limit(None, 61) == "2"
    assert sbatch.memory_request("4G", None) == "4G"
    assert sbatch.memory_request(None, 1) == "1M"


def test_hostile_values_are_data_when_the_script_runs(tmp_path: Path) -> None:
    """The body runs for real with bash: a value full of shell syntax arrives verbatim."""
    hostile = "$(touch pwned) `touch pwned2`; 'quote\" \\ \n next line"
    paths = sbatch.AttemptPaths(str(tmp_path / "att dir"))
    (tmp_path / "att dir").mkdir()
    (tmp_path / "work").mkdir()
    Path(paths.script).write_text('printf "%s" "$HOSTILE" > value.txt\nexit 5\n')
    req = sbatch.JobRequest(
        name="akf-x-wf1-a-a1",
        paths=paths,
        workdir=str(tmp_path / "work"),
        sentinel=str(tmp_path / "work" / "akoflow_finished_1_1.txt"),
        command=["bash", paths.script],
        env={"HOSTILE": hostile},
    )
    script = tmp_path / "job.sbatch"
    script.write_text(sbatch.render(req))
    proc = subprocess.run(["bash", str(script)], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 5, proc.stderr
    assert (tmp_path / "work" / "value.txt").read_text() == hostile
    assert not list(tmp_path.rglob("pwned*"))
    recorded = Path(paths.exit).read_text()
    assert slurm.parse_exit_file(recorded) == 5
    began, ended = slurm.parse_exit_times(recorded)  # when it ran, by this host's clock
    assert began is not None and ended is not None and began <= ended, recorded
    assert (tmp_path / "work" / "akoflow_finished_1_1.txt").read_text() == "AKOFLOW_JOB_FINISHED\n"
    # A second copy of the same attempt finds the claim taken and runs nothing.
    again = subprocess.run(["bash", str(script)], cwd=tmp_path, capture_output=True)
    assert again.returncode == sbatch.CLAIM_LOST_EXIT


def test_user_template_gets_upstream_placeholders(tmp_path: Path) -> None:
    template = (
        "#!/bin/bash\n#SBATCH --job-name=#JOB_NAME#\n#SBATCH -p #PARTITION#\n"
        "#SBATCH --time=#TIME#\n#SBATCH -o #OUTPUT#\nmodule load singularity\n#COMMAND#\n"
        "echo after\n"
    )
    rt = runtime(SBATCHTEMPLATE=base64.b64encode(template.encode()).decode(), TIME="10")
    req = rt.request(spec(tmp_path))
    text = sbatch.render(req, rt._s.template if rt._s else None)
    assert f"#SBATCH --job-name={req.name}\n#SBATCH -p gpu_long\n#SBATCH --time=10\n" in text
    assert "module load singularity\n# AkôFlow: run this attempt once" in text
    assert text.endswith("akoflow_finished_3_11.txt\necho after\n")  # the tail runs too
    argv = sbatch.sbatch_argv(req.paths, req.name)
    assert argv == ["sbatch", "--parsable", f"--job-name={req.name}", req.paths.sbatch]


def test_container_command_is_built_by_the_shared_apptainer_builder(tmp_path: Path) -> None:
    rt = runtime(SINGULARITY="singularity")
    req = rt.request(spec(tmp_path, image="/sif/python.sif", mount_path="/data"))
    cmd = list(req.command)
    d = req.paths.dir
    inner_script = "/data" + d[len("/scratch/me/akoflow") :] + "/script.sh"
    assert cmd == [
        "singularity", "exec", "--cleanenv", "--bind", "/scratch/me/akoflow:/data",
        "--pwd", "/data", "/sif/python.sif", "/bin/sh", inner_script,
    ]  # fmt: skip
    assert req.env["SINGULARITYENV_AKOFLOW_DATA_DIR"] == "/data"
    text = sbatch.render(req)
    assert f"{shlex.join(cmd)} </dev/null" in text
    # Without a configured container binary the image is not used: plain bash.
    plain = runtime().request(spec(tmp_path, image="/sif/python.sif"))
    assert list(plain.command) == ["bash", f"{plain.paths.dir}/script.sh"]


# ------------------------------------------------------------------ parsing


def test_squeue_and_sacct_parsing() -> None:
    rows = slurm.parse_squeue(
        "12|akf-a-wf1-x-a1|RUNNING|node01|None\n13|akf-a-wf1-y-a1|PENDING||Resources\n"
        "14|akf-a-wf1-z-a1|TIMEOUT|node02|TimeLimit\ngarbage line\n"
    )
    assert [(r.job_id, r.state, r.node, r.reason, r.live) for r in rows] == [
        ("12", "RUNNING", "node01", None, True),
        ("13", "PENDING", None, "Resources", True),
        ("14", "TIMEOUT", "node02", "TimeLimit", False),
    ]
    acct = slurm.parse_sacct(
        "21|akf-a|FAILED|3:0\n21.batch|batch|FAILED|3:0\n22|akf-b|CANCELLED by 0|0:15\n"
    )
    assert [(r.job_id, r.state, r.exit_code, r.signal) for r in acct] == [
        ("21", "FAILED", 3, 0),
        ("22", "CANCELLED", 0, 15),
    ]


@pytest.mark.parametrize(
    ("state", "code", "expected"),
    [
        ("COMPLETED", 0, Outcome(True, 0)),
        ("FAILED", 3, Outcome(False, 3, "exit code 3")),
        ("TIMEOUT", None, Outcome(False, None, "SLURM time limit reached (TIMEOUT)")),
        ("CANCELLED", None, Outcome(False, None, "cancelled in SLURM (scancel)")),
        ("OUT_OF_MEMORY", 137, Outcome(False, 137, "out of memory (SLURM OUT_OF_MEMORY)")),
        ("NODE_FAIL", None, Outcome(False, None, "the node failed (SLURM NODE_FAIL)")),
        ("FAILED", None, Outcome(False, None, "the job ended as FAILED without an exit code")),
    ],
)
def test_every_final_state_ends_the_activity(
    state: str, code: int | None, expected: Outcome
) -> None:
    assert slurm.outcome_of(state, code) == expected


def test_sinfo_sstat_and_sizes() -> None:
    (node,) = slurm.parse_sinfo_nodes("node01|32|4096|1024|mix|5/27/0/32\n")
    assert (node.name, node.ready, node.cpu_capacity, node.cpu_usage) == ("node01", True, 32, 5)
    assert node.memory_capacity == 4096 << 20 and node.memory_usage == 3072 << 20
    (down,) = slurm.parse_sinfo_nodes("node02|8|100|100|down*|0/0/8/8\n")
    assert not down.ready
    assert slurm.parse_sstat("7.batch|cpu=00:01:05,mem=66120K,vmem=1M\n") == {
        "7": (65.0, 66120 << 10)
    }
    assert slurm.parse_duration("1-00:00:01.5") == 86401.5
    assert slurm.parse_size("1.5G") == 3 << 29


def test_rsync_argv_goes_through_the_relay_and_keeps_paths_out_of_shells() -> None:
    rsh = shlex.join([sys.executable, "-I", "-S", RELAY_SCRIPT, "/run/x y/rsync.sock"])
    assert shlex.split(rsh)[-1] == "/run/x y/rsync.sock"
    t = staging.resolve("in dir/", "/scratch/$(x)", "/data", "/m")
    route = RsyncRoute(rsh, "cluster")
    argv = staging.rsync_argv(route, t, upload=True)
    assert argv == [
        "rsync", "-a", "--update", "--protect-args", "-e", rsh, "--",
        "/data/in dir/", "cluster:/scratch/$(x)/",
    ]  # fmt: skip
    back = staging.rsync_argv(route, t, upload=False)
    assert back[-2:] == ["cluster:/scratch/$(x)/", "/data/in dir/"]
    # The relay runs rsync's server side only, whatever asks it.
    assert relay.allowed(["rsync", "--server", "-logDtpre.iLsfxCIvu", ".", "/m/x"])
    for bad in (["sh", "-c", "id"], ["rsync", "-a", "/etc", "x:/"], "rsync --server", [1, 2]):
        assert not relay.allowed(bad)
    # Nor a daemon, a config, or other programs run by it.
    for option in ("--daemon", "--config=/tmp/x", "--rsh=sh", "--rsync-path=sh -c id", "-M--x"):
        assert not relay.allowed(["rsync", "--server", option, ".", "/m/x"])


def test_local_rsync_has_no_remote_shell_and_skips_one_directory(tmp_path: Path) -> None:
    data, mount = tmp_path / "data", tmp_path / "mount"
    (data / "in").mkdir(parents=True)
    (mount / "link").parent.mkdir()
    (mount / "link").symlink_to(data / "in")
    route = RsyncRoute()
    t = staging.resolve("in/", "staged:x", str(data), str(mount))
    assert staging.rsync_argv(route, t, upload=True) == [
        "rsync", "-a", "--update", "--protect-args", "--",
        f"{data}/in/", f"{mount}/staged:x/",
    ]  # fmt: skip
    assert staging.rsync_argv(route, t, upload=False)[-2:] == [f"{mount}/staged:x/", f"{data}/in/"]
    assert not staging.same_place(route, t)
    assert staging.same_place(route, staging.resolve("in", "link", str(data), str(mount)))
    assert staging.same_place(route, staging.resolve("new/", str(data / "new"), str(data), "/m"))
    # Over SSH the same paths are two hosts' files: always copied.
    same = staging.resolve("in", str(data / "in"), str(data), "/m")
    assert not staging.same_place(RsyncRoute("ssh", "login"), same)


def test_scope_is_stable_per_run_and_new_for_a_recreated_state_dir(tmp_path: Path) -> None:
    import shutil

    from akoflow.runtimes.hpc.runtime import scope_of

    attempts = tmp_path / "state" / "runs" / "1-w" / "attempts"
    first = scope_of(attempts)
    assert scope_of(attempts) == first and len(first) == 12
    shutil.rmtree(tmp_path / "state")  # `rm -rf ~/.akoflow`, then the same run id again
    assert scope_of(attempts) != first  # its jobs and claims on the cluster are not ours


# ------------------------------------------------------------------ provenance listings


def listing_request(tmp_path: Path, run: str, *, record_files: bool = True) -> sbatch.JobRequest:
    """A job of ``run`` in ``tmp_path/work`` (with AkôFlow's own control dir and a sentinel
    in it, as on a cluster), its attempt dir under ``.akoflow``."""
    work = tmp_path / "work"
    paths = sbatch.AttemptPaths.of(str(work), "scope", "wf1-a-a1")
    Path(paths.dir).mkdir(parents=True)
    (work / "akoflow_finished_1_0.txt").write_text("AKOFLOW_JOB_FINISHED\n")
    (work / "in.txt").write_text("input\n")
    Path(paths.script).write_text(run)
    return sbatch.JobRequest(
        name="akf-scope-wf1-a-a1",
        paths=paths,
        workdir=str(work),
        sentinel=sbatch.sentinel_path(str(work), 1, 1),
        command=["bash", paths.script],
        record_files=record_files,
    )


def run_body(
    tmp_path: Path, req: sbatch.JobRequest, template: str | None = None, path: str | None = None
) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "job.sbatch"
    script.write_text(sbatch.render(req, template))
    env = {"PATH": path} if path is not None else None
    return subprocess.run(
        ["bash", str(script)], cwd=tmp_path, capture_output=True, text=True, env=env
    )


def test_without_record_files_the_script_lists_nothing(tmp_path: Path) -> None:
    import dataclasses

    rt = runtime()
    off = rt.request(dataclasses.replace(spec(tmp_path), record_files=False))
    text = sbatch.render(off)
    assert not off.record_files
    assert "akf_list_files" not in text and "files.before" not in text and "find" not in text
    on = rt.request(spec(tmp_path))  # JobSpec.record_files defaults to on
    assert on.record_files
    text = sbatch.render(on)
    order = [
        f"cd {on.workdir} ",
        "akf_list_files() {",
        f"akf_list_files >{on.paths.files_before}.tmp && mv -f",
        f"bash {on.paths.script} </dev/null",
        "akf_code=$?",
        f"akf_list_files >{on.paths.files_after}.tmp && mv -f",
        f'printf \'%s %s %s\\n\' "$akf_code" "$akf_began" "$akf_ended" >{on.paths.exit}.tmp',
        "AKOFLOW_JOB_FINISHED",
        'exit "$akf_code"',
    ]
    positions = [text.index(part) for part in order]
    assert positions == sorted(positions), text


def test_listings_run_with_bash_and_both_exist_before_the_exit_file(tmp_path: Path) -> None:
    """The body runs for real; a shim ``mv`` (ahead in PATH, then the real one) records, when
    the exit file is put in place, whether both listings were already there."""
    from akoflow.provenance.remote import remote_files

    req = listing_request(tmp_path, "cat in.txt > out.txt\nmkdir -p sub\necho x > sub/y\nexit 7\n")
    shim = tmp_path / "shim"
    shim.mkdir()
    seen = tmp_path / "mv.log"
    d = req.paths
    (shim / "mv").write_text(
        "#!/bin/sh\n"
        f"for last; do :; done; b=no; a=no; [ -e {shlex.quote(d.files_before)} ] && b=yes\n"
        f"[ -e {shlex.quote(d.files_after)} ] && a=yes\n"
        f'printf "%s %s %s\\n" "$last" "$b" "$a" >> {shlex.quote(str(seen))}\n'
        'exec /bin/mv "$@"\n'
    )
    (shim / "mv").chmod(0o755)
    import os

    proc = run_body(tmp_path, req, path=f"{shim}:{os.environ['PATH']}")
    assert proc.returncode == 7, proc.stderr  # the activity's code, listings or not
    assert slurm.parse_exit_file(Path(d.exit).read_text()) == 7
    assert Path(d.stdout).read_text() == "" and Path(d.stderr).read_text() == ""
    moves = [line.split() for line in seen.read_text().splitlines()]
    assert moves == [
        [d.files_before, "no", "no"],
        [d.files_after, "yes", "no"],
        [d.exit, "yes", "yes"],  # the exit file implies both listings
    ]
    assert not list(Path(d.dir).glob("*.tmp"))
    files = remote_files(
        "hpc:/work", Path(d.files_before).read_text(), Path(d.files_after).read_text()
    )
    assert files is not None and files.before_time is not None and files.after_time is not None
    # AkôFlow's control dir (the attempt's own files) and sentinels are not in the listings.
    assert set(files.before) == {"in.txt"}
    assert set(files.after) == {"in.txt", "out.txt", "sub/y"}
    assert files.after["out.txt"].size == len("input\n")


def test_the_activity_env_cannot_break_the_recording_of_its_end(tmp_path: Path) -> None:
    """An activity whose env sets PATH to a dir without `mv`, `find` or `printf`: the lines
    that list files and record the exit code still work (the variables are the command's)."""
    import dataclasses

    req = listing_request(tmp_path, "echo ran > ran.txt\n")
    req = dataclasses.replace(req, env={"PATH": str(tmp_path / "nothing-here"), "X": "1"})
    req = dataclasses.replace(req, command=["/bin/bash", req.paths.script])
    proc = run_body(tmp_path, req)
    assert proc.returncode == 0, proc.stderr
    d = req.paths
    assert slurm.parse_exit_file(Path(d.exit).read_text()) == 0
    assert Path(d.files_before).exists() and Path(d.files_after).exists()
    assert (Path(req.workdir) / "ran.txt").read_text() == "ran\n"


def test_a_failing_listing_changes_nothing_about_the_job(tmp_path: Path) -> None:
    """The listings cannot be written (their temporary names are taken by directories) and
    the user's template runs with ``set -e``: the command still runs, its exit code is still
    recorded and returned, and there are simply no listings."""
    req = listing_request(tmp_path, "echo ran > ran.txt\n")
    Path(req.paths.files_before + ".tmp").mkdir()
    Path(req.paths.files_after + ".tmp").mkdir()
    template = '#!/bin/bash\nset -e\n#COMMAND#\necho "tail saw $akf_code"\n'
    proc = run_body(tmp_path, req, template)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "tail saw 0\n" and proc.stderr == ""
    assert slurm.parse_exit_file(Path(req.paths.exit).read_text()) == 0
    assert (tmp_path / "work" / "ran.txt").read_text() == "ran\n"
    assert not Path(req.paths.files_before).exists()
    assert not Path(req.paths.files_after).exists()
    # And without record_files the same job writes no listing at all.
    again = tmp_path / "again"
    again.mkdir()
    off = listing_request(again, "exit 4\n", record_files=False)
    assert run_body(again, off).returncode == 4
    assert sorted(p.name for p in Path(off.paths.dir).iterdir()) == [
        "exit", "script.sh", "started", "stderr", "stdout",
    ]  # fmt: skip


def test_the_login_is_resolved_as_openssh_would_and_settings_win(tmp_path: Path) -> None:
    from akoflow.runtimes.hpc import sshconfig

    config = tmp_path / "config"
    config.write_text(
        "Host mycluster\n  HostName login.example.org\n  Port 2200\n  User alice\n"
        "  ProxyJump bob@gate.example.org:2222,gate2\n  UserKnownHostsFile /k/one /k/two\n"
        "Host *\n  User fallback\n"
    )
    r = sshconfig.resolve([str(config)], "mycluster")
    assert (r.host, r.port, r.user, r.known_hosts) == (
        "login.example.org", 2200, "alice", ("/k/one", "/k/two")
    )  # fmt: skip
    assert [str(h) for h in r.jump] == ["bob@gate.example.org:2222", "gate2"]
    assert r.configured and not r.looks_unknown
    assert r.where == "alice@mycluster (login.example.org):2200 via bob@gate.example.org:2222,gate2"
    set_ = sshconfig.resolve(
        [str(config)], "mycluster", user="me", port=22, known_hosts="/mine", jump="none"
    )
    assert (set_.port, set_.user, set_.known_hosts, set_.jump) == (22, "me", ("/mine",), ())
    unknown = sshconfig.resolve([str(config)], "nosuchcluster")
    assert unknown.user == "fallback" and unknown.looks_unknown
    assert not sshconfig.resolve([], "10.0.0.5").looks_unknown  # an address is no alias
    bad = tmp_path / "bad"
    bad.write_text("Host x\n  Port notaport\n")
    with pytest.raises(HpcMisconfigured, match="the ssh config for x cannot be read"):
        sshconfig.resolve([str(bad)], "x")


def test_ssh_settings_of_the_seed_and_the_config() -> None:
    pub = base64.b64encode(b"ssh-ed25519 AAAA me").decode()
    s = settings(
        SSHKEYPRIVK=KEY_B64, SSHKEYPUBLK=pub,
        SSHCONFIG=base64.b64encode(b"Host x\n  Port 1\n").decode(),
        JUMP_HOST="me@gate:2222,[::1]:22", SSH_CONFIG_FILE="none",
    )  # fmt: skip
    assert s.public_key == b"ssh-ed25519 AAAA me" and s.ssh_config_snippet == "Host x\n  Port 1\n"
    assert s.jump_host == "me@gate:2222,[::1]:22" and s.ssh_config_file is None
    bare = read_settings(RuntimeConfig.from_env("hpc-x", {
        "HPC_X_HOST_CLUSTER": "mycluster", "HPC_X_MOUNT_PATH": "/m"}))  # fmt: skip
    assert (bare.port, bare.user, bare.key_file, bare.known_hosts) == (None, None, None, None)
    assert bare.ssh_config_file == "~/.ssh/config"
    for key, value, message in (
        ("JUMP_HOST", "gate;id", "JUMP_HOST must be [USER@]HOST[:PORT]"),
        ("SSHCONFIG", "not base64!", "SSHCONFIG must be base64"),
        ("SSHKEYPUBLK", pub, "SSHKEYPUBLK needs the private key in SSHKEYPRIVK"),
    ):
        with pytest.raises(SettingsError, match=re.escape(message)):
            settings(**{key: value})


def test_match_exec_runs_through_the_shell_without_percent_tokens(tmp_path: Path) -> None:
    """What the docs say of ``Match exec``: asyncssh runs it with /bin/sh when the config is
    read, and does not expand OpenSSH's %h/%p tokens in it (the command sees them as text)."""
    seen = tmp_path / "seen"
    config = tmp_path / "config"
    config.write_text(f'Match exec "echo %h >> {seen}; true"\n  Port 2202\n')
    assert sshconfig.resolve([str(config)], "somehost").port == 2202
    assert seen.read_text() == "%h\n"
    config.write_text('Match exec "false"\n  Port 2202\n')
    assert sshconfig.resolve([str(config)], "somehost").port == 22


def test_an_exit_record_tells_its_code_and_when_the_command_ran() -> None:
    assert slurm.parse_exit_file("3 1796552460.25 1796552462.5\n") == 3
    assert slurm.parse_exit_times("3 1796552460.25 1796552462.5\n") == (1796552460.25, 1796552462.5)
    assert slurm.parse_exit_times("0 1796552460,5 1796552461,5\n") == (1796552460.5, 1796552461.5)
    # An older job (its code only), a shell without EPOCHREALTIME, junk: no times, the code
    for text in ("0\n", "0  \n", "7 x y\n", "0 inf 1\n", "0 1 2 3\n"):
        assert slurm.parse_exit_times(text) == (None, None), text
    assert slurm.parse_exit_file("0  \n") == 0 and slurm.parse_exit_file("7 x y\n") == 7
    assert slurm.parse_exit_file(None) is None and slurm.parse_exit_times(None) == (None, None)
