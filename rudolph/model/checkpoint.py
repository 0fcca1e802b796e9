"""Checkpoint reading for RuDOLPH: locate, read (safetensors or torch files, float or int8), check and load
weights into a model class built on ``meta``. Below :mod:`rudolph.model.model` (the class is a parameter),
so that the model's own ``from_pretrained`` and :func:`rudolph.model.loading.get_rudolph_model` share it."""
import contextlib
import logging
import os
import re
import zipfile
from typing import Any, Dict, Mapping, Optional, Tuple, Union

import torch
from torch import nn

from rudolph.errors import CheckpointMismatchError, ConfigError, CorruptCheckpointError, WeightsNotFoundError
from rudolph.io.files import check_finite, safe_torch_load
from rudolph.io.hub import hub_download
from rudolph.io.paths import folder_file
from rudolph.io.safetensors import is_safetensors, read_safetensors, read_safetensors_shapes
from rudolph.model import quant
from rudolph.model.config import RudolphConfig
from rudolph.model.configs import MODELS
from rudolph.model.device import check_device
from rudolph.model.heap import release_pages, trim_heap
from rudolph.model.image_attention import MASK_NAMES
from rudolph.model.precision import Precision, resolve_precision

__all__ = ['skip_init', 'is_mask_key', 'resolve_checkpoint', 'load_checkpoint', 'check_state_dict', 'load_weights',
           'build_model', 'instantiate', 'expected_shapes', 'check_weights_fit', 'WEIGHTS_NAME',
           'SAFE_WEIGHTS_NAME']

logger = logging.getLogger(__name__)
WEIGHTS_NAME = 'pytorch_model.bin'
SAFE_WEIGHTS_NAME = 'model.safetensors'

_FIRST_LAYER = 'transformer.layers.0.'
_LAYER_KEY = re.compile(r'^transformer\.layers\.(\d+)\.')

Shapes = Mapping[str, Tuple[int, ...]]


@contextlib.contextmanager
def skip_init():
    """Build modules without running ``torch.nn.init``.

    Used while constructing: the model applies its own init once afterwards (instead of
    PyTorch's default init followed by ours), or a checkpoint overwrites every value. On
    the meta device it also avoids importing PyTorch's reference ops (seconds) for nothing.
    """
    names = ('normal_', 'uniform_', 'kaiming_uniform_', 'ones_', 'zeros_')
    saved = {name: getattr(nn.init, name) for name in names}
    try:
        for name in names:
            setattr(nn.init, name, lambda tensor, *args, **kwargs: tensor)
        yield
    finally:
        for name, fn in saved.items():
            setattr(nn.init, name, fn)


def is_mask_key(key: str) -> bool:
    """Whether ``key`` names one of the four mask buffers (rebuilt from the config, never stored)."""
    return key.startswith('transformer.') and key.split('.', 1)[1] in MASK_NAMES


def _folder_checkpoint(name: str, folder: str) -> str:
    """The weights file inside ``folder``: ``model.safetensors`` (what ``save_pretrained`` and the trainer write),
    ``pytorch_model.bin`` (older fine-tunes), then the registry's name."""
    candidates = [SAFE_WEIGHTS_NAME, WEIGHTS_NAME]
    registered = MODELS.get(name, {}).get('filename')
    if registered and registered not in candidates:
        candidates.append(registered)
    for candidate in candidates:
        if os.path.isfile(os.path.join(folder, candidate)):  # a link in the folder must stay in it
            return folder_file(folder, candidate, f'the weights of the folder {folder!r}')
    names = ', '.join(candidates[:-1]) + ' and ' + candidates[-1]
    raise WeightsNotFoundError(f'no checkpoint in the folder {folder!r}: looked for {names}; '
                               f'expected a folder holding one of them (e.g. a fine-tuning step-*/ folder), '
                               f'or pass the file itself as checkpoint_path')


