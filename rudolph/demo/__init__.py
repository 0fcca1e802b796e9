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
from rudolph._lazy import lazy_exports
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

# the loader imports torch: on first use, so that `rudolph demo --help` does not
__getattr__ = lazy_exports(__name__, globals(), {'Bundle': ('.bundle', 'Bundle'), 'load_bundle': ('.bundle', 'load_bundle')})
