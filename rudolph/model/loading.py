"""``get_rudolph_model``: build a config, fetch the checkpoint, load it strictly and cheaply."""
import logging
import os
from typing import Any, Dict, Mapping, Optional, Union

import torch

from rudolph.errors import CheckpointMismatchError, ConfigError, CorruptCheckpointError, WeightsNotFoundError
from rudolph.io.files import check_finite, describe_unreadable, folder_file, safe_torch_load  # noqa: F401
from rudolph.io.hub import hub_download
from rudolph.model import quant
from rudolph.model.configs import MODELS
from rudolph.model.device import check_device
from rudolph.model.image_attention import MASK_NAMES
from rudolph.model.model import ruDolphModel, skip_init

__all__ = ['get_rudolph_model', 'load_checkpoint', 'resolve_checkpoint', 'check_state_dict', 'safe_torch_load',
           'check_finite', 'describe_unreadable', 'resolve_dtype']

logger = logging.getLogger(__name__)
WEIGHTS_NAME = 'pytorch_model.bin'
SAFE_WEIGHTS_NAME = 'model.safetensors'


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
    from rudolph.io.safetensors import is_safetensors, read_safetensors

    state = read_safetensors(path, 'RuDOLPH checkpoint') if is_safetensors(path) else _torch_state(path)
    keys = list(state)
    # Checkpoints saved from DDP / FP16Module wrappers carry a uniform 'module.' prefix.
    if keys and all(k.startswith('module.') for k in keys):
        state = {k[len('module.'):]: v for k, v in state.items()}
    check_finite(state, path)
    return dict(state)


def check_state_dict(model: torch.nn.Module, state: Mapping[str, torch.Tensor], config: Any) -> Dict[str, torch.Tensor]:
    """State without mask buffers, after checking names and shapes against ``model``; raises on any mismatch."""
    expected = {k: v.shape for k, v in model.state_dict().items() if not _is_mask_key(k)}
    given = {k: v for k, v in state.items() if not _is_mask_key(k)}
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    wrong = [f'{k}: checkpoint {tuple(given[k].shape)} vs model {tuple(expected[k])}'
             for k in expected if k in given and given[k].shape != expected[k]]
    problems = []
    for label, items in (('missing keys', missing), ('unexpected keys', unexpected), ('shape mismatches', wrong)):
        if items:
            shown = ', '.join(items[:5]) + (f' ... (+{len(items) - 5} more)' if len(items) > 5 else '')
            problems.append(f'{len(items)} {label}: {shown}')
    if problems:
        raise CheckpointMismatchError(f'checkpoint does not match config {config}: ' + '; '.join(problems))
    return given


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
    # Parameters on 'meta': no time or memory spent on an init the checkpoint overwrites.
    with torch.device('meta'), skip_init():
        model = ruDolphModel(device=device, **params)
    label = {'name': name, **params}
    if quant.int8_file_metadata(path) is not None:
        state = _int8_file_state(model, path, label, device, precision.dtype)
    elif precision.quantize:
        state = _quantized_state(model, path, label, device, precision.dtype)
    else:
        state = check_state_dict(model, load_checkpoint(path), label)
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


def _lazy_checkpoint(path: str) -> Dict[str, torch.Tensor]:
    """The memory-mapped tensors of a checkpoint, not yet checked for NaN/inf (done tensor by tensor)."""
    from rudolph.io.safetensors import is_safetensors

    if is_safetensors(path):
        return load_checkpoint(path)
    state = _torch_state(path)
    if state and all(k.startswith('module.') for k in state):
        state = {k[len('module.'):]: v for k, v in state.items()}
    return dict(state)


def _quantized_state(model: ruDolphModel, path: str, label: Dict[str, Any], device: torch.device,
                     dtype: torch.dtype) -> Dict[str, torch.Tensor]:
    """The int8 state of ``model`` quantised from the float checkpoint ``path`` one tensor at a time.

    Each source tensor is read from the memory map, checked, converted, and its pages are dropped
    again (and the heap trimmed), so the float model never sits in memory whole: the peak is about
    the int8 model plus one tensor (``bench/precision.py --parts load``).
    """
    import zipfile

    source = check_state_dict(model, _lazy_checkpoint(path), label)
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
