"""The docker runtime end to end: real workflows through the real CLI on a private dockerd.

Every image is the locally imported busybox; nothing is pulled.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from akoflow.runtimes.scope import existing_scope
from tests.conftest import Akoflow, start_cli, wait_for
from tests.docker_support.dockerd import IMAGE, PrivateDockerd


def status(akoflow: Akoflow, env: dict[str, str], ref: str = "1") -> dict[str, Any]:
    res = akoflow("status", ref, "--json", env=env)
    assert res.returncode == 0, res.stderr
    doc: dict[str, Any] = json.loads(res.stdout)
    return doc


def by_name(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {a["name"]: a for a in doc["activities"]}


def scope(state_dir: Path, wf_id: int, name: str) -> str:
    """The run's scope, once its engine made it (looking never makes one: a run dir made
    here first would make the run take another id)."""
    attempts = state_dir.resolve() / "runs" / f"{wf_id}-{name}" / "attempts"
    wait_for(lambda: existing_scope(attempts))
    found = existing_scope(attempts)
    assert found is not None
    return found


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def run_until_a_container_runs(
    wf: Path, name: str, state_dir: Path, env: dict[str, str], dockerd: PrivateDockerd, *args: str
) -> tuple[subprocess.Popen[str], dict[str, str]]:
    """`akoflow run` of ``wf`` (workflow ``name``) in the background until a container of the
    run is running. Returns the CLI's process and the labels of the run's containers."""
    cli = start_cli(["run", str(wf), "--state-dir", str(state_dir), *args], env)
    try:
        labels = {"akoflow.scope": scope(state_dir, 1, name)}
        wait_for(lambda: [c for c in dockerd.containers(**labels) if c["State"] == "running"])
    except BaseException:
        cli.kill()
        cli.communicate(timeout=30)
        raise
    return cli, labels


def test_mixed_local_and_docker_activities_pass_files(
    akoflow: Akoflow,
    docker_env: dict[str, str],
    dockerd: PrivateDockerd,
    tmp_path: Path,
    state_dir: Path,
) -> None:
    wf = write(
        tmp_path / "mixed.yaml",
        f"name: mixed\nspec:\n  image: {IMAGE}\n  env: {{GREETING: hello}}\n  activities:\n"
        "    - name: make\n      runtime: local\n      run: printf 'alpha\\nbeta\\n' > words.txt\n"
        "    - name: upper\n      runtime: docker\n      dependsOn: [make]\n      run: |\n"
        "        tr a-z A-Z < words.txt > upper.txt\n"
        '        echo "$GREETING from $ACTIVITY_NAME in $(pwd)'
        ' mount=$ACTIVITY_MOUNT_PATH data=$AKOFLOW_DATA_DIR"\n'
        "        ls /sys/class/net > nets.txt\n"
        "        echo to stderr >&2\n"
        "    - name: elsewhere\n      runtime: docker\n      mountPath: /work\n"
        "      dependsOn: [upper]\n      run: |\n"
        "        wc -l < upper.txt | tr -d ' ' > count.txt\n        pwd > where.txt\n"
        "    - name: report\n      runtime: local\n      dependsOn: [elsewhere]\n"
        '      run: echo "$(cat count.txt) $(head -1 upper.txt) $(cat where.txt)" > report.txt\n',
    )
    data = tmp_path / "data"
    res = akoflow("run", str(wf), "--data-dir", str(data), env=docker_env)
    assert res.returncode == 0, res.stderr + res.stdout
    assert (data / "report.txt").read_text() == "2 ALPHA /work\n"
    assert (data / "nets.txt").read_text() == "lo\n"  # network none by default
    acts = by_name(status(akoflow, docker_env))
    assert acts["upper"]["runtime"] == "docker" and acts["upper"]["exit_code"] == 0
    logs = akoflow("logs", "1", "upper", "--stream", "stdout", env=docker_env)
    assert logs.stdout == "hello from upper in /data mount=/data data=/data\n"
    err = akoflow("logs", "1", "upper", "--stream", "stderr", env=docker_env)
    assert err.stdout == "to stderr\n"
    # cleanup policy `always`: no container of this run is left
    assert dockerd.containers(**{"akoflow.scope": scope(state_dir, 1, "mixed")}) == []


def test_cpu_and_memory_limits_are_applied(
    akoflow: Akoflow, docker_env: dict[str, str], tmp_path: Path
) -> None:
    read_limits = (
        "      run: |\n"
        "        if [ -e /sys/fs/cgroup/memory.max ]; then\n"
        "          cat /sys/fs/cgroup/memory.max > mem.$ACTIVITY_NAME\n"
        "          cat /sys/fs/cgroup/cpu.max > cpu.$ACTIVITY_NAME\n"
        "        else\n"
        "          cat /sys/fs/cgroup/memory/memory.limit_in_bytes > mem.$ACTIVITY_NAME\n"
        "          cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us"
        " > cpu.$ACTIVITY_NAME\n"
        "        fi\n"
    )
    wf = write(
        tmp_path / "limits.yaml",
        f"name: limits\nspec:\n  image: {IMAGE}\n  runtime: docker\n  activities:\n"
        "    - name: limited\n      cpuLimit: 500m\n      memoryLimit: 64Mi\n"
        + read_limits
        + "    - name: free\n"
        + read_limits,
    )
    data = tmp_path / "data"
    res = akoflow("run", str(wf), "--data-dir", str(data), env=docker_env)
    assert res.returncode == 0, res.stderr + res.stdout
    assert (data / "mem.limited").read_text().strip() == str(64 << 20)
    assert (data / "cpu.limited").read_text().split() == ["50000", "100000"]
    assert int((data / "mem.free").read_text().strip().replace("max", str(1 << 62))) > 1 << 40
    assert (data / "cpu.free").read_text().split()[0] in ("-1", "max")


def test_exit_code_and_out_of_memory_are_recorded(
    akoflow: Akoflow, docker_env: dict[str, str], tmp_path: Path
) -> None:
    wf = write(
        tmp_path / "fails.yaml",
        f"name: fails\nspec:\n  image: {IMAGE}\n  runtime: docker\n  activities:\n"
        "    - name: seven\n      run: |\n        echo about to fail >&2\n        exit 7\n"
        "    - name: after-seven\n      dependsOn: [seven]\n      run: touch ran-after\n"
        "    - name: hog\n      memoryLimit: 16Mi\n      run: |\n"
        "        a=0123456789abcdef\n        while true; do a=$a$a; done\n",
    )
    data = tmp_path / "data"
    res = akoflow("run", str(wf), "--data-dir", str(data), env=docker_env)
    assert res.returncode == 1
    acts = by_name(status(akoflow, docker_env))
    assert acts["seven"]["state"] == "failed"
    assert acts["seven"]["exit_code"] == 7
    assert acts["seven"]["reason"] == "exit code 7"
    assert acts["after-seven"]["state"] == "skipped"
    assert acts["hog"]["state"] == "failed"
    assert acts["hog"]["reason"] == "out of memory"
    assert acts["hog"]["exit_code"] == 137
    err = akoflow("logs", "1", "seven", "--stream", "stderr", env=docker_env)
    assert err.stdout == "about to fail\n"
    assert not (data / "ran-after").exists()


def test_script_reaches_the_shell_verbatim(
    akoflow: Akoflow, docker_env: dict[str, str], tmp_path: Path
) -> None:
    wf = write(
        tmp_path / "meta.yaml",
        f"name: meta\nspec:\n  image: {IMAGE}\n  runtime: docker\n"
        "  env:\n"
        "    TRICKY: \"'; touch pwned-env; echo '\"\n"
        "  activities:\n"
        "    - name: quoting\n"
        "      run: |\n"
        '        echo "it\'s \\"quoted\\" and \\$(not run) and `echo ran`" > out.txt\n'
        "        printf '%s\\n' \"$TRICKY\" >> out.txt\n"
        "        pwd >> out.txt\n"
        "        echo '$HOME stays' \"$(echo sub) ran\" >> out.txt\n",
    )
    data = tmp_path / "data dir; $(touch pwned-path) `touch pwned-tick`"
    res = akoflow("run", str(wf), "--data-dir", str(data), env=docker_env)
    assert res.returncode == 0, res.stderr + res.stdout
    lines = (data / "out.txt").read_text().splitlines()
    assert lines == [
        'it\'s "quoted" and $(not run) and ran',
        "'; touch pwned-env; echo '",
        "/data",
        "$HOME stays sub ran",
    ]
    assert not list(tmp_path.rglob("pwned*"))
    assert not list(Path.cwd().glob("pwned*"))


def test_missing_image_with_pull_policy_never_fails_at_once(
    akoflow: Akoflow, docker_env: dict[str, str], tmp_path: Path
) -> None:
    wf = write(
        tmp_path / "noimage.yaml",
        "name: noimage\nspec:\n  runtime: docker\n  activities:\n"
        "    - name: missing\n      image: akoflow-test/not-here:1\n      run: touch ran\n"
        "    - name: unset\n      run: touch ran\n",
    )
    data = tmp_path / "data"
    start = time.monotonic()
    res = akoflow(
        "run", str(wf), "--data-dir", str(data), env={**docker_env, "DOCKER_PULL_POLICY": "never"}
    )
    assert res.returncode == 1
    assert time.monotonic() - start < 15
    acts = by_name(status(akoflow, docker_env))
    missing = acts["missing"]["reason"]
    assert acts["missing"]["state"] == "failed"
    assert "image 'akoflow-test/not-here:1' is not present" in missing
    assert "DOCKER_PULL_POLICY is never" in missing
    assert "has no image" in acts["unset"]["reason"]
    assert not (data / "ran").exists()


def test_ctrl_c_stops_and_removes_the_container(
    docker_env: dict[str, str],
    dockerd: PrivateDockerd,
    tmp_path: Path,
    state_dir: Path,
    akoflow: Akoflow,
) -> None:
    wf = write(
        tmp_path / "long.yaml",
        f"name: long\nspec:\n  image: {IMAGE}\n  runtime: docker\n  activities:\n"
        "    - name: sleeper\n      run: |\n        echo started\n        sleep 60\n"
        "        touch not-cancelled\n",
    )
    data = tmp_path / "data"
    cli, labels = run_until_a_container_runs(
        wf, "long", state_dir, docker_env, dockerd, "--data-dir", str(data)
    )
    try:
        started = time.monotonic()
        cli.send_signal(signal.SIGINT)
        cli.communicate(timeout=30)
    finally:
        if cli.poll() is None:
            cli.kill()
    assert cli.returncode == 1
    assert time.monotonic() - started < 10  # tini forwards SIGTERM: no wait for SIGKILL
    act = by_name(status(akoflow, docker_env))["sleeper"]
    assert act["state"] == "cancelled"
    assert dockerd.containers(**labels) == []
    assert not (data / "not-cancelled").exists()


def test_engine_sigkill_then_resume_adopts_containers(
    akoflow: Akoflow,
    docker_env: dict[str, str],
    dockerd: PrivateDockerd,
    tmp_path: Path,
    state_dir: Path,
) -> None:
    """The engine dies mid-run. `resume` collects the exit code of a container that ended
    meanwhile, adopts the one still running (no second container) and reports its end."""
    wf = write(
        tmp_path / "crashy.yaml",
        f"name: crashy\nspec:\n  image: {IMAGE}\n  runtime: docker\n  activities:\n"
        "    - name: quick\n      run: |\n        echo run >> count.quick\n        sleep 1\n"
        "        exit 4\n"
        "    - name: slow\n      run: |\n        echo run >> count.slow\n        sleep 4\n"
        "        echo done > slow.out\n        echo slow finished\n"
        "    - name: after-slow\n      runtime: local\n      dependsOn: [slow]\n"
        "      run: cat slow.out > after.txt\n",
    )
    data = tmp_path / "data"
    env = {**docker_env, "DOCKER_CLEANUP": "never"}  # keep them, to count them
    cli = start_cli(
        ["run", str(wf), "--quiet", "--state-dir", str(state_dir), "--data-dir", str(data)], env
    )
    wait_for(lambda: (data / "count.quick").exists() and (data / "count.slow").exists())
    os.kill(cli.pid, signal.SIGKILL)
    cli.communicate(timeout=10)
    labels = {"akoflow.scope": scope(state_dir, 1, "crashy")}

    def state_of(activity: str) -> str:
        (c,) = dockerd.containers(**labels, **{"akoflow.activity": activity})
        return str(c["State"])

    wait_for(lambda: state_of("quick") == "exited", timeout=10)
    assert state_of("slow") == "running"
    res = akoflow("resume", "--json", env=env)
    assert res.returncode == 1, res.stderr + res.stdout  # quick failed with exit code 4
    doc = json.loads(res.stdout)
    assert doc["workflow"]["id"] == 1
    acts = {a["name"]: a for a in doc["activities"]}
    assert (acts["quick"]["state"], acts["quick"]["exit_code"]) == ("failed", 4)
    assert acts["quick"]["attempts"] == 1
    assert (acts["slow"]["state"], acts["slow"]["attempts"]) == ("succeeded", 1)
    assert acts["after-slow"]["state"] == "succeeded"
    assert (data / "after.txt").read_text() == "done\n"
    assert (data / "count.quick").read_text() == "run\n"
    assert (data / "count.slow").read_text() == "run\n"
    # one container per activity: nothing was created twice
    containers = dockerd.containers(**labels)
    assert sorted(c["Labels"]["akoflow.activity"] for c in containers) == ["quick", "slow"]
    logs = akoflow("logs", "1", "slow", "--stream", "stdout", env=env)
    assert logs.stdout == "slow finished\n"


def test_a_container_that_outlived_its_timeout_while_no_engine_ran_is_timed_out(
    akoflow: Akoflow,
    docker_env: dict[str, str],
    dockerd: PrivateDockerd,
    tmp_path: Path,
    state_dir: Path,
) -> None:
    """``timeout: 1s``; the engine dies, and the container runs 3 s and exits 0 meanwhile.
    `resume` judges it by the daemon's start and end: timed out (a live engine would have
    stopped it), recorded as ended when the container did, and its dependent never runs."""
    wf = write(
        tmp_path / "outlived.yaml",
        f"name: outlived\nspec:\n  image: {IMAGE}\n  runtime: docker\n  activities:\n"
        "    - name: slow\n      timeout: 1s\n      run: |\n        echo run >> count.slow\n"
        "        sleep 3\n        echo done > slow.out\n"
        "    - name: after\n      runtime: local\n      dependsOn: [slow]\n"
        "      run: echo run >> count.after\n",
    )
    data = tmp_path / "data"
    env = docker_env
    cli = start_cli(
        ["run", str(wf), "--quiet", "--state-dir", str(state_dir), "--data-dir", str(data)], env
    )
    wait_for(lambda: (data / "count.slow").exists())
    os.kill(cli.pid, signal.SIGKILL)
    cli.communicate(timeout=10)
    labels = {"akoflow.scope": scope(state_dir, 1, "outlived")}
    wait_for(lambda: [c for c in dockerd.containers(**labels) if c["State"] == "exited"], 30)
    res = akoflow("resume", "--json", env=env)
    assert res.returncode == 1, res.stderr + res.stdout
    acts = by_name(json.loads(res.stdout))
    assert acts["slow"]["state"] == "failed", acts["slow"]
    assert acts["slow"]["reason"].startswith("timed out after 1s (it ran"), acts["slow"]
    assert acts["after"]["state"] == "skipped"
    assert (data / "slow.out").read_text() == "done\n"  # it did run to its end, once
    assert (data / "count.slow").read_text() == "run\n"
    assert not (data / "count.after").exists()
    assert dockerd.containers(**labels) == []  # collected, then removed
