"""The shared options of the ``rudolph`` commands: argument types, model/device/sampling options, loading.

Nothing here imports torch at import time (``rudolph --help`` stays fast).
"""
import argparse
import os
from typing import TYPE_CHECKING, Any, Callable, Dict, Mapping, Optional

from rudolph.errors import ConfigError, MissingDependencyError, RudolphError, WeightsNotFoundError
from rudolph.io.tables import json_object
from rudolph.model.config import QUANT_METHODS
from rudolph.model.configs import MODELS

if TYPE_CHECKING:  # the loader imports torch: only when a command runs
    from rudolph.pretrained.components import Components

__all__ = ['CliError', 'json_option', 'load', 'PART_OPTIONS', 'add_common', 'add_sampling',
           'positive_int', 'check_model_args', 'check_device_option', 'add_precision', 'precision_args',
           'DTYPE_CHOICES', 'text_sampling']


class CliError(RudolphError):
    """A problem the user can fix (missing weights, bad option): printed without a traceback."""


# ----------------------------------------------------------------------------- argument types
def _number(cast: Callable[[str], Any], valid: Callable[[Any], bool], expected: str) -> Callable[[str], Any]:
    """An argparse ``type=``: ``cast`` the text, then reject values outside ``valid`` naming ``expected``."""
    def parse(value: str):
        try:
            number = cast(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f'expected {expected}, got {value!r}') from None
        if not valid(number):
            raise argparse.ArgumentTypeError(f'expected {expected}, got {value!r}')
        return number
    return parse


positive_int = _number(int, lambda n: n >= 1, 'a positive integer')
_top_k = _number(int, lambda n: n >= 0, 'an integer >= 0 (0: no top-k filter)')
_top_p = _number(float, lambda x: 0.0 < x <= 1.0, 'a number in (0, 1] (1: no nucleus filter)')
_temperature = _number(float, lambda x: 0.0 < x < float('inf'), 'a finite number > 0')


def add_sampling(p: argparse.ArgumentParser, top_k: Optional[int], top_p: Optional[float],
                 temperature: Optional[float], unset: str = 'per model kind',
                 fallback: Optional[Mapping[str, Any]] = None) -> None:
    """``--top-k``, ``--top-p``, ``--temperature``; a ``None`` default is described as ``unset``, followed
    by that option's own value of ``fallback`` (e.g. ``the model's recommended, else 768``)."""
    def default(name: str, value) -> str:
        if value is not None:
            return str(value)
        return unset if fallback is None else f'{unset}, else {fallback[name]}'

    g = p.add_argument_group('sampling')
    g.add_argument('--top-k', type=_top_k, default=top_k,
                   help=f'keep the k most likely tokens (0: all; default {default("top_k", top_k)})')
    g.add_argument('--top-p', type=_top_p, default=top_p,
                   help=f'nucleus filter in (0, 1] (default {default("top_p", top_p)})')
    g.add_argument('--temperature', type=_temperature, default=temperature,
                   help=f'> 0 (default {default("temperature", temperature)})')


def text_sampling(args: argparse.Namespace, parts, task: str = 'captions'):
    """The text sampling of ``task`` (``'captions'``, ``'texts'``): the options given, the convention's defaults."""
    from rudolph.tasks.core import text_sampling_for

    return text_sampling_for(parts.reference, task, args.top_k, args.top_p, args.temperature)


