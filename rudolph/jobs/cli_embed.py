"""``rudolph embed``: the command module :data:`rudolph.cli.SUBCOMMAND_MODULES` imports (see :mod:`rudolph.jobs.cli`)."""
from .cli import embed_arguments as add_arguments, embed_run as run

__all__ = ['add_arguments', 'run']
