"""Result caching through the real CLI: real engine processes, real local activities, side
effects counted in files outside the data dir (an activity that runs appends a line)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from akoflow.cache.fingerprint import BIG_FAN_IN
from tests.conftest import Akoflow, cli_env, start_cli, wait_for

ODD_NAME = b"caf\xe9 \xff.dat"  # not UTF-8


def tree_workflow(counters: Path, *, edit: str | None = None, no_cache_on: str = "") -> str:
    """20 activities a00..a19, a binary tree: a_i depends on a_(i-1)//2, reads its parent's
    file and writes its own. a00 also writes a file whose name is not UTF-8."""
    lines = [
        "name: tree",
        "spec:",
        "  runtime: local",
        f"  env: {{COUNT: {json.dumps(str(counters))}}}",
        "  activities:",
    ]
    for i in range(20):
        name = f"a{i:02d}"
        lines.append(f"    - name: {name}")
        if name == no_cache_on:
            lines.append("      cache: false")
        if i:
            parent = f"a{(i - 1) // 2:02d}"
            lines.append(f"      dependsOn: [{parent}]")
            body = f"{{ cat {parent}.txt; echo {name}; }} > {name}.txt"
        else:
            odd = "\"$(printf 'caf\\351 \\377.dat')\""
            body = f"echo root > a00.txt; printf 'bytes \\351\\377\\n' > {odd}"
        if name == edit:
            body += f"; echo edited >> {name}.txt"
        lines.append("      run: |")
        lines.append(f'        echo ran >> "$COUNT/{name}"')
        lines.append(f"        {body}")
    return "\n".join(lines) + "\n"


def counts(counters: Path) -> dict[str, int]:
    return {p.name: len(p.read_text().splitlines()) for p in counters.iterdir()}


def states(akoflow: Akoflow, run: int) -> dict[str, str]:
    res = akoflow("status", str(run), "--json")
    assert res.returncode == 0, res.stderr
    return {a["name"]: a["state"] for a in json.loads(res.stdout)["activities"]}


def make_store(akoflow: Akoflow, tmp_path: Path) -> None:
    """A first run of a one-activity workflow: the state dir and its store exist after it."""
    first = tmp_path / "first.yaml"
    first.write_text("name: first\nspec:\n  activities:\n    - name: x\n      run: 'true'\n")
    assert akoflow("run", str(first), "--quiet").returncode == 0


def kill_when(
    engine: subprocess.Popen[str], condition: Callable[[], bool], timeout: float = 60
) -> None:
    """SIGKILL ``engine`` as soon as ``condition`` holds."""
    try:
        wait_for(condition, timeout=timeout)
        engine.send_signal(signal.SIGKILL)
        engine.communicate(timeout=30)
    finally:
        if engine.poll() is None:
            engine.kill()
            engine.communicate()


def files_of(data: Path) -> dict[bytes, bytes]:
    """Every regular file of a data dir by its name's bytes."""
    found = {}
    for here, _dirs, names in os.walk(os.fsencode(data)):
        for name in names:
            path = os.path.join(here, name)
            found[os.path.relpath(path, os.fsencode(data))] = Path(os.fsdecode(path)).read_bytes()
    return found


def test_a_second_run_of_an_unchanged_workflow_runs_nothing(
    akoflow: Akoflow, tmp_path: Path, state_dir: Path
) -> None:
    counters = tmp_path / "counters"
    counters.mkdir()
    wf = tmp_path / "tree.yaml"
    wf.write_text(tree_workflow(counters))
    first = akoflow("run", str(wf), "--quiet")
    assert first.returncode == 0, first.stderr
    assert counts(counters) == {f"a{i:02d}": 1 for i in range(20)}
    second = akoflow("run", str(wf))
    assert second.returncode == 0, second.stderr
    assert counts(counters) == {f"a{i:02d}": 1 for i in range(20)}  # nothing ran
    assert set(states(akoflow, 2).values()) == {"cached"}
    assert "cached 20" in second.stdout
    # The outputs are in the new run's data dir, byte for byte (also a name not UTF-8).
    before = files_of(state_dir / "runs" / "1-tree" / "data")
    after = files_of(state_dir / "runs" / "2-tree" / "data")
    assert after == before and ODD_NAME in after and len(after) == 21
    listed = akoflow("status", "--json")
    assert [w["state"] for w in json.loads(listed.stdout)][:2] == [
        "succeeded",
        "succeeded",
    ]


