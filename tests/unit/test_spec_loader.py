from __future__ import annotations

import random
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from akoflow.spec import (
    Activity,
    SpecError,
    StoragePolicy,
    Volume,
    Workflow,
    WorkflowValidationError,
    json_schema,
    load_workflow,
    load_workflow_file,
)
from akoflow.spec import loader as loader_module


def yml(text: str) -> str:
    """Dedent a YAML literal; line 1 is the first line after the opening quotes."""
    return textwrap.dedent(text).lstrip("\n")


def errors_of(text: str, **kwargs: Any) -> list[SpecError]:
    with pytest.raises(WorkflowValidationError) as info:
        load_workflow(text, **kwargs)
    return info.value.errors


def where(errors: list[SpecError]) -> list[tuple[str, int | None]]:
    return [(e.path, e.line) for e in errors]


def only_error(text: str, **kwargs: Any) -> SpecError:
    errors = errors_of(text, **kwargs)
    assert len(errors) == 1, errors
    return errors[0]


MINIMAL = yml(
    """
    name: wf
    spec:
      activities:
        - name: hello
          run: echo hello
    """
)

FULL = yml(
    """
    name: wf-example
    spec:
      runtime: k8s
      schedule: akoscore
      image: alpine:3.20
      namespace: akoflow
      mountPath: /data
      storagePolicy:
        type: standalone
        storageClassName: hostpath
        storageSize: 64Mi
      volumes:
        - /home/me/in:/scratch/me/in
      activities:
        - name: produce
          image: python:3.11-slim
          runtime: k8s
          memoryLimit: 256Mi
          cpuLimit: "0.5"
          nodeSelector: kubernetes.io/hostname=node-1
          keepDisk: true
          mountPath: /data/produce
          run: |
            echo hi > out.txt
        - name: consume
          dependsOn: [produce]
          run: cat ../produce/out.txt
    """
)


# --- valid files ----------------------------------------------------------------------------


def test_minimal_workflow_defaults() -> None:
    wf = load_workflow(MINIMAL)
    assert wf == Workflow(
        name="wf",
        activities=(Activity(name="hello", run="echo hello", runtime="local"),),
    )
    assert wf.namespace == "akoflow"
    assert wf.storage_policy == StoragePolicy(type="standalone")
    assert wf.activities[0].retries == 0
    assert wf.activities[0].timeout_seconds is None
    assert wf.activities[0].env == {}


def test_default_runtime_is_configurable() -> None:
    wf = load_workflow(MINIMAL, default_runtime="docker")
    assert wf.activities[0].runtime == "docker"
    assert wf.runtime is None  # spec.runtime as written


def test_full_upstream_example() -> None:
    wf = load_workflow(FULL)
    assert wf.name == "wf-example"
    assert (wf.runtime, wf.schedule, wf.image, wf.namespace, wf.mount_path) == (
        "k8s",
        "akoscore",
        "alpine:3.20",
        "akoflow",
        "/data",
    )
    assert wf.storage_policy == StoragePolicy("standalone", "hostpath", "64Mi")
    assert wf.volumes == (Volume(local="/home/me/in", remote="/scratch/me/in"),)
    produce, consume = wf.activities
    assert produce == Activity(
        name="produce",
        run="echo hi > out.txt\n",
        runtime="k8s",
        image="python:3.11-slim",
        memory_limit="256Mi",
        memory_bytes=256 * 1024**2,
        cpu_limit="0.5",
        cpu_cores=0.5,
        node_selector={"kubernetes.io/hostname": "node-1"},
        keep_disk=True,
        mount_path="/data/produce",
    )
    assert consume.depends_on == ("produce",)
    assert consume.image == "alpine:3.20"
    assert consume.runtime == "k8s"
    assert consume.mount_path == "/data"
    assert consume.keep_disk is False


def test_inheritance_comes_from_spec_never_from_the_previous_activity() -> None:
    # Upstream bug: activity 3 inherited activity 2's image/runtime instead of spec's.
    wf = load_workflow(
        yml(
            """
            name: wf
            spec:
              image: base:1
              runtime: k8s
              retries: 2
              timeout: 10m
              mountPath: /data
              env: {SHARED: spec, LEVEL: spec}
              activities:
                - name: one
                  run: "true"
                - name: two
                  run: "true"
                  image: special:9
                  runtime: hpc
                  retries: 5
                  timeout: 30s
                  mountPath: /scratch
                  env: {LEVEL: two, ONLY_TWO: "x"}
                - name: three
                  run: "true"
            """
        )
    )
    one, two, three = wf.activities
    assert (two.image, two.runtime, two.retries, two.timeout_seconds, two.mount_path) == (
        "special:9",
        "hpc",
        5,
        30.0,
        "/scratch",
    )
    assert two.env == {"SHARED": "spec", "LEVEL": "two", "ONLY_TWO": "x"}
    for activity in (one, three):
        assert activity.image == "base:1"
        assert activity.runtime == "k8s"
        assert activity.retries == 2
        assert activity.timeout_seconds == 600.0
        assert activity.mount_path == "/data"
        assert activity.env == {"SHARED": "spec", "LEVEL": "spec"}
    assert one.env is not three.env  # no shared mutable state between activities


def test_run_is_kept_verbatim() -> None:
    wf = load_workflow(
        yml(
            """
            name: wf
            spec:
              activities:
                - name: block
                  run: |
                    echo "$(date)" 'single' "double" > out.txt
                    if [ -f out.txt ]; then cat out.txt; fi  # not a YAML comment
                - name: plain
                  run: echo $(hostname) 'it''s' && ls -la | wc -l
                - name: quoted
                  run: 'echo "a;b" $HOME `id`'
            """
        )
    )
    block, plain, quoted = wf.activities
    assert block.run == (
        'echo "$(date)" \'single\' "double" > out.txt\n'
        "if [ -f out.txt ]; then cat out.txt; fi  # not a YAML comment\n"
    )
    assert plain.run == "echo $(hostname) 'it''s' && ls -la | wc -l"
    assert quoted.run == 'echo "a;b" $HOME `id`'


