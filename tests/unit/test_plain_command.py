"""Which scripts are one plain command (started without bash), and the SHLVL bash passes on."""

from __future__ import annotations

import pytest

from akoflow.runtimes.local_spawner import _shell_level
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
        ("999", 1),
        ("abc", 1),
        ("4_0", 1),
        ("\u0663", 1),
    ],
)
def test_shell_level_as_bash_sets_it(inherited: str, level: int) -> None:
    assert _shell_level(inherited) == level
