"""Int8 weights: the weight-only ``Int8Linear`` kernel and its safetensors files (the policy that picks a
precision is :mod:`rudolph.model.precision`).

Int8 weights are symmetric per output channel: ``w ~= q * scale`` with ``q`` in ``[-127, 127]``
and ``scale = max|w_row| / 127`` (float32, rounded up to a value bf16 holds exactly). Activations stay in a half-precision dtype (bf16 on
CPU, fp16/bf16 on CUDA). Which kernel multiplies depends on the rows of the call
(:data:`INT8_MM_MAX_ROWS`, measured by ``bench/precision.py --parts kernels``):

* few rows (decode steps): ``torch._weight_int8pack_mm`` reads the int8 weight once, a quarter
  of the fp32 bytes, and applies the scale itself (exact in bf16, so no per-channel shift);
* many rows (prefill, scoring, large batches): the weight converted to the activation dtype
  (exact: int8 values fit bf16/fp16) and one ``F.linear``, the per-channel scale applied to its
  output; the matmul's cost then dominates the conversion.
"""
import logging
import os
from typing import Dict, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from rudolph.errors import ConfigError, CorruptCheckpointError
from rudolph.io.atomic import write_atomic
from rudolph.io.safetensors import read_safetensors_header

__all__ = ['Int8Linear', 'INT8_MM_MAX_ROWS', 'bf16_exact_ceil', 'quantize_weight', 'quantize_linears',
           'quantized_linear_names', 'int8_kernel_available', 'save_int8', 'read_int8_file', 'int8_file_metadata',
           'int8_metadata']

logger = logging.getLogger(__name__)

#: Up to this many rows per call the int8 kernel is used, above it the converted weight + F.linear.
INT8_MM_MAX_ROWS = 8


def int8_kernel_available(device: torch.device) -> bool:
    """Whether torch has ``_weight_int8pack_mm`` for ``device`` (a tiny probe call)."""
    x_dtype = torch.bfloat16 if device.type == 'cpu' else torch.float32
    try:
        w = torch.zeros(8, 32, dtype=torch.int8, device=device)
        torch._weight_int8pack_mm(torch.zeros(1, 32, dtype=x_dtype, device=device), w,
                                  torch.ones(8, dtype=x_dtype, device=device))
    except (AttributeError, NotImplementedError, RuntimeError):
        return False
    return True


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
    dtype). All are buffers: an int8 model is for inference. See the module docstring for
    the kernel rule.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 device: Optional[torch.device] = None, dtype: torch.dtype = torch.bfloat16):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer('weight', torch.empty(out_features, in_features, dtype=torch.int8, device=device))
        self.register_buffer('weight_scale', torch.empty(out_features, dtype=torch.float32, device=device))
        self.register_buffer('bias', torch.empty(out_features, dtype=dtype, device=device) if bias else None)

    @classmethod
    def from_linear(cls, linear: nn.Linear, dtype: torch.dtype = torch.bfloat16) -> 'Int8Linear':
        """Quantise a float ``nn.Linear``."""
        out = cls(linear.in_features, linear.out_features, linear.bias is not None, linear.weight.device, dtype)
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
        few_rows = 0 < flat.shape[0] <= INT8_MM_MAX_ROWS and not torch.is_grad_enabled()
        act_scale = self._act_scale(x.dtype) if few_rows and x.device.type == 'cpu' else None
        if act_scale is not None:  # the kernel applies the (exact) scale: one call and the bias
            out = torch._weight_int8pack_mm(flat.contiguous(), w, act_scale if rows is None else act_scale[rows])
            out = out if bias is None else out.add_(bias)
            return out.reshape(*x.shape[:-1], w.shape[0])
        out = _int8_mm(flat, w) if few_rows else F.linear(flat, w.to(x.dtype))  # int8 -> bf16/fp16 is exact
        # The float32 scale on the (small) output: a scale rounded to bf16 would shift each channel by up
        # to 0.4%, the same way at every position (it changed zero-shot orders in bench/precision_quality.py).
        out = out.float() * scale if bias is None else torch.addcmul(bias.float(), out.float(), scale)
        return out.to(x.dtype).reshape(*x.shape[:-1], w.shape[0])

    def _act_scale(self, dtype: torch.dtype) -> Optional[torch.Tensor]:
        """``weight_scale`` in ``dtype`` if that holds it exactly (scales of :func:`quantize_weight`), else ``None``.

        Kept until the scale tensor changes (its version counts in-place loads) or moves.
        """
        scale = self.weight_scale
        key = (dtype, scale.device, scale.data_ptr(), scale._version)
        cached = self.__dict__.get('_act_scale_cache')
        if cached is None or cached[0] != key:
            converted = scale.to(dtype)
            cached = (key, converted if torch.equal(converted.float(), scale) else None)
            self.__dict__['_act_scale_cache'] = cached
        return cached[1]

    def extra_repr(self) -> str:
        return f'in_features={self.in_features}, out_features={self.out_features}, int8 weights'


