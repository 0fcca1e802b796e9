"""``get_rudolph_model``: build a config, fetch the checkpoint, load it strictly and cheaply."""
import logging
import os
import re
from typing import Any, Dict, Mapping, Optional, Tuple, Union

import torch

from rudolph.errors import CheckpointMismatchError, ConfigError, CorruptCheckpointError, WeightsNotFoundError
from rudolph.io.files import check_finite, describe_unreadable, safe_torch_load  # noqa: F401 (re-exported)
from rudolph.io.hub import hub_download
from rudolph.io.paths import folder_file
from rudolph.io.safetensors import is_safetensors, read_safetensors, read_safetensors_shapes
from rudolph.model import quant
from rudolph.model.config import RudolphConfig
from rudolph.model.configs import MODELS
from rudolph.model.device import check_device
from rudolph.model.image_attention import MASK_NAMES
from rudolph.model.model import ruDolphModel, skip_init

__all__ = ['get_rudolph_model', 'load_checkpoint', 'resolve_checkpoint', 'check_state_dict', 'safe_torch_load',
           'check_finite', 'describe_unreadable', 'resolve_dtype', 'expected_shapes', 'check_weights_fit']

logger = logging.getLogger(__name__)
WEIGHTS_NAME = 'pytorch_model.bin'
SAFE_WEIGHTS_NAME = 'model.safetensors'


_FIRST_LAYER = 'transformer.layers.0.'
_LAYER_KEY = re.compile(r'^transformer\.layers\.(\d+)\.')

Shapes = Mapping[str, Tuple[int, ...]]


def _is_mask_key(key: str) -> bool:
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


def expected_shapes(config: RudolphConfig) -> Dict[str, Tuple[int, ...]]:
    """Name and shape of every tensor a model of ``config`` loads (mask buffers aside).

    Read from a one-layer model on ``meta`` (its layer repeated ``num_layers`` times): nothing is
    allocated, whatever sizes the config asks for.
    """
    with torch.device('meta'), skip_init():
        one = ruDolphModel(config.replace(num_layers=1, gradient_checkpointing=None), device='cpu')
    shapes = {}
    for key, value in one.state_dict().items():
        if _is_mask_key(key):
            continue
        if key.startswith(_FIRST_LAYER):
            for i in range(config.num_layers):
                shapes[f'transformer.layers.{i}.{key[len(_FIRST_LAYER):]}'] = tuple(value.shape)
        else:
            shapes[key] = tuple(value.shape)
    return shapes


def check_weights_fit(config: RudolphConfig, shapes: Shapes, source: str, label: Any = None) -> None:
    """:class:`CheckpointMismatchError` unless the tensors of ``source`` (names and shapes, e.g. from a
    safetensors header) are those of a model of ``config``; checked before the model is built, so a
    config asking for a huge model fails here rather than allocating it."""
    layers = {int(m.group(1)) for m in map(_LAYER_KEY.match, shapes) if m}
    if len(layers) != config.num_layers:
        raise CheckpointMismatchError(f'{source}: the config asks for num_layers={config.num_layers} but the weights '
                                      f'hold {len(layers)} layers; expected the config saved with these weights')
    _compare(expected_shapes(config), shapes, label if label is not None else config)


