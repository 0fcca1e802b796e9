"""``RudolphConfig``: the constructor arguments of a RuDOLPH model and the geometry they imply.

The fields are the original constructor's keyword arguments (``vocab_size`` is the plain
text vocabulary *without* the special tokens, as the published configs give it). The
properties are what the engine, the tasks and fine-tuning read (docs/SPEC.md sections 2 and 4):
``L, N, N2, R, S`` (sequence), ``V`` (text logits: plain ids, special tokens and the ``L``
left-pad ids), the vocabulary slices and the picture size.
"""
import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Union

from rudolph.errors import ConfigError

#: The weight formats of ``quantize=`` (kernels in :mod:`rudolph.model.quant`); torch-free for the CLI's --help.
QUANT_METHODS = ('int8', 'int8-dynamic', 'fp16')

__all__ = ['RudolphConfig', 'Layout', 'CONSTRUCTOR_ORDER', 'PAD_ID', 'UNK_ID', 'BOS_ID', 'EOS_ID']

#: the special text ids every RuDOLPH tokenizer shares (YTTM's order in the model file is unk pad bos eos)
PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3


class _Geometry:
    """What follows from ``L, N, R, V, image_vocab, image_vocab_total`` (shared by the config and a layout)."""

    @property
    def N2(self) -> int:  # noqa: N802 (the SPEC's names)
        return self.N * self.N

    @property
    def S(self) -> int:  # noqa: N802
        """Whole sequence: ``L + N2 + R``."""
        return self.L + self.N2 + self.R

    @property
    def text_sample_slice(self) -> slice:
        """Logits sampled for text: everything but the left-pad position ids ``V-L..V-1``."""
        return slice(0, self.V - self.L)

    @property
    def text_slice(self) -> slice:
        return slice(0, self.V)

    @property
    def image_slice(self) -> slice:
        """Plain image codes (image special tokens are never sampled)."""
        return slice(self.V, self.V + self.image_vocab)

    @property
    def image_full_slice(self) -> slice:
        return slice(self.V, self.V + self.image_vocab_total)


#: sizes that must be positive integers, and those that may be zero (a config from a file is checked
#: field by field: a zero or negative size would otherwise surface as a torch error while building)
_POSITIVE = ('num_layers', 'vocab_size', 'hidden_size', 'num_attention_heads', 'l_text_seq_length',
             'r_text_seq_length', 'kernel_size', 'last_kernel_size', 'image_tokens_per_dim', 'image_vocab_size')
_NON_NEGATIVE = ('text_special_tokens', 'image_special_tokens')
_PROBABILITIES = ('embedding_dropout_prob', 'attention_dropout_prob', 'output_dropout_prob')


def _check_sizes(config: 'RudolphConfig') -> None:
    """:class:`ConfigError` naming the first field that is not a usable size or probability."""
    for name in _POSITIVE + _NON_NEGATIVE:
        value = getattr(config, name)
        least = 1 if name in _POSITIVE else 0
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ConfigError(f'RuDOLPH config {name}={value!r}: expected an integer >= {least}')
    for name in _PROBABILITIES:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
            raise ConfigError(f'RuDOLPH config {name}={value!r}: expected a probability in [0, 1)')
    if config.hidden_size % config.num_attention_heads:
        raise ConfigError(f'RuDOLPH config hidden_size={config.hidden_size} is not a multiple of '
                          f'num_attention_heads={config.num_attention_heads}: each head gets hidden_size / heads')


