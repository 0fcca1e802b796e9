"""The RuDOLPH models: hub location (or packaged files), constructor arguments, task tokens, sampling.

Plain data, filled at import and never changed at run time (the embedded ``tiny-shapes``
model is an entry like the others, pointing at files inside the package).
"""
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any, Dict, Iterator, Optional

from rudolph.checks import check_sampling_args
from rudolph.model.config import RudolphConfig

__all__ = ['VQA_TEMPLATE', 'SamplingConfig', 'DEFAULT_IMAGE_SAMPLING', 'DEFAULT_TEXT_SAMPLING', 'image_sampling_for',
           'text_sampling_for', 'MODELS', 'ModelSpec', 'DEFAULT_SPC_TOKENS', 'TINY_SHAPES', 'TINY_SHAPES_DIR', 'TINY_SHAPES_PARAMS',
           'TINY_SHAPES_SPC_TOKENS', 'TINY_SHAPES_VQGAN_CONFIG', 'TINY_SHAPES_T2I_SAMPLING']

#: task-token ids of the published task-token checkpoints (350M v2, 2.7B, 2.7B FBC2).
DEFAULT_SPC_TOKENS: Dict[str, int] = {
    '<LT_UNK>': 16384,
    '<RT_UNK>': 16385,
    '<LT_T2I>': 16386,
    '<LT_I2T>': 16387,
    '<LT_T2T>': 16388,
    '<RT_I2T>': 16389,
    # added by the question-answering fine-tunes (e.g. 2.7B FBC2)
    '<LT_TQA>': 16390,
    '<RT_TQA>': 16391,
}


def _frozen(mapping: Optional[Mapping]) -> Mapping:
    """A read-only copy (nested mappings too), so that a registry entry cannot be changed in place."""
    if mapping is None:
        return MappingProxyType({})
    return MappingProxyType({k: _frozen(v) if isinstance(v, Mapping) else v for k, v in mapping.items()})



#: how a question is put to a model with task tokens (the right text of ``<RT_TQA>``-style VQA)
VQA_TEMPLATE = 'вопрос: {question} ответ:'


@dataclass(frozen=True)
class SamplingConfig:
    """``top_k`` / ``top_p`` / ``temperature`` of one sampling, validated once here."""
    top_k: int
    top_p: float
    temperature: float = 1.0

    def __post_init__(self) -> None:
        check_sampling_args(self.top_k, self.top_p, self.temperature)

    def kwargs(self) -> Dict[str, Any]:
        return dict(top_k=self.top_k, top_p=self.top_p, temperature=self.temperature)


#: text sampling when none is given: per convention (``reference``) and task
DEFAULT_TEXT_SAMPLING = {
    (True, 'captions'): SamplingConfig(32, 0.6, 1.0), (True, 'texts'): SamplingConfig(32, 0.8, 1.0),
    (False, 'captions'): SamplingConfig(64, 0.8, 0.9), (False, 'texts'): SamplingConfig(64, 0.8, 0.9),
}


def text_sampling_for(reference: bool, task: str, top_k: Optional[int] = None, top_p: Optional[float] = None,
                      temperature: Optional[float] = None) -> SamplingConfig:
    """The given text sampling, :data:`DEFAULT_TEXT_SAMPLING` of the convention and ``task`` filling ``None``."""
    return _filled(DEFAULT_TEXT_SAMPLING[(reference, task)].kwargs(), top_k, top_p, temperature)


#: text-to-image sampling of a model whose registry entry recommends none (``ModelSpec.sampling['text2image']``)
DEFAULT_IMAGE_SAMPLING = SamplingConfig(top_k=768, top_p=0.99, temperature=1.0)


def image_sampling_for(recommended: Mapping[str, Any], top_k: Optional[int] = None, top_p: Optional[float] = None,
                       temperature: Optional[float] = None) -> SamplingConfig:
    """The given text-to-image sampling; the model's ``recommended``, else :data:`DEFAULT_IMAGE_SAMPLING`, for None."""
    return _filled({**DEFAULT_IMAGE_SAMPLING.kwargs(), **recommended}, top_k, top_p, temperature)