def test_an_edited_script_reruns_it_and_its_downstream_only(
    akoflow: Akoflow, tmp_path: Path
) -> None:
    counters = tmp_path / "counters"
    counters.mkdir()
    wf = tmp_path / "tree.yaml"
    wf.write_text(tree_workflow(counters))
    assert akoflow("run", str(wf), "--quiet").returncode == 0
    wf.write_text(tree_workflow(counters, edit="a02"))
    planned = akoflow("run", str(wf), "--dry-run", "--json")
    assert planned.returncode == 0, planned.stderr
    plan = {a["name"]: a for a in json.loads(planned.stdout)["activities"]}
    subtree = {"a02", "a05", "a06", "a11", "a12", "a13", "a14"}
    assert {n for n, a in plan.items() if a["would"] != "cached"} == subtree
    assert plan["a02"]["would"] == "run"
    assert plan["a02"]["reason"] == "the script changed since run #1"
    assert (plan["a05"]["would"], plan["a05"]["reason"]) == ("undecided", "decided after a02 runs")
    assert plan["a01"]["cachedFrom"] == 1
    assert counts(counters) == {f"a{i:02d}": 1 for i in range(20)}  # the dry run ran nothing
    assert akoflow("run", str(wf), "--quiet").returncode == 0
    ran = {name for name, n in counts(counters).items() if n == 2}
    assert ran == subtree
    st = states(akoflow, 2)
    assert {n for n, s in st.items() if s == "succeeded"} == subtree
    assert {n for n, s in st.items() if s == "cached"} == set(st) - subtree
    # A third run of the edited file reuses the second run's results, all of them.
    assert akoflow("run", str(wf), "--quiet").returncode == 0
    assert set(states(akoflow, 3).values()) == {"cached"}
    assert max(counts(counters).values()) == 2


def test_no_cache_and_cache_false_run_again(akoflow: Akoflow, tmp_path: Path) -> None:
    counters = tmp_path / "counters"
    counters.mkdir()
    wf = tmp_path / "tree.yaml"
    wf.write_text(tree_workflow(counters, no_cache_on="a01"))
    assert akoflow("run", str(wf), "--quiet").returncode == 0
    assert akoflow("run", str(wf), "--quiet", "--no-cache").returncode == 0
    assert set(counts(counters).values()) == {2}
    assert set(states(akoflow, 2).values()) == {"succeeded"}
    # cache: false runs it every time; what it wrote is the same, so its dependents
    # (which read it) are reused.
    assert akoflow("run", str(wf), "--quiet").returncode == 0
    st = states(akoflow, 3)
    assert st["a01"] == "succeeded" and counts(counters)["a01"] == 3
    assert {n for n, s in st.items() if s != "cached"} == {"a01"}


READER = """\
name: readers
spec:
  runtime: local
  env: {{COUNT: "{counters}"}}
  activities:
    - name: reader
      run: |
        echo ran >> "$COUNT/reader"
        tr a-z A-Z < input.txt > upper.txt
    - name: after
      dependsOn: [reader]
      run: |
        echo ran >> "$COUNT/after"
        wc -c < upper.txt > size.txt
    - name: other
      run: |
        echo ran >> "$COUNT/other"
        echo independent > other.txt
"""


def test_input_content_not_its_time_decides(akoflow: Akoflow, tmp_path: Path) -> None:
    counters, data = tmp_path / "counters", tmp_path / "data"
    counters.mkdir()
    data.mkdir()
    (data / "input.txt").write_text("hello\n")
    wf = tmp_path / "readers.yaml"
    wf.write_text(READER.format(counters=counters))
    run = ("run", str(wf), "--quiet", "--data-dir", str(data))
    assert akoflow(*run).returncode == 0
    # touch: a new time, the same content: nothing runs.
    later = time.time() + 100
    os.utime(data / "input.txt", (later, later))
    assert akoflow(*run).returncode == 0
    assert counts(counters) == {"reader": 1, "after": 1, "other": 1}
    assert set(states(akoflow, 2).values()) == {"cached"}
    # New content: its reader and what depends on it run; the other one does not.
    (data / "input.txt").write_text("world!\n")
    planned = akoflow(*run, "--dry-run")
    assert planned.returncode == 0
    assert "input input.txt changed since run #" in planned.stdout
    assert "2 of 3 activities would run" in planned.stdout
    assert akoflow(*run).returncode == 0
    assert counts(counters) == {"reader": 2, "after": 2, "other": 1}
    assert (data / "upper.txt").read_text() == "WORLD!\n"
    assert (data / "size.txt").read_text().strip() == "7"


