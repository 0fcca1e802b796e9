"""``rudolph embed``: the module :data:`rudolph.cli.SUBCOMMAND_MODULES` names (see :mod:`rudolph.jobs.cli`)."""
from .cli import embed_arguments as add_arguments, embed_run as run

__all__ = ['add_arguments', 'run']
