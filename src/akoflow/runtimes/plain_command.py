"""Scripts that are one plain command: run without bash in between, as GNU make does.

A script such as ``python3 fit.py --steps=100`` asks bash only to look the command up on
``PATH`` and run it: no expansion, quoting, redirection, builtin or keyword can change what
it does. Starting the command directly saves bash's own start (about 0.6 ms of CPU per
attempt, the most of a short activity's cost). The spawner gives the program the environment
bash would (``PWD``, ``SHLVL``, ``_``, ``OLDPWD``; an environment bash would change otherwise
goes to bash), and leaves to bash a command that is not an executable file found the way bash
finds it, or one exec refuses (bash reports it as it always did: ``command not found``, exit
127..., or runs a text file as a script). What differs (docs/runtimes/local.md): the program
is the attempt's process, leader of its session (its own ``setsid()`` fails), and a stop
reaches it rather than a bash above it.

Anything else goes to bash: a second line, a comment, a quote, any character with a meaning
to the shell, an assignment, a builtin or keyword. ``true`` and ``false`` alone are the
exceptions: the programs of the same names do exactly what the builtins do with no argument.
"""

from __future__ import annotations

import re

# A word bash passes on unchanged: no quoting, expansion, globbing, redirection, separator,
# history or job-spec character. '=' only after the command's name (before it, it makes an
# assignment); '%' neither (a job spec where job control is on).
_NAME = r"[A-Za-z0-9_./:,+@-]+"
_ARGUMENT = r"[A-Za-z0-9_./:,+%@=-]+"
_PLAIN = re.compile(rf"[ \t]*({_NAME}(?:[ \t]+{_ARGUMENT})*)[ \t]*\n?")

# bash 5's builtins and reserved words (`compgen -b`, `compgen -k`): bash runs these itself,
# whatever PATH holds.
_SHELL_NAMES = frozenset(
    ". : [ alias bg bind break builtin caller cd command compgen complete compopt continue "
    "declare dirs disown echo enable eval exec exit export false fc fg getopts hash help "
    "history jobs kill let local logout mapfile popd printf pushd pwd read readarray "
    "readonly return set shift shopt source suspend test times trap true type typeset "
    "ulimit umask unalias unset wait "
    "if then else elif fi case esac for select while until do done in function time { } ! "
    "[[ ]] coproc".split()
)
_SAME_AS_PROGRAM = frozenset({"true", "false"})  # with no argument
# Programs that act otherwise when they lead their process group, as a program started without
# bash does (bash's child does not): setsid(1) then forks, exits 0 at once and leaves its
# command running in a session of its own (the attempt "succeeded" in an instant and its work
# was killed with its group, where under bash it ran to its end).
_GROUP_LEADER_SENSITIVE = frozenset({"setsid"})


def plain_argv(script: str) -> list[str] | None:
    """The command line of a script that is one plain command, else None (bash runs it)."""
    match = _PLAIN.fullmatch(script)
    if match is None:
        return None
    words = match.group(1).split()
    name = words[0]
    if name in _SHELL_NAMES and not (name in _SAME_AS_PROGRAM and len(words) == 1):
        return None
    if name.rsplit("/", 1)[-1] in _GROUP_LEADER_SENSITIVE:
        return None
    return words