def resolve_checkpoint(name: str, checkpoint_path: Optional[Union[str, os.PathLike]] = None,
                       cache_dir: Optional[str] = None) -> str:
    """Local path of the weights: ``checkpoint_path`` (file or folder) or the hub file of ``name``."""
    if checkpoint_path is not None:
        path = os.fspath(checkpoint_path)
        if os.path.isdir(path):
            return _folder_checkpoint(name, path)
        if not os.path.isfile(path):
            raise WeightsNotFoundError(f'checkpoint not found: {path!r} (expected a {WEIGHTS_NAME} file or a '
                                       f'folder holding one)')
        return path
    config = MODELS[name]
    if config.get('local_path'):  # a model shipped inside the package (e.g. 'tiny-shapes'): no download
        return resolve_checkpoint(name, config['local_path'])
    return hub_download(config['repo_id'], config['filename'], cache_dir=cache_dir,
                        what=f'the weights of RuDOLPH {name!r}',
                        local_arg="checkpoint_path='path/to/pytorch_model.bin'")


def load_checkpoint(path: str) -> Dict[str, torch.Tensor]:
    """Read a plain state dict (``.safetensors``, or a ``torch.save`` file memory-mapped when its format allows it).

    The format is recognised by the file's content, not its name.
    """
    state = read_safetensors(path, 'RuDOLPH checkpoint') if is_safetensors(path) else _torch_state(path)
    state = _unwrapped(state)
    check_finite(state, path)
    return state


def _unwrapped(state: Mapping[str, Any]) -> Dict[str, Any]:
    """Checkpoints saved from DDP / FP16Module wrappers carry a uniform 'module.' prefix: dropped."""
    if state and all(k.startswith('module.') for k in state):
        return {k[len('module.'):]: v for k, v in state.items()}
    return dict(state)


def expected_shapes(cls: type, config: RudolphConfig) -> Dict[str, Tuple[int, ...]]:
    """Name and shape of every tensor a ``cls`` model of ``config`` loads (mask buffers aside).

    Read from a one-layer model on ``meta`` (its layer repeated ``num_layers`` times): nothing is
    allocated, whatever sizes the config asks for.
    """
    with torch.device('meta'), skip_init():
        one = cls(config.replace(num_layers=1, gradient_checkpointing=None), device='cpu')
    shapes = {}
    for key, value in one.state_dict().items():
        if is_mask_key(key):
            continue
        if key.startswith(_FIRST_LAYER):
            for i in range(config.num_layers):
                shapes[f'transformer.layers.{i}.{key[len(_FIRST_LAYER):]}'] = tuple(value.shape)
        else:
            shapes[key] = tuple(value.shape)
    return shapes


def check_weights_fit(cls: type, config: RudolphConfig, shapes: Shapes, source: str, label: Any = None) -> None:
    """:class:`CheckpointMismatchError` unless the tensors of ``source`` (names and shapes, e.g. from a
    safetensors header) are those of a ``cls`` model of ``config``; checked before the model is built, so a
    config asking for a huge model fails here rather than allocating it."""
    layers = {int(m.group(1)) for m in map(_LAYER_KEY.match, shapes) if m}
    if len(layers) != config.num_layers:
        raise CheckpointMismatchError(f'{source}: the config asks for num_layers={config.num_layers} but the weights '
                                      f'hold {len(layers)} layers; expected the config saved with these weights')
    _compare(expected_shapes(cls, config), shapes, label if label is not None else config)