def test_value_forms() -> None:
    wf = load_workflow(
        yml(
            """
            name: my.workflow-1
            spec:
              activities:
                - name: a
                  run: x
                  memoryLimit: 128974848
                  cpuLimit: 0.5
                  timeout: 90
                  retries: 0
                  keepDisk: yes
                  nodeSelector: {disktype: ssd, zone: a}
                  env: {N: 1, F: 1.5, B: true, S: text, E: ""}
                - name: b
                  run: x
                  dependsOn: a
                  memoryLimit: 1Gi
                  cpuLimit: 500m
                  timeout: 1h30m
                  nodeSelector: disktype=ssd, zone=b
            """
        )
    )
    a, b = wf.activities
    assert (a.memory_limit, a.memory_bytes, a.cpu_limit, a.cpu_cores) == (
        "128974848",
        128974848,
        "0.5",
        0.5,
    )
    assert a.timeout_seconds == 90.0
    assert a.keep_disk is True
    assert a.node_selector == {"disktype": "ssd", "zone": "a"}
    assert a.env == {"N": "1", "F": "1.5", "B": "true", "S": "text", "E": ""}
    assert b.depends_on == ("a",)  # a single string is accepted
    assert (b.memory_bytes, b.cpu_cores, b.timeout_seconds) == (1024**3, 0.5, 5400.0)
    assert b.node_selector == {"disktype": "ssd", "zone": "b"}


def test_duplicate_dependencies_are_collapsed() -> None:
    wf = load_workflow(
        MINIMAL + "    - name: again\n      run: x\n      dependsOn: [hello, hello]\n"
    )
    assert wf.activities[1].depends_on == ("hello",)


def test_forward_dependencies_are_fine() -> None:
    wf = load_workflow(
        yml(
            """
            name: wf
            spec:
              activities:
                - {name: last, run: x, dependsOn: [first]}
                - {name: first, run: x}
            """
        )
    )
    assert [a.name for a in wf.activities] == ["last", "first"]  # file order is kept


def test_anchors_and_merge_keys() -> None:
    wf = load_workflow(
        yml(
            """
            name: wf
            spec:
              env: &common {A: "1"}
              activities:
                - &base
                  name: first
                  run: echo one
                  memoryLimit: 64Mi
                - <<: *base
                  name: second
                  env: *common
            """
        )
    )
    first, second = wf.activities
    assert (second.name, second.run, second.memory_bytes) == ("second", "echo one", 64 * 1024**2)
    assert second.env == {"A": "1"}


def test_document_start_marker_and_comments() -> None:
    wf = load_workflow("--- # a comment\n# another\n" + MINIMAL + "# trailing\n")
    assert wf.name == "wf"


def test_runtime_check_is_called_per_distinct_name() -> None:
    calls: list[str] = []

    def check(name: str) -> str | None:
        calls.append(name)
        return None

    text = yml(
        """
        name: wf
        spec:
          runtime: k8s
          activities:
            - {name: a, run: x}
            - {name: b, run: x, runtime: k8s}
            - {name: c, run: x, runtime: local}
            - {name: d, run: x, runtime: local}
        """
    )
    wf = load_workflow(text, runtime_check=check)
    assert sorted(calls) == ["k8s", "local"]
    assert [a.runtime for a in wf.activities] == ["k8s", "k8s", "local", "local"]


def test_ten_thousand_activities() -> None:
    lines = ["name: big", "spec:", "  image: alpine", "  activities:"]
    for i in range(10_000):
        lines += [f"    - name: act-{i}", f"      run: echo {i}", "      memoryLimit: 64Mi"]
        if i:
            lines.append(f"      dependsOn: [act-{i // 2}, act-{i - 1}]")
    wf = load_workflow("\n".join(lines) + "\n")
    assert len(wf.activities) == 10_000
    assert wf.activities[-1].depends_on == ("act-4999", "act-9998")
    assert wf.activities[-1].image == "alpine"


# --- errors: each kind, with exact path and line ------------------------------------------


def test_shell_metacharacters_in_name_are_rejected() -> None:
    error = only_error(
        yml(
            """
            name: wf
            spec:
              activities:
                - name: "a;rm -rf /"
                  run: echo hi
            """
        )
    )
    assert (error.path, error.line) == ("spec.activities[0].name", 4)
    assert "DNS-1123" in error.message
    assert "Kubernetes object names and file names" in error.message
    assert "';'" in error.message


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("Upper", "uppercase"),
        ("-lead", "start and end"),
        ("trail-", "start and end"),
        ("a" * 64, "64 characters"),
        ("under_score", "'_'"),
        ("dot.ted", "'.'"),
        ("", "empty"),
    ],
)
def test_invalid_activity_names(name: str, reason: str) -> None:
    text = f'name: wf\nspec:\n  activities:\n    - name: "{name}"\n      run: x\n'
    error = only_error(text)
    assert (error.path, error.line) == ("spec.activities[0].name", 4)
    assert reason in error.message


def test_invalid_workflow_name_and_namespace() -> None:
    errors = errors_of(
        yml(
            """
            name: My_Workflow
            spec:
              namespace: Bad.NS
              activities:
                - {name: a, run: x}
            """
        )
    )
    assert where(errors) == [("name", 1), ("spec.namespace", 3)]
    assert "DNS-1123 subdomain" in errors[0].message
    assert "namespace" in errors[1].message


def test_activities_at_top_level_hint() -> None:
    errors = errors_of(
        yml(
            """
            name: wf
            activities:
              - name: a
                run: x
            """
        )
    )
    assert where(errors) == [("spec", 1), ("activities", 2)]
    assert "required field 'spec' is missing" in errors[0].message
    assert "did you mean spec.activities?" in errors[1].message


def test_volume_without_colon_is_rejected() -> None:
    errors = errors_of(
        yml(
            """
            name: wf
            spec:
              volumes:
                - /home/me/in
                - /ok:/fine
                - relative:also-relative
                - a:b:c
              activities:
                - {name: a, run: x}
            """
        )
    )
    assert where(errors) == [
        ("spec.volumes[0]", 4),
        ("spec.volumes[2]", 6),
        ("spec.volumes[3]", 7),
    ]
    assert "local:remote" in errors[0].message
    assert "must be absolute" in errors[1].message
    assert "exactly one ':'" in errors[2].message


