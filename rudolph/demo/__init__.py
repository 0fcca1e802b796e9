"""The embedded "tiny-shapes" RuDOLPH: a small model trained by this project, shipped in the package.

Everything works offline::

    from rudolph.demo import load_bundle
    model, tokenizer, vae, spc_tokens = load_bundle('tiny-shapes')
    api = ruDolphApi(model, tokenizer, vae, spc_tokens=spc_tokens)

or by name through the usual loaders: ``get_rudolph_model('tiny-shapes')``,
``get_tokenizer('tiny-shapes')``, ``get_vae('tiny-shapes')`` (``tiny-shapes`` is an
entry of :data:`rudolph.model.MODELS` like the published models). ``rudolph demo`` (or ``python -m rudolph.demo``) runs every task;
``python -m rudolph.demo.train`` rebuilds the three weight files from scratch.
"""
from typing import Any, Dict, NamedTuple

from rudolph.model.configs import (
    MODELS,
    TINY_SHAPES,
    TINY_SHAPES_DIR,
    TINY_SHAPES_PARAMS,
    TINY_SHAPES_SPC_TOKENS,
    TINY_SHAPES_T2I_SAMPLING,
    TINY_SHAPES_VQGAN_CONFIG,
)

__all__ = ['NAME', 'WEIGHTS_DIR', 'TOKENIZER_PATH', 'VQGAN_PATH', 'RUDOLPH_PATH', 'VQGAN_CONFIG', 'MODEL_PARAMS',
           'PLAIN_TEXT_VOCAB', 'TINY_SPC_TOKENS', 'T2I_SAMPLING', 'Bundle', 'load_bundle']

NAME = TINY_SHAPES
WEIGHTS_DIR = TINY_SHAPES_DIR
TOKENIZER_PATH = MODELS[NAME]['tokenizer_path']
VQGAN_PATH = MODELS[NAME]['vae_path']
RUDOLPH_PATH = MODELS[NAME]['local_path']
VQGAN_CONFIG = TINY_SHAPES_VQGAN_CONFIG
MODEL_PARAMS = TINY_SHAPES_PARAMS
TINY_SPC_TOKENS = TINY_SHAPES_SPC_TOKENS
#: plain BPE ids are [0, PLAIN_TEXT_VOCAB) (the tokenizer uses fewer); task tokens follow.
PLAIN_TEXT_VOCAB = min(TINY_SPC_TOKENS.values())
L_TEXT = MODEL_PARAMS['l_text_seq_length']
R_TEXT = MODEL_PARAMS['r_text_seq_length']
T2I_SAMPLING = TINY_SHAPES_T2I_SAMPLING


class Bundle(NamedTuple):
    model: Any
    tokenizer: Any
    vae: Any
    spc_tokens: Dict[str, int]


def load_bundle(name: str = NAME, device: str = 'cpu', dtype=None, quantize=None) -> Bundle:
    """``(model, tokenizer, vae, spc_tokens)`` of the embedded model, from the package files only
    (:meth:`rudolph.pretrained.components.Components.from_pretrained` as a 4-tuple).

    ``dtype`` / ``quantize``: the model's precision (see ``get_rudolph_model``; default float32)."""
    from rudolph.errors import ConfigError
    from rudolph.pretrained.components import Components

    if name != NAME:
        raise ConfigError(f'unknown bundle {name!r}; expected {NAME!r}')
    parts = Components.from_pretrained(NAME, device=device, dtype=dtype, quantize=quantize)
    return Bundle(parts.model, parts.tokenizer, parts.vae, dict(parts.spc_tokens))