def check_state_dict(model: torch.nn.Module, state: Mapping[str, torch.Tensor], config: Any) -> Dict[str, torch.Tensor]:
    """State without mask buffers, after checking names and shapes against ``model``; raises on any mismatch."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items() if not is_mask_key(k)}
    given = {k: v for k, v in state.items() if not is_mask_key(k)}
    _compare(expected, {k: tuple(v.shape) for k, v in given.items()}, config)
    return given


def _compare(expected: Shapes, shapes: Shapes, config: Any) -> None:
    """One :class:`CheckpointMismatchError` listing the missing, unexpected and misshapen tensors, if any."""
    expected = {k: tuple(v) for k, v in expected.items()}
    given = {k: tuple(v) for k, v in shapes.items() if not is_mask_key(k)}
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    wrong = [f'{k}: checkpoint {given[k]} vs model {expected[k]}'
             for k in expected if k in given and given[k] != expected[k]]
    problems = []
    for label, items in (('missing keys', missing), ('unexpected keys', unexpected), ('shape mismatches', wrong)):
        if items:
            shown = ', '.join(items[:5]) + (f' ... (+{len(items) - 5} more)' if len(items) > 5 else '')
            problems.append(f'{len(items)} {label}: {shown}')
    if problems:
        raise CheckpointMismatchError(f'checkpoint does not match config {config}: ' + '; '.join(problems))


def _torch_state(path: str) -> Mapping[str, torch.Tensor]:
    """The memory-mapped state dict of a torch file (a bare one, or under ``'state_dict'``)."""
    state = safe_torch_load(path, 'RuDOLPH checkpoint', mmap=True)
    if isinstance(state, Mapping) and 'state_dict' in state and isinstance(state['state_dict'], Mapping):
        state = state['state_dict']
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        kind = type(state).__name__ if not isinstance(state, Mapping) else 'mapping with non-tensor values'
        raise CorruptCheckpointError(f'{path!r} holds a {kind}, expected a state dict of tensors')
    return state


def _lazy_checkpoint(path: str) -> Dict[str, torch.Tensor]:
    """The memory-mapped tensors of a checkpoint, not yet checked for NaN/inf (done tensor by tensor)."""
    if is_safetensors(path):
        return load_checkpoint(path)
    return _unwrapped(_torch_state(path))


def _weights_shapes(path: str, int8: bool) -> Tuple[Dict[str, Tuple[int, ...]], Optional[Dict[str, torch.Tensor]]]:
    """(name -> shape of the tensors of ``path``, its memory-mapped state when reading the shapes loaded it).

    A safetensors file's shapes come from its header alone; a torch file is read (memory-mapped
    where its format allows) and its state returned, so that it is not read twice.
    """
    if is_safetensors(path):
        shapes = _unwrapped(read_safetensors_shapes(path, 'RuDOLPH checkpoint'))
        if int8:  # the per-row scales of the int8 linears are not in the float model
            shapes = {k: v for k, v in shapes.items() if not k.endswith('.weight_scale')}
        return shapes, None
    state = _lazy_checkpoint(path)
    return {k: tuple(v.shape) for k, v in state.items()}, state


def _quantized_state(model: nn.Module, source: Dict[str, torch.Tensor], path: str, label: Dict[str, Any],
                     device: torch.device, precision: Precision) -> Dict[str, torch.Tensor]:
    """The state of ``model`` in format ``precision.quantize``, converted from the float checkpoint ``path`` one
    tensor at a time.

    Each source tensor is read from the memory map, checked, converted, and its pages are dropped
    again (and the heap trimmed), so the float model never sits in memory whole: the peak is about
    the quantised model plus one tensor (``bench/precision.py --parts load``).
    """
    dtype, method = precision
    checked = check_state_dict(model, source, label)
    source.clear()  # the caller's reference too: each tensor is dropped once converted
    source = checked
    mapped = zipfile.is_zipfile(path)  # torch memory-maps zip checkpoints only
    linears = {f'{n}.weight' for n in quant.quantized_linear_names(model)}
    quant.quantize_linears(model, dtype, fill=False, method=method)
    state = {}
    for key in list(source):
        value = source.pop(key)
        if key in linears:
            entries = quant.quantized_entries(method, key, value)
            _check_converted(key, value, entries, path, method)
            state.update({k: v.to(device) for k, v in entries.items()})
        else:
            check_finite({key: value}, path)
            state[key] = value.to(device=device, dtype=dtype if value.is_floating_point() else value.dtype,
                                  copy=True)
        if mapped:
            release_pages(value)
        del value
        trim_heap()
    return state


def _check_converted(key: str, value: torch.Tensor, entries: Dict[str, torch.Tensor], path: str, method: str) -> None:
    """Raise when a converted weight is not finite: the checkpoint's own NaN/inf (``CheckpointError``), or a
    finite weight beyond what ``method`` holds (float16 overflows past 65504: ``ConfigError``)."""
    # a NaN or inf anywhere in a row makes its max |w| (the int8 scale) non-finite: the source is only
    # scanned again when the converted tensors are not finite
    if all(bool(torch.isfinite(v).all()) for v in entries.values() if v.is_floating_point()):
        return
    check_finite({key: value}, path)
    raise ConfigError(f"{path}: tensor {key!r} holds weights up to |w| = {float(value.abs().max()):.4g}, beyond "
                      f"float16's range (65504): quantize={method!r} cannot hold them; load it with "
                      f"quantize='int8-dynamic' or 'int8', or without quantize")


def _int8_file_state(model: nn.Module, path: str, saved: str, label: Dict[str, Any], device: torch.device,
                     precision: Precision) -> Dict[str, torch.Tensor]:
    """The state of a quantised file (:func:`rudolph.model.quant.save_int8`) whose metadata names format ``saved``,
    checked against ``model`` once its linears are in the format loaded."""
    method = precision.quantize or saved
    if (saved == 'fp16') != (method == 'fp16'):  # int8 and int8-dynamic share their weights
        raise ConfigError(f"{path!r} holds {saved} weights; it loads with quantize={saved!r}"
                          f"{' or int8-dynamic' if saved != 'fp16' else ''}, not {method!r}")
    quant.quantize_linears(model, precision.dtype, fill=False, method=method)
    state = check_state_dict(model, quant.read_int8_file(path), label)
    check_finite(state, path)
    # the quantised layers' own dtypes (int8 / fp16 weights, float32 scales); other floats in the activation dtype
    kept = {f'{name}.{k}': v.dtype for name, m in model.named_modules() if isinstance(m, quant.QUANTIZED_LAYERS)
            for k, v in m.state_dict(keep_vars=True).items() if k != 'bias'}
    return {k: v.to(device=device, dtype=kept.get(k, precision.dtype if v.is_floating_point() else v.dtype))
            for k, v in state.items()}


def load_weights(cls: type, name: str, params: Dict[str, Any], path: str, device: torch.device,
                 precision: Precision) -> nn.Module:
    """A ``cls(device=device, **params)`` built on ``meta`` and filled from ``path`` (float checkpoint or int8
    file) in ``precision``: the one loader of RuDOLPH weights."""
    config = RudolphConfig.from_params(params)
    label = {'name': name, **params}
    saved = quant.int8_file_metadata(path)
    int8 = saved is not None
    shapes, source = _weights_shapes(path, int8)
    check_weights_fit(cls, config, shapes, path, label)  # before the model is built: its size is the file's
    # Parameters on 'meta': no time or memory spent on an init the checkpoint overwrites.
    with torch.device('meta'), skip_init():
        model = cls(config, device=device)
    if int8:
        state = _int8_file_state(model, path, saved.get('quantize', 'int8'), label, device, precision)
    elif precision.quantize:
        state = _quantized_state(model, source if source is not None else _lazy_checkpoint(path), path, label,
                                 device, precision)
    else:
        if source is not None:
            check_finite(source, path)
        state = check_state_dict(model, source if source is not None else load_checkpoint(path), label)
        dtype = precision.dtype
        state = {k: v.to(device=device, dtype=dtype if v.is_floating_point() else v.dtype) for k, v in state.items()}
    for mask_name, mask in model.transformer.build_masks(device).items():
        state[f'transformer.{mask_name}'] = mask
    model.load_state_dict(state, strict=True, assign=True)
    logger.info('loaded RuDOLPH %s from %s (%s%s)', name, path, str(precision.dtype).removeprefix('torch.'),
                f', {precision.quantize} weights' if precision.quantize else '')
    return model


def build_model(cls: type, params: Dict[str, Any], device: torch.device, precision: Precision) -> nn.Module:
    """A randomly initialised ``cls(device=device, **params)`` in ``precision`` (int8 linears when quantised)."""
    model = cls(device=device, **params).to(device=device, dtype=precision.dtype)
    if precision.quantize:
        quant.quantize_linears(model, precision.dtype, method=precision.quantize)
    return model


def instantiate(cls: type, name: str, params: Dict[str, Any], path: Optional[str], device: Union[str, torch.device],
                dtype: Union[None, str, torch.dtype] = None, quantize: Optional[str] = None,
                fp16: bool = False) -> nn.Module:
    """``cls`` with ``params`` on ``device``: random weights when ``path`` is ``None``, else the checkpoint's (an
    int8 file loads as int8), in the precision :func:`rudolph.model.precision.resolve_precision` picks; eval mode.
    A device that is not here is a ``ConfigError`` naming those that are."""
    device = torch.device(check_device(device))
    saved = quant.int8_file_metadata(path) if path is not None else None
    if saved is not None and quantize is None:
        quantize = saved.get('quantize', 'int8')  # the file is quantised: load it as it was saved
    precision = resolve_precision(dtype, quantize, device, fp16)
    if path is None:
        model = build_model(cls, params, device, precision)
    else:
        model = load_weights(cls, name, params, path, device, precision)
    model.device = device
    return model.eval()
