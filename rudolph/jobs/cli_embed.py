"""``rudolph embed``: the module :data:`rudolph.cli.commands.SUBCOMMAND_MODULES` names (see :mod:`rudolph.jobs.cli`)."""
from rudolph.jobs.cli import embed_arguments as add_arguments
from rudolph.jobs.commands import embed_run as run

__all__ = ['add_arguments', 'run']
