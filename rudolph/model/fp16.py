"""The original's half-precision wrapper: what ``get_rudolph_model(..., fp16=True)`` returns.

The original returned ``FP16Module(model)``: the model sits in ``.module`` (the fine-tuning notebook
calls ``freeze(model.module, ...)``), calls cast float32 inputs to float16 and float16 outputs back
to float32, and ``get_param``, ``state_dict``, ``load_state_dict`` and ``to`` go to the model. Here
every other attribute falls through to the model too, so the whole package accepts the wrapper
(:func:`unwrap_model` gives the model itself). On CPU the model inside stays float32 (float16 matmuls
are slow and poorly supported there; the loader's warning says so): the wrapper then casts nothing.
"""
from typing import Any, Callable

import torch
from torch import nn

__all__ = ['FP16Module', 'unwrap_model', 'conversion_helper', 'fp32_to_fp16', 'fp16_to_fp32']


def _convert(value: Any, predicate: Callable[[Any], bool], convert: Callable[[Any], Any]) -> Any:
    if isinstance(value, (list, tuple)):
        return type(value)(_convert(v, predicate, convert) for v in value)
    if isinstance(value, dict):
        return {k: _convert(v, predicate, convert) for k, v in value.items()}
    return convert(value) if predicate(value) else value


def _is_float32(value: Any) -> bool:
    return torch.is_tensor(value) and value.dtype == torch.float32


def _is_float16(value: Any) -> bool:
    return torch.is_tensor(value) and value.dtype == torch.float16


def conversion_helper(val: Any, conversion: Callable[[Any], Any]) -> Any:
    """``conversion`` applied to ``val``, or to each item of a (nested) tuple/list (the original's helper)."""
    if not isinstance(val, (tuple, list)):
        return conversion(val)
    return type(val)(conversion_helper(v, conversion) for v in val)


def fp32_to_fp16(val: Any) -> Any:
    """Float32 tensors in ``val`` (nested tuples/lists too) as float16; everything else unchanged."""
    return conversion_helper(val, lambda v: v.half() if _is_float32(v) else v)


def fp16_to_fp32(val: Any) -> Any:
    """Float16 tensors in ``val`` (nested tuples/lists too) as float32; everything else unchanged."""
    return conversion_helper(val, lambda v: v.float() if _is_float16(v) else v)


class FP16Module(nn.Module):
    """``module`` behind the original's fp16 interface (see the module docstring).

    ``FP16Module(model)`` converts ``model`` to float16, as the original did; ``convert=False``
    keeps its precision (what the loader uses on CPU, where the model stays float32).
    """

    def __init__(self, module: nn.Module, convert: bool = True):
        super().__init__()
        self.add_module('module', module.half() if convert else module)

    def _half_inside(self) -> bool:
        for param in self.module.parameters():
            if param.is_floating_point():
                return param.dtype == torch.float16
        return False

    def forward(self, *inputs: Any, **kwargs: Any) -> Any:
        """The module's output for ``inputs`` cast to its float16 (float32 stays when the module is float32)."""
        if self._half_inside():
            inputs = _convert(inputs, _is_float32, torch.Tensor.half)
            kwargs = _convert(kwargs, _is_float32, torch.Tensor.half)
        return _convert(self.module(*inputs, **kwargs), _is_float16, torch.Tensor.float)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            modules = self.__dict__.get('_modules') or {}
            if 'module' not in modules:  # during __init__ (or unpickling), before the module is attached
                raise
            return getattr(modules['module'], name)

    def get_param(self, item: str) -> Any:
        """The wrapped model's ``get_param``."""
        return self.module.get_param(item)

    def state_dict(self, *args: Any, **kwargs: Any):
        """The wrapped module's state dict (no ``module.`` prefix), as in the original."""
        return self.module.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        return self.module.load_state_dict(state_dict, strict=strict, assign=assign)

    def to(self, *args: Any, **kwargs: Any) -> 'FP16Module':
        """Moves (or casts) the wrapped module through its own ``to`` (which tracks the model's device)."""
        self.module.to(*args, **kwargs)
        return self


def unwrap_model(model: nn.Module) -> nn.Module:
    """The model inside an :class:`FP16Module` (nested ones too); any other module as it is."""
    while isinstance(model, FP16Module):
        model = model.module
    return model
