"""``python -m rudolph.app ...``: the same command as ``rudolph app`` (see :mod:`rudolph.app.cli`)."""
import sys

from rudolph.app.cli import main

if __name__ == '__main__':
    sys.exit(main())