def _filled(default: Mapping[str, Any], top_k, top_p, temperature) -> SamplingConfig:
    given = dict(top_k=top_k, top_p=top_p, temperature=temperature)
    return SamplingConfig(**{k: default[k] if v is None else v for k, v in given.items()})


@dataclass(frozen=True)
class ModelSpec(Mapping):
    """One model of the registry: its config, where its weights are, what it brings along.

    Also a read-only mapping with the keys of the original ``MODELS`` dicts (``model_params``,
    ``repo_id``, ``filename``, ``description``...; keys whose value is ``None`` are absent), so
    ``MODELS[name]['model_params']`` keeps working.
    """
    description: str
    config: RudolphConfig
    repo_id: Optional[str] = None
    filename: str = 'pytorch_model.bin'
    hf_version: str = 'v3'
    local_path: Optional[str] = None  # a weights file inside the package (no download)
    tokenizer_path: Optional[str] = None  # None: ruDALL-E's hub tokenizer
    vae_path: Optional[str] = None  # None: ruDALL-E's hub VQGAN
    vae_config: Optional[Mapping] = None
    spc_tokens: Mapping = field(default_factory=lambda: MappingProxyType({}))  # task token -> id ({}: none)
    sampling: Mapping = field(default_factory=lambda: MappingProxyType({}))  # task -> recommended sampling kwargs

    def __post_init__(self) -> None:
        for name in ('vae_config', 'spc_tokens', 'sampling'):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _frozen(value))

    @property
    def model_params(self) -> Dict[str, Any]:
        """The constructor keyword arguments (a fresh dict)."""
        return self.config.to_params()

    def _keys(self) -> list:
        names = [f.name for f in fields(self) if getattr(self, f.name) is not None]
        return names + ['model_params']

    def __getitem__(self, key: str) -> Any:
        if key not in self._keys():
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys())

    def __len__(self) -> int:
        return len(self._keys())

    def __deepcopy__(self, memo: dict) -> 'ModelSpec':
        return self  # immutable: a copy would be equal and interchangeable

    def __copy__(self) -> 'ModelSpec':
        return self



_COMMON = dict(
    embedding_dropout_prob=0.1,
    attention_dropout_prob=0.1,
    output_dropout_prob=0.1,
    image_vocab_size=8192,
    cogview_sandwich_layernorm=True,
    cogview_pb_relax=True,
    mlp_activation='gelu_jit',
)


def _config(repo_id: str, description: str, spc_tokens: Dict[str, int], **kwargs: Any) -> ModelSpec:
    return ModelSpec(description=description, config=RudolphConfig(**{**_COMMON, **kwargs}), repo_id=repo_id,
                     spc_tokens=spc_tokens)


_350M = dict(num_layers=24, hidden_size=1024, num_attention_heads=16,
             l_text_seq_length=64, image_tokens_per_dim=16, r_text_seq_length=64,
             kernel_size=7, last_kernel_size=9, vocab_size=16384 + 64)
_2_7B = dict(num_layers=32, hidden_size=2560, num_attention_heads=32,
             l_text_seq_length=384, image_tokens_per_dim=24, r_text_seq_length=128,
             kernel_size=7, last_kernel_size=9, vocab_size=16384 + 384,
             text_special_tokens=1024, image_special_tokens=1024)

