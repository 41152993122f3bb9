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

sys.exit(main(keep_signal_handlers=True))
