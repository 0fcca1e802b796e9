"""``rudolph convert`` and ``rudolph push``: make a self-describing model folder, publish one on the hub.

    rudolph convert 350M out/rudolph-350m             # published checkpoint -> model.safetensors, config.json, card
    rudolph convert ft/pytorch_model.bin out/ft --model 350M
    rudolph push runs/caps/latest me/rudolph-captions  # a fine-tune (or any saved-model folder) to the hub

Both commands live in this one module; :data:`rudolph.cli.commands.SUBCOMMAND_MODULES` registers each by name,
and :func:`add_arguments` / :func:`run` pick the command from the parser's name.
"""
import argparse
import os

from rudolph.cli.options import json_option

__all__ = ['add_arguments', 'run']


def _convert_args(p: argparse.ArgumentParser) -> None:
    p.add_argument('source', metavar='NAME_OR_PATH',
                   help='a model name (a key of rudolph.MODELS: its hub checkpoint), or a .bin/.ckpt file or folder')
    p.add_argument('out', metavar='OUT_DIR', help='the folder to write: new or empty (a model folder written '
                                                  'earlier only with --overwrite)')
    p.add_argument('--overwrite', action='store_true', help='replace OUT_DIR when it holds an earlier model folder')
    p.add_argument('--model', default=None, help='architecture of a local file (default: the registered model whose '
                                                 'shapes it fits)')
    p.add_argument('--config', default=None, help='JSON file (or text) of constructor params of an unregistered model')
    p.add_argument('--cache-dir', default=None, help='Hugging Face cache folder (default: the standard one)')


def _push_args(p: argparse.ArgumentParser) -> None:
    p.add_argument('folder', metavar='DIR', help='a saved-model folder, a fine-tuning output folder or its latest')
    p.add_argument('repo_id', metavar='REPO_ID', help='owner/name on the hub (created if needed)')
    p.add_argument('--private', action='store_true', help='create the repository as private')
    p.add_argument('--token', default=None, help='hub token (default: HF_TOKEN or the one saved by `hf auth login`)')
    p.add_argument('--message', default=None, help='commit message')
    p.add_argument('--revision', default=None, help='branch to push to (default: main)')
    p.add_argument('--create-pr', action='store_true', help='open a pull request instead of committing')


def _command(parser_or_args) -> str:
    name = getattr(parser_or_args, 'command', None) or parser_or_args.prog.rsplit(' ', 1)[-1]
    if name not in ('convert', 'push'):
        raise ValueError(f'rudolph.cli.hub has the commands convert and push, not {name!r}')
    return name


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``rudolph convert`` or ``rudolph push`` (by the parser's name)."""
    (_convert_args if _command(parser) == 'convert' else _push_args)(parser)


def _run_convert(args: argparse.Namespace) -> int:
    from rudolph.pretrained.publish import convert

    params = json_option(args.config, '--config') if args.config else None
    folder = convert(args.source, args.out, model=args.model, config=params, cache_dir=args.cache_dir,
                     overwrite=args.overwrite)
    for name in sorted(os.listdir(folder)):
        print(f'{os.path.join(folder, name)}  {os.path.getsize(os.path.join(folder, name)) / 1e6:.1f} MB')
    return 0


def _run_push(args: argparse.Namespace) -> int:
    from rudolph.pretrained.publish import push_to_hub

    url = push_to_hub(args.folder, args.repo_id, token=args.token, private=args.private or None,
                      commit_message=args.message, revision=args.revision, create_pr=args.create_pr)
    print(url)
    return 0


def run(args: argparse.Namespace) -> int:
    """Run ``convert`` or ``push`` with parsed ``args``; returns the exit code."""
    return (_run_convert if _command(args) == 'convert' else _run_push)(args)
