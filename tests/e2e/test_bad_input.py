"""Bad input gets a clear error (exit 2), and nothing is stored or executed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Akoflow

# Every workflow below would create `executed` in the data dir (or cwd) if anything ran.
CASES = {
    "malformed-yaml": (
        "name: bad\nspec:\n  activities:\n    - name: a\n      run: touch executed\n"
        "    - name: b\n     run: [unclosed\n",
        ["malformed-yaml.yaml:7: invalid YAML"],
    ),
    "cycle": (
        "name: cyc\nspec:\n  activities:\n"
        "    - name: a\n      dependsOn: [c]\n      run: touch executed\n"
        "    - name: b\n      dependsOn: [a]\n      run: touch executed\n"
        "    - name: c\n      dependsOn: [b]\n      run: touch executed\n",
        ["cycle", "a -> c -> b -> a"],
    ),
    "unknown-dependency": (
        "name: dep\nspec:\n  activities:\n"
        "    - name: prepare\n      run: touch executed\n"
        "    - name: use\n      dependsOn: [prepar]\n      run: touch executed\n",
        ["spec.activities[1].dependsOn", "prepar", "prepare"],
    ),
    "shell-metacharacters-in-name": (
        "name: meta\nspec:\n  activities:\n"
        "    - name: 'x; touch executed'\n      run: touch executed\n",
        ["spec.activities[0].name", "DNS-1123"],
    ),
    "unknown-runtime": (
        "name: rt\nspec:\n  activities:\n"
        "    - name: a\n      runtime: lambda\n      run: touch executed\n",
        ["spec.activities[0].runtime", "unknown runtime 'lambda'"],
    ),
    "unknown-key": (
        "name: uk\nspec:\n  activities:\n"
        "    - name: a\n      comand: echo\n      run: touch executed\n",
        ["spec.activities[0].comand"],
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_invalid_workflow_is_rejected_and_nothing_happens(
    case: str, akoflow: Akoflow, tmp_path: Path, state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text, expected = CASES[case]
    wf = tmp_path / f"{case}.yaml"
    wf.write_text(text)
    data = tmp_path / "data"
    res = akoflow("run", str(wf), "--data-dir", str(data))
    assert res.returncode == 2, res.stdout + res.stderr
    for fragment in expected:
        assert fragment in res.stderr, (fragment, res.stderr)
    assert not data.exists()
    assert not list(tmp_path.rglob("executed"))
    assert not (state_dir / "akoflow.db").exists()  # nothing stored, not even an empty DB
    val = akoflow("validate", str(wf), state=False)
    assert val.returncode == 2
    assert val.stderr == res.stderr


def test_all_errors_are_reported_at_once_with_lines(akoflow: Akoflow, tmp_path: Path) -> None:
    wf = tmp_path / "many.yaml"
    wf.write_text(
        "name: many\n"  # 1
        "spec:\n"  # 2
        "  volumes: [/no/colon]\n"  # 3
        "  activities:\n"  # 4
        "    - name: a\n"  # 5
        "      memoryLimit: 12 apples\n"  # 6
        "      run: echo\n"  # 7
        "    - name: a\n"  # 8
        "      run: echo\n"  # 9
        "    - name: c\n"  # 10
        "      cpuLimit: lots\n"  # 11
        "      dependsOn: [zzz]\n"  # 12
        "      run: echo\n"  # 13
    )
    res = akoflow("validate", str(wf), state=False)
    assert res.returncode == 2
    lines = [line for line in res.stderr.splitlines() if line.startswith("  ")]
    assert len(lines) == 5, res.stderr
    joined = "\n".join(lines)
    for where in (
        ":3: spec.volumes[0]",
        ":6: spec.activities[0].memoryLimit",
        ":8: spec.activities[1].name",
        ":11: spec.activities[2].cpuLimit",
        ":12: spec.activities[2].dependsOn",
    ):
        assert where in joined, (where, joined)


def test_missing_file_is_a_clear_error(akoflow: Akoflow, tmp_path: Path) -> None:
    res = akoflow("run", str(tmp_path / "nope.yaml"))
    assert res.returncode == 2
    assert "nope.yaml" in res.stderr


def test_valid_file_validates_and_schema_is_json(akoflow: Akoflow) -> None:
    from tests.conftest import EXAMPLES

    res = akoflow("validate", str(EXAMPLES / "hello.yaml"), state=False)
    assert res.returncode == 0
    assert "5 activities" in res.stdout
    schema = json.loads(akoflow("schema", state=False).stdout)
    assert schema["type"] == "object"
    assert "spec" in schema["properties"]
