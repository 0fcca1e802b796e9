"""The options of the job forms of the ``rudolph`` commands (their runs: :mod:`rudolph.jobs.commands`).

    rudolph caption photos/ --out captions.jsonl            # a folder (recursive), a glob, a list, a table
    rudolph vqa photos/ --question "что на картинке?" --out answers.csv
    rudolph classify photos/ --classes кошка собака --out labels.jsonl
    rudolph embed photos/ --out features.npy                 # + features.index.jsonl
    rudolph text2image --prompts prompts.txt -o pictures/    # + pictures/images.jsonl
    accelerate launch -m rudolph caption photos/ --out captions.jsonl   # several processes / GPUs

Nothing here imports torch at import time (``rudolph --help`` stays fast).
"""
import argparse
import glob
import os
from typing import Optional

from rudolph.cli.options import CliError, add_common

__all__ = ['add_job_options', 'is_job', 'embed_arguments', 'RECORDS_NAME']

#: the records file of ``text2image --prompts`` inside its ``-o`` folder
RECORDS_NAME = 'images.jsonl'
_LIST_ENDINGS = ('.txt', '.lst', '.jsonl', '.csv')


def _workers(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f'expected an integer >= 0, got {value!r}')
    return n


def add_job_options(p: argparse.ArgumentParser, out: bool = True, inputs: bool = True, tables: bool = True) -> None:
    """The options of every job: output, resume, loader workers, and (``tables``) the columns of a table input."""
    g = p.add_argument_group('jobs (a folder, a glob, a list of paths or a JSONL/CSV table)')
    if out:
        g.add_argument('--out', default=None, help='output file: .jsonl or .csv (one record a line, appended per '
                                                   'batch); makes the command a job')
    g.add_argument('--resume', action='store_true', help='continue an output: skip every input already in it')
    g.add_argument('--overwrite', action='store_true', help='replace an existing output')
    if inputs:
        g.add_argument('--workers', type=_workers, default=None,
                       help='processes decoding pictures (default: half the CPUs, at most 4; 0: none)')
    if inputs and tables:
        g.add_argument('--image-column', default='image', help="a table's picture column (default 'image')")
        g.add_argument('--id-column', default='id', help="a table's key column, if any (default 'id'; else the "
                                                         'picture path)')
        g.add_argument('--root', default=None, help="folder a table's picture paths are relative to "
                                                    "(default: the table's folder)")


def is_job(args: argparse.Namespace, source: Optional[str]) -> bool:
    """Whether a command runs as a job: ``--out`` given, or an input that is more than one picture."""
    many = source is not None and (os.path.isdir(source) or glob.has_magic(source)
                                   or source.lower().endswith(_LIST_ENDINGS))
    if many and getattr(args, 'out', None) is None:
        raise CliError(f'{source!r} holds several inputs; pass --out FILE.jsonl (or .csv) for the results')
    return getattr(args, 'out', None) is not None


# ----------------------------------------------------------------------------- embed
def embed_arguments(p: argparse.ArgumentParser) -> None:
    """``rudolph embed SOURCE --out features.npy``."""
    p.add_argument('source', help='pictures: a folder, a glob, a list of paths or a JSONL/CSV table; with --texts '
                                  'a text file (one text a line) or a table')
    p.add_argument('--out', required=True, help='features file (.npy, [n, hidden] float32); the keys go to '
                                                '<name>.index.jsonl')
    p.add_argument('--texts', action='store_true', help='embed texts (alone in the left text) instead of pictures')
    p.add_argument('--text-column', default='text', help="a table's text column with --texts (default 'text')")
    p.add_argument('--layer', type=int, default=-1, help='hidden states of this layer (default -1: the last)')
    p.add_argument('--pooling', choices=('mean', 'max', 'meanmax'), default='mean',
                   help='over the positions (default mean; meanmax: both, side by side)')
    add_job_options(p, out=False)
    add_common(p)


