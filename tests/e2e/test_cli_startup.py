"""What the `akoflow` command imports for its short commands (issue 20: start-up is a large
part of a short run). Each command runs for real in a fresh interpreter; the modules loaded
when it leaves (os._exit, which main() always ends with) are checked, so a heavy import that
creeps back onto a path fails here, with its name, without any timing."""

from __future__ import annotations

import functools
import inspect
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import typer

import akoflow
from akoflow.cli import local_run
from akoflow.cli.main import RUN_FLAGS, RUN_PATHS, plain_run
from tests.conftest import cli_env

# Runs the real entry point; records sys.modules at the os._exit that ends every command.
DRIVER = """
import gc, json, os, sys
out, sys.argv = sys.argv[1], ["akoflow", *sys.argv[2:]]
leave = os._exit
def record_then_leave(code):
    plugins = sys.modules.get("pydantic.plugin._loader")
    with open(out, "w") as f:
        json.dump({
            "modules": sorted(sys.modules),
            # None until pydantic looked for plugins (in every installed distribution)
            "plugins_looked_up": plugins is not None and plugins._plugins is not None,
            "gc": [gc.isenabled(), gc.get_freeze_count()],
            "frozen_after": frozen_after,
        }, f)
    leave(code)
os._exit = record_then_leave
def collections():
    return sum(g["collections"] for g in gc.get_stats())
frozen_after, before = [], collections()  # collections until the run froze what it imported
freeze = gc.freeze
def record_then_freeze():
    frozen_after.append(collections() - before)
    freeze()
gc.freeze = record_then_freeze
from akoflow.__main__ import main
main()
"""

# Never needed by a local run, a status or --version: servers, clients of other runtimes,
# exports and reports.
NEVER = (
    "fastapi",
    "starlette",
    "uvicorn",
    "httpx",
    "asyncssh",
    "lightkube",
    "kubernetes",
    "docker",
    "requests",
    "websockets",
    "prov",
    "rocrate",
    "rdflib",
    "prometheus_client",
    "smtplib",
    "akoflow.server",
    "akoflow.api",
    "akoflow.report",
    "akoflow.gc",
    "akoflow.provenance.prov_export",
    "akoflow.provenance.crate",
    "akoflow.runtimes.docker",
    "akoflow.runtimes.hpc",
    "akoflow.runtimes.kubernetes",
    "akoflow.runtimes.singularity",
    "akoflow.cli.client",
)
ONE = 'name: one\nspec:\n  activities:\n    - name: a\n      run: "true"\n'


