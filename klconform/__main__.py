"""``python -m klconform``: see :mod:`klconform.cli`."""
import sys

from .cli import main

sys.exit(main(keep_signal_handlers=True))