def test_a_deleted_cached_output_reruns_its_producer(
    akoflow: Akoflow, tmp_path: Path, state_dir: Path
) -> None:
    counters = tmp_path / "counters"
    counters.mkdir()
    wf = tmp_path / "tree.yaml"
    wf.write_text(tree_workflow(counters))
    assert akoflow("run", str(wf), "--quiet").returncode == 0
    (state_dir / "runs" / "1-tree" / "data" / "a03.txt").unlink()
    planned = akoflow("run", str(wf), "--dry-run")
    assert "its output a03.txt is no longer in run #1's data dir" in planned.stdout
    assert akoflow("run", str(wf), "--quiet").returncode == 0
    st = states(akoflow, 2)
    assert st["a03"] == "succeeded" and counts(counters)["a03"] == 2
    # It wrote the same bytes again: what reads it (a07, a08, ...) is reused.
    assert {n for n, s in st.items() if s != "cached"} == {"a03"}
    assert (state_dir / "runs" / "2-tree" / "data" / "a07.txt").read_text() == (
        "root\na01\na03\na07\n"
    )


def test_sigkill_during_a_cached_run_then_resume(
    akoflow: Akoflow, tmp_path: Path, state_dir: Path
) -> None:
    """The engine is killed while a cached run restores results and runs the one changed
    activity; `akoflow resume` reuses what is left, adopts what runs, runs nothing twice."""
    counters, gate = tmp_path / "counters", tmp_path / "gate"
    counters.mkdir()
    wide = ["name: wide", "spec:", "  runtime: local", "  activities:"]
    for i in range(120):
        wide += [
            f"    - name: w{i:03d}",
            "      run: |",
            f'        echo ran >> "{counters}/w{i:03d}"',
            f"        head -c 200000 /dev/zero | tr '\\0' '{i % 10}' > w{i:03d}.bin",
        ]
    first = tmp_path / "wide.yaml"
    first.write_text("\n".join(wide) + "\n")
    assert akoflow("run", str(first), "--quiet").returncode == 0
    # The same, plus one changed activity that waits for the gate.
    gated = [
        "    - name: gated",
        "      run: |",
        f'        echo ran >> "{counters}/gated"',
        f"        while [ ! -e {gate} ]; do sleep 0.05; done",
        "        echo done > gated.txt",
    ]
    second = tmp_path / "wide2.yaml"
    second.write_text("\n".join(wide + gated) + "\n")
    engine = start_cli(["run", str(second), "--quiet", "--state-dir", str(state_dir)], cli_env())
    db = state_dir / "akoflow.db"

    def some_cached() -> bool:
        with sqlite3.connect(db) as conn:
            n = conn.execute("SELECT COUNT(*) FROM activities WHERE state = 'cached'")
            return int(n.fetchone()[0]) > 0

    kill_when(engine, some_cached)
    gate.touch()
    resumed = akoflow("resume")
    assert resumed.returncode == 0, resumed.stderr
    st = states(akoflow, 2)
    assert st.pop("gated") == "succeeded"
    assert set(st.values()) == {"cached"}
    assert counts(counters) == {**{f"w{i:03d}": 1 for i in range(120)}, "gated": 1}
    assert files_of(state_dir / "runs" / "2-wide" / "data") == {
        **files_of(state_dir / "runs" / "1-wide" / "data"),
        b"gated.txt": b"done\n",
    }


DECLARED = """\
name: declared
spec:
  runtime: local
  env: {{COUNT: "{counters}"}}
  activities:
    - name: declares
      inputs: [input.txt]
      outputs: [upper.txt]
      run: |
        echo ran >> "$COUNT/declares"
        tr a-z A-Z < input.txt > upper.txt
    - name: silent
      run: |
        echo ran >> "$COUNT/silent"
        cat input.txt > copy.txt
"""


