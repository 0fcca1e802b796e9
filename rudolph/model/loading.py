"""``get_rudolph_model``: build a config, fetch the checkpoint, load it strictly and cheaply.

The reading itself is :mod:`rudolph.model.checkpoint` (one loader, shared with ``ruDolphModel.from_pretrained``);
its names are re-exported here, where earlier code imported them from.
"""
import os
from typing import Any, Mapping, Optional, Union

import torch

from rudolph.errors import ConfigError
from rudolph.io.files import check_finite, describe_unreadable, safe_torch_load  # noqa: F401 (re-exported)
from rudolph.model.checkpoint import (  # noqa: F401 (re-exported)
    SAFE_WEIGHTS_NAME,
    WEIGHTS_NAME,
    check_state_dict,
    check_weights_fit,
    expected_shapes,
    instantiate,
    is_mask_key,
    load_checkpoint,
    resolve_checkpoint,
)
from rudolph.model.configs import MODELS
from rudolph.model.folder import is_model_folder, load_model, looks_like_repo_id
from rudolph.model.fp16 import FP16Module
from rudolph.model.model import ruDolphModel
from rudolph.model.precision import parse_dtype, resolve_precision

__all__ = ['get_rudolph_model', 'load_checkpoint', 'resolve_checkpoint', 'check_state_dict', 'safe_torch_load',
           'check_finite', 'describe_unreadable', 'resolve_dtype', 'expected_shapes', 'check_weights_fit']

_is_mask_key = is_mask_key  # the older private name


def resolve_dtype(dtype: Union[None, str, torch.dtype], device: Union[str, torch.device] = 'cpu') -> Optional[torch.dtype]:
    """``None``, a floating torch dtype, one of its usual names ('fp16', 'bfloat16', ...) or ``'auto'`` -> torch dtype.

    Parsing only (float16 stays float16 here); :func:`rudolph.model.precision.resolve_precision` is what
    loading applies (float16 on CPU kept float32, 'auto' per device, int8 combinations).
    """
    parsed = parse_dtype(dtype)
    return resolve_precision('auto', device=device).dtype if parsed == 'auto' else parsed


def get_rudolph_model(name: str, pretrained: bool = True, fp16: bool = False,
                      device: Union[str, torch.device] = 'cpu', cache_dir: Optional[str] = None, *,
                      checkpoint_path: Optional[Union[str, os.PathLike]] = None,
                      dtype: Union[None, str, torch.dtype] = None, quantize: Optional[str] = None,
                      compile: Union[bool, str] = False,
                      model_params: Optional[Mapping[str, Any]] = None,
                      **model_kwargs) -> Union[ruDolphModel, FP16Module]:
    """Build RuDOLPH ``name`` (a key of ``MODELS``) and, if ``pretrained``, load its weights; or load the
    folder ``name`` written by ``save_pretrained`` (or a hub repo id of one) as ``ruDolphModel.from_pretrained``
    does (``pretrained=False``: its architecture with random weights).

    Weights come from ``checkpoint_path`` (a file, or a folder holding ``pytorch_model.bin``
    or the registry's file name; or an int8 file of :func:`rudolph.model.quant.save_int8`) or
    from the hub (:func:`rudolph.io.hub.hub_download`: the cache first, then one short try;
    honours ``HF_HOME``, ``HF_HUB_OFFLINE``, tokens and ``cache_dir``).
    ``model_kwargs`` override constructor arguments (dropout,
    ``gradient_checkpointing``...). ``fp16=True`` returns, as the original did, an ``FP16Module``
    whose ``.module`` is the model: float16 on CUDA; on CPU it warns and keeps float32. ``dtype``
    selects float32 (default), float16, bfloat16 or ``'auto'``
    (a torch dtype or a name: 'fp32', 'fp16'/'half', 'bf16'...; see
    :func:`rudolph.model.precision.resolve_precision`). ``quantize='int8'``: int8 weights for the
    transformer's linear layers and the output head, quantised tensor by tensor while loading.
    ``compile=True`` compiles the single-token decode step with ``torch.compile`` (static
    shapes, one compilation for all positions); a string is passed as the compile ``mode``,
    e.g. ``'reduce-overhead'`` for CUDA graphs. ``model_params``: the constructor params of an
    architecture that is not in ``MODELS`` (``name`` then only labels it; needs ``checkpoint_path``
    when ``pretrained``). The model is returned in eval mode.
    """
    if model_params is None and name not in MODELS and (is_model_folder(name) or looks_like_repo_id(name)):
        model = load_model(ruDolphModel, name, device=device, dtype=dtype, quantize=quantize, fp16=fp16,
                           cache_dir=cache_dir, pretrained=pretrained, model_kwargs=model_kwargs)
        return _wrapped(_maybe_compile(model, compile), fp16)
    config = _config(name, model_params)
    params = {**config['model_params'], **model_kwargs}
    path = None
    if pretrained:
        if model_params is not None and checkpoint_path is None:
            raise ConfigError(f'model_params describe an unregistered architecture ({name!r}); '
                              f'pass checkpoint_path too')
        path = resolve_checkpoint(name, checkpoint_path, cache_dir)
    model = instantiate(ruDolphModel, name, params, path, device, dtype, quantize, fp16)
    model.spc_tokens = dict(config.get('spc_tokens') or {})
    return _wrapped(_maybe_compile(model, compile), fp16)


def _config(name: str, model_params: Optional[Mapping[str, Any]]) -> Mapping[str, Any]:
    if model_params is not None:
        return {'model_params': dict(model_params)}
    if name not in MODELS:
        raise ConfigError(f'unknown RuDOLPH model {name!r}; expected one of {sorted(MODELS)}, a folder written by '
                          'save_pretrained or a hub repo id (owner/name) of one')
    return MODELS[name]


def _wrapped(model: ruDolphModel, fp16: bool) -> Union[ruDolphModel, FP16Module]:
    """``fp16=True``: the original's ``FP16Module`` around the model (float16 on CUDA, float32 on CPU)."""
    return FP16Module(model, convert=False) if fp16 else model


def _maybe_compile(model: ruDolphModel, compile: Union[bool, str]) -> ruDolphModel:
    if not compile:
        return model
    return model.compile_decode(mode=compile if isinstance(compile, str) else None)
