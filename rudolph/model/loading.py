"""``get_rudolph_model``: build a config, fetch the checkpoint, load it strictly and cheaply."""
import logging
import os
import warnings
from typing import Any, Dict, Mapping, Optional, Union

import torch

from ..errors import CheckpointMismatchError, ConfigError, CorruptCheckpointError, WeightsNotFoundError
from ..hub import hub_download
from ..serialization import check_finite, describe_unreadable, safe_torch_load  # noqa: F401 (re-exported)
from .configs import MODELS
from .image_attention import MASK_NAMES
from .model import ruDolphModel, skip_init

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
        if os.path.isfile(os.path.join(folder, candidate)):
            return os.path.join(folder, candidate)
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
    from ..safetensors_io import is_safetensors, read_safetensors

    if is_safetensors(path):
        state = read_safetensors(path, 'RuDOLPH checkpoint')
    else:
        state = safe_torch_load(path, 'RuDOLPH checkpoint', mmap=True)
        if isinstance(state, Mapping) and 'state_dict' in state and isinstance(state['state_dict'], Mapping):
            state = state['state_dict']
        if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            kind = type(state).__name__ if not isinstance(state, Mapping) else 'mapping with non-tensor values'
            raise CorruptCheckpointError(f'{path!r} holds a {kind}, expected a state dict of tensors')
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


_DTYPE_NAMES = {'float32': torch.float32, 'fp32': torch.float32, 'float': torch.float32,
                'float16': torch.float16, 'fp16': torch.float16, 'half': torch.float16,
                'bfloat16': torch.bfloat16, 'bf16': torch.bfloat16}
_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def resolve_dtype(dtype: Union[None, str, torch.dtype]) -> Optional[torch.dtype]:
    """``None``, a floating torch dtype or one of its usual names ('fp16', 'bfloat16', ...) -> torch dtype."""
    if dtype is None:
        return None
    if isinstance(dtype, str):
        key = dtype.strip().lower().removeprefix('torch.')
        if key in _DTYPE_NAMES:
            return _DTYPE_NAMES[key]
    elif isinstance(dtype, torch.dtype) and dtype in _DTYPES:
        return dtype
    raise ConfigError(f'unsupported dtype={dtype!r}; expected one of torch.float32, torch.float16, torch.bfloat16 '
                      f'or their names {sorted(_DTYPE_NAMES)}')


def _resolve_dtype(fp16: bool, dtype: Union[None, str, torch.dtype], device: torch.device) -> torch.dtype:
    dtype = resolve_dtype(dtype)
    if dtype is not None and fp16 and dtype != torch.float16:
        raise ConfigError(f'fp16=True contradicts dtype={dtype}; pass one of them')
    if fp16 or dtype == torch.float16:
        if device.type == 'cpu':
            warnings.warn('fp16=True on CPU: float16 matmuls there are slow and poorly supported, so the model '
                          'stays in float32. Use dtype=torch.bfloat16 for reduced precision on CPU.', stacklevel=3)
            return torch.float32
        return torch.float16
    return dtype or torch.float32


def get_rudolph_model(name: str, pretrained: bool = True, fp16: bool = False,
                      device: Union[str, torch.device] = 'cpu', cache_dir: Optional[str] = None, *,
                      checkpoint_path: Optional[Union[str, os.PathLike]] = None,
                      dtype: Union[None, str, torch.dtype] = None, compile: Union[bool, str] = False,
                      model_params: Optional[Mapping[str, Any]] = None, **model_kwargs) -> ruDolphModel:
    """Build RuDOLPH ``name`` (a key of ``MODELS``) and, if ``pretrained``, load its weights.

    Weights come from ``checkpoint_path`` (a file, or a folder holding ``pytorch_model.bin``
    or the registry's file name) or from the hub (:func:`rudolph.hub.hub_download`: the cache
    first, then one short try; honours ``HF_HOME``, ``HF_HUB_OFFLINE``, tokens and ``cache_dir``).
    ``model_kwargs`` override constructor arguments (dropout,
    ``gradient_checkpointing``...). ``fp16=True`` gives float16 weights on CUDA; on CPU it
    warns and keeps float32. ``dtype`` selects float32, float16 or bfloat16 (a torch dtype or a
    name: 'fp32', 'fp16'/'half', 'bf16'...).
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
    device = torch.device(device)
    dtype = _resolve_dtype(fp16, dtype, device)
    if not pretrained:
        model = ruDolphModel(device=device, **params).to(device=device, dtype=dtype).eval()
        model.spc_tokens = dict(config.get('spc_tokens') or {})
        return _maybe_compile(model, compile)

    if model_params is not None and checkpoint_path is None:
        raise ValueError(f'model_params describe an unregistered architecture ({name!r}); pass checkpoint_path too')
    path = resolve_checkpoint(name, checkpoint_path, cache_dir)
    # Parameters on 'meta': no time or memory spent on an init the checkpoint overwrites.
    with torch.device('meta'), skip_init():
        model = ruDolphModel(device=device, **params)
    state = check_state_dict(model, load_checkpoint(path), {'name': name, **params})
    state = {k: v.to(device=device, dtype=dtype if v.is_floating_point() else v.dtype) for k, v in state.items()}
    for mask_name, mask in model.transformer.build_masks(device).items():
        state[f'transformer.{mask_name}'] = mask
    model.load_state_dict(state, strict=True, assign=True)
    model.device = device
    model.spc_tokens = dict(config.get('spc_tokens') or {})
    logger.info('loaded RuDOLPH %s from %s', name, path)
    return _maybe_compile(model.eval(), compile)


def _maybe_compile(model: ruDolphModel, compile: Union[bool, str]) -> ruDolphModel:
    if not compile:
        return model
    return model.compile_decode(mode=compile if isinstance(compile, str) else None)