def test_five_mistakes_give_five_errors() -> None:
    text = yml(
        """
        name: wf
        spec:
          runtime: k8s
          activities:
            - name: fetch
              run: curl -O http://example.org/data
              memoryLimit: 500m
            - name: fetch
              run: echo again
            - name: analyse
              run: python analyse.py
              dependsOn: [fetsh]
              nodeSelector: gpu
            - name: report
              run: make report
              dependOn: [analyse]
        """
    )
    errors = errors_of(text)
    assert where(errors) == [
        ("spec.activities[0].memoryLimit", 7),
        ("spec.activities[1].name", 8),
        ("spec.activities[2].dependsOn[0]", 12),
        ("spec.activities[2].nodeSelector", 13),
        ("spec.activities[3].dependOn", 16),
    ]
    messages = [e.message for e in errors]
    assert "milli" in messages[0]
    assert "already used by spec.activities[0]" in messages[1]
    assert "did you mean 'fetch'?" in messages[2]
    assert "key=value" in messages[3]
    assert "did you mean 'dependsOn'?" in messages[4]


def test_semantic_checks_run_even_when_activities_are_invalid() -> None:
    errors = errors_of(
        yml(
            """
            name: wf
            spec:
              activities:
                - name: a
                  run: x
                  retries: -1
                  dependsOn: [ghost]
                - name: b
                  dependsOn: [a]
                - just a string
            """
        )
    )
    assert where(errors) == [
        ("spec.activities[0].retries", 6),
        ("spec.activities[0].dependsOn[0]", 7),
        ("spec.activities[1].run", 8),  # missing: the activity's line
        ("spec.activities[2]", 10),
    ]
    assert "between 0 and 100" in errors[0].message
    assert "unknown activity 'ghost'" in errors[1].message
    assert "required field 'run' is missing" in errors[2].message
    assert "expected a mapping" in errors[3].message


def test_self_dependency() -> None:
    error = only_error(
        yml(
            """
            name: wf
            spec:
              activities:
                - name: loop
                  run: x
                  dependsOn: loop
            """
        )
    )
    assert (error.path, error.line) == ("spec.activities[0].dependsOn", 6)
    assert "depends on itself" in error.message


def test_three_cycle_is_reported_at_its_first_activity() -> None:
    error = only_error(
        yml(
            """
            name: wf
            spec:
              activities:
                - name: start
                  run: x
                - name: a
                  run: x
                  dependsOn: [c]
                - name: b
                  run: x
                  dependsOn: [a]
                - name: c
                  run: x
                  dependsOn: [b, start]
            """
        )
    )
    assert (error.path, error.line) == ("spec.activities[1].dependsOn", 8)
    assert "dependency cycle: a -> c -> b -> a" in error.message


def test_cycle_through_a_100k_chain_is_reported_without_recursion() -> None:
    n = 100_000
    lines = ["name: chain", "spec:", "  activities:"]
    for i in range(n):
        lines += [f"    - name: n{i}", "      run: x", f"      dependsOn: [n{(i - 1) % n}]"]
    error = only_error("\n".join(lines) + "\n")
    assert (error.path, error.line) == ("spec.activities[0].dependsOn", 6)
    assert error.message.startswith("dependency cycle: n0 -> n99999 -> n99998 -> ")
    assert "(99991 more)" in error.message  # long cycles are shortened in the message


def test_every_cycle_is_reported() -> None:
    errors = errors_of(
        yml(
            """
            name: wf
            spec:
              activities:
                - {name: a, run: x, dependsOn: [b]}
                - {name: b, run: x, dependsOn: [a]}
                - {name: c, run: x, dependsOn: [d]}
                - {name: d, run: x, dependsOn: [c]}
            """
        )
    )
    assert where(errors) == [
        ("spec.activities[0].dependsOn", 4),
        ("spec.activities[2].dependsOn", 6),
    ]


def test_unknown_runtime() -> None:
    def check(name: str) -> str | None:
        return None if name in ("k8s", "local") else f"unknown runtime {name!r}: use k8s or local"

    errors = errors_of(
        yml(
            """
            name: wf
            spec:
              runtime: kubernetes
              activities:
                - {name: a, run: x}
                - name: b
                  run: x
                  runtime: slurm
            """
        ),
        runtime_check=check,
    )
    assert where(errors) == [("spec.runtime", 3), ("spec.activities[1].runtime", 8)]
    assert errors[1].message == "unknown runtime 'slurm': use k8s or local"


@pytest.mark.parametrize(
    ("snippet", "path", "needle"),
    [
        ("      memoryLimit: 1GB", "spec.activities[0].memoryLimit", "did you mean 'G'"),
        ("      cpuLimit: lots", "spec.activities[0].cpuLimit", "millicores"),
        ("      cpuLimit: true", "spec.activities[0].cpuLimit", "boolean"),
        ("      timeout: 5 minutes", "spec.activities[0].timeout", "1h30m"),
        ("      retries: 101", "spec.activities[0].retries", "between 0 and 100"),
        ("      retries: '3'", "spec.activities[0].retries", "whole number"),
        ("      keepDisk: maybe", "spec.activities[0].keepDisk", "true or false"),
        ("      mountPath: data", "spec.activities[0].mountPath", "absolute"),
        ("      image: ''", "spec.activities[0].image", "must not be empty"),
        ("      image: 3.2", "spec.activities[0].image", "quote it"),
        ("      nodeSelector: 'a b=c'", "spec.activities[0].nodeSelector", "label key"),
        ("      dependsOn: [3]", "spec.activities[0].dependsOn[0]", "expected a string"),
        ("      dependsOn: [' ']", "spec.activities[0].dependsOn[0]", "must not be empty"),
        ("      dependsOn: {a: b}", "spec.activities[0].dependsOn", "expected a list"),
        ("      env: [A]", "spec.activities[0].env", "expected a mapping"),
        ("      env: {A: {b: c}}", "spec.activities[0].env.A", "string, number or boolean"),
        ("      procId: 3", "spec.activities[0].procId", "set by the engine"),
        ("      env: {1: a}", "spec.activities[0].env.1", "keys must be strings"),
        ("      storagePolicy: {}", "spec.activities[0].storagePolicy", "only be set"),
    ],
)
def test_activity_field_errors(snippet: str, path: str, needle: str) -> None:
    text = "name: wf\nspec:\n  activities:\n    - name: hello\n      run: echo\n" + snippet + "\n"
    error = only_error(text)
    assert (error.path, error.line) == (path, 6)
    assert needle in error.message


