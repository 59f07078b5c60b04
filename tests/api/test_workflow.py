"""Workflows built in Python and loaded from YAML: the loader's rules, every error at once,
and YAML that loads back to the same workflow."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

import akoflow
from akoflow import service
from akoflow.spec.model import ActivitySpec, WorkflowSpec
from tests.conftest import EXAMPLES


def meaning(text: str) -> akoflow.Workflow | object:
    """What the engine runs of a workflow text: the resolved, validated workflow."""
    return service.validate_text(text, "test").workflow


def test_built_workflow_is_the_file_it_writes() -> None:
    wf = akoflow.Workflow("hello", runtime="local", env={"MODE": "fast"}, retries=1)
    prep = wf.activity(
        "prep", run="echo hi > g.txt\necho done\n", outputs="g.txt", memory_limit="64Mi"
    )
    wf.activity(
        "show",
        run="cat g.txt",
        depends_on=prep,
        inputs=[Path("g.txt")],
        env={"N": 3, "ON": True},
        timeout="1m30s",
        cpu_limit=0.5,
    )
    wf.validate()
    text = wf.to_yaml()
    assert "run: |\n        echo hi > g.txt\n        echo done\n" in text  # a literal block
    resolved = meaning(text)
    assert resolved == wf.prepare().workflow
    show = resolved.activities[1]
    assert show.depends_on == ("prep",) and show.inputs == ("g.txt",)
    assert show.env == {"MODE": "fast", "N": "3", "ON": "true"}  # inherited, as strings
    assert show.timeout_seconds == 90 and show.cpu_cores == 0.5 and show.retries == 1
    assert resolved.activities[0].memory_bytes == 64 << 20
    assert wf["show"].depends_on == ["prep"] and len(wf) == 2
    assert [a.name for a in wf] == ["prep", "show"]


def test_invalid_workflow_built_in_code_reports_every_error() -> None:
    wf = akoflow.Workflow("Bad_Name", runtime="nowhere")
    wf.activity("a", run="", memory_limit="lots", depends_on=["nope"])
    wf.activity("a", run="true", env={"BASH_ENV": "x"}, retries=object())  # type: ignore[arg-type]
    wf.activity("c", run="true", depends_on=["d"])
    wf.activity("d", run="true", depends_on=["c"], mount_path="relative")
    with pytest.raises(akoflow.WorkflowValidationError) as caught:
        wf.validate()
    exc = caught.value
    assert isinstance(exc, akoflow.AkoflowError)
    found = {(e.path, e.message.split(":")[0]) for e in exc.errors}
    paths = [e.path for e in exc.errors]
    assert sorted(paths) == sorted(
        [
            "name",
            "spec.runtime",
            "spec.activities[0].run",
            "spec.activities[0].memoryLimit",
            "spec.activities[0].dependsOn[0]",
            "spec.activities[1].name",
            "spec.activities[1].env.BASH_ENV",
            "spec.activities[1].retries",
            "spec.activities[2].dependsOn",
            "spec.activities[3].mountPath",
        ]
    ), exc.report()
    unwritable = "a value of type 'object' cannot be written in a workflow file"
    assert ("spec.activities[1].retries", unwritable) in found
    assert any("dependency cycle: c -> d -> c" in e.message for e in exc.errors)
    assert all(e.line is None for e in exc.errors)  # no file: the path says where
    # The same type and messages as the loader gives for the same file.
    with pytest.raises(akoflow.WorkflowValidationError) as from_file:
        wf.activities[1].retries = None
        service.validate_text(wf.to_yaml(), "file")
    assert {e.message for e in from_file.value.errors} <= {e.message for e in exc.errors}
    with pytest.raises(akoflow.WorkflowValidationError):
        akoflow.run(wf)  # nothing stored, nothing run: no state dir is even needed


def test_values_no_file_can_hold() -> None:
    wf = akoflow.Workflow("w")
    wf.activity("a", run="true", image=Path("img.sif"), inputs=os.fsdecode(b"caf\xe9.txt"))
    with pytest.raises(akoflow.WorkflowValidationError) as caught:
        wf.to_yaml()
    (error,) = caught.value.errors
    assert error.path == "spec.activities[0].inputs[0]" and "not valid Unicode" in error.message
    wf["a"].inputs = ["café.txt"]
    assert "image: img.sif" in wf.to_yaml()  # a path is its text


def test_something_else_put_among_the_activities_is_a_validation_error() -> None:
    """`wf.activities.append("x")` (not wf.activity): every problem, no AttributeError."""
    wf = akoflow.Workflow("w", runtime="local")
    wf.activity("a", run="true")
    wf.activities.append("x")  # type: ignore[arg-type]
    with pytest.raises(akoflow.WorkflowValidationError) as caught:
        wf.validate()
    assert [(e.path, e.message) for e in caught.value.errors] == [
        ("spec.activities[1]", "is a str, not an Activity (use wf.activity)")
    ]
    with pytest.raises(akoflow.WorkflowValidationError):
        wf.to_yaml()
    wf.activities = "a"  # type: ignore[assignment]
    with pytest.raises(akoflow.WorkflowValidationError) as caught:
        wf.validate()
    assert caught.value.errors[0].path == "spec.activities"


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_yaml_round_trip_keeps_the_meaning_of_every_example(path: Path) -> None:
    text = path.read_text()
    wf = akoflow.load(path)
    assert wf.prepare().text == text  # unchanged: the file itself runs
    written = wf.to_yaml()
    assert meaning(written) == meaning(text)
    again = akoflow.load(written)
    assert again.to_yaml() == written  # stable
    assert meaning(akoflow.Workflow(**_fields(wf)).to_yaml()) == meaning(text)


def _fields(wf: akoflow.Workflow) -> dict[str, object]:
    return {f.name: getattr(wf, f.name) for f in dataclasses.fields(wf) if f.init}


def test_load_reads_text_and_files_as_the_cli_does(tmp_path: Path) -> None:
    text = "name: t\nspec:\n  activities:\n    - {name: a, run: 'true', dependsOn: b}\n"
    with pytest.raises(akoflow.WorkflowValidationError) as caught:
        akoflow.load(text)
    (error,) = caught.value.errors
    assert (error.path, error.line) == ("spec.activities[0].dependsOn", 4)
    assert caught.value.source == "<string>"
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"name: t\xff\n")
    with pytest.raises(akoflow.WorkflowValidationError, match="not valid UTF-8"):
        akoflow.load(bad)
    with pytest.raises(akoflow.WorkflowValidationError, match="cannot read"):
        akoflow.load(tmp_path / "missing.yaml")
    flow = akoflow.load("{name: t, spec: {activities: [{name: a, run: 'true'}]}}")
    assert flow["a"].run == "true"
    # Changed after loading: it is the built workflow that runs now.
    flow["a"].run = "false"
    assert "run: 'false'" in flow.prepare().text


def test_builder_has_every_field_of_the_file() -> None:
    """A field added to the YAML model must be added to the builder too."""
    assert {f.name for f in dataclasses.fields(akoflow.Activity)} == set(ActivitySpec.model_fields)
    built = {f.name for f in dataclasses.fields(akoflow.Workflow) if f.init} - {"name"}
    assert built == set(WorkflowSpec.model_fields)
