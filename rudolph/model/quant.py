"""Packed and quantised weights: the kernels behind ``dtype=`` / ``quantize=`` and their safetensors files
(the policy that picks a precision is :mod:`rudolph.model.precision`).

Weight formats (``quantize=``):

* ``'int8'``: int8 weights, activations in bf16 (CPU) or fp16/bf16 (CUDA), weight-only kernels;
* ``'int8-dynamic'``: the same int8 weights, and each activation ROW quantised to int8 on the fly
  (symmetric, its own scale) for fbgemm's or oneDNN's int8 x int8 GEMM (CPU). A row's result never depends
  on the other rows of its batch, so batched jobs give the same answer whatever the batch size;
* ``'fp16'``: float16 weights packed for fbgemm's fp16 GEMM, float32 activations (CPU); near-lossless.

Int8 weights are symmetric per output channel: ``w ~= q * scale`` with ``q`` in ``[-127, 127]``
and ``scale = max|w_row| / 127`` (float32, rounded up to a value bf16 holds exactly).

Which kernel multiplies is one rule, :func:`pick_kernel` (format, rows in the call), measured
by ``bench/precision.py --parts kernels`` on a quiet machine. Packed weights (fbgemm's or oneDNN's
int8, oneDNN's bf16 and fbgemm's fp16 layouts) are made on first use and kept beside the plain tensors, which stay
the state dict: a packed model saves, moves and loads like any other.
"""
import functools
import logging
import os
import warnings
from typing import Callable, Dict, Hashable, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from rudolph.errors import ConfigError, CorruptCheckpointError
from rudolph.io.atomic import write_atomic
from rudolph.io.safetensors import read_safetensors_header
from rudolph.model.config import QUANT_METHODS

__all__ = ['Int8Linear', 'Fp16Linear', 'QUANT_METHODS', 'INT8_MM_MAX_ROWS', 'SMALL_BATCH_ROWS', 'pick_kernel', 'packed_bf16_linear', 'slice_key',
           'DYNAMIC_INT8_KERNELS', 'dynamic_int8_kernel',
           'bf16_exact_ceil', 'quantize_weight', 'quantize_linears', 'quantized_linear_names', 'int8_kernel_available',
           'kernel_available', 'quantized_entries', 'quantized_method', 'save_int8', 'read_int8_file', 'int8_file_metadata', 'int8_metadata',
           'is_quantized', 'QUANTIZED_LAYERS']

logger = logging.getLogger(__name__)


#: Float32 weights: up to this many rows per call the weight-first GEMM order (:func:`rudolph.model.transformer.linear`).
SMALL_BATCH_ROWS = 64

#: Weight-only int8: up to this many rows per call ``_weight_int8pack_mm``, above it the converted weight + F.linear.
INT8_MM_MAX_ROWS = 8