@dataclass(frozen=True)
class RudolphConfig(_Geometry):
    num_layers: int
    vocab_size: int
    hidden_size: int
    num_attention_heads: int
    embedding_dropout_prob: float
    attention_dropout_prob: float
    output_dropout_prob: float
    l_text_seq_length: int = 64
    r_text_seq_length: int = 64
    kernel_size: int = 7
    last_kernel_size: int = 9
    image_tokens_per_dim: int = 16
    image_vocab_size: int = 8192
    text_special_tokens: int = 0
    image_special_tokens: int = 0
    cogview_sandwich_layernorm: bool = True
    cogview_pb_relax: bool = True
    is_bool_mask: bool = True  # accepted for the original constructor; masks are always boolean
    mlp_activation: str = 'gelu_jit'
    gradient_checkpointing: Optional[Union[int, bool]] = None

    def __post_init__(self) -> None:
        _check_sizes(self)
        if self.V <= self.l_text_seq_length:
            raise ConfigError(f'text vocabulary ({self.V}) must exceed l_text_seq_length ({self.l_text_seq_length}): '
                              'its last L ids are the left-text pad positions')

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> 'RudolphConfig':
        """A config from constructor keyword arguments (e.g. ``MODELS[name]['model_params']``)."""
        unknown = sorted(set(params) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ConfigError(f'unknown RuDOLPH config keys {unknown}; expected constructor arguments such as '
                              f'{[f.name for f in dataclasses.fields(cls)][:6]}')
        return cls(**params)

    def to_params(self) -> Dict[str, Any]:
        """The constructor keyword arguments (``RudolphConfig.from_params(c.to_params()) == c``)."""
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> 'RudolphConfig':
        """A copy with some fields changed (dropout, gradient checkpointing...)."""
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------ geometry
    @property
    def L(self) -> int:  # noqa: N802 (the SPEC's names)
        """Left-text length."""
        return self.l_text_seq_length

    @property
    def R(self) -> int:  # noqa: N802
        """Right-text length."""
        return self.r_text_seq_length

    @property
    def N(self) -> int:  # noqa: N802
        """Image tokens per side."""
        return self.image_tokens_per_dim

    @property
    def V(self) -> int:  # noqa: N802
        """Text logits: plain ids, the special tokens and the ``L`` left-pad ids."""
        return self.vocab_size + self.text_special_tokens

    @property
    def plain_text_vocab(self) -> int:
        """Plain BPE ids are ``[0, plain_text_vocab)``; task tokens follow them."""
        return self.vocab_size - self.l_text_seq_length

    @property
    def image_vocab(self) -> int:
        """Plain image codes are ``[0, image_vocab)``."""
        return self.image_vocab_size

    @property
    def image_vocab_total(self) -> int:
        """Image logits, including the image special tokens."""
        return self.image_vocab_size + self.image_special_tokens

    @property
    def image_size(self) -> int:
        """Picture side in pixels (the VQGAN downsamples by 8)."""
        return 8 * self.N


#: the original ``ruDolphModel(device, num_layers, vocab_size, ...)`` positional order.
CONSTRUCTOR_ORDER = ('device',) + tuple(f.name for f in dataclasses.fields(RudolphConfig))


@dataclass(frozen=True)
class Layout(_Geometry):
    """Sequence and vocabulary geometry of a model (SPEC sections 2 and 4)."""

    L: int  # left text length
    N: int  # image tokens per side
    R: int  # right text length
    V: int  # text vocabulary (incl. special tokens and the L left-pad ids)
    plain_text_vocab: int  # plain BPE ids are [0, plain_text_vocab)
    image_vocab: int  # plain image codes are [0, image_vocab)
    image_vocab_total: int  # incl. image special tokens

    @classmethod
    def from_model(cls, model) -> Union['Layout', RudolphConfig]:
        """The model's :class:`RudolphConfig` (it has every attribute of a layout), else one read from ``get_param``."""
        config = getattr(model, 'config', None)
        if isinstance(config, RudolphConfig):
            return config
        L = model.get_param('l_text_seq_length')
        V = model.get_param('vocab_size')
        text_special = model.get_param('text_special_tokens')
        image_special = model.get_param('image_special_tokens')
        image_total = getattr(model, 'image_vocab_size', None)
        if image_total is None:  # fall back to the output width
            image_total = model.to_logits[1].out_features - V
        return cls(L=L, N=model.get_param('image_tokens_per_dim'), R=model.get_param('r_text_seq_length'), V=V,
                   plain_text_vocab=V - L - text_special, image_vocab=image_total - image_special,
                   image_vocab_total=image_total)
