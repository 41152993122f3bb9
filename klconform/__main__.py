"""``python -m klconform``: see :mod:`klconform.cli`."""
import os
import signal
import sys


def _interrupted_while_starting(signum, frame):
    # Before the command line has installed its own handlers (importing it takes a
    # while): nothing has started or been written yet, so stop quietly with status 130.
    sys.stderr.write("\nklconform: interrupted\n")
    os._exit(130)


for _sig in (signal.SIGINT, signal.SIGTERM):
    signal.signal(_sig, _interrupted_while_starting)

from .cli import main  # noqa: E402 - after the handlers: importing takes a while

try:
    _status = main(keep_signal_handlers=True)
except KeyboardInterrupt:
    # a signal in main()'s last lines (after its own handling, before its status is set):
    # the run was stopping or stopped; never a traceback, never death by SIGINT (-2)
    sys.stderr.write("\nklconform: interrupted\n")
    _status = 130
# Interpreter finalization puts every Python-level handler back to SIG_DFL: a SIGINT/SIGTERM
# in that last window would kill the process (status -2/-15, nothing printed) after the run
# finished.  SIG_IGN is left alone by finalization, so the run's own status stands.
for _sig in (signal.SIGINT, signal.SIGTERM):
    signal.signal(_sig, signal.SIG_IGN)
sys.exit(_status)
