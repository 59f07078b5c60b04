"""The data plane between the engine host and a SLURM cluster (issue 17), through the engine
against the private cluster over SSH: a file a local activity wrote reaches the cluster before
the HPC activity that needs it runs, what that one wrote there comes back before a later local
activity runs, unchanged files are not copied twice, the workflow's last activities' files
come back by themselves (``spec.collect``), every copy is recorded with its digest, odd bytes
in names survive, and all of it goes through the one SSH login of the run."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
from pathlib import Path

import pytest

from akoflow.states import WorkflowState
from akoflow.store import Repository
from tests.e2e.test_engine_inprocess import engine_with
from tests.hpc_runtime.test_hpc_engine import runtime_of, states

ODD = "odd\udcffname"  # the bytes b"odd\xffname": not UTF-8

PIPELINE = """\
name: plane
spec:
  activities:
    - name: prepare
      runtime: local
      run: |
        mkdir -p in
        seq 1 100 > in/numbers.txt
        printf 'x\\n' > "$(printf 'odd\\377name')"
    - name: total
      runtime: hpc
      dependsOn: [prepare]
      run: |
        awk '{ s += $1 } END { print s }' in/numbers.txt > sum.txt
        cat "$(printf 'odd\\377name')" > odd-copy.txt
    - name: again
      runtime: hpc
      dependsOn: [total]
      run: wc -l < in/numbers.txt > lines.txt
    - name: report
      runtime: local
      dependsOn: [again]
      run: cat sum.txt lines.txt odd-copy.txt > report.txt
"""


def copies(repo: Repository, wf_id: int) -> list[tuple[str, str, str]]:
    return [(c.path, c.source, c.destination) for c in repo.list_data_copies(wf_id)]


def test_files_follow_the_work_to_the_cluster_and_back(
    hpc_env: dict[str, str], tmp_path: Path
) -> None:
    mount = Path(hpc_env["HPC_MOUNT_PATH"])
    data = tmp_path / "data"

    async def scenario() -> None:
        async with engine_with(tmp_path, PIPELINE) as (repo, engine, wf_id):
            wf = await engine.attach(wf_id)
            state = await asyncio.wait_for(engine.wait(wf_id), timeout=90)
            assert state is WorkflowState.SUCCEEDED, states(wf)
            assert (data / "report.txt").read_text() == "5050\n100\nx\n"
            # The inputs reached the cluster, byte for byte, odd names too.
            assert (mount / "in" / "numbers.txt").read_bytes() == (
                data / "in" / "numbers.txt"
            ).read_bytes()
            assert (mount / ODD).read_bytes() == b"x\n"
            at = f"hpc:{mount}"
            made = copies(repo, wf_id)
            # Each needed file crossed once, whatever number of activities needed it.
            assert made.count(("in/numbers.txt", "", at)) == 1
            assert made.count((ODD, "", at)) == 1
            assert ("sum.txt", at, "") in made and ("lines.txt", at, "") in made
            assert ("odd-copy.txt", at, "") in made
            assert len(made) == len(set(made))
            for c in repo.list_data_copies(wf_id):
                local = data / c.path
                assert hashlib.sha256(local.read_bytes()).hexdigest() == c.sha256
                assert local.stat().st_size == c.bytes
            assert runtime_of(engine).connections_opened == 1
            # The files fetched back were written on the host by the engine (a copy of the
            # cluster's version), not a change to attribute: nothing ambiguous (issue 15).
            assert repo.list_ambiguous_files(wf_id) == []

    asyncio.run(scenario())


SINK = """\
name: sink
spec:
  collect: {collect}
  activities:
    - name: make
      runtime: local
      run: echo seed > seed.txt
    - name: grow
      runtime: hpc
      dependsOn: [make]
      run: |
        mkdir -p out
        cat seed.txt seed.txt > out/result.txt
