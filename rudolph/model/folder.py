"""The model part of a saved-model folder: ``config.json`` and ``model.safetensors`` of the transformer alone.

``ruDolphModel.save_pretrained`` writes exactly these two files; ``ruDolphModel.from_pretrained`` and
``get_rudolph_model(folder)`` read them (a local folder or a hub repository holding the same files)
through :func:`rudolph.model.checkpoint.load_weights`, the one loader of weights. The full format of
:mod:`rudolph.pretrained.folder` adds a model card, and the tokenizer and VQGAN (or hub references to
them), on top of these files; everything here ignores those additions and never needs them.

``config.json`` holds ``format`` (``"rudolph"``), ``format_version``, ``config`` (the constructor
arguments), ``spc_tokens``, ``weights`` (the weights file name) and ``torch_dtype``. The weights file
leaves out the four mask buffers (they follow from the config); a quantised model writes the file of
:func:`rudolph.model.quant.save_int8` (its metadata marks it and its format), loaded back in that format.
"""
import json
import os
import re
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

import torch
from torch import nn

from rudolph.errors import CorruptCheckpointError, WeightsNotFoundError
from rudolph.io.atomic import check_folder_target, write_atomic, write_folder_atomic
from rudolph.io.hub import hub_download
from rudolph.io.paths import folder_file
from rudolph.io.safetensors import write_safetensors
from rudolph.model import quant
from rudolph.model.checkpoint import instantiate, is_mask_key

__all__ = ['FORMAT', 'FORMAT_VERSION', 'CONFIG_NAME', 'WEIGHTS_NAME', 'read_config', 'is_model_folder',
           'looks_like_repo_id', 'model_weights', 'model_config', 'weights_metadata', 'write_weights',
           'write_model_files', 'write_config', 'write_text', 'save_model',
           'model_files', 'load_model', 'REPO_ID_PATTERN', 'CARD_NAME', 'TOKENIZER_NAME', 'VAE_NAME',
           'PUBLISHED_FILES', 'written_model_folder', 'check_model_folder_target']

FORMAT = 'rudolph'
FORMAT_VERSION = 1
CONFIG_NAME = 'config.json'
WEIGHTS_NAME = 'model.safetensors'
CARD_NAME = 'README.md'
TOKENIZER_NAME = 'bpe.model'
VAE_NAME = 'vqgan.safetensors'
#: every file a saved-model folder may hold (a folder of only these is one rudolph wrote)
PUBLISHED_FILES = (CONFIG_NAME, WEIGHTS_NAME, CARD_NAME, TOKENIZER_NAME, VAE_NAME)
#: the form of a hub repository id, ``owner/name``
REPO_ID_PATTERN = re.compile(r'^[A-Za-z0-9][\w.-]*/[\w.-]+$')


