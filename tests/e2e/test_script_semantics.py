"""A local activity's script behaves as under `bash script.sh`, and how it ends is recorded
truly: the cases a hostile review found (each once a false success, a hang or a surprise).

The runtime is the real local runtime, in-process; each script runs to its end and its
outcome and output are checked."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from akoflow.runtimes.base import Outcome
from tests.e2e.test_local_trust import end_of, job, run_to_end, started_runtime

CASES = {
    # kill $$ ends the script's own shell at once: nothing after it runs.
    "kill-self": ("echo before; kill $$; echo AFTER", False, 143, "before\n"),
    "die-helper": (
        'die(){ echo "fatal: $*" >&2; kill $$; }\nx=$(false || die no value)\necho END',
        False,
        143,
        "",
    ),
    # `return` outside a function is an error, as in a script run by bash: the common
    # "am I sourced?" check sees a script.
    "not-sourced": (
        'main(){ echo ran; false; }\nif ! (return 0 2>/dev/null); then main "$@"; exit $?; fi\n'
        "echo treated as sourced",
        False,
        1,
        "ran\n",
    ),
    # $0 is the script itself: it can run itself again.
    "rerun-self": (
        'if [ -z "${INNER-}" ]; then INNER=1 exec bash "$0"; fi\necho body; exit 3',
        False,
        3,
        "body\n",
    ),
    "read-self": ('wc -l < "$0"', True, 0, "1\n"),
    # SIGPIPE has its default action (the engine's interpreter ignores it): `head` ends `yes`.
    "sigpipe": ('yes | head -n1\necho "${PIPESTATUS[@]}"', True, 0, "y\n141 0\n"),
    # Exit codes a shell uses for real-time signals must not break the engine (they hung it).
    "exit-181": ("exit 181", False, 181, ""),
    # The prelude's own refusal code, when the script uses it: the script's exit, not a claim.
    "exit-213": ("echo ran\nexit 213", False, 213, "ran\n"),
    "own-exit-trap": ("trap 'echo mine' EXIT\necho hi\nexit 4", False, 4, "hi\nmine\n"),
    "exec": ("exec sh -c 'exit 6'", False, 6, ""),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_script_semantics_and_recorded_end(tmp_path: Path, case: str) -> None:
    run, succeeded, code, stdout = CASES[case]
    spec = job(tmp_path, case, run + "\n")

    async def scenario() -> Outcome:
        rt, events = await started_runtime()
        try:
            return await asyncio.wait_for(run_to_end(rt, events, spec), 60)
        finally:
            await rt.stop()

    outcome = asyncio.run(scenario())
    assert (outcome.succeeded, outcome.exit_code) == (succeeded, code), outcome
    assert (tmp_path / "attempts" / f"{case}.1.stdout").read_text() == stdout
    assert (tmp_path / "attempts" / f"{case}.1.exit").read_text() == f"exit {code}\n"


@pytest.mark.parametrize("number", [signal.SIGRTMIN + 5, signal.SIGRTMAX - 3, signal.SIGTERM])
def test_a_signal_of_any_number_ends_the_attempt_as_failed(tmp_path: Path, number: int) -> None:
    spec = job(tmp_path, "sig", "sleep 30\necho end > end.txt\n")

    async def scenario() -> Outcome:
        rt, events = await started_runtime()
        try:
            await rt.submit(spec)
            exit_file = tmp_path / "attempts" / "sig.1.exit"
            for _ in range(200):
                if exit_file.exists() and exit_file.read_text().startswith("pid "):
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.2)  # the script's bash is in its `sleep`

            os.killpg(int(exit_file.read_text().split()[1]), number)
            return await end_of(events, spec)
        finally:
            await rt.stop()

    outcome = asyncio.run(scenario())
    assert not outcome.succeeded
    assert not (tmp_path / "data" / "end.txt").exists()
