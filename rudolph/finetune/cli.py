"""``rudolph finetune`` / ``python -m rudolph.finetune``: fine-tune a RuDOLPH checkpoint on a JSONL/CSV file.

The main ``rudolph`` CLI registers :func:`add_arguments` and :func:`run` as its ``finetune``
subcommand. The same command runs on many GPUs with ``accelerate launch -m rudolph.finetune ...``.
"""
import argparse
import importlib
import logging
from typing import List, Optional

from rudolph.checks import command_line_options
from rudolph.errors import RudolphError

__all__ = ['add_arguments', 'run', 'main']

logger = logging.getLogger(__name__)

FREEZE_GROUPS = ('emb', 'ln', 'attn', 'ff', 'other')


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``finetune`` options to ``parser``."""
    g = parser.add_argument_group('model and data')
    g.add_argument('--model', default='350M', help='RuDOLPH model: a key of rudolph.MODELS (default 350M, from the '
                                                   'hub; tiny-shapes works offline), a saved-model folder (e.g. an '
                                                   'earlier run\'s OUT/latest) or a hub repo id')
    g.add_argument('--checkpoint', default=None,
                   help='start from this checkpoint file (model.safetensors, pytorch_model.bin) or a folder holding '
                        'one, instead of the hub weights')
    g.add_argument('--data', required=True, help='training rows: .jsonl or .csv with image / left_text / right_text / task')
    g.add_argument('--eval-data', default=None, help='evaluation rows, same format as --data')
    g.add_argument('--image-root', default=None, help='folder that relative image paths are resolved against '
                                                      '(default: the folder of the data file)')
    g.add_argument('--task', default='auto', help="task of rows without a 'task' field: t2i, i2t, vqa, t2t, tqa, "
                                                  "or auto (inferred from the fields present; default)")
    g.add_argument('--tokenizer', default=None,
                   help="bpe.model path or a registered name (default: the model's own, else the published one)")
    g.add_argument('--vae', default=None,
                   help="VQGAN checkpoint path or a registered name (default: the model's own, else the published one)")
    g.add_argument('--vae-config', default=None,
                   help='JSON file (or JSON text) of VQGAN config overrides for a --vae of another architecture')
    g.add_argument('--no-task-tokens', action='store_true', help='encode texts as [2]+bpe+[3] (models without task tokens)')
    g.add_argument('--missing-images', choices=('skip', 'error'), default='skip',
                   help='rows whose image is missing or unreadable: skip them (counted warning) or stop')
    g.add_argument('--bad-rows', choices=('skip', 'error'), default='error',
                   help='rows lacking a field their task needs (empty text, nothing at all): skip or stop (default)')
    g.add_argument('--cache-dir', default=None, help='where VAE codes are cached (default: OUT/cache)')
    g.add_argument('--dropout', type=float, default=None, help='override the model dropout probabilities')

    g = parser.add_argument_group('training')
    g.add_argument('--out', required=True, help='output folder for checkpoints and metrics.jsonl')
    g.add_argument('--epochs', type=int, default=1, help='passes over --data (default 1; --max-steps stops earlier)')
    g.add_argument('--max-steps', type=int, default=None, help='stop after this many optimizer steps (overrides --epochs)')
    g.add_argument('--bs', type=int, default=4, help='global batch size per forward pass (split across processes)')
    g.add_argument('--grad-accum', type=int, default=1, help='forward passes per optimizer step')
    g.add_argument('--lr', type=float, default=2e-5, help='peak learning rate of the schedule (default 2e-5)')
    g.add_argument('--weight-decay', type=float, default=0.0, help='AdamW weight decay (default 0)')
    g.add_argument('--warmup', type=float, default=0.1, help='warm-up: fraction of the steps (<1) or steps (>=1)')
    g.add_argument('--schedule', choices=('one_cycle', 'cosine', 'linear', 'constant'), default='one_cycle',
                   help='learning-rate schedule after the warm-up (default one_cycle)')
    g.add_argument('--clip', type=float, default=1.0, help='gradient-norm clipping (0: off)')
    g.add_argument('--optimizer', choices=('adamw', 'adam8bit'), default='adamw',
                   help='adamw (default) or adam8bit (bitsandbytes, CUDA)')
    g.add_argument('--precision', choices=('fp32', 'bf16', 'fp16', 'auto'), default='fp32',
                   help='autocast precision (auto: bf16 where the device has native bf16, else fp32)')
    g.add_argument('--gradient-checkpointing', action='store_true', help='recompute layers in backward to save memory')
    g.add_argument('--freeze', nargs='*', choices=FREEZE_GROUPS, default=[], metavar='GROUP',
                   help=f'parameter groups to freeze: {", ".join(FREEZE_GROUPS)} (e.g. --freeze attn ff)')
    g.add_argument('--lt-loss-weight', type=float, default=None, help="override every task's left-text loss weight")
    g.add_argument('--img-loss-weight', type=float, default=None, help="override every task's image loss weight")
    g.add_argument('--rt-loss-weight', type=float, default=None, help="override every task's right-text loss weight")
    g.add_argument('--first-image-token', action='store_true',
                   help='also train the first image token (the published loss skips it; helps text-to-image)')
    g.add_argument('--eval-every', type=int, default=None, help='evaluate every N steps (and at the end)')
    g.add_argument('--save-every', type=int, default=None, help='checkpoint every N steps (the end is always saved)')
    g.add_argument('--keep-last', type=int, default=None, help='keep only the N newest step checkpoints')
    g.add_argument('--resume', default=None, help='checkpoint folder, or an output folder to resume from its latest')
    g.add_argument('--seed', type=int, default=0, help='seed of the data order, dropout and init (default 0)')
    g.add_argument('--cpu', action='store_true', help='train on CPU even if CUDA is available')
    g.add_argument('--quiet', action='store_true', help='no progress bars')
    return parser


def run(args: argparse.Namespace) -> int:
    """Run ``finetune`` with parsed ``args`` (:func:`rudolph.finetune.commands.run`, imported now: it loads torch)."""
    return importlib.import_module('rudolph.finetune.commands').run(args)


def main(argv: Optional[List[str]] = None) -> int:
    """Standalone entry point: ``python -m rudolph.finetune --data rows.jsonl --out out``."""

    parser = add_arguments(argparse.ArgumentParser(prog='rudolph finetune', description=__doc__.splitlines()[0]))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s: %(message)s')
    try:
        with command_line_options():  # messages name the options (--bad-rows skip), not the keywords
            return run(args)
    except KeyboardInterrupt:
        return 130
    except (RudolphError, OSError, ValueError, ImportError) as error:
        logger.error('%s', error)
        return 1