"""


def run_sink(tmp_path: Path, collect: str) -> tuple[Path, list[tuple[str, str, str]]]:
    async def scenario() -> list[tuple[str, str, str]]:
        text = SINK.format(collect=collect)
        async with engine_with(tmp_path, text) as (repo, engine, wf_id):
            wf = await engine.attach(wf_id)
            state = await asyncio.wait_for(engine.wait(wf_id), timeout=90)
            assert state is WorkflowState.SUCCEEDED, states(wf)
            return copies(repo, wf_id)

    return tmp_path / "data", asyncio.run(scenario())


def test_the_last_activitys_files_come_back_by_default(
    hpc_env: dict[str, str], tmp_path: Path
) -> None:
    data, made = run_sink(tmp_path, "outputs")
    assert (data / "out" / "result.txt").read_text() == "seed\nseed\n"
    assert ("out/result.txt", f"hpc:{hpc_env['HPC_MOUNT_PATH']}", "") in made


def test_collect_none_leaves_them_on_the_cluster(hpc_env: dict[str, str], tmp_path: Path) -> None:
    data, made = run_sink(tmp_path, "none")
    assert not (data / "out" / "result.txt").exists()
    assert (Path(hpc_env["HPC_MOUNT_PATH"]) / "out" / "result.txt").read_text() == "seed\nseed\n"
    assert [m for m in made if m[2] == ""] == []


def test_volumes_are_staged_once_each_way_for_a_chain_on_the_cluster(
    hpc_env: dict[str, str], tmp_path: Path
) -> None:
    """spec.volumes (upstream's rsync staging) around a chain of three HPC activities: up
    before the first (it depends on nothing there), back after the last (nothing there
    depends on it), not around each activity."""
    mount = Path(hpc_env["HPC_MOUNT_PATH"])
    data = tmp_path / "data"
    (data / "vol").mkdir(parents=True)
    (data / "vol" / "in.txt").write_text("1\n")
    text = (
        f"name: chain\nspec:\n  runtime: hpc\n  collect: none\n"
        f"  volumes: ['vol:{mount}/vol']\n  activities:\n"
        "    - name: a\n      run: cat vol/in.txt vol/in.txt > vol/a.txt\n"
        "    - name: b\n      dependsOn: [a]\n      run: cat vol/a.txt vol/a.txt > vol/b.txt\n"
        "    - name: c\n      dependsOn: [b]\n      run: cat vol/b.txt vol/b.txt > vol/c.txt\n"
    )

    async def scenario() -> int:
        async with engine_with(tmp_path, text) as (repo, engine, wf_id):
            wf = await engine.attach(wf_id)
            state = await asyncio.wait_for(engine.wait(wf_id), timeout=90)
            assert state is WorkflowState.SUCCEEDED, states(wf)
            link = runtime_of(engine)._transport
            return int(link.rsync_commands)

    rsyncs = asyncio.run(scenario())
    assert (data / "vol" / "c.txt").read_text() == "1\n" * 8  # staged back at the end
    assert rsyncs == 2  # once up, once back (it was 6: both ways around each activity)


def run_plane(tmp_path: Path, text: str) -> tuple[WorkflowState, dict[str, tuple[str, str | None]]]:
    async def scenario() -> tuple[WorkflowState, dict[str, tuple[str, str | None]]]:
        async with engine_with(tmp_path, text) as (repo, engine, wf_id):
            await engine.attach(wf_id)
            state = await asyncio.wait_for(engine.wait(wf_id), timeout=90)
            acts = {a.name: (str(a.state), a.reason) for a in repo.list_activities(wf_id)}
            return state, acts

    return asyncio.run(scenario())


def test_a_file_that_ends_in_a_hole_arrives_whole(hpc_env: dict[str, str], tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    with open(data / "sparse.bin", "wb") as f:
        f.write(b"head" * 1000)
        f.truncate(8 << 20)  # 8 MiB, the rest a hole
    text = (
        "name: sparse\nspec:\n  collect: none\n  activities:\n"
        "    - name: size\n      runtime: hpc\n      run: wc -c < sparse.bin > size.txt\n"
    )
    state, acts = run_plane(tmp_path, text)
    assert state is WorkflowState.SUCCEEDED, acts
    mount = Path(hpc_env["HPC_MOUNT_PATH"])
    assert (mount / "size.txt").read_text().strip() == str(8 << 20)


def test_a_symbolic_link_in_the_data_dir_is_never_written_through(
    hpc_env: dict[str, str], tmp_path: Path
) -> None:
    """A fetched file whose directory is a link to elsewhere (on the host), or a copy to the
    cluster whose directory is (there), is refused with the reason: nothing outside."""
    outside = tmp_path / "outside"
    outside.mkdir()
    text = (
        "name: links\nspec:\n  activities:\n"
        f"    - name: link\n      runtime: local\n      run: ln -s {outside} out\n"
        "    - name: remote\n      runtime: hpc\n      dependsOn: [link]\n"
        "      run: rm -f out && mkdir -p out && echo escaped > out/x.txt\n"
    )
    state, acts = run_plane(tmp_path, text)
    assert state is WorkflowState.FAILED, acts
    reason = acts["remote"][1] or ""
    assert "symbolic link" in reason and "never written" in reason, reason
    assert list(outside.iterdir()) == []

    cluster_outside = tmp_path / "cluster-outside"
    cluster_outside.mkdir()
    text = (
        "name: links2\nspec:\n  collect: none\n  activities:\n"
        f"    - name: link\n      runtime: hpc\n      run: ln -sfn {cluster_outside} sub\n"
        "    - name: host\n      runtime: local\n      dependsOn: [link]\n"
        "      run: rm -f sub && mkdir -p sub && echo fromhost > sub/f.txt\n"
        "    - name: read\n      runtime: hpc\n      dependsOn: [host]\n      run: cat sub/f.txt\n"
    )
    state, acts = run_plane(tmp_path / "second", text)
    assert state is WorkflowState.FAILED, acts
    assert "symbolic link" in (acts["read"][1] or ""), acts
    assert list(cluster_outside.iterdir()) == []


MEDDLE = {
    "replaced": "printf 'Y\\n' > {m}/.meddle && mv {m}/.meddle {m}/in.txt",
    "rewritten in place": "printf 'Y\\n' > {m}/in.txt",  # same size, same inode
}


@pytest.mark.parametrize("how", sorted(MEDDLE))
def test_a_copy_replaced_on_the_cluster_by_someone_else_is_copied_again(
    hpc_env: dict[str, str], tmp_path: Path, how: str
) -> None:
    """MOUNT_PATH is shared (other runs, the user): a file the run copied there and that was
    replaced since (same size, another inode) or rewritten in place (same size, same inode:
    a new change time) is not trusted from the run's record."""
    mount = Path(hpc_env["HPC_MOUNT_PATH"])
    text = (
        "name: shared\nspec:\n  collect: none\n  activities:\n"
        "    - name: prep\n      runtime: local\n      run: echo X > in.txt\n"
        "    - name: h1\n      runtime: hpc\n      dependsOn: [prep]\n"
        "      run: cat in.txt > seen1.txt\n"
        # Another run sharing MOUNT_PATH (here: a local process) replaces the file there.
        "    - name: meddle\n      runtime: local\n      dependsOn: [h1]\n"
        f"      run: {MEDDLE[how].format(m=mount)}\n"
        "    - name: h2\n      runtime: hpc\n      dependsOn: [meddle]\n"
        "      run: cat in.txt > seen2.txt\n"
    )

    async def scenario() -> list[tuple[str, str, str]]:
        async with engine_with(tmp_path, text) as (repo, engine, wf_id):
            wf = await engine.attach(wf_id)
            state = await asyncio.wait_for(engine.wait(wf_id), timeout=90)
            assert state is WorkflowState.SUCCEEDED, states(wf)
            return copies(repo, wf_id)

    made = asyncio.run(scenario())
    assert (mount / "seen1.txt").read_text() == "X\n"
    assert (mount / "seen2.txt").read_text() == "X\n"  # copied again, not the stranger's Y
    assert made.count(("in.txt", "", f"hpc:{mount}")) == 2


RUN = """\
name: run-{name}
spec:
  collect: all
  activities:
    - name: prep
      runtime: local
      run: sleep {delay}; echo {tag} > in.txt
    - name: h
      runtime: hpc
      dependsOn: [prep]
      run: sleep 1; cat in.txt > seen.txt; echo {tag} > out.txt
    - name: h2
      runtime: hpc
      dependsOn: [h]
      run: sleep {other}; cat in.txt > seen2.txt; cat out.txt > out2.txt
"""


def test_run_dirs_keep_two_runs_on_one_mount_path_apart(
    hpc_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With HPC_RUN_DIRS each run works in a directory of its own under MOUNT_PATH: two runs
    at once, with the same file names, never read or bring home each other's files."""
    monkeypatch.setenv("HPC_RUN_DIRS", "true")
    from akoflow import service
    from akoflow.engine import Engine

    state = tmp_path / "state"

    async def scenario() -> None:
        repo = service.open_repository(state)
        ids = []
        for tag, delay, other in (("X", 0, 1), ("Y", 1, 0)):
            text = RUN.format(tag=tag, name=tag.lower(), delay=delay, other=other)
            prepared = service.validate_text(text, f"{tag}.yaml")
            ids.append(service.store(repo, state, prepared, tmp_path / f"data-{tag}"))
        engine = Engine(repo, state)
        await engine.start()
        try:
            for wf_id in ids:
                await engine.attach(wf_id)
            for wf_id in ids:
                state_of = await asyncio.wait_for(engine.wait(wf_id), timeout=120)
                assert state_of is WorkflowState.SUCCEEDED
        finally:
            await engine.stop()
            repo.close()

    asyncio.run(scenario())
    for tag in ("X", "Y"):
        data = tmp_path / f"data-{tag}"
        for name in ("seen.txt", "seen2.txt", "out.txt", "out2.txt"):
            assert (data / name).read_text() == f"{tag}\n", (tag, name)
    mount = Path(hpc_env["HPC_MOUNT_PATH"])
    dirs = sorted(p.name.rpartition("-")[2] for p in (mount / "runs").iterdir())
    assert dirs == ["wf1", "wf2"], dirs
    assert not (mount / "in.txt").exists()  # nothing in the shared MOUNT_PATH itself


def test_a_full_mount_path_fails_the_copy_with_the_file_and_why(
    hpc_env: dict[str, str], tmp_path: Path
) -> None:
    mount = Path(hpc_env["HPC_MOUNT_PATH"])
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], check=True)
    try:
        data = tmp_path / "data"
        data.mkdir()
        (data / "big.bin").write_bytes(b"\1" * (1 << 20))
        text = (
            "name: full\nspec:\n  collect: none\n  activities:\n"
            "    - name: use\n      runtime: hpc\n      run: wc -c < big.bin\n"
        )
        state, acts = run_plane(tmp_path, text)
        leftovers = [p.name for p in mount.iterdir() if p.name.endswith(".akoflow-part")]
    finally:
        subprocess.run(["umount", str(mount)], check=True)
    assert state is WorkflowState.FAILED, acts
    reason = acts["use"][1] or ""
    assert "copying big.bin to hpc:" in reason and "full or read-only" in reason, reason
    assert leftovers == []  # the partial copy was removed: the disk is not left full