def test_env_name_error_points_at_the_key() -> None:
    error = only_error(
        yml(
            """
            name: wf
            spec:
              env:
                GOOD: 1
                bad-name: 2
              activities:
                - {name: a, run: x}
            """
        )
    )
    assert (error.path, error.line) == ("spec.env.bad-name", 5)
    assert "[A-Za-z_][A-Za-z0-9_]*" in error.message


def test_spec_level_errors() -> None:
    errors = errors_of(
        yml(
            """
            name: wf
            spec:
              storageClassName: fast
              storagePolicy:
                type: shared
                storageSize: 1GB
              activities: []
            """
        )
    )
    assert where(errors) == [
        ("spec.storageClassName", 3),
        ("spec.storagePolicy.type", 5),
        ("spec.storagePolicy.storageSize", 6),
        ("spec.activities", 7),
    ]
    assert "did you mean spec.storagePolicy.storageClassName?" in errors[0].message
    assert "'standalone' or 'distributed'" in errors[1].message
    assert "at least one activity" in errors[3].message


def test_unknown_field_points_at_the_key_line() -> None:
    error = only_error(
        yml(
            """
            name: wf
            spec:
              activities:
                - name: a
                  run: x
                  memorylimit:
                    - 1
                    - 2
            """
        )
    )
    assert (error.path, error.line) == ("spec.activities[0].memorylimit", 6)
    assert "did you mean 'memoryLimit'?" in error.message


def test_missing_spec_and_name() -> None:
    errors = errors_of("# comment\nspec:\n  activities:\n    - name: a\n")
    assert where(errors) == [("name", 2), ("spec.activities[0].run", 4)]


def test_duplicate_yaml_keys_are_reported() -> None:
    errors = errors_of(
        yml(
            """
            name: wf
            spec:
              activities:
                - name: a
                  run: first
                  run: second
            name: other
            """
        )
    )
    assert where(errors) == [("spec.activities[0].run", 6), ("name", 7)]
    assert "duplicate key 'run'" in errors[0].message


def test_malformed_yaml_is_one_error_with_its_line() -> None:
    error = only_error("name: wf\nspec:\n  activities:\n    - name: a\n     run: [x\n")
    assert error.path == ""
    assert error.line == 5
    assert error.message.startswith("invalid YAML")


def test_tabs_and_bad_yaml() -> None:
    error = only_error("name: wf\nspec:\n\tactivities: []\n")
    assert error.line == 3
    assert "invalid YAML" in error.message


@pytest.mark.parametrize(
    ("text", "needle", "line"),
    [
        ("", "empty", 1),
        ("# only a comment\n", "empty", 1),
        ("- a\n- b\n", "not a list", 1),
        ("just text\n", "not 'just text'", 1),
        ("name: a\n---\nname: b\n", "single YAML document", 2),
        ("name: !!python/object:os.system x\n", "unsupported YAML tag", 1),
        ("name: *nowhere\n", "unknown YAML alias", 1),
        ("? [a, b]\n: c\n", "must be a scalar", 1),
    ],
)
def test_unusable_documents(text: str, needle: str, line: int) -> None:
    error = only_error(text)
    assert needle in error.message
    assert error.line == line


def test_alias_bomb_is_rejected() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        refs = ", ".join([f"*a{i - 1}"] * 10)
        lines.append(f"a{i}: &a{i} [{refs}]")
    error = only_error("\n".join(lines) + "\n")
    assert "aliases expand to more than" in error.message


def test_report_format() -> None:
    text = "name: wf\nspec:\n  activities:\n    - name: A\n      run: x\n"
    with pytest.raises(WorkflowValidationError) as info:
        load_workflow(text, source="flows/demo.yaml")
    report = str(info.value).splitlines()
    assert report[0] == "flows/demo.yaml: 1 error in workflow spec"
    assert report[1].startswith("flows/demo.yaml:4: spec.activities[0].name: invalid activity")
    assert info.value.source == "flows/demo.yaml"


def test_report_is_cut_but_errors_are_complete() -> None:
    lines = ["name: wf", "spec:", "  activities:"]
    for i in range(300):
        lines += [f"    - name: A{i}", "      run: x"]
    with pytest.raises(WorkflowValidationError) as info:
        load_workflow("\n".join(lines))
    assert len(info.value.errors) == 300
    last = info.value.errors[-1]
    assert (last.path, last.line) == ("spec.activities[299].name", 4 + 2 * 299)
    report = str(info.value).splitlines()
    assert report[-1] == "... and 100 more"
    assert len(report) == 1 + 200 + 1