def test_unobserved_reads_are_reused_only_when_declared(akoflow: Akoflow, tmp_path: Path) -> None:
    """Without observation (timing), what an activity read is a guess: only an activity that
    declares its inputs (and so its outputs) is reused, checked against their contents."""
    counters, data = tmp_path / "counters", tmp_path / "data"
    counters.mkdir()
    data.mkdir()
    (data / "input.txt").write_text("abc\n")
    wf = tmp_path / "declared.yaml"
    wf.write_text(DECLARED.format(counters=counters))
    env = cli_env(AKOFLOW_OBSERVE="off")
    run = ("run", str(wf), "--quiet", "--data-dir", str(data))
    assert akoflow(*run, env=env).returncode == 0
    planned = akoflow(*run, "--dry-run", env=env)
    assert "what it read was not observed (provenance: inferred from timing" in planned.stdout
    assert akoflow(*run, env=env).returncode == 0
    assert counts(counters) == {"declares": 1, "silent": 2}
    assert states(akoflow, 2) == {"declares": "cached", "silent": "succeeded"}
    (data / "input.txt").write_text("xyz\n")
    assert akoflow(*run, env=env).returncode == 0
    assert counts(counters) == {"declares": 2, "silent": 3}
    assert (data / "upper.txt").read_text() == "XYZ\n"


def test_a_reused_result_is_in_the_runs_provenance(akoflow: Akoflow, tmp_path: Path) -> None:
    counters = tmp_path / "counters"
    counters.mkdir()
    wf = tmp_path / "tree.yaml"
    wf.write_text(tree_workflow(counters))
    assert akoflow("run", str(wf), "--quiet").returncode == 0
    assert akoflow("run", str(wf), "--quiet").returncode == 0
    prov = akoflow("prov", "2", "--format", "provn")
    assert prov.returncode == 0, prov.stderr
    assert "akoflow:cachedFrom='run1:activity/a01/1'" in prov.stdout
    assert "wasDerivedFrom(run:file/a01.txt@" in prov.stdout
    assert ", run1:file/a01.txt@" in prov.stdout
    report = tmp_path / "report.html"
    assert akoflow("report", "2", "-o", str(report)).returncode == 0
    html = report.read_text()
    assert "Reused results" in html and "cached" in html


def test_the_server_reuses_results_too(tmp_path: Path) -> None:
    """Workflows submitted through the API run on the same engine: a second submission of
    an unchanged workflow runs nothing and shows its activities `cached`."""
    from tests.server.conftest import Server, activity_states, free_port, submit, wait_workflow

    counters = tmp_path / "counters"
    counters.mkdir()
    text = tree_workflow(counters).replace("a19", "x19")  # any workflow
    server = Server(state_dir=tmp_path / "state", port=free_port(), env=cli_env())
    server.start()
    try:
        with server.client() as api:
            first = submit(api, text)
            assert wait_workflow(api, first)["state"] == "succeeded"
            second = submit(api, text)
            doc = wait_workflow(api, second)
            assert doc["state"] == "succeeded"
            assert set(activity_states(doc).values()) == {"cached"}
    finally:
        server.stop()
    assert set(counts(counters).values()) == {1} and len(counts(counters)) == 20


def test_a_wide_run_decides_its_activities_in_batches_as_one_by_one(
    akoflow: Akoflow, tmp_path: Path
) -> None:
    """100 activities ready at once: beyond the first few, the cache decides them a chunk at
    a time (a few queries for all). Each still gets its own decision: the unchanged ones are
    reused, and each edited one runs, saying what changed."""
    counters = tmp_path / "counters"
    counters.mkdir()

    def wide(edited: set[int]) -> str:
        lines = ["name: wide", "spec:", f"  env: {{COUNT: {json.dumps(str(counters))}}}"]
        lines.append("  activities:")
        for i in range(100):
            extra = "; echo edited" if i in edited else ""
            lines += [f"    - name: w{i:03d}", f'      run: echo ran >> "$COUNT/w{i:03d}"{extra}']
        return "\n".join(lines) + "\n"

    wf = tmp_path / "wide.yaml"
    wf.write_text(wide(set()))
    assert akoflow("run", str(wf), "--quiet").returncode == 0
    edited = set(range(1, 100, 3))  # among the first ones decided and the batched ones
    wf.write_text(wide(edited))
    second = akoflow("run", str(wf), "-v")
    assert second.returncode == 0, second.stderr
    ran = {name for name, n in counts(counters).items() if n == 2}
    assert ran == {f"w{i:03d}" for i in edited}
    assert set(counts(counters).values()) <= {1, 2}
    for i in edited:
        assert f"w{i:03d} runs: the script changed since run #1" in second.stderr
    got = states(akoflow, 2)
    assert {n for n, s in got.items() if s == "cached"} == {
        f"w{i:03d}" for i in range(100) if i not in edited
    }