# ----------------------------------------------------------------------------- shared options
def add_common(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group('model and weights')
    g.add_argument('--model', default='350M',
                   help='RuDOLPH model: 350M (default, from the hub), 1.3B, 2.7B, 2.7B_fbc2, 350M_v1, '
                        'tiny-shapes (embedded: works offline), ... '
                        '(a key of rudolph.MODELS), a saved-model folder (a fine-tune: runs/caps/latest) '
                        'or a hub repo id of one')
    g.add_argument('--checkpoint', default=None, help='local pytorch_model.bin (or its folder) instead of the hub')
    g.add_argument('--config', default=None,
                   help='JSON file (or JSON text) of model constructor params, for a --checkpoint whose '
                        'architecture is not a registered --model')
    g.add_argument('--tokenizer', default=None, help='local YTTM bpe.model (or a registered tokenizer name) '
                                                     'instead of the hub')
    g.add_argument('--vae', default=None, help='local VQGAN checkpoint (or a registered VAE name) instead of the hub')
    g.add_argument('--vae-config', default=None,
                   help='JSON file (or JSON text) of VQGAN config overrides for a --vae of another architecture')
    g = parser.add_argument_group('running')
    g.add_argument('--device', default=None, help='cpu, cuda, cuda:1, ... (default: cuda when available)')
    add_precision(g)
    g.add_argument('--seed', type=int, default=None, help='random seed (default: a fresh one, printed in --json)')
    g.add_argument('--bs', type=positive_int, default=None, help='batch size (default: per command)')
    g.add_argument('--json', action='store_true', help='print the result as JSON')
    g.add_argument('--quiet', action='store_true', help='no progress bars')


#: ``--dtype`` values (names accepted by :func:`rudolph.model.precision.resolve_precision`)
DTYPE_CHOICES = ('auto', 'fp32', 'float32', 'bf16', 'bfloat16', 'fp16', 'float16', 'half')


def add_precision(g, default: Optional[str] = 'auto') -> None:
    """``--dtype`` / ``--quantize`` (and the older ``--fp16`` / ``--bf16``, exclusive with ``--dtype``).

    ``default=None``: float32, or with ``--quantize`` as ``auto`` (``resolve_precision(None, ...)``).
    """
    precision = g.add_mutually_exclusive_group()
    shown = ('auto: bf16 on CPUs with native bf16, fp16 on CUDA, else fp32' if default == 'auto' else
             'fp32; with --quantize as auto: bf16 activations on CPUs with native bf16, fp32 for --quantize fp16 '
             'or int8-dynamic'
             if default is None else default)
    precision.add_argument('--dtype', choices=DTYPE_CHOICES, default=default,
                           help=f'weights and activations (default {shown})')
    precision.add_argument('--fp16', action='store_true', help='float16 weights (CUDA; on CPU the model stays float32)')
    precision.add_argument('--bf16', action='store_true', help='bfloat16 weights (CUDA or CPU)')
    g.add_argument('--quantize', choices=QUANT_METHODS, default=None,
                   help='weights of the transformer and the output head: int8 (weight-only kernels; bf16 activations '
                        'on CPU), int8-dynamic (int8 weights and per-row int8 activations, CPU: the fastest decode), '
                        'fp16 (fp16 weights, fp32 activations, CPU: near-lossless)')


def precision_args(args: argparse.Namespace) -> Dict[str, Any]:
    """``dtype``/``fp16``/``quantize`` keywords of ``get_rudolph_model`` from the precision options."""
    if getattr(args, 'fp16', False):
        return {'dtype': None, 'fp16': True, 'quantize': args.quantize}
    dtype = 'bf16' if getattr(args, 'bf16', False) else args.dtype
    return {'dtype': dtype, 'fp16': False, 'quantize': args.quantize}


def json_option(value: str, option: str) -> Dict[str, Any]:
    """A JSON object from a file path or from the option text itself."""

    text = value
    if os.path.isfile(value):
        with open(value, encoding='utf-8') as f:
            text = f.read()
    return json_object(text, f'{option} {value!r}', 'a JSON object or a file holding one')


#: the option that replaces each part of a model on the command line
PART_OPTIONS = {'model': '--checkpoint', 'tokenizer': '--tokenizer', 'vae': '--vae'}


def check_model_args(args: argparse.Namespace) -> Optional[Dict[str, Any]]:
    """The --config params (or ``None``), after the checks that need no file."""

    params = json_option(args.config, '--config') if args.config else None
    if params is not None and not args.checkpoint:
        raise CliError('--config describes the architecture of a local --checkpoint; pass --checkpoint too')
    if params is None and args.model not in MODELS and not _saved_model(args.model):
        raise CliError(f'unknown --model {args.model!r}; expected one of {sorted(MODELS)}, a saved-model folder '
                       '(save_pretrained, a fine-tuning run or its latest), a hub repo id (owner/name), '
                       'or --config params.json with a --checkpoint')
    return params


def _saved_model(text: str) -> bool:
    from rudolph.pretrained.folder import looks_like_repo_id

    return os.path.exists(text) or looks_like_repo_id(text)


def check_device_option(args: argparse.Namespace) -> str:
    """``--device`` validated before any file is read (``None``: cuda when available, else cpu)."""
    from rudolph.model.device import check_device

    try:
        return check_device(args.device)
    except ConfigError as error:
        raise CliError(f'--{error}') from None


def load(args: argparse.Namespace) -> 'Components':
    """Model, tokenizer and VAE from the common options (:meth:`rudolph.pretrained.components.Components.from_pretrained`);
    every missing file is reported at once, with the option that replaces it."""
    from rudolph.pretrained.components import Components, describe_missing

    params = check_model_args(args)
    device = check_device_option(args)
    vae_config = json_option(args.vae_config, '--vae-config') if args.vae_config else None
    try:
        c = Components.from_pretrained(args.model, device=device, checkpoint=args.checkpoint,
                                       tokenizer=args.tokenizer, vae=args.vae, vae_config=vae_config, config=params,
                                       **precision_args(args))
    except WeightsNotFoundError as error:
        raise CliError('\n'.join(describe_missing(error, PART_OPTIONS))) from None
    except (ConfigError, MissingDependencyError) as error:  # an unsupported --dtype/--quantize combination
        raise CliError(str(error)) from None
    return c
