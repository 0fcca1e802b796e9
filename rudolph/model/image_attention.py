"""Sparse attention masks of RuDOLPH.

The sequence is ``[left text (L) | image (N*N) | right text (R)]``. Every mask starts
causal; only image-to-image pairs are restricted further, by a row, column or
convolution pattern over the ``N x N`` token grid. All builders are vectorised
(one broadcasted comparison per mask), so even the 2.7B masks take milliseconds.
"""
from typing import Callable

import torch

__all__ = ['get_causal_mask', 'get_row_mask', 'get_col_mask', 'get_conv_mask', 'layer_mask_name', 'MASK_NAMES']

MASK_NAMES = ('row_mask', 'col_mask', 'conv_mask', 'last_conv_mask')


def _build(l_text_tokens: int, image_tokens_per_dim: int, r_text_tokens: int,
           image_rule: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
           is_bool_mask: bool) -> torch.Tensor:
    for name, value in (('l_text_tokens', l_text_tokens), ('image_tokens_per_dim', image_tokens_per_dim),
                        ('r_text_tokens', r_text_tokens)):
        if not isinstance(value, int) or value < 0:
            raise ValueError(f'{name} must be a non-negative int, got {value!r}')
    n2 = image_tokens_per_dim ** 2
    total = l_text_tokens + n2 + r_text_tokens
    # Explicitly on CPU: masks are data, even when the model is being built on 'meta'.
    mask = torch.ones(total, total, dtype=torch.bool, device='cpu').tril_()
    # Only the image block differs from causal: evaluate the rule on its N2 x N2 grid alone.
    idx = torch.arange(n2, dtype=torch.int32, device='cpu')
    block = mask[l_text_tokens:l_text_tokens + n2, l_text_tokens:l_text_tokens + n2]
    block &= image_rule(idx.unsqueeze(1), idx.unsqueeze(0))
    return mask if is_bool_mask else mask.float()


def get_causal_mask(l_text_tokens: int, image_tokens_per_dim: int, r_text_tokens: int,
                    is_bool_mask: bool = False) -> torch.Tensor:
    """The plain causal mask of the layout (query ``q`` sees key ``k`` iff ``k <= q``): the attention mask."""
    return _build(l_text_tokens, image_tokens_per_dim, r_text_tokens, lambda qi, ki: qi >= 0, is_bool_mask)


def get_row_mask(l_text_tokens: int, image_tokens_per_dim: int, r_text_tokens: int,
                 is_bool_mask: bool = False) -> torch.Tensor:
    """Image query ``qi`` sees image key ``ki`` iff ``qi - ki <= N`` (the last row and a bit)."""
    n = image_tokens_per_dim
    return _build(l_text_tokens, n, r_text_tokens, lambda qi, ki: qi - ki <= n, is_bool_mask)


def get_col_mask(l_text_tokens: int, image_tokens_per_dim: int, r_text_tokens: int,
                 is_bool_mask: bool = False) -> torch.Tensor:
    """Image query sees image keys of its own column: ``(qi - ki) % N == 0``."""
    n = image_tokens_per_dim
    return _build(l_text_tokens, n, r_text_tokens, lambda qi, ki: (qi - ki) % n == 0, is_bool_mask)


def get_conv_mask(l_text_tokens: int, image_tokens_per_dim: int, r_text_tokens: int,
                  kernel: int = 11, is_bool_mask: bool = False) -> torch.Tensor:
    """Image query sees image keys within a ``kernel x kernel`` window of grid cells (causally).

    ``kernel`` defaults to 11 as in the original (every model passes its own kernel size).
    """
    if not isinstance(kernel, int) or kernel < 1:
        raise ValueError(f'kernel must be a positive int, got {kernel!r}')
    n, half = image_tokens_per_dim, kernel // 2

    def window(qi: torch.Tensor, ki: torch.Tensor) -> torch.Tensor:
        # Outside the image the floor division is meaningless, but those pairs are not image pairs.
        return ((qi // n - ki // n).abs() <= half) & ((qi % n - ki % n).abs() <= half)

    return _build(l_text_tokens, n, r_text_tokens, window, is_bool_mask)


def layer_mask_name(layer_id: int, num_layers: int) -> str:
    """Which mask layer ``layer_id`` uses: col, last_conv (last layer), conv, or row."""
    if (layer_id - 1) % 4 == 0:
        return 'col_mask'
    if layer_id == num_layers - 1:
        return 'last_conv_mask'
    if (layer_id - 3) % 4 == 0:
        return 'conv_mask'
    return 'row_mask'