def pick_kernel(weights: str, rows: int, x: torch.Tensor) -> str:
    """The kernel for ``rows`` rows of activations ``x`` times weights in format ``weights``: the one rule.

    ``weights``: ``'float'`` (the activation dtype), ``'int8'``, ``'int8-dynamic'`` or ``'fp16'``.
    Packed and quantised kernels are for eager inference on CPU; with gradients, on other devices
    or inside ``torch.compile`` (whose own lowering packs constant weights, and cannot trace a
    weight packed outside the graph) each format falls back to plain ``F.linear`` on its weight
    in the activation dtype. Measured on
    a 2-core AVX512-BF16 CPU (bench/precision.py --parts kernels, quiet):

    * bf16 activations, float weights: oneDNN's prepacked bf16 GEMM at every row count (fastest
      from 1 to 256 rows; MKL's bf16 GEMM and ``addmv`` read the weight far slower);
    * fp32: the weight-first GEMM order up to ``SMALL_BATCH_ROWS`` (:func:`rudolph.model.transformer.linear`);
    * int8-dynamic: fbgemm's u8 x s8 GEMM at every row count where it is exact, else oneDNN's
      (:func:`dynamic_int8_kernel`; the int8 weight read once, no conversion);
    * int8: ``_weight_int8pack_mm`` up to :data:`INT8_MM_MAX_ROWS` rows, above it the converted weight;
    * fp16: fbgemm's fp16 GEMM at every row count.
    """
    if weights != 'float' and weights not in QUANT_METHODS:
        raise ConfigError(f'unknown weight format {weights!r}; expected float or one of {list(QUANT_METHODS)}')
    if torch.is_grad_enabled() or rows == 0 or torch.compiler.is_compiling():
        return 'dense'
    if weights == 'int8':  # CUDA has the weight-only kernel too
        return 'int8pack' if rows <= INT8_MM_MAX_ROWS else 'dense'
    if x.device.type != 'cpu':
        return 'dense'
    if weights == 'float' and x.dtype == torch.bfloat16 and _HAS_MKLDNN_LINEAR:
        return 'onednn-bf16'
    if weights == 'float':
        return 'weight-first' if rows <= SMALL_BATCH_ROWS else 'dense'
    if weights == 'int8-dynamic':
        return dynamic_int8_kernel() or 'onednn-int8'  # None: resolve_precision refused the format already
    return 'fbgemm-fp16'


def kernel_available(method: str, device: torch.device) -> bool:
    """Whether torch has the kernels ``quantize=method`` needs on ``device`` (tiny probe calls)."""
    try:
        if method == 'int8':
            x_dtype = torch.bfloat16 if device.type == 'cpu' else torch.float32
            torch._weight_int8pack_mm(torch.zeros(1, 32, dtype=x_dtype, device=device),
                                      torch.zeros(8, 32, dtype=torch.int8, device=device),
                                      torch.ones(8, dtype=x_dtype, device=device))
            return True
        if device.type != 'cpu':
            return False
        if method == 'int8-dynamic':
            return dynamic_int8_kernel() is not None
        if method == 'fp16':
            torch.ops.quantized.linear_dynamic_fp16(torch.ones(1, 32), torch.ops.quantized.linear_prepack_fp16(
                torch.ones(8, 32), None))
            return True
    except (AttributeError, NotImplementedError, RuntimeError):
        return False
    return False


def int8_kernel_available(device: torch.device) -> bool:
    """Whether torch has ``_weight_int8pack_mm`` for ``device`` (``quantize='int8'``)."""
    return kernel_available('int8', device)


_HAS_MKLDNN_LINEAR = hasattr(torch.ops.mkldnn, '_reorder_linear_weight') and torch.backends.mkldnn.is_available()


class _Packed:
    """Packed forms of a layer's weights, made on first use: keyed by what they were made from.

    Not part of the state dict, not copied by ``copy.deepcopy`` or pickled (oneDNN/fbgemm
    objects are neither): a copy packs again on its first call.
    """

    def __init__(self):
        self.entries: Dict[Hashable, Tuple[Hashable, object]] = {}

    def get(self, slot: Hashable, source: torch.Tensor, make: Callable[[], object]) -> object:
        # data_ptr and _version change when the tensor is replaced, moved or loaded in place
        key = (source.data_ptr(), source._version, source.device, source.dtype)
        hit = self.entries.get(slot)
        if hit is None or hit[0] != key:
            hit = (key, make())
            self.entries[slot] = hit
        return hit[1]

    def __deepcopy__(self, memo) -> '_Packed':
        return _Packed()

    def __getstate__(self) -> dict:
        return {'entries': {}}


def _packs(module: nn.Module) -> _Packed:
    packs = module.__dict__.get('_packs')
    if packs is None:
        packs = module.__dict__['_packs'] = _Packed()
    return packs


def packed_bf16_linear(module: nn.Module, x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                       slot: Hashable = None) -> torch.Tensor:
    """``F.linear`` of a bf16 ``x`` (2-d) through oneDNN's prepacked bf16 weight, kept on ``module``.

    ``slot`` names a part of the weight (e.g. a vocabulary slice) packed on its own.
    """
    packed = _packs(module).get(slot, weight, lambda: torch.ops.mkldnn._reorder_linear_weight(weight.detach(), None))
    return torch.ops.mkldnn._linear_pointwise(x, packed, bias, 'none', [], '')