def check_state_dict(model: torch.nn.Module, state: Mapping[str, torch.Tensor], config: Any) -> Dict[str, torch.Tensor]:
    """State without mask buffers, after checking names and shapes against ``model``; raises on any mismatch."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items() if not _is_mask_key(k)}
    given = {k: v for k, v in state.items() if not _is_mask_key(k)}
    _compare(expected, {k: tuple(v.shape) for k, v in given.items()}, config)
    return given


def _compare(expected: Shapes, shapes: Shapes, config: Any) -> None:
    """One :class:`CheckpointMismatchError` listing the missing, unexpected and misshapen tensors, if any."""
    expected = {k: tuple(v) for k, v in expected.items()}
    given = {k: tuple(v) for k, v in shapes.items() if not _is_mask_key(k)}
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


def resolve_dtype(dtype: Union[None, str, torch.dtype], device: Union[str, torch.device] = 'cpu') -> Optional[torch.dtype]:
    """``None``, a floating torch dtype, one of its usual names ('fp16', 'bfloat16', ...) or ``'auto'`` -> torch dtype.

    Parsing only (float16 stays float16 here); :func:`rudolph.model.quant.resolve_precision` is what
    loading applies (float16 on CPU kept float32, 'auto' per device, int8 combinations).
    """
    parsed = quant.parse_dtype(dtype)
    return quant.resolve_precision('auto', device=device).dtype if parsed == 'auto' else parsed


def get_rudolph_model(name: str, pretrained: bool = True, fp16: bool = False,
                      device: Union[str, torch.device] = 'cpu', cache_dir: Optional[str] = None, *,
                      checkpoint_path: Optional[Union[str, os.PathLike]] = None,
                      dtype: Union[None, str, torch.dtype] = None, quantize: Optional[str] = None,
                      compile: Union[bool, str] = False,
                      model_params: Optional[Mapping[str, Any]] = None, **model_kwargs) -> ruDolphModel:
    """Build RuDOLPH ``name`` (a key of ``MODELS``) and, if ``pretrained``, load its weights.

    Weights come from ``checkpoint_path`` (a file, or a folder holding ``pytorch_model.bin``
    or the registry's file name; or an int8 file of :func:`rudolph.model.quant.save_int8`) or
    from the hub (:func:`rudolph.io.hub.hub_download`: the cache first, then one short try;
    honours ``HF_HOME``, ``HF_HUB_OFFLINE``, tokens and ``cache_dir``).
    ``model_kwargs`` override constructor arguments (dropout,
    ``gradient_checkpointing``...). ``fp16=True`` gives float16 weights on CUDA; on CPU it
    warns and keeps float32. ``dtype`` selects float32 (default), float16, bfloat16 or ``'auto'``
    (a torch dtype or a name: 'fp32', 'fp16'/'half', 'bf16'...; see
    :func:`rudolph.model.quant.resolve_precision`). ``quantize='int8'``: int8 weights for the
    transformer's linear layers and the output head, quantised tensor by tensor while loading.
    ``compile=True`` compiles the single-token decode step with ``torch.compile`` (static
    shapes, one compilation for all positions); a string is passed as the compile ``mode``,
    e.g. ``'reduce-overhead'`` for CUDA graphs. ``model_params``: the constructor params of an
    architecture that is not in ``MODELS`` (``name`` then only labels it; needs ``checkpoint_path``
    when ``pretrained``). The model is returned in eval mode.
    """
    if model_params is not None:
        config = {'model_params': dict(model_params)}
    elif name not in MODELS:
        raise ConfigError(f'unknown RuDOLPH model {name!r}; expected one of {sorted(MODELS)}')
    else:
        config = MODELS[name]
    params = {**config['model_params'], **model_kwargs}
    device = torch.device(check_device(device))  # a device that is not here: a ConfigError naming those that are
    path = None
    if pretrained:
        if model_params is not None and checkpoint_path is None:
            raise ValueError(f'model_params describe an unregistered architecture ({name!r}); '
                             f'pass checkpoint_path too')
        path = resolve_checkpoint(name, checkpoint_path, cache_dir)
        int8_meta = quant.int8_file_metadata(path)
        if int8_meta is not None and quantize is None:
            quantize = 'int8'  # the file is int8: load it as such
    precision = quant.resolve_precision(dtype, quantize, device, fp16)
    if not pretrained:
        model = ruDolphModel(device=device, **params).to(device=device, dtype=precision.dtype)
        if precision.quantize:
            quant.quantize_linears(model, precision.dtype)
    else:
        model = _load_weights(name, params, path, device, precision)
    model.device = device
    model.spc_tokens = dict(config.get('spc_tokens') or {})
    return _maybe_compile(model.eval(), compile)


def _load_weights(name: str, params: Dict[str, Any], path: str, device: torch.device,
                  precision: 'quant.Precision') -> ruDolphModel:
    """A model built on ``meta`` and filled from ``path`` (float checkpoint or int8 file) in ``precision``."""
    config = RudolphConfig.from_params(params)
    label = {'name': name, **params}
    int8 = quant.int8_file_metadata(path) is not None
    shapes, source = _weights_shapes(path, int8)
    check_weights_fit(config, shapes, path, label)  # before the model is built: its size is the file's
    # Parameters on 'meta': no time or memory spent on an init the checkpoint overwrites.
    with torch.device('meta'), skip_init():
        model = ruDolphModel(config, device=device)
    if int8:
        state = _int8_file_state(model, path, label, device, precision.dtype)
    elif precision.quantize:
        state = _quantized_state(model, source if source is not None else _lazy_checkpoint(path), path, label,
                                 device, precision.dtype)
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
                ', int8 weights' if precision.quantize else '')
    return model


def _torch_state(path: str) -> Mapping[str, torch.Tensor]:
    """The memory-mapped state dict of a torch file (a bare one, or under ``'state_dict'``)."""
    state = safe_torch_load(path, 'RuDOLPH checkpoint', mmap=True)
    if isinstance(state, Mapping) and 'state_dict' in state and isinstance(state['state_dict'], Mapping):
        state = state['state_dict']
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        kind = type(state).__name__ if not isinstance(state, Mapping) else 'mapping with non-tensor values'
        raise CorruptCheckpointError(f'{path!r} holds a {kind}, expected a state dict of tensors')
    return state


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


def _lazy_checkpoint(path: str) -> Dict[str, torch.Tensor]:
    """The memory-mapped tensors of a checkpoint, not yet checked for NaN/inf (done tensor by tensor)."""
    if is_safetensors(path):
        return load_checkpoint(path)
    return _unwrapped(_torch_state(path))


def _quantized_state(model: ruDolphModel, source: Dict[str, torch.Tensor], path: str, label: Dict[str, Any],
                     device: torch.device, dtype: torch.dtype) -> Dict[str, torch.Tensor]:
    """The int8 state of ``model`` quantised from the float checkpoint ``path`` one tensor at a time.

    Each source tensor is read from the memory map, checked, converted, and its pages are dropped
    again (and the heap trimmed), so the float model never sits in memory whole: the peak is about
    the int8 model plus one tensor (``bench/precision.py --parts load``).
    """
    import zipfile

    checked = check_state_dict(model, source, label)
    source.clear()  # the caller's reference too: each tensor is dropped once converted
    source = checked
    mapped = zipfile.is_zipfile(path)  # torch memory-maps zip checkpoints only
    linears = {f'{n}.weight' for n in quant.quantized_linear_names(model)}
    quant.quantize_linears(model, dtype, fill=False)
    state = {}
    for key in list(source):
        value = source.pop(key)
        if key in linears:
            q, scale = quant.quantize_weight(value)
            # a NaN or inf anywhere in a row makes its max |w| (the scale) non-finite: no second pass
            check_finite({key: scale}, path)
            state[key], state[key[:-len('weight')] + 'weight_scale'] = q.to(device), scale.to(device)
        else:
            check_finite({key: value}, path)
            state[key] = value.to(device=device, dtype=dtype if value.is_floating_point() else value.dtype,
                                  copy=True)
        if mapped:
            quant.release_pages(value)
        del value
        quant.trim_heap()
    return state


def _int8_file_state(model: ruDolphModel, path: str, label: Dict[str, Any], device: torch.device,
                     dtype: torch.dtype) -> Dict[str, torch.Tensor]:
    """The state of an int8 file, checked against the (quantised) ``model``; float tensors in ``dtype``."""
    quant.quantize_linears(model, dtype, fill=False)
    state = check_state_dict(model, quant.read_int8_file(path), label)
    check_finite(state, path)
    scales = {k for k in state if k.endswith('.weight_scale')}
    return {k: v.to(device) if k in scales or not v.is_floating_point() else v.to(device=device, dtype=dtype)
            for k, v in state.items()}


def _maybe_compile(model: ruDolphModel, compile: Union[bool, str]) -> ruDolphModel:
    if not compile:
        return model
    return model.compile_decode(mode=compile if isinstance(compile, str) else None)