def test_an_entry_the_store_refuses_costs_only_that_reuse(
    akoflow: Akoflow, tmp_path: Path, state_dir: Path
) -> None:
    """The cache's INSERT for one activity fails (a trigger of the real store aborts it): the
    run succeeds with every other record of that wake-up kept, each activity ran once, and a
    second run reuses everything but that activity and what depends on it."""
    counters = tmp_path / "counters"
    counters.mkdir()
    wf = tmp_path / "chain.yaml"
    lines = ["name: chain", "spec:", f"  env: {{COUNT: {json.dumps(str(counters))}}}"]
    lines.append("  activities:")
    for name, dep in (("a", None), ("b", "a"), ("c", "b"), ("d", None)):
        lines += [f"    - name: {name}", f'      run: echo ran >> "$COUNT/{name}"']
        if dep:
            lines.append(f"      dependsOn: [{dep}]")
    wf.write_text("\n".join(lines) + "\n")
    make_store(akoflow, tmp_path)
    with sqlite3.connect(state_dir / "akoflow.db") as db:
        db.execute(
            "CREATE TRIGGER refuse_b BEFORE INSERT ON cache_entries "
            "WHEN NEW.activity_name = 'b' BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
        )
    res = akoflow("run", str(wf), "--json")
    assert res.returncode == 0, res.stderr
    assert "cache: cannot record the result of b" in res.stderr
    doc = json.loads(res.stdout)
    assert {a["name"]: a["state"] for a in doc["activities"]} == dict.fromkeys("abcd", "succeeded")
    assert counts(counters) == dict.fromkeys("abcd", 1)
    with sqlite3.connect(state_dir / "akoflow.db") as db:
        names = {r[0] for r in db.execute("SELECT activity_name FROM cache_entries")}
        ended = db.execute(
            "SELECT COUNT(*) FROM attempts WHERE state = 'succeeded' AND finished_at IS NOT NULL"
        ).fetchone()[0]
        db.execute("DROP TRIGGER refuse_b")
    assert names == {"x", "a", "c", "d"}
    assert ended == 5  # x and the four: the ends recorded in b's wake-up were kept
    second = akoflow("run", str(wf), "--json")
    assert second.returncode == 0, second.stderr
    got = {a["name"]: a["state"] for a in json.loads(second.stdout)["activities"]}
    assert got == {"a": "cached", "b": "succeeded", "c": "succeeded", "d": "cached"}
    assert counts(counters) == {"a": 1, "b": 2, "c": 2, "d": 1}