def _int8_mm(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``x @ w.T`` (unscaled) by torch's int8 weight-only kernel."""
    if x.device.type == 'cuda':  # torch's CUDA kernel takes float32 activations and scales
        ones = torch.ones(w.shape[0], dtype=torch.float32, device=x.device)
        return torch._weight_int8pack_mm(x.float(), w, ones)
    return torch._weight_int8pack_mm(x.contiguous(), w, torch.ones(w.shape[0], dtype=x.dtype, device=x.device))


def quantized_linear_names(model: nn.Module) -> Dict[str, nn.Linear]:
    """Every linear layer that int8 quantises: the transformer's four per layer and the output head."""
    return {name: m for name, m in model.named_modules()
            if isinstance(m, nn.Linear) and (name.startswith('transformer.') or name.startswith('to_logits.'))}


def quantize_linears(model: nn.Module, dtype: torch.dtype = torch.bfloat16,
                     fill: bool = True) -> nn.Module:
    """Replace the layers of :func:`quantized_linear_names` by :class:`Int8Linear` in place.

    ``fill=False`` leaves the new layers empty (for a model about to be filled from a checkpoint).
    """
    for name, linear in quantized_linear_names(model).items():
        parent_name, _, child = name.rpartition('.')
        parent = model.get_submodule(parent_name)
        if fill:
            new = Int8Linear.from_linear(linear, dtype)
        else:
            device = linear.weight.device
            new = Int8Linear(linear.in_features, linear.out_features, linear.bias is not None, device, dtype)
        setattr(parent, child, new)
    return model


# ----------------------------------------------------------------------------- int8 files (safetensors)
INT8_FORMAT = 'rudolph-int8'
_ST_DTYPES = {'I8': torch.int8, 'F32': torch.float32, 'BF16': torch.bfloat16, 'F16': torch.float16,
              'I64': torch.int64, 'BOOL': torch.bool, 'U8': torch.uint8}


def save_int8(model: nn.Module, path: Union[str, os.PathLike], extra_metadata: Optional[Dict[str, str]] = None) -> str:
    """Write an int8 model's weights as safetensors (int8 weights, float32 scales, the rest in its dtype).

    The metadata entry ``format`` = ``rudolph-int8`` marks the file, ``dtype`` names the activation
    dtype. Written to a temporary file and renamed, so ``path`` is complete or absent.
    """
    from safetensors.torch import save_file

    if not any(isinstance(m, Int8Linear) for m in model.modules()):
        raise ConfigError("save_int8 needs a model loaded with quantize='int8'")
    masks = set(getattr(getattr(model, 'transformer', None), 'mask_names', ()))
    state = {k: v.contiguous() for k, v in model.state_dict().items()
             if not (k.startswith('transformer.') and k.split('.', 1)[1] in masks)}
    metadata = {**int8_metadata(model), **(extra_metadata or {})}
    return write_atomic(path, lambda tmp: save_file(state, tmp, metadata=metadata))


def int8_metadata(model: nn.Module) -> Dict[str, str]:
    """The safetensors metadata that marks an int8 file of ``model`` (format, version, activation dtype)."""
    dtype = str(getattr(model, 'dtype', torch.bfloat16)).removeprefix('torch.')
    return {'format': INT8_FORMAT, 'version': '1', 'quantize': 'int8', 'dtype': dtype}


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


