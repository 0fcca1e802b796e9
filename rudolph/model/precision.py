"""Precision: the one place a ``dtype`` / ``quantize`` / ``fp16`` request becomes what loading applies."""
import logging
import warnings
from typing import Optional, Tuple, Union

import torch

from rudolph.errors import ConfigError, MissingDependencyError
from rudolph.model.quant import QUANT_METHODS, kernel_available

__all__ = ['QUANT_METHODS', 'Precision', 'resolve_precision', 'parse_dtype', 'cpu_has_native_bf16']

logger = logging.getLogger(__name__)

_DTYPE_NAMES = {'float32': torch.float32, 'fp32': torch.float32, 'float': torch.float32,
                'float16': torch.float16, 'fp16': torch.float16, 'half': torch.float16,
                'bfloat16': torch.bfloat16, 'bf16': torch.bfloat16}
_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX), as torch's oneDNN reports it."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return torch.backends.cpu.get_cpu_capability() in ('AVX512_BF16', 'AMX')


def parse_dtype(dtype: Union[None, str, torch.dtype]) -> Union[None, str, torch.dtype]:
    """A torch dtype, ``'auto'`` or ``None`` from a dtype or one of its names."""
    if dtype is None or (isinstance(dtype, torch.dtype) and dtype in _DTYPES):
        return dtype
    if isinstance(dtype, str):
        key = dtype.strip().lower().removeprefix('torch.')
        if key == 'auto':
            return 'auto'
        if key in _DTYPE_NAMES:
            return _DTYPE_NAMES[key]
    raise ConfigError(f"unsupported dtype={dtype!r}; expected 'auto', one of torch.float32, torch.float16, "
                      f"torch.bfloat16 or their names {sorted(_DTYPE_NAMES)}")


class Precision(tuple):
    """``(dtype, quantize)``: the activation/weight dtype and ``None`` or a weight format of ``QUANT_METHODS``."""

    def __new__(cls, dtype: torch.dtype, quantize: Optional[str]):
        return super().__new__(cls, (dtype, quantize))

    @property
    def dtype(self) -> torch.dtype:
        return self[0]

    @property
    def quantize(self) -> Optional[str]:
        return self[1]


def _auto_dtype(device: torch.device, quantize: Optional[str]) -> Tuple[torch.dtype, str]:
    if device.type == 'cuda':
        return torch.float16, 'CUDA device: float16'
    if quantize == 'fp16':
        return torch.float32, 'fp16 weights take float32 activations (fbgemm)'
    if quantize == 'int8-dynamic':  # bf16 activations only add conversions and a slower bf16 attention
        return torch.float32, 'int8-dynamic runs fastest with float32 activations (quantised per row per call)'
    if device.type == 'cpu' and cpu_has_native_bf16():
        return torch.bfloat16, f'this CPU has native bf16 ({torch.backends.cpu.get_cpu_capability()})'
    if device.type == 'cpu' and quantize == 'int8':
        return torch.bfloat16, 'int8 weights need bf16 activations on CPU (this CPU emulates bf16: slow)'
    return torch.float32, f'no native half precision on {device.type} ({torch.backends.cpu.get_cpu_capability()})'


#: Per ``quantize=`` format: the devices it runs on, its activation dtypes there, and the kernel it needs.
_NEEDS = {
    'int8': ({'cpu': (torch.bfloat16,), 'cuda': (torch.float16, torch.bfloat16)}, 'torch._weight_int8pack_mm'),
    'int8-dynamic': ({'cpu': (torch.float32, torch.bfloat16)},
                     "an int8 GEMM exact over u8 x s8 (fbgemm's torch.ops.quantized.linear_with_input_q_dq_qweight_"
                     "dq_output_fp32 or oneDNN's torch.ops.onednn.qlinear_pointwise)"),
    'fp16': ({'cpu': (torch.float32,)}, "fbgemm's fp16 GEMM (torch.ops.quantized.linear_dynamic_fp16)"),
}


def _check_quantize(quantize: Optional[str], dtype: torch.dtype, device: torch.device) -> None:
    if quantize is None:
        return
    devices, kernel = _NEEDS[quantize]
    allowed = devices.get(device.type, (dtype,))
    if dtype not in allowed:
        names = ' or '.join(str(d) for d in allowed)
        raise ConfigError(f"quantize={quantize!r} on {device.type} needs dtype={names} (or 'auto') activations, "
                          f"got {dtype}: {kernel} takes those")
    if device.type not in devices or not kernel_available(quantize, device):
        hint = " (on CUDA, dtype='float16' reads half the bytes)" if quantize == 'fp16' else ''
        raise MissingDependencyError(f"quantize={quantize!r} needs {kernel} on {device.type}, which torch "
                                     f"{torch.__version__} does not provide there; load without quantize "
                                     f"(dtype='auto' for half precision){hint}")


def resolve_precision(dtype: Union[None, str, torch.dtype] = None, quantize: Optional[str] = None,
                      device: Union[str, torch.device] = 'cpu', fp16: bool = False) -> Precision:
    """The one place a ``dtype`` / ``quantize`` / ``fp16`` request becomes ``Precision(dtype, quantize)``.

    ``dtype``: ``None`` (float32; with ``quantize``, as ``'auto'``), a torch dtype, one of its names
    ('fp32', 'bf16', 'half', ...) or ``'auto'``: bf16 on CPUs with native bf16, fp16 on CUDA,
    float32 otherwise and for ``quantize='fp16'`` or ``'int8-dynamic'`` (one INFO log line says which and why).
    ``quantize``: ``None`` or a weight format of :data:`rudolph.model.quant.QUANT_METHODS`.
    ``fp16=True`` (the original flag) is float16 on CUDA; on CPU it warns and keeps float32.
    Unsupported combinations raise ``ConfigError`` (``MissingDependencyError`` when torch lacks
    the format's kernel on the device).
    """
    device = torch.device(device)
    parsed = parse_dtype(dtype)
    if quantize is not None and quantize not in QUANT_METHODS:
        raise ConfigError(f'unsupported quantize={quantize!r}; expected None or one of {list(QUANT_METHODS)}')
    if fp16 and parsed not in (None, torch.float16):
        raise ConfigError(f'fp16=True contradicts dtype={dtype!r}; pass one of them')
    if parsed == 'auto' or (parsed is None and quantize):
        parsed, why = _auto_dtype(device, quantize)
        logger.info('precision: %s%s on %s (%s)', str(parsed).removeprefix('torch.'),
                    f' activations, {quantize} weights' if quantize else '', device, why)
    elif fp16 or parsed == torch.float16:
        if device.type == 'cpu':
            warnings.warn('float16 on CPU: float16 matmuls there are slow and poorly supported, so the model '
                          'stays in float32. Use dtype=torch.bfloat16 (or "auto") for reduced precision on CPU.',
                          stacklevel=3)
            parsed = torch.float32
        else:
            parsed = torch.float16
    parsed = parsed or torch.float32
    _check_quantize(quantize, parsed, device)
    return Precision(parsed, quantize)
