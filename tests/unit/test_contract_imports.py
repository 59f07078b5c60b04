"""The runtime contract (akoflow.runtimes.base) is light to import and in no import cycle:
every adapter and the engine import it, so it must not pull in the YAML loader and pydantic,
and placement (which the loader asks for the policies it knows) must not need it back."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT

CONTRACT = "akoflow.runtimes.base"
HEAVY = {"pydantic", "pydantic_core", "yaml", "akoflow.spec.loader", "akoflow.spec.model"}


def modules_after(*statements: str) -> set[str]:
    """Names in sys.modules after running ``statements`` in a fresh interpreter."""
    code = "\n".join([*statements, "import json, sys", "print(json.dumps(sorted(sys.modules)))"])
    res = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0, res.stderr
    names: list[str] = json.loads(res.stdout.splitlines()[-1])
    return set(names)


def test_importing_the_contract_loads_neither_the_loader_nor_pydantic_nor_yaml() -> None:
    loaded = modules_after(f"import {CONTRACT}")
    assert CONTRACT in loaded
    assert not HEAVY & loaded, sorted(HEAVY & loaded)
    assert "akoflow.spec.workflow" in loaded  # the plain dataclasses JobSpec is made of
    # The loader is still there for whoever asks for it through the package.
    assert {"akoflow.spec.loader", "yaml", "pydantic"} <= modules_after(
        f"import {CONTRACT}", "from akoflow.spec import load_workflow"
    )


def test_no_module_the_contract_imports_imports_it_back() -> None:
    """A cycle through the contract would show as one of the modules it loads loading it."""
    ours = sorted(m for m in modules_after(f"import {CONTRACT}") if m.startswith("akoflow."))
    assert ours, "the contract imports nothing of akoflow?"
    for module in ours:
        if module != CONTRACT and module != "akoflow.runtimes":
            assert CONTRACT not in modules_after(f"import {module}"), module


def test_placement_needs_no_runtime_and_imports_in_either_order() -> None:
    assert CONTRACT not in modules_after("import akoflow.placement")
    assert "akoflow.placement" not in modules_after(f"import {CONTRACT}")
    first_placement = modules_after("import akoflow.placement", f"import {CONTRACT}")
    first_contract = modules_after(f"import {CONTRACT}", "import akoflow.placement")
    assert {CONTRACT, "akoflow.placement.policies"} <= first_placement & first_contract
    # spec -> placement (the loader checks spec.schedule against the installed policies) ->
    # no runtime: the old spec -> placement -> runtimes.base -> spec cycle is gone.
    after_loader = modules_after(
        "from akoflow.spec.loader import load_workflow",
        "from akoflow.placement.policies import available_policies",
        "assert 'akoscore' in available_policies()",
    )
    assert CONTRACT not in after_loader
