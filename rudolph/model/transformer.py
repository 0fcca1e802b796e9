"""The sparse transformer stack: sandwich-LayerNorm blocks with per-layer sparse masks.

Attention runs through ``F.scaled_dot_product_attention`` with boolean masks. This is
exactly the reference computation: blocked scores there become ``-10000`` (softmax weight
0 in any float type) and CogView's pb-relax subtracts a per-head constant, which softmax
ignores. The one observable difference, a query row with *no* allowed key (only possible
through a user ``attention_mask``), is reproduced explicitly: the reference averages all
values uniformly there, while a boolean mask would give NaN.
"""
from typing import Dict, Hashable, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from rudolph.model.cache import KVCache
from rudolph.model.image_attention import MASK_NAMES, get_col_mask, get_conv_mask, get_row_mask, layer_mask_name
from rudolph.model.quant import SMALL_BATCH_ROWS, packed_bf16_linear, pick_kernel, slice_key

__all__ = ['SparseTransformer', 'SparseTransformerLayer', 'DalleSelfAttention', 'DalleMLP', 'Linear', 'linear',
           'SMALL_BATCH_ROWS', 'gelu',
           'gelu_jit', 'Layer']

MAX_FP16 = 65504.0


def linear(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
           packs: Optional[nn.Module] = None, slot: Hashable = None) -> torch.Tensor:
    """``F.linear`` through the kernel :func:`rudolph.model.quant.pick_kernel` picks for float weights.

    * bf16 on CPU, inference: oneDNN's prepacked weight, kept on ``packs`` (a module; packed
      once per ``slot``, e.g. a vocabulary slice). Without ``packs``, as fp32 below.
    * fp32 on CPU, inference, up to ``SMALL_BATCH_ROWS`` rows: ``(W @ x^T)^T``. MKL's GEMM is slow
      when the activation side has few rows; with the weight as the many-rows operand the same
      product runs faster (bench/decode.py). Same math; only the summation order, hence the last
      float bits, may differ.
    """
    rows = x.numel() // x.shape[-1] if x.numel() else 0
    kernel = pick_kernel('float', rows, x)
    if kernel == 'onednn-bf16' and packs is not None:
        out = packed_bf16_linear(packs, x.reshape(rows, x.shape[-1]), weight, bias, slot)
        return out.reshape(*x.shape[:-1], weight.shape[0])
    if kernel != 'dense' and rows <= SMALL_BATCH_ROWS:
        if bias is None:
            out = torch.mm(weight, x.reshape(rows, x.shape[-1]).t()).t()
        else:
            out = torch.addmm(bias.unsqueeze(1), weight, x.reshape(rows, x.shape[-1]).t()).t()
        return out.reshape(*x.shape[:-1], weight.shape[0])
    return F.linear(x, weight, bias)


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters and state-dict names) computed by :func:`linear`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias, self)

    def sliced(self, x: torch.Tensor, rows: Optional[slice]) -> torch.Tensor:
        """The outputs of the channels in ``rows`` (a slice; ``None``: all), e.g. one vocabulary part."""
        if rows is None:
            return self(x)
        bias = None if self.bias is None else self.bias[rows]
        return linear(x, self.weight[rows], bias, self, slice_key(rows))


def gelu(x: torch.Tensor) -> torch.Tensor:
    """OpenAI's tanh-approximated GELU, as the checkpoints were trained with."""
    return F.gelu(x, approximate='tanh')


#: the original's name of the same GELU (TorchScript-compiled there; ``torch.compile`` covers it here)
gelu_jit = gelu


class Layer(nn.Module):
    """The original's gradient-checkpointing helper: ``forward(x) = f(module(x, *args, **kwargs))``.

    Kept for code that imports it; this package checkpoints with ``torch.utils.checkpoint`` directly.
    """

    def __init__(self, x: nn.Module, f, *args, **kwargs):
        super().__init__()
        self.x, self.f, self.args, self.kwargs = x, f, args, kwargs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.f(self.x(x, *self.args, **self.kwargs))