#: Elements per block of rows that quantize_weight converts at once (float32 temporaries of ~1 MB).
_BLOCK_ELEMENTS = 1 << 18


def bf16_exact_ceil(x: torch.Tensor) -> torch.Tensor:
    """The smallest float32 values ``>= x`` (positive, finite) that bfloat16 holds exactly.

    A scale that bf16 (and fp16, in its range) represents exactly can go straight into the int8
    kernel without the systematic per-channel shift that rounding it would cause.
    """
    bits = x.contiguous().view(torch.int32)
    return ((bits + 0xFFFF) & ~0xFFFF).view(torch.float32)


def quantize_weight(weight: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(int8 [out, in], float32 scale [out])`` with ``weight ~= q * scale[:, None]`` per output channel.

    Each scale is ``max|w_row| / 127`` rounded up to a bfloat16-exact value (:func:`bf16_exact_ceil`), so
    the half-precision kernel applies it exactly.

    Converted in blocks of rows: whole-tensor float32 temporaries (tens of MB each, freed and
    allocated again for every tensor of a checkpoint) fragment glibc's heap, which kept several
    times the int8 model resident while loading.
    """
    w = weight.detach()
    q = torch.empty(w.shape, dtype=torch.int8, device=w.device)
    scale = torch.empty(w.shape[0], dtype=torch.float32, device=w.device)
    rows = max(1, _BLOCK_ELEMENTS // max(w.shape[1], 1))
    for begin in range(0, w.shape[0], rows):
        block = w[begin:begin + rows].to(torch.float32, copy=True)  # a copy: the source stays untouched
        s = bf16_exact_ceil((block.abs().amax(dim=1) / 127.0).clamp_(min=torch.finfo(torch.bfloat16).tiny))
        scale[begin:begin + rows] = s
        q[begin:begin + rows] = block.div_(s[:, None]).round_().clamp_(-127, 127)
    return q, scale


class Int8Linear(nn.Module):
    """A linear layer with int8 weights (per-output-channel float32 scales) and half-precision activations.

    State-dict entries: ``weight`` (int8), ``weight_scale`` (float32), ``bias`` (activation
    dtype). All are buffers: an int8 model is for inference. ``dynamic``: activations quantised
    per row for an int8 x int8 GEMM (``quantize='int8-dynamic'``) instead of weight-only kernels.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 device: Optional[torch.device] = None, dtype: torch.dtype = torch.bfloat16, dynamic: bool = False):
        super().__init__()
        self.in_features, self.out_features, self.dynamic = in_features, out_features, dynamic
        self.register_buffer('weight', torch.empty(out_features, in_features, dtype=torch.int8, device=device))
        self.register_buffer('weight_scale', torch.empty(out_features, dtype=torch.float32, device=device))
        self.register_buffer('bias', torch.empty(out_features, dtype=dtype, device=device) if bias else None)

    @property
    def method(self) -> str:
        """The ``quantize=`` name of this layer's format."""
        return 'int8-dynamic' if self.dynamic else 'int8'

    @classmethod
    def from_linear(cls, linear: nn.Linear, dtype: torch.dtype = torch.bfloat16, dynamic: bool = False) -> 'Int8Linear':
        """Quantise a float ``nn.Linear``."""
        out = cls(linear.in_features, linear.out_features, linear.bias is not None, linear.weight.device, dtype,
                  dynamic)
        out.set_weight(linear.weight, linear.bias)
        return out

    def set_weight(self, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> None:
        """Quantise ``weight`` into this layer (and store ``bias`` in the activation dtype)."""
        q, scale = quantize_weight(weight)
        self.weight, self.weight_scale = q.to(self.weight.device), scale.to(self.weight.device)
        if bias is not None:
            self.bias = bias.detach().to(device=self.weight.device, dtype=self.act_dtype)

    @property
    def act_dtype(self) -> torch.dtype:
        return self.bias.dtype if self.bias is not None else torch.bfloat16

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.sliced(x, None)

    def sliced(self, x: torch.Tensor, rows: Optional[slice]) -> torch.Tensor:
        """The outputs of the channels in ``rows`` (a slice; ``None``: all), e.g. one vocabulary part."""
        w, scale, bias = self.weight, self.weight_scale, self.bias
        if rows is not None:
            w, scale, bias = w[rows], scale[rows], None if bias is None else bias[rows]
        flat = x.reshape(-1, x.shape[-1])
        kernel = pick_kernel(self.method, flat.shape[0], x)
        if kernel in DYNAMIC_INT8_KERNELS:
            out = self._dynamic(flat, w, scale, bias, slice_key(rows), kernel)
            return out.reshape(*x.shape[:-1], w.shape[0])
        act_scale = self._act_scale(x.dtype) if kernel == 'int8pack' and x.device.type == 'cpu' else None
        if act_scale is not None:  # the kernel applies the (exact) scale: one call and the bias
            out = torch._weight_int8pack_mm(flat.contiguous(), w, act_scale if rows is None else act_scale[rows])
            out = out if bias is None else out.add_(bias)
            return out.reshape(*x.shape[:-1], w.shape[0])
        out = _int8_mm(flat, w) if kernel == 'int8pack' else F.linear(flat, w.to(x.dtype))  # int8 -> bf16 is exact
        # The float32 scale on the (small) output: a scale rounded to bf16 would shift each channel by up
        # to 0.4%, the same way at every position (it changed zero-shot orders in bench/precision_quality.py).
        out = out.float() * scale if bias is None else torch.addcmul(bias.float(), out.float(), scale)
        return out.to(x.dtype).reshape(*x.shape[:-1], w.shape[0])

    def _dynamic(self, flat: torch.Tensor, w: torch.Tensor, scale: torch.Tensor, bias: Optional[torch.Tensor],
                 slot: Hashable, kernel: str) -> torch.Tensor:
        """``flat @ (w * scale).T + bias`` with each row of ``flat`` quantised to int8 with its own scale.

        The int8 GEMMs take one activation scale per call, so they run on rows scaled to
        ``[-127, 127]`` with scale 1 and each row's scale is applied to its output: a row's result
        is the same in any batch, and the same with either ``kernel`` of :data:`DYNAMIC_INT8_KERNELS`.
        """
        packed = _packs(self).get((kernel, slot), self.weight, lambda: _pack_dynamic(kernel, w, scale))
        xf = flat.float()
        amax = xf.abs().amax(dim=1, keepdim=True).clamp_min_(_TINY)
        out = _gemm_dynamic(kernel, packed, xf * (127 / amax))
        step = amax.div_(127)
        out = out.mul_(step) if bias is None else torch.addcmul(bias.float(), out, step)
        return out.to(flat.dtype)

    def _act_scale(self, dtype: torch.dtype) -> Optional[torch.Tensor]:
        """``weight_scale`` in ``dtype`` if that holds it exactly (scales of :func:`quantize_weight`), else ``None``."""
        def convert():
            converted = self.weight_scale.to(dtype)
            return converted if torch.equal(converted.float(), self.weight_scale) else None
        return _packs(self).get(('scale', dtype), self.weight_scale, convert)

    def extra_repr(self) -> str:
        return f'in_features={self.in_features}, out_features={self.out_features}, {self.method} weights'


_TINY = 1e-30  # a floor on a row's max |x| whose 127 / max stays finite in float32


def slice_key(rows: Optional[slice]) -> Hashable:
    """A hashable name of a channel slice (``None``: all channels), the key a packed part is kept under."""
    return None if rows is None else (rows.start, rows.stop, rows.step)


#: The int8 x int8 GEMMs of ``quantize='int8-dynamic'``, fastest first (:func:`dynamic_int8_kernel` picks).
DYNAMIC_INT8_KERNELS = ('fbgemm-int8', 'onednn-int8')


def _pack_dynamic(kernel: str, w: torch.Tensor, scale: torch.Tensor) -> object:
    """``w`` (int8, per-channel float32 ``scale``) packed for ``kernel``."""
    zero_points = torch.zeros(w.shape[0], dtype=torch.long)
    if kernel == 'onednn-int8':
        return torch.ops.onednn.qlinear_prepack(w, None), scale, zero_points
    # fbgemm packs from a quantised tensor, a creation API torch deprecates (the weights stay plain int8
    # tensors; this one is dropped once packed). Its warning names nothing a user can act on.
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', message='.*quantized tensor creation functions', category=UserWarning)
        q = torch._make_per_channel_quantized_tensor(w, scale.double(), zero_points, 0)
    return torch.ops.quantized.linear_prepack(q, None)


def _gemm_dynamic(kernel: str, packed: object, xs: torch.Tensor) -> torch.Tensor:
    """``round(xs) @ w.T * scale`` (float32) for rows ``xs`` scaled to ``[-127, 127]``.

    Both kernels take the rows as u8 with zero point 128 (the fast x86 path is u8 x s8; signed
    activations fall to a reference path in oneDNN), rounded half to even, and give the same bits.
    """
    if kernel == 'fbgemm-int8':  # quantises xs itself: round(xs / 1) + 128
        return torch.ops.quantized.linear_with_input_q_dq_qweight_dq_output_fp32(xs, 1.0, 128, packed)
    weight, scale, zero_points = packed
    xq = torch.round(xs).add_(128).to(torch.uint8)
    return torch.ops.onednn.qlinear_pointwise(xq, 1.0, 128, weight, scale, zero_points, None,
                                             1.0, 0, torch.float32, 'none', [], '')


def _exact_dynamic(kernel: str) -> bool:
    """Whether ``kernel`` runs here and is exact at full range: 255 x 127 pairs overflow the int16
    sums of x86 CPUs without VNNI (AVX2's ``vpmaddubsw`` saturates), which would corrupt results."""
    try:
        w = torch.full((8, 64), 127, dtype=torch.int8)
        xs = torch.tensor([[127.0] * 64, [-127.0] * 64])
        out = _gemm_dynamic(kernel, _pack_dynamic(kernel, w, torch.ones(8)), xs)
    except (AttributeError, NotImplementedError, RuntimeError):
        return False
    return torch.equal(out, torch.tensor([[127.0 * 127 * 64] * 8, [-127.0 * 127 * 64] * 8]))


@functools.lru_cache(maxsize=None)
def dynamic_int8_kernel() -> Optional[str]:
    """The first of :data:`DYNAMIC_INT8_KERNELS` torch has here and computes exactly, or ``None``.

    fbgemm's GEMM is the faster one here, most at a few rows (``bench/README.md``); oneDNN's is
    the route torch keeps supported, with the same results.
    """
    return next((k for k in DYNAMIC_INT8_KERNELS if _exact_dynamic(k)), None)


def _int8_mm(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``x @ w.T`` (unscaled) by torch's int8 weight-only kernel."""
    if x.device.type == 'cuda':  # torch's CUDA kernel takes float32 activations and scales
        ones = torch.ones(w.shape[0], dtype=torch.float32, device=x.device)
        return torch._weight_int8pack_mm(x.float(), w, ones)
    return torch._weight_int8pack_mm(x.contiguous(), w, torch.ones(w.shape[0], dtype=x.dtype, device=x.device))


class Fp16Linear(nn.Module):
    """A linear layer with float16 weights and float32 activations (``quantize='fp16'``).

    State-dict entries: ``weight`` (float16), ``bias`` (float32), both buffers. On CPU the
    weight is packed once for fbgemm's fp16 GEMM (half the bytes of float32 to read per step;
    rounding the weights to fp16 is the only change); elsewhere ``F.linear`` on the converted weight.
    """

    method = 'fp16'

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 device: Optional[torch.device] = None, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer('weight', torch.empty(out_features, in_features, dtype=torch.float16, device=device))
        self.register_buffer('bias', torch.empty(out_features, dtype=dtype, device=device) if bias else None)

    @classmethod
    def from_linear(cls, linear: nn.Linear, dtype: torch.dtype = torch.float32) -> 'Fp16Linear':
        """A float ``nn.Linear`` with its weight rounded to float16."""
        out = cls(linear.in_features, linear.out_features, linear.bias is not None, linear.weight.device, dtype)
        out.set_weight(linear.weight, linear.bias)
        return out

    def set_weight(self, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> None:
        """Round ``weight`` to float16 into this layer (and store ``bias`` in the activation dtype)."""
        self.weight = weight.detach().to(device=self.weight.device, dtype=torch.float16)
        if bias is not None:
            self.bias = bias.detach().to(device=self.weight.device, dtype=self.bias.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.sliced(x, None)

    def sliced(self, x: torch.Tensor, rows: Optional[slice]) -> torch.Tensor:
        """The outputs of the channels in ``rows`` (a slice; ``None``: all)."""
        w, bias = self.weight, self.bias
        if rows is not None:
            w, bias = w[rows], None if bias is None else bias[rows]
        flat = x.reshape(-1, x.shape[-1])
        if pick_kernel('fp16', flat.shape[0], x) == 'fbgemm-fp16':
            packed = _packs(self).get(slice_key(rows), self.weight, lambda: torch.ops.quantized.linear_prepack_fp16(
                w.float(), None if bias is None else bias.float()))
            out = torch.ops.quantized.linear_dynamic_fp16(flat.float(), packed).to(x.dtype)
        else:
            out = F.linear(flat, w.to(x.dtype), None if bias is None else bias.to(x.dtype))
        return out.reshape(*x.shape[:-1], w.shape[0])

    def extra_repr(self) -> str:
        return f'in_features={self.in_features}, out_features={self.out_features}, fp16 weights'


#: The layer classes of the ``quantize=`` formats.
QUANTIZED_LAYERS = (Int8Linear, Fp16Linear)


def is_quantized(module: nn.Module) -> bool:
    """Whether ``module`` is (or holds) a layer of a ``quantize=`` format."""
    return quantized_method(module) is not None


def quantized_linear_names(model: nn.Module) -> Dict[str, nn.Linear]:
    """Every linear layer that ``quantize=`` converts: the transformer's four per layer and the output head."""
    return {name: m for name, m in model.named_modules()
            if isinstance(m, nn.Linear) and (name.startswith('transformer.') or name.startswith('to_logits.'))}


def _quantized_layer(linear: nn.Linear, method: str, dtype: torch.dtype, fill: bool) -> nn.Module:
    if method not in QUANT_METHODS:
        raise ConfigError(f'unsupported quantize={method!r}; expected one of {list(QUANT_METHODS)}')
    if fill:
        return (Fp16Linear.from_linear(linear, dtype) if method == 'fp16' else
                Int8Linear.from_linear(linear, dtype, dynamic=method == 'int8-dynamic'))
    args = (linear.in_features, linear.out_features, linear.bias is not None, linear.weight.device, dtype)
    return Fp16Linear(*args) if method == 'fp16' else Int8Linear(*args, dynamic=method == 'int8-dynamic')


def quantize_linears(model: nn.Module, dtype: torch.dtype = torch.bfloat16,
                     fill: bool = True, method: str = 'int8') -> nn.Module:
    """Replace the layers of :func:`quantized_linear_names` by layers of format ``method`` in place.

    ``fill=False`` leaves the new layers empty (for a model about to be filled from a checkpoint).
    """
    for name, linear in quantized_linear_names(model).items():
        parent_name, _, child = name.rpartition('.')
        setattr(model.get_submodule(parent_name), child, _quantized_layer(linear, method, dtype, fill))
    return model


def quantized_entries(method: str, key: str, weight: torch.Tensor) -> Dict[str, torch.Tensor]:
    """The state entries of one linear's ``weight`` (state key ``key``) in format ``method``."""
    if method == 'fp16':
        return {key: weight.detach().to(torch.float16, copy=True)}
    q, scale = quantize_weight(weight)
    return {key: q, key[:-len('weight')] + 'weight_scale': scale}


# ----------------------------------------------------------------------------- int8 files (safetensors)
INT8_FORMAT = 'rudolph-int8'
_ST_DTYPES = {'I8': torch.int8, 'F32': torch.float32, 'BF16': torch.bfloat16, 'F16': torch.float16,
              'I64': torch.int64, 'BOOL': torch.bool, 'U8': torch.uint8}


def save_int8(model: nn.Module, path: Union[str, os.PathLike], extra_metadata: Optional[Dict[str, str]] = None) -> str:
    """Write a quantised model's weights as safetensors (int8 weights + float32 scales, or fp16 weights; the
    rest in the activation dtype).

    The metadata entry ``format`` = ``rudolph-int8`` marks the file (for every ``quantize=`` format:
    the name predates the others), ``quantize`` names the format and ``dtype`` the activation
    dtype. Written to a temporary file and renamed, so ``path`` is complete or absent.
    """
    from safetensors.torch import save_file

    if not is_quantized(model):
        raise ConfigError(f"save_int8 needs a model loaded with quantize='int8' (or another of {list(QUANT_METHODS)})")
    masks = set(getattr(getattr(model, 'transformer', None), 'mask_names', ()))
    state = {k: v.contiguous() for k, v in model.state_dict().items()
             if not (k.startswith('transformer.') and k.split('.', 1)[1] in masks)}
    metadata = {**int8_metadata(model), **(extra_metadata or {})}
    return write_atomic(path, lambda tmp: save_file(state, tmp, metadata=metadata))


def quantized_method(model: nn.Module) -> Optional[str]:
    """The ``quantize=`` format of ``model``'s quantised layers, or ``None`` for a float model."""
    return next((m.method for m in model.modules() if isinstance(m, QUANTIZED_LAYERS)), None)


def int8_metadata(model: nn.Module) -> Dict[str, str]:
    """The safetensors metadata that marks a quantised file of ``model`` (format, version, method, activation dtype)."""
    dtype = str(getattr(model, 'dtype', torch.bfloat16)).removeprefix('torch.')
    return {'format': INT8_FORMAT, 'version': '1', 'quantize': quantized_method(model) or 'int8', 'dtype': dtype}


def int8_file_metadata(path: str) -> Optional[Dict[str, str]]:
    """The metadata of a :func:`save_int8` file, or ``None`` for any other file."""
    found = read_safetensors_header(path)
    if found is None:
        return None
    metadata = found[1].get('__metadata__') or {}
    return dict(metadata) if metadata.get('format') == INT8_FORMAT else None


def read_int8_file(path: str) -> Dict[str, torch.Tensor]:
    """The tensors of a :func:`save_int8` file, memory-mapped (no copy; pages are read on first use)."""
    found = read_safetensors_header(path)
    if found is None:
        raise CorruptCheckpointError(f'{path!r} is not a safetensors file (expected an int8 RuDOLPH file)')
    offset, header = found
    size = os.path.getsize(path)
    storage = torch.UntypedStorage.from_file(path, shared=False, nbytes=size)
    raw = torch.empty(0, dtype=torch.uint8).set_(storage)
    state = {}
    for key, info in header.items():
        if key == '__metadata__':
            continue
        begin, end = (offset + int(i) for i in info['data_offsets'])
        dtype = _ST_DTYPES.get(info['dtype'])
        if dtype is None or end > size:
            raise CorruptCheckpointError(f'{path!r}: tensor {key!r} has dtype {info["dtype"]} or offsets '
                                         f'{info["data_offsets"]} that do not fit the file ({size} bytes)')
        state[key] = raw[begin:end].view(dtype).view(info['shape'])
    return state