MODELS: Dict[str, ModelSpec] = {
    '350M': _config(
        'shonenkov-AI/RuDOLPH-350M-v2', 'RuDOLPH 350M v2 with task tokens, 128 px images', DEFAULT_SPC_TOKENS,
        **_350M, text_special_tokens=384, image_special_tokens=384),
    '1.3B': _config(
        'sberbank-ai/RUDOLPH-1.3B', 'RuDOLPH 1.3B, 256 px images', DEFAULT_SPC_TOKENS,
        num_layers=24, hidden_size=2048, num_attention_heads=16,
        l_text_seq_length=128, image_tokens_per_dim=32, r_text_seq_length=128,
        kernel_size=9, last_kernel_size=11, vocab_size=16384 + 128,
        text_special_tokens=2048, image_special_tokens=64),
    '2.7B': _config('sberbank-ai/RUDOLPH-2.7B', 'RuDOLPH 2.7B, 192 px images', DEFAULT_SPC_TOKENS, **_2_7B),
    '2.7B_fbc2': _config('sberbank-ai/RUDOLPH-2.7B-FBC2', 'RuDOLPH 2.7B fine-tuned on FBC2 tasks', DEFAULT_SPC_TOKENS, **_2_7B),
    '350M_v1': _config(
        'sberbank-ai/RuDOLPH-350M', 'RuDOLPH 350M, first release without task tokens', {},
        **_350M, text_special_tokens=0, image_special_tokens=0),
}

# ----------------------------------------------------------------------------- the embedded model
TINY_SHAPES = 'tiny-shapes'
#: the packaged 'tiny-shapes' folder, in the layout of ``save_pretrained`` (model.safetensors, config.json,
#: README.md, bpe.model, vqgan.safetensors; rebuilt by ``python -m rudolph.demo.train``).
TINY_SHAPES_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'demo', 'weights',
                               'tiny-shapes')

#: the tiny VQGAN: same classes as ruDALL-E's, 64 px -> 8x8 codes out of 2048.
TINY_SHAPES_VQGAN_CONFIG: Dict[str, Any] = dict(ch=64, ch_mult=(1, 1, 1, 1), num_res_blocks=0, attn_resolutions=(),
                                                z_channels=128, embed_dim=128, n_embed=2048, resolution=64)
_TINY_PLAIN_VOCAB = 256  # plain BPE ids are [0, 256) (the tokenizer uses fewer); task tokens follow
_TINY_TEXT = 12
TINY_SHAPES_SPC_TOKENS: Dict[str, int] = {
    name: _TINY_PLAIN_VOCAB + i for i, name in enumerate(
        ('<LT_UNK>', '<RT_UNK>', '<LT_T2I>', '<LT_I2T>', '<LT_T2T>', '<RT_I2T>', '<LT_TQA>', '<RT_TQA>'))}
TINY_SHAPES_PARAMS: Dict[str, Any] = dict(
    num_layers=4, hidden_size=192, num_attention_heads=4,
    l_text_seq_length=_TINY_TEXT, image_tokens_per_dim=8, r_text_seq_length=_TINY_TEXT,
    kernel_size=7, last_kernel_size=9, vocab_size=_TINY_PLAIN_VOCAB + _TINY_TEXT,
    text_special_tokens=16, image_special_tokens=0, image_vocab_size=TINY_SHAPES_VQGAN_CONFIG['n_embed'],
    embedding_dropout_prob=0.0, attention_dropout_prob=0.0, output_dropout_prob=0.0,
    cogview_sandwich_layernorm=True, cogview_pb_relax=True, mlp_activation='gelu_jit',
)
#: text-to-image sampling of the demo and the evaluation: the codes of a caption are (nearly)
#: one grid, so a temperature below 1 keeps the samples on it (bench/README.md has the figures).
TINY_SHAPES_T2I_SAMPLING: Dict[str, Any] = dict(top_k=64, top_p=0.95, temperature=0.7)

MODELS[TINY_SHAPES] = ModelSpec(
    description='tiny RuDOLPH trained on synthetic Russian shapes (embedded, offline)',
    config=RudolphConfig(**TINY_SHAPES_PARAMS), filename='model.safetensors',
    local_path=os.path.join(TINY_SHAPES_DIR, 'model.safetensors'),
    tokenizer_path=os.path.join(TINY_SHAPES_DIR, 'bpe.model'),
    vae_path=os.path.join(TINY_SHAPES_DIR, 'vqgan.safetensors'), vae_config=TINY_SHAPES_VQGAN_CONFIG,
    spc_tokens=TINY_SHAPES_SPC_TOKENS, sampling={'text2image': TINY_SHAPES_T2I_SAMPLING},
)
