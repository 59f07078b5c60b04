"""Every third-party module imported by src/ (and by the tests) comes from a distribution
pyproject.toml declares: none arrives only because another dependency happens to bring it."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIRST_PARTY = {"akoflow", "tests"}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared(*extras: str) -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]
    requirements = list(project["dependencies"])
    for extra in extras:
        requirements += project["optional-dependencies"][extra]
    return {canonical(re.match(r"[A-Za-z0-9._-]+", r)[0]) for r in requirements}


def imported(folder: Path) -> dict[str, str]:
    """Module name -> a file importing it, for every absolute import below ``folder``."""
    found: dict[str, str] = {}
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_bytes(), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            for name in names:
                found.setdefault(name, str(path.relative_to(ROOT)))
    return found


@cache
def module_owners() -> dict[str, set[str]]:
    """Dotted module name -> the installed distributions whose files define it (a package
    split over several, like lightkube and lightkube-models, by each module's own file)."""
    owners: dict[str, set[str]] = {}
    for dist in importlib.metadata.distributions():
        for file in dist.files or ():
            parts = file.parts
            if ".." in parts or not parts or file.suffix not in (".py", ".so", ".pyi"):
                continue
            module = [*parts[:-1], parts[-1].split(".")[0]]
            if module[-1] == "__init__":
                module.pop()
            if module:
                owners.setdefault(".".join(module), set()).add(canonical(dist.metadata["Name"]))
    return owners


def undeclared(folder: Path, allowed: set[str]) -> list[str]:
    owners = module_owners()
    missing = []
    for name, where in imported(folder).items():
        top = name.partition(".")[0]
        if top in sys.stdlib_module_names or top in FIRST_PARTY:
            continue
        if name not in owners and name.partition(".")[2]:
            continue  # ``from x import a_function``: not a module; x itself is checked
        dists = owners.get(name)
        if dists is None:
            missing.append(f"{name} (imported by {where}) is not installed")
        elif not dists & allowed:
            missing.append(f"{name} (imported by {where}) comes from {sorted(dists)}")
    return sorted(missing)


def test_the_package_declares_what_it_imports() -> None:
    assert undeclared(ROOT / "src", declared()) == []


def test_the_dev_extra_declares_what_the_tests_import() -> None:
    assert undeclared(ROOT / "tests", declared("dev")) == []