class DalleSelfAttention(nn.Module):
    def __init__(self, hidden_size: int, num_attention_heads: int, attention_dropout_prob: float,
                 output_dropout_prob: float, cogview_pb_relax: bool = True):
        super().__init__()
        if hidden_size % num_attention_heads:
            raise ValueError(f'hidden_size={hidden_size} is not divisible by num_attention_heads={num_attention_heads}')
        self.num_heads = num_attention_heads
        self.head_dim = hidden_size // num_attention_heads
        # pb-relax is a softmax-invariant shift; the fused kernels are stable without it.
        self.cogview_pb_relax = cogview_pb_relax
        self.query_key_value = Linear(hidden_size, 3 * hidden_size)
        self.attention_dropout = nn.Dropout(attention_dropout_prob)
        self.dense = Linear(hidden_size, hidden_size)
        self.output_dropout = nn.Dropout(output_dropout_prob)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, cache: Optional[KVCache] = None, layer: int = 0,
                input_pos: Optional[torch.Tensor] = None, blocked: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Attention of ``x`` (``[b, n, h]``); with a ``cache``, ``x`` sits at positions ``input_pos``.

        ``mask``'s last dimension is the number of keys read: the first positions of the cache
        buffer (the unwritten tail a static decode step reads is hidden by its mask row).
        """
        b, n, h = x.shape
        q, k, v = self.query_key_value(x).view(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        if cache is not None:
            k, v = cache.update(layer, input_pos, k, v)
            width = mask.shape[-1]
            k, v = k[:, :, :width], v[:, :, :width]
        # the fused CPU kernel needs each head's vectors contiguous; the weight-first GEMM order returns them strided
        q, k, v = (t if t.stride(-1) == 1 else t.contiguous() for t in (q, k, v))
        dropout = self.attention_dropout.p if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        if blocked is not None:
            out = torch.where(blocked, v.mean(dim=-2, keepdim=True), out)
        out = self.dense(out.transpose(1, 2).reshape(b, n, h))
        return self.output_dropout(out.clamp(-MAX_FP16, MAX_FP16))


class DalleMLP(nn.Module):
    def __init__(self, hidden_size: int, output_dropout_prob: float, activation: str = 'gelu_jit'):
        super().__init__()
        if activation not in ('gelu', 'gelu_jit'):
            raise ValueError(f"mlp_activation must be 'gelu' or 'gelu_jit' (both tanh GELU), got {activation!r}")
        self.dense_h_to_4h = Linear(hidden_size, 4 * hidden_size)
        self.dense_4h_to_h = Linear(4 * hidden_size, hidden_size)
        self.dropout = nn.Dropout(output_dropout_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.dense_4h_to_h(gelu(self.dense_h_to_4h(x))))


class SparseTransformerLayer(nn.Module):
    """``x + LN(attn(LN(x)))`` then ``x + LN(mlp(LN(x)))`` (CogView sandwich LayerNorm)."""

    def __init__(self, hidden_size: int, num_attention_heads: int, attention_dropout_prob: float,
                 output_dropout_prob: float, layernorm_epsilon: float = 1e-5, cogview_sandwich_layernorm: bool = True,
                 cogview_pb_relax: bool = True, mlp_activation: str = 'gelu_jit'):
        super().__init__()
        self.cogview_sandwich_layernorm = cogview_sandwich_layernorm
        self.input_layernorm = nn.LayerNorm(hidden_size, eps=layernorm_epsilon)
        if cogview_sandwich_layernorm:
            self.before_first_addition_layernorm = nn.LayerNorm(hidden_size, eps=layernorm_epsilon)
            self.before_second_addition_layernorm = nn.LayerNorm(hidden_size, eps=layernorm_epsilon)
        self.attention = DalleSelfAttention(hidden_size, num_attention_heads, attention_dropout_prob,
                                            output_dropout_prob, cogview_pb_relax=cogview_pb_relax)
        self.post_attention_layernorm = nn.LayerNorm(hidden_size, eps=layernorm_epsilon)
        self.mlp = DalleMLP(hidden_size, output_dropout_prob, activation=mlp_activation)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, cache: Optional[KVCache] = None, layer: int = 0,
                input_pos: Optional[torch.Tensor] = None, blocked: Optional[torch.Tensor] = None) -> torch.Tensor:
        a = self.attention(self.input_layernorm(x), mask, cache, layer, input_pos, blocked)
        if self.cogview_sandwich_layernorm:
            a = self.before_first_addition_layernorm(a)
        x = x + a
        m = self.mlp(self.post_attention_layernorm(x))
        if self.cogview_sandwich_layernorm:
            m = self.before_second_addition_layernorm(m)
        return x + m


class SparseTransformer(nn.Module):
    def __init__(self, num_layers: int, hidden_size: int, num_attention_heads: int, attention_dropout_prob: float,
                 output_dropout_prob: float, l_text_seq_length: int, r_text_seq_length: int,
                 image_tokens_per_dim: int, kernel_size: int = 7, last_kernel_size: int = 9,
                 layernorm_epsilon: float = 1e-5, cogview_sandwich_layernorm: bool = True,
                 cogview_pb_relax: bool = True, mlp_activation: str = 'gelu_jit'):
        super().__init__()
        self.num_layers = num_layers
        self.layers = nn.ModuleList([
            SparseTransformerLayer(hidden_size, num_attention_heads, attention_dropout_prob, output_dropout_prob,
                                   layernorm_epsilon, cogview_sandwich_layernorm, cogview_pb_relax, mlp_activation)
            for _ in range(num_layers)
        ])
        self.mask_names = [layer_mask_name(i, num_layers) for i in range(num_layers)]
        self._mask_args = (l_text_seq_length, image_tokens_per_dim, r_text_seq_length, kernel_size, last_kernel_size)
        for name, mask in self.build_masks().items():
            self.register_buffer(name, mask)
        self.final_layernorm = nn.LayerNorm(hidden_size, eps=layernorm_epsilon)

    def build_masks(self, device: Optional[torch.device] = None) -> Dict[str, torch.Tensor]:
        """The four boolean ``[S, S]`` masks, fully determined by the config."""
        l, n, r, kernel, last_kernel = self._mask_args
        masks = {
            'row_mask': get_row_mask(l, n, r, is_bool_mask=True),
            'col_mask': get_col_mask(l, n, r, is_bool_mask=True),
            'conv_mask': get_conv_mask(l, n, r, kernel=kernel, is_bool_mask=True),
            'last_conv_mask': get_conv_mask(l, n, r, kernel=last_kernel, is_bool_mask=True),
        }
        assert tuple(masks) == MASK_NAMES
        return {k: v.to(device) for k, v in masks.items()} if device is not None else masks

    def forward(self, x: torch.Tensor, attention_mask: Optional[torch.Tensor] = None,
                cache: Optional[KVCache] = None, start: int = 0, gradient_checkpointing: bool = False,
                return_hidden_states: bool = False) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """Run the layers over ``x`` (``[b, n, h]``, absolute positions ``start..start+n``).

        ``attention_mask``: optional boolean ``[b|1, 1, n, start+n]`` (True = may attend).
        With a ``cache``, keys/values are written at ``start`` and attention reads all positions
        before ``start + n`` from it; the caller advances ``cache.length``.
        """
        end = start + x.shape[1]
        input_pos = torch.arange(start, end, device=x.device) if cache is not None else None
        masks, blocked = {}, {}
        for name in set(self.mask_names):
            mask = getattr(self, name)[start:end, :end]
            if mask.dtype != torch.bool:  # buffers loaded as 0/1 floats from an old checkpoint
                mask = mask != 0
            if attention_mask is not None:
                mask = mask & attention_mask
                rows = ~mask.any(dim=-1, keepdim=True)
                blocked[name] = rows if bool(rows.any()) else None
            masks[name] = mask
        hidden_states = []
        for i, layer in enumerate(self.layers):
            name = self.mask_names[i]
            if gradient_checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(layer, x, masks[name], None, i, None, blocked.get(name), use_reentrant=False)
            else:
                x = layer(x, masks[name], cache, i, input_pos, blocked.get(name))
            if return_hidden_states:
                hidden_states.append(x)
        return self.final_layernorm(x), hidden_states

    def decode_static(self, x: torch.Tensor, pos: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """One token per row at position ``pos`` (a 0-d tensor), attending over the whole cache buffer.

        Every shape is fixed by the cache, so the step can be compiled or captured in a CUDA
        graph once and replayed for every position. The causal mask row hides unwritten slots.
        """
        width = cache.max_length
        masks = {}
        for name in set(self.mask_names):
            row = getattr(self, name).index_select(0, pos.view(1))[:, :width]
            masks[name] = row if row.dtype == torch.bool else row != 0
        for i, layer in enumerate(self.layers):
            x = layer(x, masks[self.mask_names[i]], cache, i, pos)
        return self.final_layernorm(x)
