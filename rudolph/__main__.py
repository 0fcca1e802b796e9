"""``python -m rudolph ...``: the ``rudolph`` command line (see :mod:`rudolph.cli`)."""
import sys

from .cli import main

if __name__ == '__main__':
    sys.exit(main())