def test_unknown_dependency_suggestion_is_bounded_on_huge_files(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(loader_module, "_SUGGESTION_BUDGET", 1)  # fewer than the names
    errors = errors_of(MINIMAL + "    - name: b\n      run: x\n      dependsOn: [helo]\n")
    assert errors[0].message == "unknown activity 'helo' in dependsOn"


# --- files ---------------------------------------------------------------------------------


def test_load_workflow_file(tmp_path: Path) -> None:
    path = tmp_path / "wf.yaml"
    path.write_text(MINIMAL, encoding="utf-8")
    assert load_workflow_file(path).name == "wf"
    assert load_workflow_file(str(path), default_runtime="k8s").activities[0].runtime == "k8s"


def test_load_workflow_file_with_bom(tmp_path: Path) -> None:
    path = tmp_path / "wf.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + MINIMAL.encode())
    assert load_workflow_file(path).name == "wf"


def test_missing_file_is_a_validation_error(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(WorkflowValidationError) as info:
        load_workflow_file(path)
    assert info.value.source == str(path)
    (error,) = info.value.errors
    assert "cannot read the workflow file" in error.message
    assert "No such file" in error.message


def test_directory_is_a_validation_error(tmp_path: Path) -> None:
    with pytest.raises(WorkflowValidationError, match="cannot read"):
        load_workflow_file(tmp_path)


def test_non_utf8_file_is_a_validation_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"name: wf\nspec:\n  image: caf\xe9\n")
    with pytest.raises(WorkflowValidationError) as info:
        load_workflow_file(path, source="latin1.yaml")
    (error,) = info.value.errors
    assert error.line == 3
    assert "not valid UTF-8" in error.message
    assert str(info.value).splitlines()[1].startswith("latin1.yaml:3: ")


def test_file_errors_carry_the_source_name(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: wf\nspec: {}\n", encoding="utf-8")
    with pytest.raises(WorkflowValidationError) as info:
        load_workflow_file(path)
    assert str(info.value).splitlines()[1] == (
        f"{path}:2: spec.activities: required field 'activities' is missing"
    )


# --- JSON schema and YAML semantics ---------------------------------------------------------


def test_json_schema_is_self_documenting() -> None:
    schema = json_schema()
    assert schema["type"] == "object"
    assert set(schema["required"]) == {"name", "spec"}
    assert schema["additionalProperties"] is False
    defs = schema["$defs"]
    activity = defs["ActivitySpec"]["properties"]
    for key in ("dependsOn", "memoryLimit", "cpuLimit", "nodeSelector", "keepDisk", "mountPath"):
        assert key in activity
    assert "storagePolicy" in defs["WorkflowSpec"]["properties"]
    models = [schema, *defs.values()]
    for model in models:
        for name, prop in model.get("properties", {}).items():
            assert prop.get("description"), f"{name} has no description"


SAFE_LOADER_CASES = [
    "a: 1\nb: [1, 2.5, true, no, ~, null, '', \"x\", 0x1f, 0o17, 1_000, 1:30, .inf]\n",
    "base: &b {x: 1, y: 2}\nc:\n  <<: *b\n  y: 3\nd:\n  <<: [*b, {z: 9, x: 7}]\n",
    "- &a foo\n- *a\n- !!str 123\n- !!int '7'\n- ! 12\n- !!float 1\n- !!bool yes\n",
    "? complex\n: 1\nyes: 2\n3: x\n~: y\n",
    "k: |\n  line1\n  $(echo hi) 'q' \"dq\"\nm: >\n  folded\n  text\nn: |-\n  s\n\no: |+\n  k\n\n",
    "a: {b: {c: [1, {d: e}]}}\n",
    "t: 2001-12-14t21:59:43.10-05:00\nd: 2024-01-01\n",
    "x",
    "[1, 2]",
    "multi: line\n  plain scalar\n",
    "'quoted key': \"esc\\u00e9\\n\"\n",
]


@pytest.mark.parametrize("text", SAFE_LOADER_CASES)
def test_yaml_semantics_match_pyyaml_safe_loader(text: str) -> None:
    data, issues = loader_module._build(text)
    assert issues == []
    assert data == yaml.load(text, Loader=yaml.CSafeLoader)


def test_yaml_semantics_match_pyyaml_on_generated_documents() -> None:
    """Differential check of the event-based builder against PyYAML, errors included."""
    rng = random.Random(1234)
    scalars: list[object] = ["a", "yes", "No", "~", "", "0x1F", "1:20", ".5", "-1", "x y"]
    scalars += ["2024-02-30", "2024-02-03", "it's", "#x", "k: v", "- x", "&a", "*a", "<<", "="]
    scalars += [0, 7, -3, 2.5, True, False, None]

    def make(depth: int = 0) -> object:
        roll = rng.random()
        if depth > 3 or roll < 0.4:
            return rng.choice(scalars)
        if roll < 0.7:
            keys = [f"k{rng.randint(0, 5)}", "yes", "~", "", "0x1F", "1:20", ".5"]
            return {rng.choice(keys): make(depth + 1) for _ in range(rng.randint(0, 4))}
        return [make(depth + 1) for _ in range(rng.randint(0, 4))]

    for _ in range(400):
        text = yaml.dump(make(), default_flow_style=rng.choice([None, True, False]))
        if rng.random() < 0.3:  # break it now and then: errors must match too
            lines = text.splitlines() or [""]
            k = rng.randrange(len(lines))
            lines[k] = rng.choice(
                ["  " + lines[k], lines[k] + ":", "- " + lines[k], "&a " + lines[k]]
            )
            text = "\n".join(lines) + "\n"
        try:
            expected: object = ("ok", yaml.load(text, Loader=yaml.CSafeLoader))
        except yaml.YAMLError:
            expected = ("error",)
        try:
            got: object = ("ok", loader_module._build(text)[0])
        except loader_module._YamlFailure:
            got = ("error",)
        assert repr(got) == repr(expected), text


PLAIN_CASES = [
    MINIMAL,
    FULL,
    "---\n# header\nname: x  # trailing\nlist:\n- a\n- 'b c'\n- \"d\"\nafter: 1\n",
    "k:\n  - name: a\n    run: |-\n      line 1\n\n      line 3\n\n"
    "  -   name: b\n      x: [1, a, yes]\n",
    "k: |+\n  kept\n\n\nnext: {}\nempty: []\nnull_value:\nlast: ~\n",
    "a:\n  b:\n    c: -1\n    d: --flag\n  e: 'it''s'\n",
    "s: echo \"$(date)\" 'x' > out.txt # comment\nt: a#b\nu: http://x:80/y\n",
    "key: final\nline: break",
    "block: |\n  text\nlast: line",
]


@pytest.mark.parametrize("text", PLAIN_CASES)
def test_event_builder_agrees_with_pyyaml(text: str) -> None:
    built, _ = loader_module._build(text)
    assert repr(built) == repr(yaml.load(text, Loader=yaml.CSafeLoader))


def test_event_builder_agrees_with_pyyaml_on_generated_documents() -> None:
    """Whenever PyYAML accepts a generated document, the event builder reads it identically."""
    rng = random.Random(99)
    plain = ["a", "act-1", "echo hi > out.txt", "1", "yes", "x y", "256Mi", "0.5", "a:b", "-x"]
    plain += ["null", "~", "1:30", "2024-01-01", "a #c", "k: v", "v:", "- x", "&a", "%x", "é"]
    keys = ["name", "run", "spec", "k", "key.a", "k/v", "a-b", "_x", "K1", "image", "env"]

    def scalar() -> str:
        value = rng.choice(plain)
        return rng.choice(
            [value, value, value, f'"{value}"', "'" + value.replace("'", "''") + "'", "[]", "{}"]
            + ["[" + ", ".join(rng.sample(plain[:8], rng.randint(0, 3))) + "]"]
        )

    def mapping(indent: int, out: list[str], depth: int) -> None:
        for key in rng.sample(keys, rng.randint(1, 4)):
            roll = rng.random()
            if depth < 3 and roll < 0.3:
                out.append(" " * indent + key + ":" + rng.choice(["", "", " # c"]))
                if rng.random() < 0.5:
                    mapping(indent + rng.choice([1, 2, 4]), out, depth + 1)
                else:
                    sequence(indent + rng.choice([0, 2, 4]), out, depth + 1)
            elif roll < 0.4:
                out.append(" " * indent + key + ": " + rng.choice(["|", "|-", "|+"]))
                inner = indent + rng.choice([0, 1, 2, 4])
                for _ in range(rng.randint(0, 3)):
                    out.append(rng.choice([" " * inner + rng.choice(plain), "", " " * inner]))
            else:
                out.append(" " * indent + key + ": " + scalar() + rng.choice(["", "", " # c"]))
            if rng.random() < 0.1:
                out.append(rng.choice(["", "  # comment", " " * rng.randint(0, 6)]))

    def sequence(indent: int, out: list[str], depth: int) -> None:
        for _ in range(rng.randint(1, 4)):
            if depth < 3 and rng.random() < 0.4:
                item: list[str] = []
                mapping(indent + 2, item, depth + 1)
                item[0] = " " * indent + "-" + " " * rng.choice([1, 1, 2]) + item[0].lstrip(" ")
                out.extend(item)
            else:
                out.append(" " * indent + "- " + scalar())

    accepted = 0
    for _ in range(1500):
        lines: list[str] = []
        mapping(0, lines, 0)
        if rng.random() < 0.1:
            k = rng.randrange(len(lines))
            lines[k] = rng.choice(["  " + lines[k], lines[k] + ":", lines[k] + " x"])
        text = "\n".join(lines) + rng.choice(["\n", "\n", ""])
        try:
            expected = yaml.load(text, Loader=yaml.CSafeLoader)
        except yaml.YAMLError:
            continue
        built, issues = loader_module._build(text)
        if issues:  # duplicate keys: reported as errors, PyYAML silently keeps the last one
            continue
        accepted += 1
        assert repr(built) == repr(expected), text
    assert accepted > 300  # most generated documents are valid YAML


def test_schedule_names_an_installed_policy() -> None:
    text = "name: w\nspec:\n  schedule: myscore\n  activities:\n    - {name: a, run: 'true'}\n"
    with pytest.raises(WorkflowValidationError) as info:
        load_workflow(text)
    message = str(info.value)
    assert ":3: spec.schedule: unknown placement policy 'myscore'" in message
    assert "akoscore, round-robin" in message


def test_alpha_and_strategy() -> None:
    text = (
        "name: w\nspec:\n  schedule: round-robin\n  alpha: 0.25\n  strategy: FAF\n"
        "  activities:\n    - {name: a, run: 'true'}\n"
    )
    wf = load_workflow(text)
    assert (wf.schedule, wf.alpha, wf.strategy) == ("round-robin", 0.25, "first-activity-first")
    assert load_workflow(text.replace("FAF", "first-data-first")).strategy == "first-data-first"
    with pytest.raises(WorkflowValidationError, match="spec.alpha"):
        load_workflow(text.replace("0.25", "1.5"))
    with pytest.raises(WorkflowValidationError, match="spec.strategy"):
        load_workflow(text.replace("FAF", "sometimes"))


# --- what a process cannot be given, and what would subvert its start -----------------------


def test_aliases_are_bounded_in_text_too() -> None:
    # 1 MiB of text reused 200 times: few nodes, but 200 MiB once expanded.
    big = "x" * (1 << 20)
    text = "name: wf\nspec:\n  activities:\n    - name: a0\n      run: &big " + big + "\n"
    text += "".join(f"    - name: a{i}\n      run: *big\n" for i in range(1, 201))
    error = only_error(text)
    assert "YAML aliases expand the workflow to more than 64 MiB of text" in error.message
    assert "the file is 1.0 MiB" in error.message
    assert error.line is not None and error.line > 5
    # Reuse within the bound is fine: 60 copies of 1 MiB.
    kept = "name: wf\nspec:\n  activities:\n    - name: a0\n      run: &big " + big + "\n"
    kept += "".join(f"    - name: a{i}\n      run: *big\n" for i in range(1, 61))
    assert len(load_workflow(kept).activities) == 61


def test_merge_keys_on_many_activities_stay_within_the_bounds() -> None:
    head = "name: wf\nspec:\n  activities:\n"
    head += "    - &d {name: a0, run: echo hello there, memoryLimit: 64Mi, cpuLimit: '0.5'}\n"
    body = "".join(f"    - {{<<: *d, name: a{i}}}\n" for i in range(1, 20_000))
    assert len(load_workflow(head + body).activities) == 20_000


@pytest.mark.parametrize(
    ("snippet", "path", "needle"),
    [
        ('run: "echo \\0 hi"', "run", "NUL byte (character 6)"),
        ('run: "\\0"', "run", "NUL byte (character 1)"),
        ('image: "alpine\\0"', "image", "must not contain a NUL byte"),
        ('runtime: "lo\\0cal"', "runtime", "must not contain a NUL byte"),
        ('env: {A: "x\\0y"}', "env.A", "cannot contain a NUL byte"),
        ('env: {"A\\0": x}', "env.A\x00", "invalid environment variable name"),
        ('env: {"": x}', "env.", "invalid environment variable name ''"),
        ('env: {"A=B": x}', "env.A=B", "invalid environment variable name 'A=B'"),
        ('mountPath: "/data\\0"', "mountPath", "NUL byte"),
    ],
)
def test_what_a_process_cannot_take_is_rejected(snippet: str, path: str, needle: str) -> None:
    text = f"name: wf\nspec:\n  activities:\n    - name: a\n      {snippet}\n"
    if not snippet.startswith("run:"):
        text += "      run: echo\n"
    error = only_error(text)
    assert error.path == f"spec.activities[0].{path}"
    assert needle in error.message, error.message


def test_run_scripts_are_bounded() -> None:
    from akoflow.spec.model import MAX_RUN_CHARS

    script = "#" * MAX_RUN_CHARS
    assert load_workflow(f"name: wf\nspec:\n  activities:\n    - name: a\n      run: '{script}'\n")
    error = only_error(f"name: wf\nspec:\n  activities:\n    - name: a\n      run: '{script}#'\n")
    assert error.path == "spec.activities[0].run"
    assert "1,048,577 characters long" in error.message
    assert "at most 1,048,576" in error.message


def test_environment_entries_and_totals_fit_exec() -> None:
    from akoflow.spec.model import MAX_ENV_ENTRY_BYTES

    # NAME=value plus its NUL: exactly the limit passes, one byte more does not.
    fits = "v" * (MAX_ENV_ENTRY_BYTES - len("LONG=") - 1)
    ok = "name: wf\nspec:\n  activities:\n    - name: a\n      run: x\n"
    ok += f"      env: {{LONG: {fits}}}\n"
    assert load_workflow(ok).activities[0].env["LONG"] == fits
    error = only_error(ok.replace(fits, fits + "v"))
    assert error.path == "spec.activities[0].env.LONG"
    assert "131,073 bytes" in error.message and "E2BIG" in error.message
    # Characters outside ASCII count as their UTF-8 bytes.
    wide = "é" * ((MAX_ENV_ENTRY_BYTES // 2) - 2)
    error = only_error(ok.replace(fits, wide))
    assert "E2BIG" in error.message

    # Ten entries of 100 kB each fit one by one, not together (spec.env merged in).
    values = "y" * 100_000
    spec_env = ", ".join(f"S{i}: {values}" for i in range(5))
    act_env = ", ".join(f"A{i}: {values}" for i in range(5))
    text = yml(
        f"""
        name: wf
        spec:
          env: {{{spec_env}}}
          activities:
            - name: small
              run: x
            - name: merged
              run: x
              env: {{{act_env}, A5: {values}}}
            - name: overrides
              run: x
              env: {{S0: short, S1: short}}
        """
    )
    error = only_error(text)
    assert (error.path, error.line) == ("spec.activities[1].env", 9)
    assert "1,048,576 bytes" in error.message
    # A spec.env too large on its own is one error, not one per activity.
    text = yml(
        f"""
        name: wf
        spec:
          env: {{{spec_env}, {act_env}, X: {values}}}
          activities:
            - {{name: a, run: x}}
            - {{name: b, run: x, env: {{B: c}}}}
        """
    )
    assert where(errors_of(text)) == [("spec.env", 3)]


RESERVED = [
    "BASH_ENV",
    "ENV",
    "SHELLOPTS",
    "BASHOPTS",
    "POSIXLY_CORRECT",
    "PS4",
    "BASH_XTRACEFD",
    "BASH_FUNC_x",
    "BASH_FUNC_x%%",
    "AKOFLOW_DATA_DIR",
    "AKOFLOW_ANYTHING",
]


@pytest.mark.parametrize("name", RESERVED)
def test_reserved_environment_names_are_rejected(name: str) -> None:
    for where_ in ("spec", "activity"):
        env = f"env: {{'{name}': x}}"
        text = "name: wf\nspec:\n"
        text += f"  {env}\n" if where_ == "spec" else ""
        text += "  activities:\n    - name: a\n      run: echo\n"
        text += f"      {env}\n" if where_ == "activity" else ""
        error = only_error(text)
        prefix = "spec" if where_ == "spec" else "spec.activities[0]"
        assert error.path == f"{prefix}.env.{name}"
        if "%" in name:
            assert "invalid environment variable name" in error.message
        else:
            assert f"environment variable name {name!r} is reserved" in error.message
            expected = "set by the engine" if name.startswith("AKOFLOW_") else "BASH_FUNC_"
            assert expected in error.message


def test_ordinary_environment_names_are_kept() -> None:
    wf = load_workflow(
        "name: wf\nspec:\n  env: {BASH: 1, ENVIRONMENT: 2, PS1: 3, WORKFLOW_ID: 4, BASH_FUNCS: 5}\n"
        "  activities:\n    - {name: a, run: x, env: {AKOFLOW: 6, MY_AKOFLOW_X: 7}}\n"
    )
    assert set(wf.activities[0].env) == {
        "BASH",
        "ENVIRONMENT",
        "PS1",
        "WORKFLOW_ID",
        "BASH_FUNCS",
        "AKOFLOW",
        "MY_AKOFLOW_X",
    }


@pytest.mark.parametrize(
    ("mount", "needle"),
    [
        ("/", "must not be '/'"),
        ("///", "must not be '/'"),
        ("/data/../..", "'..' is not allowed"),
        ("/data/..", "'..' is not allowed"),
        ("/..", "'..' is not allowed"),
        ("//data", "write it normalised, as '/data'"),
        ("/data/./x", "write it normalised, as '/data/x'"),
        ("/data//x", "write it normalised, as '/data/x'"),
        ("data", "absolute"),
        ("./data", "absolute"),
    ],
)
def test_bad_mount_paths_are_rejected(mount: str, needle: str) -> None:
    for where_ in ("spec", "activity"):
        text = "name: wf\nspec:\n"
        text += f"  mountPath: '{mount}'\n" if where_ == "spec" else ""
        text += "  activities:\n    - name: a\n      run: echo\n"
        text += f"      mountPath: '{mount}'\n" if where_ == "activity" else ""
        error = only_error(text)
        assert error.path.endswith("mountPath")
        assert needle in error.message, error.message


@pytest.mark.parametrize("mount", ["/data", "/data/", "/data/produce", "/a..b/c.", "/.x"])
def test_good_mount_paths_are_kept(mount: str) -> None:
    wf = load_workflow(
        f"name: wf\nspec:\n  mountPath: '{mount}'\n  activities:\n    - name: a\n      run: x\n"
    )
    assert wf.activities[0].mount_path == mount


@pytest.mark.parametrize(
    ("volume", "needle"),
    [
        ("/home/me:/", "must not be '/'"),
        ("/home/me:/.", "must not be '/'"),
        ("/home/me://", "must not be '/'"),
        ("../secrets:/scratch/in", "the local path '../secrets' has a '..' component"),
        ("/home/me/../../etc:/scratch/in", "has a '..' component"),
        ("/home/me/in:/scratch/../..", "the remote path '/scratch/../..' has a '..'"),
        ("/home/me/in:/scratch/..", "has a '..' component"),
        ("/home/me/in\\0:/scratch", "NUL byte"),
    ],
)
def test_bad_volumes_are_rejected(volume: str, needle: str) -> None:
    error = only_error(
        f'name: wf\nspec:\n  volumes: ["{volume}"]\n  activities:\n    - name: a\n      run: x\n'
    )
    assert (error.path, error.line) == ("spec.volumes[0]", 3)
    assert needle in error.message, error.message


@pytest.mark.parametrize(
    "volume", ["/home/me/in:/scratch/me/in", "in:/scratch/in", "./a..b:/x..y/z", "/a/:/b/"]
)
def test_good_volumes_are_kept(volume: str) -> None:
    wf = load_workflow(
        f"name: wf\nspec:\n  volumes: ['{volume}']\n  activities:\n    - name: a\n      run: x\n"
    )
    assert wf.volumes == (Volume(*volume.split(":")),)


def test_json_schema_lists_the_reserved_environment_names() -> None:
    env = json_schema()["$defs"]["ActivitySpec"]["properties"]["env"]
    names = next(s for s in env["anyOf"] if s.get("type") == "object")["propertyNames"]
    assert "BASH_ENV" in names["not"]["anyOf"][0]["enum"]
    assert {"pattern": "^AKOFLOW_"} in names["not"]["anyOf"]


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ('"\\e[31mred"', "must not contain control characters"),
        ('"a\\x9bb"', "must not contain control characters"),
        ('"a\\x7f"', "must not contain control characters"),
        ('"a\\tb"', "must not contain whitespace"),
    ],
)
def test_images_and_runtimes_have_no_control_characters(value: str, needle: str) -> None:
    error = only_error(
        f"name: wf\nspec:\n  image: {value}\n  activities:\n    - {{name: a, run: x}}\n"
    )
    assert error.path == "spec.image"
    assert needle in error.message


def test_reading_a_workflow_file_is_bounded(tmp_path: Path) -> None:
    assert loader_module.MAX_FILE_BYTES == 64 << 20
    error = errors_of_file(Path("/dev/zero"))
    assert "larger than 64 MiB" in error.message


def errors_of_file(path: Path) -> SpecError:
    with pytest.raises(WorkflowValidationError) as info:
        load_workflow_file(path)
    assert len(info.value.errors) == 1
    return info.value.errors[0]


# A big workflow's activities are validated a chunk at a time (one pydantic call held the
# GIL for 0.9 s at 100,000 activities, a server's API standing still): what it says must be
# what one call says, errors, paths, lines and the workflow alike.
_ACTIVITY_FAULTS = (
    "      run: 5\n",
    "      run: 'true'\n      foo: 1\n",
    "      image: alpine\n",
    "      run: 'true'\n      dependsOn: 3\n",
    "      run: 'true'\n      cpu: [1]\n",
    "      run: 'true'\n      memory: lots\n",
)


def _big_workflow(rng: random.Random, n: int, faults: float) -> str:
    name = "Bad_Name" if rng.random() < faults / 2 else "big"
    head = f"name: {name}\nspec:\n"
    if rng.random() < faults / 2:
        head += "  runtime: 7\n"
    parts = [head, "  activities:\n"]
    for i in range(n):
        parts.append(f"    - name: a{i}\n")
        if rng.random() < faults:
            parts.append(rng.choice(_ACTIVITY_FAULTS))
        else:
            parts.append("      run: 'true'\n")
            if i and rng.random() < 0.3:
                parts.append(f"      dependsOn: [a{rng.randrange(i)}]\n")
    return "".join(parts)


def _outcome(text: str) -> object:
    try:  # a runtime check: never the cache of texts loaded before
        return load_workflow(text, runtime_check=lambda name: None)
    except WorkflowValidationError as exc:
        return [(e.path, e.line, e.message) for e in exc.errors]


@pytest.mark.parametrize("seed", range(12))
def test_a_workflow_validated_in_chunks_says_what_one_validation_says(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(seed)
    text = _big_workflow(rng, rng.randrange(1, 40), faults=0.0 if seed < 4 else 0.15)
    monkeypatch.setattr(loader_module, "VALIDATE_CHUNK", 10**9)
    whole = _outcome(text)
    monkeypatch.setattr(loader_module, "VALIDATE_CHUNK", rng.choice((1, 2, 3, 7)))
    assert _outcome(text) == whole
    if seed < 4:
        assert isinstance(whole, Workflow)


def test_chunked_errors_on_one_line_keep_the_order_of_one_validation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A flow-style (or JSON) workflow has every error on line 1, where the order is the one
    # pydantic gives: the unknown keys of spec and of the top level come after the
    # activities' errors (the chunked validation listed them before: found by a hostile pass).
    text = (
        "{name: W_, extra: 2, spec: {zzz: 1, runtime: 7, activities: "
        "[{name: A, run: 5}, {name: b, run: x}, {name: c, run: x, foo: 1}]}}"
    )
    monkeypatch.setattr(loader_module, "VALIDATE_CHUNK", 10**9)
    whole = _outcome(text)
    assert isinstance(whole, list)
    assert [path for path, _, _ in whole] == [
        "name",
        "spec.runtime",
        "spec.activities[0].name",
        "spec.activities[0].run",
        "spec.activities[2].foo",
        "spec.zzz",
        "extra",
    ]
    for chunk in (1, 2):
        monkeypatch.setattr(loader_module, "VALIDATE_CHUNK", chunk)
        assert _outcome(text) == whole


def test_no_default_factory_of_the_model_has_a_text_signature() -> None:
    """pydantic reads the signature of each default_factory as it builds a model (whether it
    takes the data validated so far); a builtin's, ``list``'s, from its text, through the
    tokenizer, whose first use was ~2 ms of every `akoflow run`. Each such field still gets
    a new empty list."""
    from pydantic import BaseModel

    from akoflow.spec import model

    models = [v for v in vars(model).values() if isinstance(v, type) and issubclass(v, BaseModel)]
    factories = {
        (m.__name__, name): f.default_factory
        for m in models
        for name, f in m.model_fields.items()
        if f.default_factory is not None
    }
    assert ("ActivitySpec", "depends_on") in factories
    assert {k: f for k, f in factories.items() if getattr(f, "__text_signature__", None)} == {}
    one, two = (model.ActivitySpec.model_validate({"name": "a", "run": "true"}) for _ in "12")
    assert one.depends_on == one.inputs == one.outputs == []
    assert one.depends_on is not two.depends_on
