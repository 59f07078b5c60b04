"""The ``akoflow`` command's entry point (``[project.scripts]``), and ``python -m akoflow``.

Nothing is imported here but what the interpreter has loaded already (and gc, built in): the
CLI is imported inside the ``try``, so a Ctrl-C while modules import (the first ~50 ms of
every command, before :func:`akoflow.cli.main.main` has handlers of its own) leaves with exit
code 130 and one line, as one later does, not with a KeyboardInterrupt traceback."""

import gc
import os
import sys

EXIT_INTERRUPTED = 130


def main() -> None:
    # No garbage collection while the command's modules are imported (they make objects that
    # live on, hardly any garbage): akoflow.cli.main turns it on again (see its _run_plain).
    gc.disable()
    from akoflow import resident

    if sys.argv[1:2] != ["resident"]:
        if resident.may_serve():
            try:
                from akoflow.resident.client import hand_over

                code = hand_over()  # a resident engine ran it (akoflow.resident), or None
            except KeyboardInterrupt:
                interrupted()
            if code is not None:
                os._exit(code)
        if os.environ.get(resident.DISABLE_VAR) == "auto":
            resident.auto_start()
    run_command()


def run_command() -> None:
    """Run the command of ``sys.argv`` in this process (a resident engine's copy starts here)."""
    gc.disable()
    try:
        from akoflow.cli.main import main as command

        command()  # leaves through os._exit
    except KeyboardInterrupt:
        interrupted()


def interrupted() -> None:
    """Leave with :data:`EXIT_INTERRUPTED` and one line on stderr: nothing ran yet."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C: no traceback from here
    try:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
        os.write(2, b"akoflow: interrupted\n")
    except (OSError, ValueError):  # a closed stream or pipe: nobody to tell
        pass
    finally:
        os._exit(EXIT_INTERRUPTED)


if __name__ == "__main__":
    main()
