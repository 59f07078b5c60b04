"""The singularity runtime through the real CLI, on real SIF files run by the test launcher
(squashfuse + bubblewrap: real mount, PID, UTS, IPC and network namespaces, real cgroup limits).

Covers: files passed through the data dir (default and custom mountPath), variables and script
text reaching the container verbatim, limits read back from inside, a failing exit code, an
image pulled from a reference, engine SIGKILL mid-run then resume (adopted, nothing run twice),
and the mixed local / docker / singularity workflow of issue 5.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from akoflow import service
from tests.conftest import Akoflow, wait_for
from tests.docker_support.dockerd import IMAGE as DOCKER_IMAGE
from tests.docker_support.dockerd import PrivateDockerd
from tests.e2e.test_crash_resume import run_counts
from tests.singularity_runtime.conftest import Images

NASTY = 'it\'s "$(touch pwned1)" and `touch pwned2` ${HOME} \\n; touch pwned3'


def activities(doc: dict[str, object]) -> dict[str, dict[str, object]]:
    return {a["name"]: a for a in doc["activities"]}  # type: ignore[attr-defined]


def test_files_env_limits_and_exit_codes(
    akoflow: Akoflow, images: Images, sing_env: dict[str, str], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "in.txt").write_text("from the host\n")
    wf = tmp_path / "wf.yaml"
    wf.write_text(
        f"name: sif-files\nspec:\n  image: {images.sif}\n  runtime: singularity\n"
        "  activities:\n"
        "    - name: produce\n"
        "      env:\n"
        f"        NASTY: {json.dumps(NASTY)}\n"
        "      run: |\n"
        '        printf "%s|%s|%s|%s\\n" "$(hostname)" "$PWD" \\\n'
        '          "$ACTIVITY_MOUNT_PATH" "$AKOFLOW_DATA_DIR" > where.txt\n'
        '        printf "%s" "$NASTY" > nasty.txt\n'
        '        echo "$(echo inner)" \'$(not run)\' "`echo tick`" > quoting.txt\n'
        "        tr a-z A-Z < in.txt > produced.txt\n"
        "        env | grep -c '^SINGULARITY_BINARY=' > leaked.txt || true\n"
        "    - name: consume\n"
        "      dependsOn: [produce]\n"
        "      mountPath: /work/in\n"
        "      memoryLimit: 64Mi\n"
        "      cpuLimit: 500m\n"
        "      run: |\n"
        '        cg() { grep -E "^[0-9]+:$1:" /proc/self/cgroup | cut -d: -f3; }\n'
        "        cat /sys/fs/cgroup/memory$(cg memory)/memory.limit_in_bytes > limits.txt\n"
        "        cat /sys/fs/cgroup/cpu$(cg cpu)/cpu.cfs_quota_us >> limits.txt\n"
        "        cat /sys/fs/cgroup/cpu$(cg cpu)/cpu.cfs_period_us >> limits.txt\n"
        "        (pwd; cat produced.txt) > consumed.txt\n"
        "    - name: broken\n"
        "      run: |\n"
        "        echo about to fail >&2\n"
        "        exit 3\n"
    )
    res = akoflow("run", str(wf), "--json", "--data-dir", str(data), env=sing_env)
    assert res.returncode == 1, res.stderr
    acts = activities(json.loads(res.stdout))
    assert {n: a["state"] for n, a in acts.items()} == {
        "produce": "succeeded",
        "consume": "succeeded",
        "broken": "failed",
    }
    assert (acts["broken"]["exit_code"], acts["broken"]["reason"]) == (3, "exit code 3")
    logs = akoflow("logs", "1", "broken", env=sing_env)
    assert "about to fail" in logs.stdout + logs.stderr
    # Ran in the image's namespaces, in the data dir mounted at /data (the default).
    assert (data / "where.txt").read_text() == "akoflow-sif|/data|/data|/data\n"
    assert (data / "nasty.txt").read_text() == NASTY
    assert (data / "quoting.txt").read_text() == "inner $(not run) tick\n"
    assert not [p.name for p in data.glob("pwned*")]
    assert (data / "leaked.txt").read_text() == "0\n"  # --cleanenv: engine settings stay out
    # The same data dir at a custom mountPath, with the limits applied for real.
    assert (data / "consumed.txt").read_text() == "/work/in\nFROM THE HOST\n"
    assert (data / "limits.txt").read_text().split() == [str(64 << 20), "50000", "100000"]


def test_image_reference_is_pulled_into_the_cache(
    akoflow: Akoflow, images: Images, sing_env: dict[str, str], tmp_path: Path
) -> None:
    wf = tmp_path / "wf.yaml"
    body = "".join(f"    - name: a{i}\n      run: echo {i} > out{i}.txt\n" for i in range(4))
    wf.write_text(
        f"name: pulled\nspec:\n  image: {images.ref}\n  runtime: singularity\n  activities:\n{body}"
    )
    data = tmp_path / "data"
    res = akoflow("run", str(wf), "--json", "--data-dir", str(data), env=sing_env)
    assert res.returncode == 0, res.stderr + res.stdout
    assert sorted(p.read_text() for p in data.glob("out*.txt")) == ["0\n", "1\n", "2\n", "3\n"]
    (line,) = (tmp_path / "pulls.log").read_text().splitlines()  # four activities, one pull
    assert line.endswith(images.ref)
    cached = list((tmp_path / "sif-cache").glob("*.sif"))
    assert len(cached) == 1 and cached[0].read_bytes()[32:41] == b"SIF_MAGIC"
    # A second run finds it in the cache: no pull at all.
    res = akoflow("run", str(wf), "--json", "--data-dir", str(tmp_path / "d2"), env=sing_env)
    assert res.returncode == 0, res.stderr
    assert len((tmp_path / "pulls.log").read_text().splitlines()) == 1


def test_engine_sigkill_mid_run_then_resume_adopts_and_runs_nothing_twice(
    images: Images, sing_env: dict[str, str], tmp_path: Path, state_dir: Path
) -> None:
    """Two containers outlive the killed engine: ``ended`` finishes while no engine runs (its
    exit code is collected), ``running`` is still running when ``resume`` adopts it (its end
    is then reported by the new engine). Each side-effect file counts real runs."""
    wf = tmp_path / "crash.yaml"
    fast = "".join(f"    - name: fast{i}\n      run: echo run >> count.fast{i}\n" for i in range(3))
    wf.write_text(
        f"name: crashy\nspec:\n  image: {images.sif}\n  runtime: singularity\n  activities:\n"
        "    - name: ended\n      run: |\n        echo run >> count.ended\n"
        "        while [ ! -e go.ended ]; do sleep 0.05; done\n        echo done > ended.out\n"
        "    - name: running\n      run: |\n        echo run >> count.running\n"
        "        while [ ! -e go.running ]; do sleep 0.05; done\n        exit 5\n"
        "    - name: after\n      dependsOn: [ended]\n"
        "      run: |\n        echo run >> count.after\n        cat ended.out\n" + fast
    )
    data = tmp_path / "data"

    def engine(*args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "akoflow", *args, "--state-dir", str(state_dir)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=sing_env,
        )

    first = engine("run", str(wf), "--quiet", "--data-dir", str(data))
    second: subprocess.Popen[str] | None = None
    try:
        wait_for(lambda: all((data / f"count.{n}").exists() for n in ("ended", "running", "fast2")))
        os.kill(first.pid, signal.SIGKILL)
        first.communicate(timeout=10)
        assert first.returncode == -signal.SIGKILL
        (data / "go.ended").touch()
        wait_for(lambda: (data / "ended.out").exists())  # ended while no engine ran
        second = engine("resume", "--json")
        # `after` runs only once `ended` was collected; by then `running` has been adopted.
        wait_for(lambda: (data / "count.after").exists())
        (data / "go.running").touch()
        out, err = second.communicate(timeout=60)
    finally:  # a failed check must leave neither engines nor waiting containers behind
        for f in ("go.ended", "go.running"):
            if data.exists():
                (data / f).touch()
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert second.returncode == 1, err + out  # `running` fails with its own exit code
    doc = json.loads(out)
    assert doc["workflow"]["id"] == 1
    acts = activities(doc)
    assert {n: a["state"] for n, a in acts.items() if n != "running"} == dict.fromkeys(
        ("ended", "after", "fast0", "fast1", "fast2"), "succeeded"
    )
    assert (acts["running"]["state"], acts["running"]["exit_code"]) == ("failed", 5)
    assert acts["ended"]["attempts"] == acts["running"]["attempts"] == 1  # adopted, not rerun
    names = ("ended", "running", "after", "fast0", "fast1", "fast2")
    assert run_counts(data) == {f"count.{n}": 1 for n in names}


def test_an_attempt_that_waited_in_line_then_ended_unwatched_is_judged_from_its_start(
    akoflow: Akoflow, images: Images, sing_env: dict[str, str], tmp_path: Path, state_dir: Path
) -> None:
    """``timed`` (``timeout: 3s``) waits in the runtime's line behind ``blocker`` for longer
    than its timeout, then runs a moment, and ends while no engine runs. Its activity script
    (``.sh``) is written at its submit, its launcher's (``.launch.sh``) as it starts: the
    next engine judged it from the first, recorded it timed out ("it ran 3.8s", its wait in
    line too) and failed the run. It succeeds: it ran well within its timeout, counted from
    its start."""
    wf = tmp_path / "line.yaml"
    acts = "".join(f"    - name: t{i}\n      run: 'true'\n" for i in range(4))
    acts += (
        "    - name: blocker\n      run: |\n        touch blocker.on\n"
        "        while [ ! -e go ]; do sleep 0.05; done\n"
        "    - name: timed\n      timeout: 3s\n      run: |\n        echo run >> count.timed\n"
        "        while [ ! -e go.timed ]; do sleep 0.05; done\n"
    )
    wf.write_text(
        f"name: line\nspec:\n  image: {images.sif}\n  runtime: singularity\n  activities:\n{acts}"
    )
    data = tmp_path / "data"
    env = {**sing_env, "SINGULARITY_MAX_PARALLEL": "1"}
    engine = subprocess.Popen(
        [sys.executable, "-m", "akoflow", "run", str(wf), "--quiet"]
        + ["--state-dir", str(state_dir), "--data-dir", str(data)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        wait_for(lambda: (data / "blocker.on").exists(), 60)
        script = next(iter(state_dir.glob("runs/1-*/attempts/timed.1.sh")), None)
        assert script is not None, "timed did not wait in the line (it was not submitted)"
        # In line for longer than its timeout (a live engine counts it from its start).
        wait_for(lambda: time.time() - script.stat().st_mtime > 3.5, 30)
        (data / "go").touch()
        wait_for(lambda: (data / "count.timed").exists(), 60)
    finally:
        engine.kill()
        engine.communicate()
        if data.exists():  # nothing left waiting, whatever failed
            (data / "go").touch()
            (data / "go.timed").touch()  # it ends while no engine runs
    record = script.with_name("timed.1.exit")
    wait_for(lambda: record.read_text().startswith("exit"), 30)
    done = akoflow("resume", "1", "--json", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    shown = {a["name"]: a for a in json.loads(done.stdout)["activities"]}
    assert (shown["timed"]["state"], shown["timed"]["attempts"]) == ("succeeded", 1), shown
    repo = service.open_repository(state_dir)
    timed = next(a for a in repo.list_activities(1) if a.name == "timed")
    (attempt,) = repo.list_attempts(timed.id)
    # Its recorded run is from its start, not from its submit (it waited in line before).
    assert attempt.started_at is not None and attempt.finished_at is not None
    assert attempt.started_at > script.stat().st_mtime + 3.5
    assert attempt.finished_at - attempt.started_at < 3, attempt
    assert (data / "count.timed").read_text() == "run\n"


def test_mixed_local_docker_singularity_workflow(
    akoflow: Akoflow,
    images: Images,
    sing_env: dict[str, str],
    dockerd: PrivateDockerd,
    tmp_path: Path,
) -> None:
    """Issue 5: one workflow whose local, docker and singularity activities pass files to each
    other through the workflow's data dir, in both directions."""
    wf = tmp_path / "mixed.yaml"
    wf.write_text(
        f"name: mixed\nspec:\n  image: {DOCKER_IMAGE}\n  activities:\n"
        "    - name: start\n      runtime: local\n"
        "      run: echo local > chain.txt\n"
        "    - name: in-docker\n      runtime: docker\n      dependsOn: [start]\n"
        "      run: |\n        cat chain.txt > d.txt\n        echo docker >> d.txt\n"
        "    - name: in-sif\n      runtime: singularity\n      dependsOn: [in-docker]\n"
        f"      image: {images.sif}\n"
        "      run: |\n        cat d.txt > s.txt\n        echo singularity >> s.txt\n"
        "    - name: back-in-docker\n      runtime: docker\n      dependsOn: [in-sif]\n"
        "      run: |\n        cat s.txt > d2.txt\n        echo docker >> d2.txt\n"
        "    - name: finish\n      runtime: local\n      dependsOn: [back-in-docker]\n"
        "      run: |\n        cat d2.txt > final.txt\n        echo local >> final.txt\n"
    )
    data = tmp_path / "data"
    env = {**sing_env, "DOCKER_HOST": dockerd.host}
    res = akoflow("run", str(wf), "--json", "--data-dir", str(data), env=env)
    assert res.returncode == 0, res.stderr + res.stdout
    acts = activities(json.loads(res.stdout))
    assert {n: a["runtime"] for n, a in acts.items()} == {
        "start": "local",
        "in-docker": "docker",
        "in-sif": "singularity",
        "back-in-docker": "docker",
        "finish": "local",
    }
    assert {a["state"] for a in acts.values()} == {"succeeded"}
    assert (data / "final.txt").read_text() == "local\ndocker\nsingularity\ndocker\nlocal\n"
    # Provenance across runtimes: each file was generated by the activity (and runtime) that
    # wrote it and used by the next one (PROV-N export of the run).
    prov = akoflow("prov", "mixed", "-f", "provn", env=env)
    assert prov.returncode == 0, prov.stderr
    # Exact on every runtime: a container's command waits until the engine knows its first
    # process, so even one that ends within milliseconds has its writes placed (issue 15).
    for made, by in (
        ("chain.txt", "start"),
        ("d.txt", "in-docker"),
        ("s.txt", "in-sif"),
        ("d2.txt", "back-in-docker"),
        ("final.txt", "finish"),
    ):
        generated = re.findall(
            rf"wasGeneratedBy\(run:file/{made}@\w+, run:activity/(\S+)/1,", prov.stdout
        )
        assert generated == [by], (made, prov.stdout)
    assert "ambiguous" not in prov.stdout, prov.stdout
    assert re.search(r"used\(run:activity/in-sif/1, run:file/d\.txt@\w+", prov.stdout)
    assert "wasAssociatedWith(run:activity/in-sif/1, run:runtime/singularity" in prov.stdout
    assert "wasAssociatedWith(run:activity/in-docker/1, run:runtime/docker" in prov.stdout
