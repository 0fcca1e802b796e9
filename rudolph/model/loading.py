"""``get_rudolph_model``: build a config, fetch the checkpoint, load it strictly and cheaply."""
import logging
import os
import warnings
from typing import Any, Dict, Mapping, Optional, Union

import torch

from .configs import MODELS
from .image_attention import MASK_NAMES
from .model import ruDolphModel, skip_init

__all__ = ['get_rudolph_model', 'load_checkpoint', 'resolve_checkpoint', 'check_state_dict']

logger = logging.getLogger(__name__)
WEIGHTS_NAME = 'pytorch_model.bin'


def _is_mask_key(key: str) -> bool:
    return key.startswith('transformer.') and key.split('.', 1)[1] in MASK_NAMES


def resolve_checkpoint(name: str, checkpoint_path: Optional[Union[str, os.PathLike]] = None,
                       cache_dir: Optional[str] = None) -> str:
    """Local path of the weights: ``checkpoint_path`` (file or folder) or the hub file of ``name``."""
    if checkpoint_path is not None:
        path = os.fspath(checkpoint_path)
        if os.path.isdir(path):
            path = os.path.join(path, MODELS.get(name, {}).get('filename', WEIGHTS_NAME))
        if not os.path.isfile(path):
            raise FileNotFoundError(f'checkpoint not found: {path!r} (expected a {WEIGHTS_NAME} file or a folder holding one)')
        return path
    config = MODELS[name]
    if config.get('local_path'):  # a model shipped inside the package (e.g. 'tiny-shapes'): no download
        return resolve_checkpoint(name, config['local_path'])
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return hf_hub_download(repo_id=config['repo_id'], filename=config['filename'], cache_dir=cache_dir)
    except LocalEntryNotFoundError as error:
        raise FileNotFoundError(
            f"weights of RuDOLPH {name!r} ({config['repo_id']}/{config['filename']}) are not in the Hugging Face "
            f"cache{' ' + repr(cache_dir) if cache_dir else ''} and cannot be downloaded (offline or no network). "
            f"Pre-download them where the hub is reachable with `huggingface-cli download {config['repo_id']} "
            f"{config['filename']}` (and copy the cache), or pass checkpoint_path='path/to/pytorch_model.bin'"
        ) from error


def load_checkpoint(path: str) -> Dict[str, torch.Tensor]:
    """Read a plain state dict; memory-mapped when the file format allows it (no copy in RAM)."""
    try:
        state = torch.load(path, map_location='cpu', mmap=True, weights_only=True)
    except RuntimeError as error:
        # Legacy (pre-zipfile) serialisation cannot be memory-mapped.
        if 'mmap' not in str(error):
            raise
        state = torch.load(path, map_location='cpu', weights_only=True)
    if isinstance(state, Mapping) and 'state_dict' in state and isinstance(state['state_dict'], Mapping):
        state = state['state_dict']
    if not isinstance(state, Mapping):
        raise ValueError(f'{path!r} holds a {type(state).__name__}, expected a state dict of tensors')
    keys = list(state)
    # Checkpoints saved from DDP / FP16Module wrappers carry a uniform 'module.' prefix.
    if keys and all(k.startswith('module.') for k in keys):
        state = {k[len('module.'):]: v for k, v in state.items()}
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
        raise RuntimeError(f'checkpoint does not match config {config}: ' + '; '.join(problems))
    return given


def _resolve_dtype(fp16: bool, dtype: Optional[torch.dtype], device: torch.device) -> torch.dtype:
    if dtype is not None and fp16 and dtype != torch.float16:
        raise ValueError(f'fp16=True contradicts dtype={dtype}; pass one of them')
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
                      dtype: Optional[torch.dtype] = None, compile: Union[bool, str] = False,
                      model_params: Optional[Mapping[str, Any]] = None, **model_kwargs) -> ruDolphModel:
    """Build RuDOLPH ``name`` (a key of ``MODELS``) and, if ``pretrained``, load its weights.

    Weights come from ``checkpoint_path`` (a ``pytorch_model.bin`` or a folder holding one)
    or from the hub through ``hf_hub_download`` (honours ``HF_HOME``, ``HF_HUB_OFFLINE``,
    tokens and ``cache_dir``). ``model_kwargs`` override constructor arguments (dropout,
    ``gradient_checkpointing``...). ``fp16=True`` gives float16 weights on CUDA; on CPU it
    warns and keeps float32. ``dtype`` selects any floating type (e.g. ``torch.bfloat16``).
    ``compile=True`` compiles the single-token decode step with ``torch.compile`` (static
    shapes, one compilation for all positions); a string is passed as the compile ``mode``,
    e.g. ``'reduce-overhead'`` for CUDA graphs. ``model_params``: the constructor params of an
    architecture that is not in ``MODELS`` (``name`` then only labels it; needs ``checkpoint_path``
    when ``pretrained``). The model is returned in eval mode.
    """
    if model_params is not None:
        config = {'model_params': dict(model_params)}
    elif name not in MODELS:
        raise ValueError(f'unknown RuDOLPH model {name!r}; expected one of {sorted(MODELS)}')
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
