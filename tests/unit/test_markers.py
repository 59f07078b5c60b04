"""The markers a contributor leaves backends out with (pytest -m "not slurm") select what they
say: set by directory in tests/conftest.py, by hand on single tests, registered in
pyproject.toml (--strict-markers)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT

MARKERS = {"needs_root", "slurm", "docker", "k8s", "browser"}
BACKENDS = ("hpc_runtime", "docker_runtime", "k8s_runtime", "cross_runtime", "ui")

WITHOUT_BACKENDS = "not slurm and not docker and not k8s and not browser"

# pytest --collect-only -m EXPR in a child, writing the markers of MARKERS of each test it
# selected and of each it deselected: one collection (~15 s) for both tests.
DUMP = """
import json, sys, pytest
class Dump:
    def __init__(self):
        self.deselected = []
    def pytest_deselected(self, items):
        self.deselected += items
    def pytest_collection_finish(self, session):
        def markers(items):
            return {i.nodeid: sorted({m.name for m in i.iter_markers()} & set(sys.argv[3:]))
                    for i in items}
        with open(sys.argv[1], "w") as out:
            json.dump({"selected": markers(session.items),
                       "deselected": markers(self.deselected)}, out)
sys.exit(pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider", "-m", sys.argv[2]],
                     plugins=[Dump()]))
"""


@pytest.fixture(scope="module")
def collected(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, list[str]]]:
    """What ``pytest -m WITHOUT_BACKENDS`` selected and deselected, each test's markers."""
    dump = tmp_path_factory.mktemp("markers") / "markers.json"
    res = subprocess.run(
        [sys.executable, "-c", DUMP, str(dump), WITHOUT_BACKENDS, *MARKERS],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    found: dict[str, dict[str, list[str]]] = json.loads(dump.read_text())
    return found


def directory(node_id: str) -> str:
    return node_id.split("/")[1]


def test_without_backends_only_tests_that_need_none_are_collected(
    collected: dict[str, dict[str, list[str]]],
) -> None:
    ids = list(collected["selected"])
    assert not [i for i in ids if directory(i) in BACKENDS]
    assert len([i for i in ids if i.startswith("tests/e2e/test_run_cli.py::")]) > 5
    assert any(i.startswith("tests/unit/test_migrations.py::") for i in ids)


def test_every_test_carries_the_markers_of_what_it_needs(
    collected: dict[str, dict[str, list[str]]],
) -> None:
    markers = collected["selected"] | collected["deselected"]
    by_directory = {
        "hpc_runtime": ["needs_root", "slurm"],
        "docker_runtime": ["docker", "needs_root"],
        "k8s_runtime": ["docker", "k8s", "needs_root"],
        "cross_runtime": ["docker", "k8s", "needs_root", "slurm"],  # pytestmark: all at once
        "singularity_runtime": ["needs_root"],
        "ui": ["browser"],
    }
    # The lineage panel's browser test in its observed mode needs fanotify too.
    observed_ui = "tests/ui/test_lineage_panel.py::test_lineage_panel_shows_exact_and_ambiguous"
    for node_id, found in markers.items():
        if node_id.startswith(observed_ui) and node_id.endswith("[observed]"):
            assert found == ["browser", "needs_root"], node_id
        elif directory(node_id) in by_directory:
            assert found == by_directory[directory(node_id)], node_id
    # Files whose every test observes with fanotify (filesystem marks need root).
    root_files = ("tests/e2e/test_lineage_hostile.py",)
    for node_id, found in markers.items():
        if node_id.startswith(root_files):
            assert found == ["needs_root"], node_id
    # tests/hostile: each file sets the markers of the backends it drives (pytestmark).
    per_file = {"hostile"}
    trusted = {
        i.split("::")[1].partition("[")[0]
        for i, found in markers.items()
        if directory(i) not in by_directory.keys() | per_file
        and found
        and not i.startswith(root_files)
    }
    assert trusted == {  # tests/e2e/test_local_trust.py: they create cgroups
        "test_processes_started_in_a_new_session_die_with_the_activity",
        "test_a_resumed_engine_kills_what_an_adopted_activity_left",
        "test_the_start_up_sweep_removes_only_empty_attempt_cgroups",
    } | {  # tests/e2e/test_spawner_cgroups.py: cgroups too
        "test_an_empty_cgroup_is_gone_when_the_engine_hears_of_the_end",
        "test_a_cgroup_with_escaped_processes_is_left_to_the_engine",
    } | {  # tests/e2e/test_observed_accesses.py: filesystem marks, process events, cgroups
        "test_two_attempts_in_two_cgroups_writing_at_the_same_time",
        "test_two_attempts_by_pid_released_together",
        "test_a_reader_reads_only_the_file_it_reads",
        "test_a_background_child_writes_after_its_parent_exited",
        "test_short_lived_writers_are_all_attributed",
        "test_odd_bytes_in_names_renames_and_deletions",
        "test_an_unregistered_writer_is_unclaimed_not_attributed",
        "test_without_privilege_it_says_so",
        "test_a_read_whose_close_comes_apart_is_no_earlier_than_its_open",
    } | {  # tests/e2e/test_exact_lineage.py and test_declared_data.py: observed with fanotify
        "test_a_writer_and_an_idler_started_together",
        "test_two_activities_writing_different_files_at_the_same_moment",
        "test_two_activities_writing_the_same_file_make_it_ambiguous",
        "test_used_means_read",
        "test_a_background_child_writing_after_its_parent_exited",
        "test_the_readme_example_is_attributed_exactly",
        "test_without_observation_overlapping_writers_are_ambiguous",
        "test_without_privilege_lineage_is_inferred_and_never_wrong",
        "test_two_observed_writers_of_a_declared_output",
        "test_report_shows_generators_users_and_ambiguous_files",  # test_report_lineage.py
    } | {  # tests/e2e/test_observer_quiet.py: fanotify ignore marks
        "test_reads_in_system_directories_are_dropped_by_the_kernel",
        "test_a_quieted_directory_moved_into_the_data_dir_is_heard_again",
        "test_a_data_dir_in_a_quieted_directory_is_heard",
    } | {  # tests/unit/test_lost_events.py: a real overflow of a fanotify queue
        "test_a_real_queue_overflow_leaves_the_running_attempts_writes_ambiguous",
    } | {  # tests/e2e/ and tests/server/test_store_full.py: a tmpfs under the state dir
        "test_a_full_store_holds_the_run_until_there_is_room",
        "test_ctrl_c_while_held_leaves_the_run_for_resume",
        "test_a_store_that_cannot_even_be_opened_says_the_disk_is_full",
        "test_a_full_store_stops_the_engine_and_a_new_one_goes_on_once_there_is_room",
        # tests/server/test_submit_not_started.py: a tmpfs of few inodes
        "test_a_submission_that_cannot_start_is_not_kept_and_runs_once_when_sent_again",
    } | {  # tests/unit/test_room.py: a nearly full tmpfs
        "test_a_disk_that_takes_only_part_of_the_probe_has_no_room",
        "test_no_inode_left_is_no_room_for_a_second_file",
    }
    assert {directory(i) for i in markers} >= set(by_directory) | {"e2e", "unit", "server"}
