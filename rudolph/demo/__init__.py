"""The embedded "tiny-shapes" RuDOLPH: a small model trained by this project, shipped in the package.

Everything works offline::

    from rudolph.demo import load_bundle
    model, tokenizer, vae, spc_tokens = load_bundle('tiny-shapes')
    api = ruDolphApi(model, tokenizer, vae, spc_tokens=spc_tokens)

or by name through the usual loaders: ``get_rudolph_model('tiny-shapes')``,
``get_tokenizer('tiny-shapes')``, ``get_vae('tiny-shapes')`` (importing :mod:`rudolph`
registers the names). ``rudolph demo`` (or ``python -m rudolph.demo``) runs every task;
``python -m rudolph.demo.train`` rebuilds the three weight files from scratch.
"""
import os
from typing import Any, Dict, NamedTuple

__all__ = ['NAME', 'WEIGHTS_DIR', 'TOKENIZER_PATH', 'VQGAN_PATH', 'RUDOLPH_PATH', 'VQGAN_CONFIG', 'MODEL_PARAMS',
           'PLAIN_TEXT_VOCAB', 'TINY_SPC_TOKENS', 'T2I_SAMPLING', 'Bundle', 'load_bundle', 'register']

NAME = 'tiny-shapes'
WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'weights')
TOKENIZER_PATH = os.path.join(WEIGHTS_DIR, 'tiny-shapes-bpe.model')
VQGAN_PATH = os.path.join(WEIGHTS_DIR, 'tiny-shapes-vqgan.ckpt')
RUDOLPH_PATH = os.path.join(WEIGHTS_DIR, 'tiny-shapes-rudolph.bin')

#: the tiny VQGAN: same classes as ruDALL-E's, 64 px -> 8x8 codes out of 2048.
VQGAN_CONFIG: Dict[str, Any] = dict(ch=64, ch_mult=(1, 1, 1, 1), num_res_blocks=0, attn_resolutions=(),
                                    z_channels=128, embed_dim=128, n_embed=2048, resolution=64)

#: plain BPE ids are [0, PLAIN_TEXT_VOCAB) (the tokenizer uses fewer); task tokens follow.
PLAIN_TEXT_VOCAB = 256
L_TEXT = R_TEXT = 12
TINY_SPC_TOKENS: Dict[str, int] = {
    '<LT_UNK>': PLAIN_TEXT_VOCAB + 0,
    '<RT_UNK>': PLAIN_TEXT_VOCAB + 1,
    '<LT_T2I>': PLAIN_TEXT_VOCAB + 2,
    '<LT_I2T>': PLAIN_TEXT_VOCAB + 3,
    '<LT_T2T>': PLAIN_TEXT_VOCAB + 4,
    '<RT_I2T>': PLAIN_TEXT_VOCAB + 5,
    '<LT_TQA>': PLAIN_TEXT_VOCAB + 6,
    '<RT_TQA>': PLAIN_TEXT_VOCAB + 7,
}

MODEL_PARAMS: Dict[str, Any] = dict(
    num_layers=4, hidden_size=192, num_attention_heads=4,
    l_text_seq_length=L_TEXT, image_tokens_per_dim=8, r_text_seq_length=R_TEXT,
    kernel_size=7, last_kernel_size=9, vocab_size=PLAIN_TEXT_VOCAB + L_TEXT,
    text_special_tokens=16, image_special_tokens=0, image_vocab_size=VQGAN_CONFIG['n_embed'],
    embedding_dropout_prob=0.0, attention_dropout_prob=0.0, output_dropout_prob=0.0,
    cogview_sandwich_layernorm=True, cogview_pb_relax=True, mlp_activation='gelu_jit',
)


#: text-to-image sampling settings of the demo and the evaluation: the codes of a caption are
#: (nearly) one grid, so a temperature below 1 keeps the samples on it (shipped weights, 200
#: held-out prompts: 88.5% right at 0.7, 83.0% at 1.0).
T2I_SAMPLING: Dict[str, Any] = dict(top_k=64, top_p=0.95, temperature=0.7)


class Bundle(NamedTuple):
    model: Any
    tokenizer: Any
    vae: Any
    spc_tokens: Dict[str, int]


def register() -> None:
    """Make ``'tiny-shapes'`` known to ``get_rudolph_model``, ``get_tokenizer`` and ``get_vae``."""
    from ..model.configs import MODELS
    from ..tokenizer import NAMED_TOKENIZERS
    from ..vae import NAMED_VAES

    MODELS.setdefault(NAME, dict(
        hf_version='v3', description='tiny RuDOLPH trained on synthetic Russian shapes (embedded, offline)',
        model_params=dict(MODEL_PARAMS), repo_id=None, filename=os.path.basename(RUDOLPH_PATH),
        local_path=RUDOLPH_PATH, spc_tokens=dict(TINY_SPC_TOKENS)))
    NAMED_TOKENIZERS.setdefault(NAME, TOKENIZER_PATH)
    NAMED_VAES.setdefault(NAME, (VQGAN_PATH, dict(VQGAN_CONFIG)))


def load_bundle(name: str = NAME, device: str = 'cpu') -> Bundle:
    """``(model, tokenizer, vae, spc_tokens)`` of the embedded model, from the package files only."""
    if name != NAME:
        raise ValueError(f'unknown bundle {name!r}; expected {NAME!r}')
    from ..model import get_rudolph_model
    from ..tokenizer import get_tokenizer
    from ..vae import get_vae

    register()
    model = get_rudolph_model(NAME, device=device)
    return Bundle(model, get_tokenizer(NAME), get_vae(name=NAME).to(device), dict(TINY_SPC_TOKENS))


register()


def _register_command() -> None:
    from .. import cli
    from .cli import add_arguments, run
    cli.register('demo', 'run every task with the embedded tiny-shapes model (offline)', add_arguments, run)


_register_command()
