"""Half-precision wrapper kept for code written against the original package."""
import torch
from torch import nn

__all__ = ['FP16Module']


def _convert(value, predicate, convert):
    if isinstance(value, (list, tuple)):
        return type(value)(_convert(v, predicate, convert) for v in value)
    if isinstance(value, dict):
        return {k: _convert(v, predicate, convert) for k, v in value.items()}
    return convert(value) if predicate(value) else value


def _is_float_tensor(value) -> bool:
    return torch.is_tensor(value) and value.is_floating_point()


class FP16Module(nn.Module):
    """Holds ``module`` in float16; float inputs are cast to half, float outputs back to float32.

    ``get_rudolph_model(..., fp16=True)`` already returns a half-precision model that the
    pipelines call directly; this wrapper exists so that ``FP16Module(model)`` in old
    notebooks keeps working. Attribute access falls through to the wrapped module.
    """

    def __init__(self, module: nn.Module):
        super().__init__()
        self.add_module('module', module.half())

    def forward(self, *inputs, **kwargs):
        inputs = _convert(inputs, _is_float_tensor, torch.Tensor.half)
        kwargs = _convert(kwargs, _is_float_tensor, torch.Tensor.half)
        outputs = self.module(*inputs, **kwargs)
        return _convert(outputs, lambda v: _is_float_tensor(v) and v.dtype == torch.float16, torch.Tensor.float)

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            if 'module' not in self._modules:  # during __init__, before the module is attached
                raise
            return getattr(self._modules['module'], name)

    def state_dict(self, *args, **kwargs):
        return self.module.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        return self.module.load_state_dict(state_dict, strict=strict, assign=assign)
