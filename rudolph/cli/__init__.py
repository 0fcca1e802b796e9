"""The ``rudolph`` command line: :func:`main` (the ``rudolph`` console script and ``python -m rudolph``).

Importing it loads no torch: each command's module is imported only when that command runs.
"""
from rudolph.cli.commands import main

__all__ = ['main']