# ----------------------------------------------------------------------------- writing
def model_weights(state: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """The tensors to store: everything but the mask buffers (rebuilt from the config at load)."""
    return {k: v for k, v in state.items() if not is_mask_key(k)}


def model_config(model: nn.Module) -> Dict[str, Any]:
    """The ``config.json`` entries of ``model`` alone (architecture, task tokens, weights file, dtype)."""
    dtype = getattr(model, 'dtype', None) or next(model.parameters()).dtype
    return {'format': FORMAT, 'format_version': FORMAT_VERSION, 'library': 'rudolph', 'model_type': 'rudolph',
            'config': json.loads(json.dumps(model.config.to_params())),
            'spc_tokens': {str(k): int(v) for k, v in (getattr(model, 'spc_tokens', None) or {}).items()},
            'weights': WEIGHTS_NAME, 'torch_dtype': str(dtype).replace('torch.', '')}


def weights_metadata(model: nn.Module) -> Dict[str, str]:
    """The header metadata of ``model``'s weights file: a quantised model's marks the format it loads back in."""
    if quant.is_quantized(model):
        return quant.int8_metadata(model)
    return {'format_version': str(FORMAT_VERSION), 'library': 'rudolph'}


def write_weights(folder: str, state: Mapping[str, torch.Tensor], metadata: Optional[Mapping[str, str]] = None) -> str:
    """``model.safetensors`` of ``state`` (mask buffers left out) in ``folder``; returns its name."""
    tensors = {k: v.contiguous() for k, v in model_weights(state).items()}
    meta = dict(metadata) if metadata is not None else {'format_version': str(FORMAT_VERSION), 'library': 'rudolph'}
    write_safetensors(tensors, os.path.join(folder, WEIGHTS_NAME), meta)
    return WEIGHTS_NAME


def write_text(path: str, text: str) -> None:
    """``text`` written to ``path`` as UTF-8, atomically (a reader sees the old file or the whole new one)."""
    def write(tmp: str) -> None:
        with open(tmp, 'w', encoding='utf-8') as f:
            f.write(text)

    write_atomic(path, write)


def write_config(folder: str, config: Mapping[str, Any]) -> str:
    """``config.json`` of ``folder`` (written atomically); returns its name."""
    write_text(os.path.join(folder, CONFIG_NAME), json.dumps(config, indent=2, ensure_ascii=False) + '\n')
    return CONFIG_NAME


def write_model_files(folder: str, model: nn.Module, config: Optional[Mapping[str, Any]] = None) -> List[str]:
    """The weights and ``config.json`` (``config``, default :func:`model_config`) into the existing ``folder``;
    returns the file names."""
    weights = write_weights(folder, model.state_dict(), weights_metadata(model))
    return [weights, write_config(folder, model_config(model) if config is None else config)]


def written_model_folder(path: str) -> bool:
    """Whether ``path`` is a saved-model folder as rudolph writes it: a config of this format and no file but
    those of a saved model (so replacing it loses nothing that rudolph did not write)."""
    try:
        names = set(os.listdir(path))
    except OSError:
        return False
    if CONFIG_NAME not in names or not names <= set(PUBLISHED_FILES):
        return False
    try:
        read_config(os.path.join(path, CONFIG_NAME))
    except CorruptCheckpointError:
        return False
    return True


def check_model_folder_target(target: str, *, overwrite: bool, inputs: Tuple[str, ...] = (),
                              what: str = 'save_directory', option: str = 'overwrite=True') -> bool:
    """:func:`rudolph.io.atomic.check_folder_target` for a model folder: only a folder rudolph wrote is replaced."""
    return check_folder_target(target, ours=written_model_folder, overwrite=overwrite, inputs=inputs, what=what,
                               option=option)


def save_model(model: nn.Module, save_directory: Union[str, os.PathLike]) -> str:
    """``model`` as a folder of ``config.json`` + ``model.safetensors`` (written whole, then renamed into place;
    an earlier model folder is replaced, any other non-empty folder refused)."""
    target = os.fspath(save_directory)
    check_model_folder_target(target, overwrite=True)
    return write_folder_atomic(target, lambda tmp: write_model_files(tmp, model))


# ----------------------------------------------------------------------------- reading
def looks_like_repo_id(text: Any) -> bool:
    """``owner/name`` that is not an existing local path."""
    return bool(REPO_ID_PATTERN.match(str(text))) and not os.path.exists(str(text))


def is_model_folder(path: Union[str, os.PathLike]) -> bool:
    """Whether ``path`` is a folder with a ``config.json`` (a saved model)."""
    return os.path.isdir(os.fspath(path)) and os.path.isfile(os.path.join(os.fspath(path), CONFIG_NAME))


def read_config(path: str) -> Dict[str, Any]:
    """A ``config.json`` of this format, checked; errors name the file and what was expected."""
    try:
        with open(path, encoding='utf-8') as f:
            config = json.load(f)
    except (OSError, ValueError) as error:
        raise CorruptCheckpointError(f'cannot read {path!r}: {error}; expected the JSON config of a saved '
                                     'model') from None
    if not isinstance(config, dict) or config.get('format') != FORMAT or not isinstance(config.get('config'), dict):
        raise CorruptCheckpointError(f'{path!r} is not the config of a saved RuDOLPH model (expected "format": '
                                     f'"{FORMAT}" and a "config" object)')
    if int(config.get('format_version', 0)) > FORMAT_VERSION:
        raise CorruptCheckpointError(f'{path!r} has format version {config["format_version"]}; this rudolph reads '
                                     f'up to {FORMAT_VERSION}: upgrade rudolph')
    return config


def model_files(name_or_path: Union[str, os.PathLike], cache_dir: Optional[str] = None
                ) -> Tuple[str, Callable[[str], str]]:
    """(label, filename -> local path) of a saved-model folder or a hub repository of this layout."""
    text = os.fspath(name_or_path)
    if os.path.isdir(text):
        def local(filename: str) -> str:  # a file the folder names must be inside it
            path = folder_file(text, filename, f'a file named by {os.path.join(text, CONFIG_NAME)!r}')
            if not os.path.isfile(path):
                raise WeightsNotFoundError(f'{filename} is missing from the model folder {text!r}')
            return path
        return text, local
    if not looks_like_repo_id(text):
        raise WeightsNotFoundError(f'{text!r}: no such folder, and not a hub repo id (owner/name); expected a folder '
                                   'written by save_pretrained or a hub repository holding one')

    def remote(filename: str) -> str:
        return hub_download(text, filename, what=f'{filename} of the model {text}',
                            local_arg='a local copy of the folder: from_pretrained(PATH)', cache_dir=cache_dir)
    return text, remote


def load_model(cls: type, name_or_path: Union[str, os.PathLike], *, device: Union[str, torch.device] = 'cpu',
               dtype: Union[None, str, torch.dtype] = None, quantize: Optional[str] = None, fp16: bool = False,
               cache_dir: Optional[str] = None, pretrained: bool = True,
               model_kwargs: Optional[Mapping[str, Any]] = None) -> nn.Module:
    """The ``cls`` model of a saved folder or hub repository: its ``config.json`` and weights, nothing else.

    ``model_kwargs`` override constructor arguments (dropout...); ``pretrained=False`` builds the
    architecture with random weights (the weights file is not read).
    """
    label, fetch = model_files(name_or_path, cache_dir)
    config = read_config(fetch(CONFIG_NAME))
    params = {**config['config'], **(model_kwargs or {})}
    path = fetch(config.get('weights') or WEIGHTS_NAME) if pretrained else None
    model = instantiate(cls, label, params, path, device, dtype, quantize, fp16)
    model.spc_tokens = {str(k): int(v) for k, v in (config.get('spc_tokens') or {}).items()}
    return model
