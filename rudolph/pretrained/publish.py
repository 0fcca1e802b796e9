"""Turning published checkpoints into saved-model folders (``rudolph convert``) and publishing saved
models on the Hugging Face hub (``rudolph push``)."""
import json
import logging
import os
import tempfile
from typing import Any, Dict, Mapping, Optional, Tuple, Union

import torch

from rudolph.errors import CheckpointMismatchError, ConfigError, WeightsNotFoundError
from rudolph.io.atomic import write_folder_atomic
from rudolph.io.paths import folder_file
from rudolph.model.config import RudolphConfig
from rudolph.model.configs import MODELS
from rudolph.model.loading import check_state_dict, load_checkpoint, resolve_checkpoint
from rudolph.model.model import ruDolphModel, skip_init
from rudolph.pretrained.folder import (
    CONFIG_NAME,
    PUBLISHED_FILES,
    REPO_ID_PATTERN,
    check_model_folder_target,
    pretrained_config,
    read_config,
    registry_sources,
    resolve_pretrained,
    save_pretrained,
    write_pretrained,
)

__all__ = ['convert', 'push_to_hub']

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- convert
def _shapes_match(params: Mapping[str, Any], state: Mapping[str, torch.Tensor]) -> bool:

    with torch.device('meta'), skip_init():
        model = ruDolphModel(device='cpu', **params)
    try:
        check_state_dict(model, state, params)
    except CheckpointMismatchError:
        return False
    return True


def _architecture(name: Optional[str], config: Optional[Mapping[str, Any]],
                  state: Mapping[str, torch.Tensor], path: str) -> Tuple[Optional[str], Dict[str, Any]]:
    """(registry name or ``None``, constructor params) of a checkpoint: given, or the one model it fits."""

    if config is not None:
        return name if name in MODELS else None, dict(config)
    if name is not None:
        return name, MODELS[name]['model_params']
    fits = [n for n, spec in MODELS.items() if _shapes_match(spec['model_params'], state)]
    if len({json.dumps(MODELS[n]['model_params'], sort_keys=True) for n in fits}) != 1:
        raise ConfigError(f'{path!r}: cannot tell which model this checkpoint is (it fits {fits or "none"} of '
                          f'{sorted(MODELS)}); pass the model name (--model) or its params (--config)')
    return fits[0], MODELS[fits[0]]['model_params']


def convert(name_or_path: Union[str, os.PathLike], out_dir: Union[str, os.PathLike], *, model: Optional[str] = None,
            config: Optional[Mapping[str, Any]] = None, cache_dir: Optional[str] = None,
            overwrite: bool = False) -> str:
    """A published checkpoint (a ``MODELS`` name, a ``.bin``/``.ckpt`` file or folder) as a saved-model folder.

    The checkpoint is memory-mapped and its tensors are written one by one as they are (dtype and
    values bit for bit), so it is never copied whole into memory. ``model`` names the architecture
    of a local file (found from its shapes when it fits exactly one registered model), ``config``
    gives the params of an unregistered one. Returns the folder.

    ``out_dir`` must be new or empty; a saved-model folder written earlier is replaced only with
    ``overwrite``; anything else (a folder of other files, the current folder, the input or a folder
    holding it) is refused before any work. The folder is written beside ``out_dir`` and renamed into place.
    """

    source, target = os.fspath(name_or_path), os.fspath(out_dir)
    check_model_folder_target(target, overwrite=overwrite, inputs=(source,) if os.path.exists(source) else (),
                              what='OUT_DIR', option='--overwrite')
    if model is not None and model not in MODELS:
        raise ConfigError(f'model {model!r}: expected one of {sorted(MODELS)}')
    if source in MODELS:
        try:
            model, path = source, resolve_checkpoint(source, cache_dir=cache_dir)
        except WeightsNotFoundError as error:
            raise WeightsNotFoundError(f'{error}; for convert: rudolph convert path/to/pytorch_model.bin OUT_DIR '
                                       f'--model {source}') from None
    else:
        path = resolve_checkpoint(model or '', source)
    state = load_checkpoint(path)
    name, params = _architecture(model, config, state, path)
    if not _shapes_match(params, state):
        raise ConfigError(f'{path!r} does not fit the architecture {params}; pass the right model name or --config')
    sources = registry_sources(name) if name else {'base_model': None, 'tokenizer': None, 'vae': None}
    dtypes = {v.dtype for v in state.values() if v.is_floating_point()}
    meta = pretrained_config(RudolphConfig.from_params(params), MODELS[name].get('spc_tokens') if name else {}, sources,
                             dtype=dtypes.pop() if len(dtypes) == 1 else None)
    meta['converted_from'] = os.path.basename(path) if source not in MODELS else \
        f'{MODELS[source]["repo_id"]}/{MODELS[source]["filename"]}' if MODELS[source].get('repo_id') else source
    return write_folder_atomic(target, lambda tmp: write_pretrained(tmp, state, meta, sources,
                                                               os.path.basename(os.path.abspath(target))))


# ----------------------------------------------------------------------------- publish
def push_to_hub(source: Any, repo_id: str, *, token: Optional[str] = None, private: Optional[bool] = None,
                commit_message: Optional[str] = None, revision: Optional[str] = None, create_pr: bool = False,
                endpoint: Optional[str] = None) -> str:
    """Publish a saved model (folder, fine-tuning output folder / ``latest``, model or Components) as ``repo_id``.

    Creates the repository if needed (``HfApi.create_repo(exist_ok=True)``) and uploads the model's
    files in one commit (``upload_folder``); optimizer and RNG state of a trainer checkpoint stay
    behind. Returns the commit URL.
    """
    from huggingface_hub import HfApi

    if not REPO_ID_PATTERN.match(str(repo_id)):
        raise ConfigError(f'repo_id {repo_id!r}: expected owner/name')
    with tempfile.TemporaryDirectory(prefix='rudolph-push-') as tmp:
        if isinstance(source, (str, os.PathLike)):
            folder = resolve_pretrained(source)
        else:
            folder = save_pretrained(source, os.path.join(tmp, repo_id.split('/')[-1]))
        read_config(os.path.join(folder, CONFIG_NAME))
        # a link out of the folder would publish whatever it points at: refused as when loading
        files = [f for f in PUBLISHED_FILES if os.path.isfile(folder_file(folder, f, f'the files of {folder!r}'))]
        api = HfApi(endpoint=endpoint, token=token)
        try:
            api.create_repo(repo_id, private=private, exist_ok=True)
            info = api.upload_folder(repo_id=repo_id, folder_path=folder, allow_patterns=files, revision=revision,
                                     create_pr=create_pr, commit_message=commit_message or f'Upload {", ".join(files)}')
        except OSError:
            raise  # the hub's HTTP errors (HfHubHTTPError) say what the hub answered
        except Exception as error:  # noqa: BLE001 -- the HTTP client's network errors are not OSErrors
            if type(error).__module__.split('.')[0] not in ('httpx', 'httpx2', 'requests', 'urllib3'):
                raise
            raise ConnectionError(f'cannot reach the hub to push {repo_id}: {type(error).__name__}: '
                                  f'{str(error)[:200]}') from error
    logger.info('pushed %s to %s', folder, repo_id)
    return str(getattr(info, 'commit_url', info))