def test_a_join_of_a_thousand_is_reused_and_says_an_upstream_changed(
    akoflow: Akoflow, tmp_path: Path, state_dir: Path
) -> None:
    """A join of BIG_FAN_IN upstreams keeps two digests of them (its key computed in a
    worker thread): reused when nothing changed; one upstream edited, that one and the join
    run again, the join saying one of its upstream fingerprints changed."""
    counters = tmp_path / "counters"
    counters.mkdir()
    n = BIG_FAN_IN

    def join_of(edited: int | None) -> str:
        lines = ["name: gather", "spec:", f"  env: {{COUNT: {json.dumps(str(counters))}}}"]
        lines.append("  activities:")
        for i in range(n):
            extra = "; echo edited" if i == edited else ""
            lines += [f"    - name: p{i:04d}", f"      run: echo {i}{extra} > p{i:04d}.txt"]
        deps = ", ".join(f"p{i:04d}" for i in range(n))
        lines += ["    - name: join", f"      dependsOn: [{deps}]"]
        lines.append('      run: cat p*.txt | wc -l > lines.txt; echo ran >> "$COUNT/join"')
        return "\n".join(lines) + "\n"

    wf = tmp_path / "gather.yaml"
    wf.write_text(join_of(None))
    assert akoflow("run", str(wf), "--quiet").returncode == 0
    assert (state_dir / "runs" / "1-gather" / "data" / "lines.txt").read_text().strip() == str(n)
    again = akoflow("run", str(wf), "--quiet")
    assert again.returncode == 0, again.stderr
    assert set(states(akoflow, 2).values()) == {"cached"}
    assert counts(counters) == {"join": 1}
    wf.write_text(join_of(7))
    third = akoflow("run", str(wf), "-v")
    assert third.returncode == 0, third.stderr
    assert counts(counters) == {"join": 2}
    assert "p0007 runs: the script changed since run #" in third.stderr
    said = "join runs: the fingerprint of one or more of its upstream activities changed"
    assert said in third.stderr
    assert {n for n, s in states(akoflow, 3).items() if s != "cached"} == {"p0007", "join"}
    with sqlite3.connect(state_dir / "akoflow.db") as db:
        sizes = [
            r[0]
            for r in db.execute(
                "SELECT length(components) FROM cache_entries WHERE activity_name = 'join'"
            )
        ]
    assert len(sizes) == 3 and max(sizes) < 2_000  # not a part per upstream (100 KB here)