def test_a_host_file_rewritten_after_the_cluster_wrote_it_is_the_newer_one(
    hpc_env: dict[str, str], tmp_path: Path
) -> None:
    """h1 writes x.txt on the cluster; a later local activity (that did not need it) writes
    x.txt on the host: the host's is newer. It is neither overwritten by the cluster's older
    one for the next local activity, nor left stale on the cluster for the next HPC one."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "seed.txt").write_text("s\n")
    text = (
        "name: fresh\nspec:\n  collect: none\n  activities:\n"
        "    - name: h1\n      runtime: hpc\n      run: echo H1 > x.txt\n"
        "    - name: l\n      runtime: local\n      dependsOn: [h1]\n      inputs: [seed.txt]\n"
        "      run: echo LOCAL > x.txt\n"
        "    - name: l2\n      runtime: local\n      dependsOn: [l]\n"
        "      run: cat x.txt > got.txt\n"
        "    - name: h2\n      runtime: hpc\n      dependsOn: [l]\n"
        "      run: cat x.txt > seen.txt\n"
    )
    state, acts = run_plane(tmp_path, text)
    assert state is WorkflowState.SUCCEEDED, acts
    assert (data / "got.txt").read_text() == "LOCAL\n"
    assert (data / "x.txt").read_text() == "LOCAL\n"
    assert (Path(hpc_env["HPC_MOUNT_PATH"]) / "seen.txt").read_text() == "LOCAL\n"


def test_what_an_activity_wrote_besides_its_declared_outputs_still_follows_the_work(
    hpc_env: dict[str, str], tmp_path: Path
) -> None:
    text = (
        "name: extra\nspec:\n  collect: none\n  activities:\n"
        "    - name: h1\n      runtime: hpc\n      outputs: [a.txt]\n"
        "      run: echo a > a.txt; echo b > b.txt\n"
        "    - name: l1\n      runtime: local\n      dependsOn: [h1]\n"
        "      run: cat a.txt b.txt > both.txt\n"
    )
    state, acts = run_plane(tmp_path, text)
    assert state is WorkflowState.SUCCEEDED, acts
    assert (tmp_path / "data" / "both.txt").read_text() == "a\nb\n"


def test_a_directory_where_a_copy_goes_fails_it_with_the_reason(
    hpc_env: dict[str, str], tmp_path: Path
) -> None:
    """On the cluster a directory d stays where the host now has a file d: never a copy
    moved into the directory and recorded as done."""
    text = (
        "name: dirfile\nspec:\n  collect: none\n  activities:\n"
        "    - name: h1\n      runtime: hpc\n      run: mkdir -p d && echo a > d/x\n"
        "    - name: l\n      runtime: local\n      dependsOn: [h1]\n"
        "      run: cat d/x && rm -rf d && echo FILE > d\n"
        "    - name: h2\n      runtime: hpc\n      dependsOn: [l]\n      run: cat d > seen.txt\n"
    )
    state, acts = run_plane(tmp_path, text)
    assert state is WorkflowState.FAILED, acts
    assert "a directory has that name there" in (acts["h2"][1] or ""), acts
    mount = Path(hpc_env["HPC_MOUNT_PATH"])
    assert sorted(p.name for p in (mount / "d").iterdir()) == ["x"]  # nothing moved into it
