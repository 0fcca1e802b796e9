"""``python -m rudolph ...``: the ``rudolph`` command line (see :mod:`rudolph.cli.commands`)."""
import sys

from rudolph.cli.commands import main

if __name__ == '__main__':
    sys.exit(main())