def test_a_big_join_recorded_with_its_upstreams_sees_their_fingerprints(
    akoflow: Akoflow, tmp_path: Path, state_dir: Path
) -> None:
    """A join of BIG_FAN_IN upstreams whose entry is recorded in one batch with theirs (no
    entry written before the engine was killed, the store refusing them; the resumed engine
    records them in order) gets a key of their fingerprints: computed in a thread before the
    batch's entries, it took the last ones as unknown, the entry said "the fingerprint of
    upstream p0999 is unknown", its fingerprint was the run's own, and what depends on it
    was not reused by the next run."""
    counters, gate = tmp_path / "counters", tmp_path / "gate"
    counters.mkdir()
    n = BIG_FAN_IN
    lines = ["name: late", "spec:", f"  env: {{COUNT: {json.dumps(str(counters))}}}"]
    lines.append("  activities:")
    for i in range(n):
        lines += [f"    - name: p{i:04d}", f"      run: echo {i} > p{i:04d}.txt"]
    deps = ", ".join(f"p{i:04d}" for i in range(n))
    lines += ["    - name: join", f"      dependsOn: [{deps}]"]
    lines.append('      run: echo ran >> "$COUNT/join"')
    lines += ["    - name: gate", "      cache: false"]
    lines.append(f"      run: while [ ! -e {gate} ]; do sleep 0.05; done")
    lines += ["    - name: after", "      dependsOn: [join, gate]"]
    lines.append('      run: echo ran >> "$COUNT/after"')
    wf = tmp_path / "late.yaml"
    wf.write_text("\n".join(lines) + "\n")
    make_store(akoflow, tmp_path)
    db = state_dir / "akoflow.db"
    with sqlite3.connect(db) as conn:  # no entry is written until the engine is killed
        conn.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON cache_entries "
            "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
        )
    engine = start_cli(["run", str(wf), "--quiet", "--state-dir", str(state_dir)], cli_env())

    def join_succeeded() -> bool:
        with sqlite3.connect(db) as conn:
            row = conn.execute(
                "SELECT state FROM activities WHERE name = 'join' AND workflow_id = 2"
            ).fetchone()
            return row is not None and row[0] == "succeeded"

    kill_when(engine, join_succeeded, timeout=120)
    with sqlite3.connect(db) as conn:
        conn.execute("DROP TRIGGER refuse")
        assert not conn.execute(
            "SELECT COUNT(*) FROM cache_entries WHERE workflow_id = 2"
        ).fetchone()[0]
    gate.touch()
    resumed = akoflow("run", str(wf), "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert counts(counters) == {"join": 1, "after": 1}
    with sqlite3.connect(db) as conn:
        why = conn.execute(
            "SELECT not_reusable FROM cache_entries "
            "WHERE workflow_id = 2 AND activity_name = 'join'"
        ).fetchone()[0]
    # Not reusable, and why: what it read is known only to the engine that was killed.
    assert why is not None and "unknown" not in why
    assert why.startswith("the engine stopped after it ended and before recording what it read")
    # The next run runs the join again (its entry says it was not observed): it computes
    # the same fingerprint, so what depends on it is reused.
    again = akoflow("run", str(wf), "--quiet")
    assert again.returncode == 0, again.stderr
    assert states(akoflow, 3)["after"] == "cached"
    assert counts(counters) == {"join": 2, "after": 1}


def test_a_dry_run_names_a_few_of_the_many_upstream_activities_it_waits_for(
    akoflow: Akoflow, tmp_path: Path
) -> None:
    """A join of 1,000 whose upstream activities will run: its dry-run reason names five of
    them and how many more (it named all 1,000: 7 KB of one line)."""
    make_store(akoflow, tmp_path)
    n = BIG_FAN_IN
    lines = ["name: gather", "spec:", "  activities:"]
    lines += [f"    - name: p{i:04d}\n      run: echo {i} > p{i:04d}.txt" for i in range(n)]
    deps = ", ".join(f"p{i:04d}" for i in range(n))
    lines += ["    - name: join", f"      dependsOn: [{deps}]", "      run: cat p*.txt"]
    wf = tmp_path / "gather.yaml"
    wf.write_text("\n".join(lines) + "\n")
    planned = akoflow("run", str(wf), "--dry-run", "--json")
    assert planned.returncode == 0, planned.stderr
    plan = {a["name"]: a for a in json.loads(planned.stdout)["activities"]}
    assert plan["join"]["reason"] == (
        f"decided after p0000, p0001, p0002, p0003, p0004 and {n - 5} more run"
    )


@pytest.mark.parametrize(
    ("made", "move", "moved"),
    [("made.txt", "mv made.txt moved.txt", "moved.txt"), ("d/made.txt", "mv d e", "e/made.txt")],
    ids=["file", "directory"],
)
def test_a_file_renamed_from_an_upstreams_output_is_restored_when_reused(
    akoflow: Akoflow, tmp_path: Path, state_dir: Path, made: str, move: str, moved: str
) -> None:
    """`use` renames (mv) the file `make` wrote, or its directory, reading and writing no
    data: the new name is a version `use` generated, so a second run reusing `use` restores
    it and `read` finds it. Before, the rename generated nothing: `make` ran again (its output
    gone from run 1's data dir), `use` was reused with nothing to restore and `read` failed
    on an unchanged workflow."""
    counters = tmp_path / "counters"
    counters.mkdir()
    wf = tmp_path / "ren.yaml"
    wf.write_text(
        "name: ren\nspec:\n  runtime: local\n"
        f"  env: {{COUNT: {json.dumps(str(counters))}}}\n"
        "  activities:\n"
        "    - name: make\n      run: |\n"
        f'        echo ran >> "$COUNT/make"; mkdir -p d; echo a > {made}\n'
        "    - name: use\n      dependsOn: [make]\n      run: |\n"
        f'        echo ran >> "$COUNT/use"; {move}\n'
        "    - name: read\n      dependsOn: [use]\n      run: |\n"
        f'        echo ran >> "$COUNT/read"; cat {moved} > read.txt\n'
    )
    first = akoflow("run", str(wf), "--quiet")
    assert first.returncode == 0, first.stderr
    prov = akoflow("prov", "1")
    generated = {
        (g["prov:activity"].split("/")[-2], g["prov:entity"].split("/", 1)[-1].split("@")[0])
        for g in json.loads(prov.stdout)["wasGeneratedBy"].values()
    }
    assert ("use", moved) in generated, generated
    second = akoflow("run", str(wf))
    assert second.returncode == 0, second.stdout + second.stderr
    st = states(akoflow, 2)
    assert st["use"] == "cached" and st["read"] == "cached", st
    data = state_dir / "runs" / "2-ren" / "data"
    assert (data / moved).read_text() == "a\n" and (data / "read.txt").read_text() == "a\n"
    assert counts(counters)["use"] == 1 and counts(counters)["read"] == 1
