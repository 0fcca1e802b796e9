"""Inverse 2-D discrete wavelet transform in plain PyTorch.

Reproduces ``pytorch_wavelets.DWTInverse(wave='db1', mode='zero')`` as used by
ruDALL-E's DWT decoder: the same buffer names and shapes (``g0_col``/``g1_col``
``[1, 1, L, 1]``, ``g0_row``/``g1_row`` ``[1, 1, 1, L]``), the same coefficient
layout (``yl [b, c, h, w]``, ``yh`` a list of ``[b, c, 3, h, w]`` holding the
LH, HL, HH bands = pywt's ``cH, cV, cD``) and the same synthesis filter bank
(transposed convolutions, columns first, then rows). Only ``'zero'`` mode is
implemented (for the 2-tap Haar filters pytorch_wavelets' other modes give the same result).
"""
import math
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ['HAAR_REC_LO', 'HAAR_REC_HI', 'synthesis_1d', 'DWTInverse']

# pywt.Wavelet('db1').rec_lo / .rec_hi
HAAR_REC_LO = (1 / math.sqrt(2), 1 / math.sqrt(2))
HAAR_REC_HI = (1 / math.sqrt(2), -1 / math.sqrt(2))


def synthesis_1d(lo: torch.Tensor, hi: torch.Tensor, g0: torch.Tensor, g1: torch.Tensor,
                 dim: int) -> torch.Tensor:
    """One-level 1-D synthesis along ``dim`` (2: height, 3: width) of ``[b, c, h, w]`` tensors, zero mode.

    ``g0``/``g1`` are the low/high reconstruction filters shaped ``[1, 1, L, 1]`` for
    ``dim=2`` or ``[1, 1, 1, L]`` for ``dim=3``; the output doubles that dimension.
    """
    if dim not in (2, 3):
        raise ValueError(f'dim must be 2 (height) or 3 (width), got {dim}')
    channels = lo.shape[1]
    length = g0.numel()
    stride = (2, 1) if dim == 2 else (1, 2)
    padding = (length - 2, 0) if dim == 2 else (0, length - 2)
    g0 = g0.to(lo.dtype).repeat(channels, 1, 1, 1)
    g1 = g1.to(lo.dtype).repeat(channels, 1, 1, 1)
    return (F.conv_transpose2d(lo, g0, stride=stride, padding=padding, groups=channels)
            + F.conv_transpose2d(hi, g1, stride=stride, padding=padding, groups=channels))


class DWTInverse(nn.Module):
    """Multi-level inverse 2-D DWT (pytorch_wavelets ``DWTInverse`` semantics, ``'zero'`` mode)."""

    def __init__(self, rec_lo: Sequence[float] = HAAR_REC_LO, rec_hi: Sequence[float] = HAAR_REC_HI,
                 mode: str = 'zero'):
        super().__init__()
        if mode != 'zero':
            raise ValueError(f"only mode='zero' is implemented, got mode={mode!r}")
        if len(rec_lo) != len(rec_hi) or len(rec_lo) < 2:
            raise ValueError(f'rec_lo and rec_hi must have the same length >= 2, got {len(rec_lo)} and {len(rec_hi)}')
        self.mode = mode
        dtype = torch.get_default_dtype()
        lo = torch.tensor(list(rec_lo), dtype=dtype)
        hi = torch.tensor(list(rec_hi), dtype=dtype)
        self.register_buffer('g0_col', lo.reshape(1, 1, -1, 1))
        self.register_buffer('g1_col', hi.reshape(1, 1, -1, 1))
        self.register_buffer('g0_row', lo.reshape(1, 1, 1, -1))
        self.register_buffer('g1_row', hi.reshape(1, 1, 1, -1))

    def forward(self, coeffs: Tuple[torch.Tensor, List[Optional[torch.Tensor]]]) -> torch.Tensor:
        """``(yl, [yh_1, ..., yh_J])`` (finest level first) -> reconstructed ``[b, c, H, W]``.

        A ``None`` band level is treated as zeros, as in pytorch_wavelets.
        """
        ll, highs = coeffs
        for high in reversed(highs):
            if high is None:
                high = ll.new_zeros(ll.shape[0], ll.shape[1], 3, ll.shape[-2], ll.shape[-1])
            if high.dim() != 5 or high.shape[2] != 3:
                raise ValueError(f'each yh level must be [b, c, 3, h, w], got {tuple(high.shape)}')
            # drop the row / column added when the forward transform padded an odd size
            if ll.shape[-2] > high.shape[-2]:
                ll = ll[..., :-1, :]
            if ll.shape[-1] > high.shape[-1]:
                ll = ll[..., :-1]
            lh, hl, hh = torch.unbind(high, dim=2)
            lo = synthesis_1d(ll, lh, self.g0_col, self.g1_col, dim=2)
            hi = synthesis_1d(hl, hh, self.g0_col, self.g1_col, dim=2)
            ll = synthesis_1d(lo, hi, self.g0_row, self.g1_row, dim=3)
        return ll
