"""The ``klconform`` process: ``python -m klconform`` and the ``klconform`` console script
(both call :func:`entry`); the command line itself is :mod:`klconform.cli`.  What this
module adds is the process's signal edges, before main() starts and after it returns."""
import os
import signal
import sys


def _interrupted_while_starting(signum, frame):
    # Before the command line has installed its own handlers (importing it takes a
    # while): nothing has started or been written yet, so stop quietly with status 130.
    sys.stderr.write("\nklconform: interrupted\n")
    os._exit(130)


def entry() -> None:
    """Run the command line as a process; exits with its status (never returns)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _interrupted_while_starting)
    from .cli import EXIT_INTERRUPTED, main   # after the handlers: importing takes a while
    try:
        status = main(keep_signal_handlers=True)
    except SystemExit as exc:                   # argparse's --help and usage errors
        status = exc.code
    except KeyboardInterrupt:
        # a signal in main()'s last lines (after its own handling, before its status is
        # set): the run was stopping or stopped; never a traceback
        sys.stderr.write("\nklconform: interrupted\n")
        status = EXIT_INTERRUPTED
    # Interpreter finalization puts every Python-level handler back to SIG_DFL: a SIGINT/
    # SIGTERM in that last window would kill the process (status -2/-15, nothing printed)
    # after the run finished.  SIG_IGN is left alone by finalization: the status stands.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    # CPython (3.11, Python/pythonrun.c run_eval_code_obj) sets a process-wide "unhandled
    # KeyboardInterrupt" flag whenever a KeyboardInterrupt leaves code that exec() ran from
    # a *string* - dataclasses builds every __init__/__repr__ that way while klconform
    # imports - even when a caller then catches it; under `python -m` the flag makes the
    # interpreter kill itself with SIGINT at exit (status -2), whatever sys.exit said.
    # Each such exec() clears the flag first, so an empty one clears it.
    exec("")  # noqa: S102
    sys.exit(status)


if __name__ == "__main__":
    entry()
