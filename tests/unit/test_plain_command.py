"""Which scripts are one plain command (started without bash), and the SHLVL bash passes on."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from akoflow.runtimes.local_spawner import _as_bash_passes_it, _program, _shell_level
from akoflow.runtimes.plain_command import plain_argv


@pytest.mark.parametrize(
    ("script", "argv"),
    [
        ("true", ["true"]),
        ("true\n", ["true"]),
        ("false", ["false"]),
        (
            "  python3 fit.py --steps=100 -o out/x.csv\t\n",
            ["python3", "fit.py", "--steps=100", "-o", "out/x.csv"],
        ),
        ("./bin/run a,b 1:2 +x @y 50%", ["./bin/run", "a,b", "1:2", "+x", "@y", "50%"]),
        ("/usr/bin/env", ["/usr/bin/env"]),
    ],
)
def test_plain_commands(script: str, argv: list[str]) -> None:
    assert plain_argv(script) == argv


@pytest.mark.parametrize(
    "script",
    [
        "",
        "\n",
        "true x",  # the builtin, with an argument: bash's own true
        "echo hi",  # builtins differ from the programs of the same name
        "printf x",
        "test -e f",
        "[ -e f ]",
        "cd d",
        "exec sleep 1",
        "time sleep 1",
        "if",
        "X=1 env",  # an assignment
        "%1",  # a job spec
        "sleep 1; true",
        "sleep 1 &",
        "a | b",
        "a > out",
        "a < in",
        "a && b",
        "echo $HOME",
        "ls *.txt",
        "ls ?",
        "ls [ab]",
        "ls {a,b}",
        "cat ~/x",
        "echo 'q'",
        'echo "q"',
        "echo a\\ b",
        "echo `id`",
        "a # comment",
        "# comment",
        "a\nb",
        "a\n\n",
        "a\r\n",
        "a!",
        "caf\u00e9",
        "a\u00a0b",
        "a\x00b",
        # setsid(1) leading its group (as a program started without bash does) forks and
        # exits 0 at once: under bash it runs its command to its end
        "setsid ./job.sh",
        "/usr/bin/setsid sleep 3",
    ],
)
def test_what_bash_runs(script: str) -> None:
    assert plain_argv(script) is None


@pytest.mark.parametrize(
    ("inherited", "level"),
    [
        ("", 1),
        ("1", 2),
        (" 4", 5),
        ("+3", 4),
        ("-5", 0),
        ("998", 999),
        ("999", None),  # bash resets it to 1 and says so on stderr: bash runs the command
        ("5000", None),
        ("abc", 1),
        ("\t3\n", 1),  # white space before the number, only blanks after (legal_number)
        ("\v3 \t", 4),
        ("-99999999999999999999", 1),  # out of intmax_t's range
        ("2147483647", 0),  # bash's int wraps
        ("4294967295", 0),
        ("9223372036854775807", 0),
        ("4_0", 1),
        ("\u0663", 1),
    ],
)
def test_shell_level_as_bash_sets_it(inherited: str, level: int | None) -> None:
    assert _shell_level(inherited) == level


def test_the_program_bash_would_find(tmp_path: Path) -> None:
    """bash expands a PATH entry that begins with ``~`` (the spawner leaves such a command to
    bash), takes any executable file but a directory, and runs its own true and false."""
    home, system = tmp_path / "home", tmp_path / "system"
    for directory in (home / "bin", system, tmp_path / "~" / "bin"):
        directory.mkdir(parents=True)
        for name in ("prog", "true", "false"):
            (directory / name).write_text("#!/bin/sh\n")
            (directory / name).chmod(0o755)
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "fifo").chmod(0o755)
    env = {"HOME": str(home), "PATH": f"~/bin:{system}"}
    assert _program("prog", env) is None
    env = {"PATH": f"{system}:~/bin"}
    assert _program("prog", env) == str(system / "prog")
    for name in ("true", "false"):
        found = _program(name, {"PATH": str(system)})
        assert found is not None and os.path.dirname(found) in ("/bin", "/usr/bin")
    fifo = tmp_path / "fifo"
    assert _program("fifo", {"PATH": f"{tmp_path}:/usr/bin"}) == str(fifo)


@pytest.mark.parametrize(
    "extra",
    [{"PS1": "$ "}, {"PS2": "> "}, {"IFS": ":"}, {"OPTIND": "5"}, {"LC_ALL": "xx_YY.UTF-8"}],
)
def test_an_environment_bash_changes_goes_to_bash(extra: dict[str, str]) -> None:
    env = {"PATH": "/usr/bin:/bin", "SHLVL": "1"}
    assert _as_bash_passes_it(env, "/usr/bin/env") is not None
    assert _as_bash_passes_it({**env, "LC_ALL": "C"}, "/usr/bin/env") is not None
    assert _as_bash_passes_it({**env, **extra}, "/usr/bin/env") is None
