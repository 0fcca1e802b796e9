"""The original ``rudolph.model.utils``: small helpers and ``get_attention_mask`` (kept for old code).

``get_attention_mask`` takes either released form:

- ``get_attention_mask(bs, l_text_tokens, image_tokens_per_dim, r_text_tokens, device)`` (0.0.1rc10):
  the causal ``[bs, 1, S, S]`` float mask;
- ``get_attention_mask(masks, bs, l_text_tokens, image_tokens_per_dim, r_text_tokens, device)``
  (earlier releases): the same, with the rows from the first zero of each row of ``masks``
  (``[bs, R]``, 1 for the right-text tokens to keep) onwards blocked.

The two cannot be confused: the earlier form starts with a tensor, the later one with an int.
Earlier releases also had ``get_t2t_attention_mask`` (text-to-text: every row from the image on
blocked) and ``get_i2t_attention_mask`` (image-to-text: the left-text columns blocked as well).
"""
from typing import Any, Callable, Tuple, Union

import torch

from rudolph.errors import ConfigError
from rudolph.model.image_attention import get_causal_mask

__all__ = ['exists', 'is_empty', 'ensure_divisibility', 'divide', 'split_tensor_along_last_dim',
           'init_method_normal', 'get_attention_mask', 'get_t2t_attention_mask', 'get_i2t_attention_mask']


def exists(val: Any) -> bool:
    """``val is not None``."""
    return val is not None


def is_empty(t: torch.Tensor) -> bool:
    """Whether ``t`` has no elements."""
    return t.nelement() == 0


def ensure_divisibility(numerator: int, denominator: int) -> None:
    """Raise ``ConfigError`` unless ``numerator`` is a multiple of ``denominator``."""
    if denominator == 0 or numerator % denominator != 0:
        raise ConfigError(f'{numerator} is not divisible by {denominator}; expected a multiple of {denominator}')


def divide(numerator: int, denominator: int) -> int:
    """``numerator // denominator``, checked to divide exactly."""
    ensure_divisibility(numerator, denominator)
    return numerator // denominator


def split_tensor_along_last_dim(tensor: torch.Tensor, num_partitions: int,
                                contiguous_split_chunks: bool = False) -> Tuple[torch.Tensor, ...]:
    """``tensor`` split into ``num_partitions`` equal chunks along its last dimension (views unless
    ``contiguous_split_chunks``)."""
    chunks = torch.split(tensor, divide(tensor.shape[-1], num_partitions), dim=-1)
    return tuple(chunk.contiguous() for chunk in chunks) if contiguous_split_chunks else chunks


def init_method_normal(std: float = 0.02) -> Callable[[torch.Tensor], torch.Tensor]:
    """An init function filling a tensor from ``normal(0, std)`` in place."""
    def init_(tensor: torch.Tensor) -> torch.Tensor:
        return torch.nn.init.normal_(tensor, mean=0.0, std=std)
    return init_


def get_attention_mask(*args: Any, **kwargs: Any) -> torch.Tensor:
    """The ``[bs, 1, S, S]`` float attention mask of either released form (see the module docstring)."""
    masks = None
    if (args and torch.is_tensor(args[0])) or 'masks' in kwargs:
        masks, args = (args[0], args[1:]) if args and torch.is_tensor(args[0]) else (kwargs.pop('masks'), args)
    bs, l_text, n, r_text, device = _mask_arguments(args, kwargs)
    mask = _causal(bs, l_text, n, r_text, device)
    if masks is not None:
        _block_after_first_zero(mask, masks, l_text + n * n, bs)
    return mask


_NAMES = ('bs', 'l_text_tokens', 'image_tokens_per_dim', 'r_text_tokens', 'device')


def get_t2t_attention_mask(bs: int, l_text_tokens: int, image_tokens_per_dim: int, r_text_tokens: int,
                           device: Union[str, torch.device]) -> torch.Tensor:
    """The causal mask with every row from the image on blocked (text-to-text: only the left text attends)."""
    mask = get_attention_mask(bs, l_text_tokens, image_tokens_per_dim, r_text_tokens, device)
    mask[:, :, l_text_tokens:, :] = 0
    return mask


def get_i2t_attention_mask(masks: torch.Tensor, bs: int, l_text_tokens: int, image_tokens_per_dim: int,
                           r_text_tokens: int, device: Union[str, torch.device]) -> torch.Tensor:
    """The earlier-form :func:`get_attention_mask` with the left-text columns blocked too (image-to-text)."""
    mask = _causal(bs, l_text_tokens, image_tokens_per_dim, r_text_tokens, device)
    mask[:, :, :, :l_text_tokens] = 0
    _block_after_first_zero(mask, masks, l_text_tokens + image_tokens_per_dim ** 2, bs)
    return mask


def _mask_arguments(args: tuple, kwargs: dict) -> Tuple[int, int, int, int, Union[str, torch.device]]:
    if len(args) > len(_NAMES):
        raise TypeError(f'get_attention_mask takes {len(_NAMES)} arguments after the optional masks, got {len(args)}')
    values = dict(zip(_NAMES, args))
    twice = sorted(set(values) & set(kwargs))
    unknown = sorted(set(kwargs) - set(_NAMES))
    if twice or unknown:
        raise TypeError(f'get_attention_mask: {"repeated " + str(twice) if twice else "unexpected " + str(unknown)}')
    values.update(kwargs)
    missing = [name for name in _NAMES if name not in values]
    if missing:
        raise TypeError(f'get_attention_mask missing {missing}')
    bs = values['bs']
    if not isinstance(bs, int) or bs < 1:
        raise ConfigError(f'bs must be a positive int, got {bs!r}')
    return bs, values['l_text_tokens'], values['image_tokens_per_dim'], values['r_text_tokens'], values['device']


def _causal(bs: int, l_text: int, n: int, r_text: int, device: Union[str, torch.device]) -> torch.Tensor:
    """The causal mask of the layout as a writable float ``[bs, 1, S, S]`` on ``device``."""
    return get_causal_mask(l_text, n, r_text).to(device).expand(bs, 1, -1, -1).clone()


def _block_after_first_zero(mask: torch.Tensor, masks: torch.Tensor, right_start: int, bs: int) -> None:
    """Zero the rows of sequence ``i`` from ``right_start + index`` on, ``index`` the first zero of ``masks[i]``
    (nothing when it is at 0: the original's ``if index``)."""
    if masks.dim() != 2 or masks.shape[0] != bs:
        raise ConfigError(f'masks must be [bs={bs}, right text length], got {tuple(masks.shape)}')
    for i, index in enumerate(torch.argmin(masks, 1).tolist()):
        if index:
            mask[i, 0, right_start + index:, :] = 0