def recorded(
    tmp_path: Path, state: Path, *args: str, **env: str
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    record = tmp_path / "modules.json"
    record.unlink(missing_ok=True)
    res = subprocess.run(
        [sys.executable, "-c", DRIVER, str(record), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=cli_env(AKOFLOW_HOME=str(state), **env),
    )
    found: dict[str, Any] = json.loads(record.read_text())
    return res, found


def loaded(
    tmp_path: Path, state: Path, *args: str
) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    res, found = recorded(tmp_path, state, *args)
    return res, set(found["modules"])


def among(names: set[str], *packages: str) -> list[str]:
    """The names in ``names`` that are one of ``packages`` or inside one."""
    return sorted(n for n in names if any(n == p or n.startswith(p + ".") for p in packages))


def test_run_quiet_loads_the_engine_and_nothing_it_does_not_use(tmp_path: Path) -> None:
    wf = tmp_path / "one.yaml"
    wf.write_text(ONE)
    res, names = loaded(tmp_path, tmp_path / "state", "run", str(wf), "--quiet")
    assert res.returncode == 0, res.stderr
    assert res.stdout == res.stderr == ""
    # It did run: the loader, the engine and the local runtime are there.
    assert {"akoflow.spec.model", "akoflow.engine.engine", "akoflow.runtimes.local"} <= names
    # Nothing is shown, so rich is never imported (nor the live views that use it); a plain
    # run command line is read without typer.
    assert (
        among(names, "rich", "akoflow.cli.progress", "typer", "akoflow.cli.commands", *NEVER) == []
    )
    # Nor pydantic's plugin loader (importlib.metadata, email, csv, zipfile...): the plugins
    # are switched off while the model is built, it would find none.
    assert among(names, "pydantic.plugin._loader", "importlib.metadata") == []
    # Nor what only other runs need: placement (spec.schedule), remote listings and the
    # copies of files between locations (runtimes whose files stay remote), "did you mean"
    # (a spec with an error), importlib.resources (the migrations are files).
    assert (
        among(
            names,
            "akoflow.placement",
            "akoflow.provenance.remote",
            "akoflow.dataplane.plan",
            "akoflow.dataplane.index",
            "difflib",
            "importlib.resources",
        )
        == []
    )


def test_run_validates_without_pydantic_plugins_and_activities_keep_the_users_setting(
    tmp_path: Path,
) -> None:
    """pydantic's plugin look-up reads every installed distribution's entry points; the CLI
    builds the workflow model with PYDANTIC_DISABLE_PLUGINS set for that moment only."""
    wf = tmp_path / "env.yaml"
    wf.write_text("name: env\nspec:\n  activities:\n    - name: a\n      run: env > env.txt\n")
    state = tmp_path / "state"
    res, found = recorded(tmp_path, state, "run", str(wf), "-q")
    assert res.returncode == 0, res.stderr
    assert "akoflow.spec.model" in found["modules"]
    assert found["plugins_looked_up"] is False
    seen = (state / "runs" / "1-env" / "data" / "env.txt").read_text()
    assert "PYDANTIC_DISABLE_PLUGINS" not in seen and "AKOFLOW_WORKFLOW_ID=1" in seen
    # A user's own value is theirs again once the model is built.
    res, _ = recorded(
        tmp_path,
        state,
        "run",
        str(wf),
        "-q",
        "--new",
        "--no-cache",
        PYDANTIC_DISABLE_PLUGINS="logfire",
    )
    assert res.returncode == 0, res.stderr
    seen = (state / "runs" / "2-env" / "data" / "env.txt").read_text()
    assert "PYDANTIC_DISABLE_PLUGINS=logfire\n" in seen


STAND_IN = """
import sys
from akoflow.cli.local_run import PLUGIN_LOADER, _pydantic_plugins_off
from pydantic import BaseModel
with _pydantic_plugins_off():
    import akoflow.spec.model
    assert sys.modules[PLUGIN_LOADER].get_plugins() == ()
assert PLUGIN_LOADER not in sys.modules and "importlib.metadata" not in sys.modules
class Later(BaseModel):
    x: int
assert sys.modules[PLUGIN_LOADER]._plugins is not None, "a later model looks them up"
print("ok")
"""
HANDED_OVER = """
import sys
from akoflow.cli.local_run import PLUGIN_LOADER, _pydantic_plugins_off
with _pydantic_plugins_off():
    stand_in = sys.modules[PLUGIN_LOADER]
    assert stand_in.PYDANTIC_ENTRY_POINT_GROUP == "pydantic"  # the real loader's
    real = sys.modules[PLUGIN_LOADER]
    assert real is not stand_in and real.get_plugins() == ()  # switched off still
assert sys.modules[PLUGIN_LOADER] is real
print("ok")
"""


def test_the_plugin_loader_is_stood_in_for_inside_the_switch_only() -> None:
    """Inside _pydantic_plugins_off, pydantic's plugin loader is a stand-in (no plugins, as
    the real one with the switch on, without its import of importlib.metadata) that hands
    over to the real one for anything else; a model built after the block looks for
    plugins as ever."""
    for script in (STAND_IN, HANDED_OVER):
        res = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            timeout=60,
            env=cli_env(),
        )
        assert (res.returncode, res.stdout) == (0, "ok\n"), res.stderr


def test_a_run_collects_garbage_once_its_modules_are_imported(tmp_path: Path) -> None:
    """The entry point imports what runs a workflow with the garbage collector off (the
    imports make ~100,000 objects that all live on); the run itself collects, what the
    imports made out of its sight. A run refused, a dry run and every other command (typer's)
    collect as ever."""
    wf = tmp_path / "one.yaml"
    wf.write_text(ONE)
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nspec:\n  activities:\n    - name: a\n      rn: x\n")
    res, found = recorded(tmp_path, tmp_path / "s1", "run", str(wf), "-q")
    assert res.returncode == 0, res.stderr
    enabled, frozen = found["gc"]
    assert enabled and frozen > 10_000
    # None while the command's modules were imported (~90 when their allocations set them
    # off; ~20, those of the entry point's, the first time the run collected no garbage)
    assert len(found["frozen_after"]) == 1 and found["frozen_after"][0] <= 3
    for args, code in (
        (["run", str(bad), "-q"], 2),
        (["run", str(wf), "-q", "--dry-run"], 0),
        (["status"], 0),
        (["run", str(wf), "-q", "-q"], 0),  # (typer's, then)
    ):
        res, found = recorded(tmp_path, tmp_path / "s2", *args)
        assert res.returncode == code, res.stderr
        assert found["gc"] == [True, 0], args


def test_status_of_a_run_reads_the_store_without_the_engine_or_the_loader(
    tmp_path: Path,
) -> None:
    wf = tmp_path / "one.yaml"
    wf.write_text(ONE)
    state = tmp_path / "state"
    assert loaded(tmp_path, state, "run", str(wf), "-q")[0].returncode == 0
    res, names = loaded(tmp_path, state, "status", "1")
    assert res.returncode == 0, res.stderr
    assert "succeeded" in res.stdout and "one #1" in res.stdout
    assert {"akoflow.store.repository", "rich.table"} <= names
    heavy = among(
        names,
        "akoflow.engine",
        "akoflow.runtimes",
        "akoflow.spec.loader",
        "akoflow.spec.model",
        "akoflow.provenance.recorder",
        "akoflow.cache",
        "yaml",
        "asyncio",
        *NEVER,
    )
    assert heavy == []


def test_version_loads_neither_typer_nor_pydantic_nor_rich_nor_the_store(tmp_path: Path) -> None:
    res, names = loaded(tmp_path, tmp_path / "state", "--version")
    assert (res.returncode, res.stdout, res.stderr) == (0, f"akoflow {akoflow.__version__}\n", "")
    heavy = among(
        names,
        "typer",
        "click",
        "akoflow.cli.commands",
        "pydantic",
        "rich",
        "asyncio",
        "sqlite3",
        "akoflow.service",
        "akoflow.store",
        *NEVER,
    )
    assert heavy == []
    assert not (tmp_path / "state").exists()


ENTRY = """
import sys
sys.argv[0] = "akoflow"
from akoflow.cli.{} import {}
{}()
"""


def test_a_command_parses_and_helps_as_with_every_command_built(tmp_path: Path) -> None:
    """main() builds only the command named (typer builds every command's parameters before
    running one): usage, help and errors are those of the whole app, typos included."""
    env = cli_env(AKOFLOW_HOME=str(tmp_path / "state"))
    for args in (
        ["run", "--help"],
        ["run"],
        ["run", "x.yaml", "--bogus"],
        ["status", "--limit", "many"],
        ["runtimes", "check", "--help"],
        ["runtimes", "bogus"],
        ["statu"],
        ["--help"],
        ["run", "--version"],
    ):
        ours, whole = (
            subprocess.run(
                [sys.executable, *how, *args], capture_output=True, text=True, env=env, timeout=60
            )
            for how in (
                ["-c", ENTRY.format("main", "main", "main")],
                ["-c", ENTRY.format("commands", "app", "app")],
            )
        )
        assert (ours.returncode, ours.stdout, ours.stderr) == (
            whole.returncode,
            whole.stdout,
            whole.stderr,
        ), args
        assert ours.stdout or ours.stderr, args


def typer_parameters(args: list[str]) -> dict[str, Any] | None:
    """What typer gives the `run` command for ``args`` (None when it refuses them)."""
    from typer.testing import CliRunner

    from akoflow.cli import commands

    seen: dict[str, Any] = {}

    def record(**parameters: Any) -> None:
        seen.update(parameters)

    functools.update_wrapper(record, inspect.unwrap(commands.run))  # run's own parameters
    only = typer.Typer(add_completion=False)
    only.callback()(lambda: None)  # a group, as the real app: `run` is a command in it
    only.command("run")(record)
    res = CliRunner().invoke(only, args)
    return seen if res.exit_code == 0 else None


def test_a_plain_run_command_line_is_read_as_typer_reads_it() -> None:
    """main() runs `run FILE [options]` without typer when plain_run reads it; what it reads
    is what typer would pass, and whatever it does not read goes to typer."""
    defaults = {
        name: p.default for name, p in inspect.signature(local_run.run_file).parameters.items()
    }
    read = [
        ["run", "wf.yaml"],
        ["run", "wf.yaml", "--quiet"],
        ["run", "-q", "wf.yaml", "--new", "--no-cache", "--json", "-v", "--dry-run"],
        ["run", "--state-dir", "s", "wf.yaml", "--data-dir=d d", "--verbose"],
        ["run", "--state-dir=s", "./-x.yaml"],
        ["run", "wf \udcff.yaml"],
    ]
    for args in read:
        plain = plain_run(args)
        assert plain is not None, args
        assert {**defaults, **plain} == typer_parameters(args), args
    left_to_typer = [
        ["run"],
        ["run", "--help"],
        ["run", "wf.yaml", "-q", "-q"],
        ["run", "wf.yaml", "-qv"],
        ["run", "wf.yaml", "--quiet=1"],
        ["run", "wf.yaml", "--bogus"],
        ["run", "a.yaml", "b.yaml"],
        ["run", "--state-dir", "-s", "wf.yaml"],
        ["run", "--state-dir=", "wf.yaml"],
        ["run", "wf.yaml", "--state-dir"],
        ["run", "--", "wf.yaml"],
        ["run", "-"],
        ["run", ""],
        ["--version", "run", "wf.yaml"],
        ["status", "wf.yaml"],
    ]
    for args in left_to_typer:
        assert plain_run(args) is None, args


def test_the_options_plain_run_reads_are_those_typer_declares_for_run() -> None:
    """One table names `run`'s options for both readers: each of its options is one of
    typer's `run`, by the same names, a flag or a path as plain_run reads it."""
    from typer.core import TyperGroup, TyperOption

    from akoflow.cli import commands

    group = typer.main.get_command(commands.app)
    assert isinstance(group, TyperGroup)
    declared = {p.name: p for p in group.commands["run"].params}
    file = {"file": Path("wf.yaml")}
    for table, is_flag in ((RUN_FLAGS, True), (RUN_PATHS, False)):
        for param, names in table.items():
            option = declared[param]
            assert isinstance(option, TyperOption), param
            assert (tuple(option.opts), option.is_flag) == (names, is_flag), param
            for name in names:
                value = ["x"] if not is_flag else []
                expected = Path("x") if not is_flag else True
                assert plain_run(["run", "wf.yaml", name, *value]) == {**file, param: expected}


def test_run_without_typer_says_and_exits_as_through_typer(tmp_path: Path) -> None:
    """The same command lines through main() (no typer) and through the typer app (`-q -q`
    is left to typer by main() and means `-q`)."""
    good = tmp_path / "one.yaml"
    good.write_text(ONE)
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nspec:\n  activities:\n    - name: a\n      rn: x\n")
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    for args, home in (
        (["run", str(good), "-q"], tmp_path / "s1"),
        (["run", str(bad), "-q"], tmp_path / "s2"),
        (["run", str(tmp_path / "missing.yaml"), "-q"], tmp_path / "s3"),
        (["run", str(good), "-q", "--data-dir", str(a_file)], tmp_path / "s4"),
        (["run", str(good), "-q"], a_file),  # the state dir is a file
        (["run", str(good), "-q", "--dry-run", "--json"], tmp_path / "s5"),
    ):
        said = []
        for how in (
            ["-c", ENTRY.format("main", "main", "main")],
            ["-c", ENTRY.format("commands", "app", "app")],
        ):
            res = subprocess.run(
                [sys.executable, *how, *args],
                capture_output=True,
                text=True,
                timeout=120,
                env=cli_env(AKOFLOW_HOME=str(home)),
            )
            said.append((res.returncode, res.stdout, res.stderr.replace(str(tmp_path), "T")))
            home = home.with_name(home.name + "-typer") if home != a_file else home
        assert said[0] == said[1], args
    assert said[0][0] == 0 and '"run": 1' in said[0][1]
