"""Preallocated key/value cache: one static-shape buffer for all layers, written in place."""
from typing import Optional, Tuple

import torch

__all__ = ['KVCache']


class KVCache:
    """Keys and values of every layer for ``batch_size`` sequences of up to ``max_length`` tokens.

    Layout ``[layers, batch, heads, max_length, head_dim]``: a layer's keys for the first ``t``
    positions are a cheap strided view, and a decode step writes one column in place
    instead of growing tensors with ``torch.cat``.
    """

    def __init__(self, num_layers: int, batch_size: int, num_heads: int, max_length: int, head_dim: int,
                 device: torch.device, dtype: torch.dtype):
        shape = (num_layers, batch_size, num_heads, max_length, head_dim)
        # Not zeroed: the eager forward reads only the positions it wrote (filling a bs=32 350M cache
        # with zeros took longer than a decode step); the static step zeroes the rest once.
        self.k = torch.empty(shape, device=device, dtype=dtype)
        self.v = torch.empty(shape, device=device, dtype=dtype)
        self.length = 0
        self._unwritten_zeroed = False

    @property
    def batch_size(self) -> int:
        return self.k.shape[1]

    @property
    def max_length(self) -> int:
        return self.k.shape[3]

    def update(self, layer: int, input_pos: torch.Tensor, k: torch.Tensor,
               v: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Write ``k, v`` (``[b, heads, n, d]``) of ``layer`` at positions ``input_pos`` and return its buffers.

        ``input_pos`` is a LongTensor of the ``n`` absolute positions (``[n]``, or 0-d for one
        token). The whole ``[b, heads, max_length, d]`` buffers come back: the caller reads
        as many positions as its attention mask covers. :attr:`length` is not changed here;
        the model sets it once a forward is complete.
        """
        index = input_pos.reshape(-1)
        self.k[layer].index_copy_(2, index, k)
        self.v[layer].index_copy_(2, index, v)
        return self.k[layer], self.v[layer]

    def zero_unwritten(self) -> None:
        """Zero every position after :attr:`length` once, for a step that reads the whole buffer (masked
        slots must hold finite values: a masked NaN still turns the attention's weighted sum into NaN)."""
        if not self._unwritten_zeroed:
            self.k[:, :, :, self.length:].zero_()
            self.v[:, :, :, self.length:].zero_()
            self._unwritten_zeroed = True

    def expand_from(self, prefix: 'KVCache', length: Optional[int] = None) -> 'KVCache':
        """Broadcast a batch-1 prefix cache into every row of this cache (shared-prefix reuse)."""
        length = prefix.length if length is None else length
        if prefix.batch_size != 1 and prefix.batch_size != self.batch_size:
            raise ValueError(f'cannot broadcast a prefix cache of batch {prefix.batch_size} '
                             f'into a cache of batch {self.batch_size}')
        self.k[:, :, :, :length] = prefix.k[:, :, :, :length]
        self.v[:, :, :, :length] = prefix.v[:, :, :, :length]
        self.length = length
        return self

    def truncate(self, length: int) -> 'KVCache':
        """Forget positions ``length..``: the next forward continues a shared prefix differently."""
        if not 0 <= length <= self.length:
            raise ValueError(f'can only truncate to 0..{self.length} cached positions, got {length}')
        self.length = length
        return self

    def clone(self) -> 'KVCache':
        """An independent copy (e.g. to keep a prefix while continuing several branches at once)."""
        out = KVCache.__new__(KVCache)
        out.k, out.v, out.length = self.k.clone(), self.v.clone(), self.length
        out._unwritten_zeroed = self._unwritten_zeroed
        return out

    def __repr__(self) -> str:
        layers, b, heads, max_length, d = self.k.shape
        return (f'KVCache(layers={layers}, batch={b}, heads={heads}, length={self.length}/{max_length}, '
                f'head_dim={d}, dtype={self.k.dtype}, device={self.k.device})')
