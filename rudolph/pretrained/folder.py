"""Self-describing model folders: ``save_pretrained``, ``load_pretrained`` (``convert`` and
``push_to_hub``: :mod:`rudolph.pretrained.publish`; the card: :mod:`rudolph.pretrained.model_card`).

A saved model is a folder (or a hub repository holding the same files)::

    model.safetensors   the weights (the four mask buffers are left out: they follow from the config)
    config.json         format and version, the full RudolphConfig, task tokens, where the tokenizer and the
                        VQGAN come from, recommended sampling per task, base model, training run
    README.md           a model card: hub metadata, base model, tasks, training data and steps, how to load
    bpe.model           the tokenizer, when it is not a published one
    vqgan.safetensors   the VQGAN, when it is not a published one (its header records its architecture)

``Components.from_pretrained(folder_or_repo_id)`` loads it with nothing else given (the tokenizer and the
VQGAN when first asked for). The model's part, ``config.json`` and ``model.safetensors``, is written and
read by :mod:`rudolph.model.folder` (``ruDolphModel.save_pretrained`` / ``from_pretrained``,
``get_rudolph_model(folder)``); this module adds the card, the tokenizer and the VQGAN on top.

Why the hub's file conventions by hand rather than ``PyTorchModelHubMixin``: the mixin stores the
constructor arguments of *one* ``nn.Module``, whereas a RuDOLPH model is only usable with its tokenizer,
its VQGAN and its task-token ids, which live outside the module; the mixin's loader would also bypass
this package's loading rules (strict key and shape checks, mask buffers rebuilt, no pickle, the
offline cache first and one error naming every missing file, :mod:`rudolph.io.hub`) and make
``ruDolphModel.__init__``'s signature the file format. So the layout is the one the mixin and
``transformers`` use (``model.safetensors`` + ``config.json`` + ``README.md`` with YAML metadata,
published with ``HfApi.upload_folder``), written and read by this module.
"""
import json
import logging
import os
import shutil
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

import torch

from rudolph import __version__
from rudolph.checks import setting
from rudolph.errors import ConfigError, WeightsNotFoundError
from rudolph.io.atomic import write_folder_atomic
from rudolph.io.hub import hub_download
from rudolph.io.paths import folder_file
from rudolph.io.safetensors import write_safetensors
from rudolph.model.config import RudolphConfig
from rudolph.model.configs import MODELS
from rudolph.model.folder import (  # noqa: F401 (re-exported: the model's part of the format)
    CARD_NAME,
    CONFIG_NAME,
    FORMAT,
    FORMAT_VERSION,
    PUBLISHED_FILES,
    REPO_ID_PATTERN,
    TOKENIZER_NAME,
    VAE_NAME,
    WEIGHTS_NAME,
    check_model_folder_target,
    load_model,
    looks_like_repo_id,
    model_files,
    model_weights,
    read_config,
    weights_metadata,
    write_config,
    write_text,
    write_weights,
    written_model_folder,
)
from rudolph.model.fp16 import unwrap_model
from rudolph.pretrained.model_card import model_card
from rudolph.pretrained.runs import LATEST_NAME, STATE_NAME, find_checkpoint
from rudolph.pretrained.sources import (  # noqa: F401 (re-exported)
    Source,
    _plain,
    infer_base_model,
    model_sources,
    published_tokenizer,
    published_vae,
    registry_sources,
    tokenizer_source,
    vae_source,
)
from rudolph.tokenizer.yttm_format import write_yttm_model
from rudolph.vae.model import read_checkpoint_state_dict

__all__ = ['save_pretrained', 'write_pretrained', 'write_description', 
           'read_config', 'model_card', 'resolve_pretrained', 'is_pretrained_folder', 'written_model_folder',
           'looks_like_repo_id',
           'pretrained_config', 'model_sources', 'registry_sources', 'saved_vae', 'FORMAT', 'FORMAT_VERSION',
           'CONFIG_NAME', 'WEIGHTS_NAME', 'CARD_NAME', 'TOKENIZER_NAME', 'VAE_NAME']

logger = logging.getLogger(__name__)

#: the files of a saved model that are published (a trainer checkpoint also holds optimizer and RNG state)


# ----------------------------------------------------------------------------- writing
def pretrained_config(config: Any, spc_tokens: Mapping[str, int], sources: Mapping[str, Any],
                      sampling: Optional[Mapping[str, Any]] = None, training: Optional[Mapping[str, Any]] = None,
                      dtype: Optional[torch.dtype] = None) -> Dict[str, Any]:
    """The ``config.json`` of a saved model (sources as they will be stored: ``file`` or ``repo_id``)."""

    base = sources.get('base_model')
    if sampling is None and base:

        sampling = MODELS[base].get('sampling') if base in MODELS else None
    return {'format': FORMAT, 'format_version': FORMAT_VERSION, 'library': 'rudolph', 'library_version': __version__,
            'model_type': 'rudolph', 'base_model': base, 'base_model_repo': _base_repo(base),
            'config': _plain(config.to_params()), 'spc_tokens': dict(spc_tokens or {}),
            'tokenizer': _stored(sources.get('tokenizer'), TOKENIZER_NAME),
            'vae': _stored(sources.get('vae'), VAE_NAME), 'sampling': _plain(sampling or {}),
            'weights': WEIGHTS_NAME, 'torch_dtype': str(dtype or torch.float32).replace('torch.', ''),
            'training': _plain(training) if training else None}


def _base_repo(base: Optional[str]) -> Optional[str]:

    return MODELS[base].get('repo_id') if base in MODELS else None


def _stored(source: Optional[Source], filename: str) -> Optional[Source]:
    """How ``config.json`` names a part: in the folder (``file``) or on the hub (``repo_id`` + ``filename``)."""
    if source is None:
        return None
    extra = {k: source[k] for k in ('config', 'dwt') if k in source}
    if 'repo_id' in source:
        return {'repo_id': source['repo_id'], 'filename': source['filename'], **extra}
    return {'file': filename, **extra}


def _write_tokenizer(source: Source, folder: str) -> None:
    target = os.path.join(folder, TOKENIZER_NAME)
    if 'path' in source:
        if os.path.abspath(source['path']) != os.path.abspath(target):
            shutil.copyfile(source['path'], target)
    elif 'data' in source:

        write_yttm_model(target, source['data'])
    else:
        raise ConfigError(f'tokenizer source {sorted(source)}: expected a path, a tokenizer or a hub file')


def _vae_state(source: Source) -> Dict[str, torch.Tensor]:
    """The VQGAN weights to store: the file's own tensors (dtype kept), or a loaded VQGAN's."""
    if 'object' in source:
        vae = source['object']
        return dict((vae if vae.dwt else vae.model).state_dict())

    state = read_checkpoint_state_dict(source['path'])
    if source.get('dwt'):
        return state
    keep = ('encoder.', 'decoder.', 'quantize.', 'quant_conv.', 'post_quant_conv.')
    return {k: v for k, v in state.items() if k.startswith(keep)}  # training-only parts (loss.*) stay behind


def _write_vae(source: Source, folder: str) -> None:

    meta = {'dwt': json.dumps(bool(source.get('dwt')))}
    if source.get('config') is not None:
        meta['vqgan_config'] = json.dumps(_plain(source['config']))
    write_safetensors(_vae_state(source), os.path.join(folder, VAE_NAME), meta)


def write_pretrained(folder: str, state: Mapping[str, torch.Tensor], config: Dict[str, Any],
                     sources: Mapping[str, Any], name: Optional[str] = None,
                     metadata: Optional[Mapping[str, str]] = None) -> List[str]:
    """Write the files of a saved model into the existing ``folder``; returns their names.

    ``state`` is the model's state dict (mask buffers are dropped), ``config`` the
    :func:`pretrained_config`, ``sources`` the tokenizer/VQGAN sources it was made from, ``metadata``
    the weights file's header (:func:`rudolph.model.folder.weights_metadata`: marks an int8 model).
    """
    files = [write_weights(folder, state, metadata)]
    if config.get('tokenizer') and 'file' in config['tokenizer']:
        _write_tokenizer(sources['tokenizer'], folder)
        files.append(TOKENIZER_NAME)
    if config.get('vae') and 'file' in config['vae']:
        _write_vae(sources['vae'], folder)
        files.append(VAE_NAME)
    return files + write_description(folder, config, name)


def write_description(folder: str, config: Mapping[str, Any], name: Optional[str] = None) -> List[str]:
    """``config.json`` and the ``README.md`` model card of ``folder`` (``name``: how the card calls the model)."""
    write_config(folder, config)
    write_text(os.path.join(folder, CARD_NAME), model_card(config, name or os.path.basename(os.path.abspath(folder))))
    return [CONFIG_NAME, CARD_NAME]


def _unpack(obj: Any) -> Tuple[Any, Dict[str, Any]]:
    """(model, what a Components adds: tokenizer, vae, sources, sampling) of a model or a Components.

    A Components' tokenizer and VQGAN come as callables: a deferred one is only loaded when it is needed.
    """
    if hasattr(obj, 'model') and hasattr(obj, 'spc_tokens') and hasattr(obj, 'loaded_parts'):
        return unwrap_model(obj.model), {'tokenizer': lambda: obj.tokenizer, 'vae': lambda: obj.vae,
                                         'sampling': getattr(obj, 'sampling', None),
                                         'sources': getattr(obj, 'sources', None)}
    if isinstance(obj, torch.nn.Module) and hasattr(obj, 'config'):
        return unwrap_model(obj), {}
    raise ConfigError(f'save_pretrained: expected a ruDolphModel or Components, got {type(obj).__name__}')


def save_pretrained(obj: Any, save_directory: Union[str, os.PathLike], *, tokenizer: Any = None, vae: Any = None,
                    base_model: Optional[str] = None, sampling: Optional[Mapping[str, Any]] = None,
                    training: Optional[Mapping[str, Any]] = None, include_codecs: bool = False,
                    cache_dir: Optional[str] = None) -> str:
    """Save a model (or :class:`~rudolph.pretrained.components.Components`) as a self-describing folder (its path).

    ``tokenizer`` / ``vae`` (paths, loaded objects) and ``base_model`` (a key of ``MODELS``) override
    what the model was loaded with; unpublished tokenizers and VQGANs are copied into the folder,
    published ones too with ``include_codecs=True`` (the folder then loads with no hub at all).
    The folder is written in full beside its target and renamed into place, so a reader never
    sees half a model; an existing saved-model folder of that name is replaced, any other non-empty
    folder refused (:func:`rudolph.io.atomic.check_folder_target`).
    """
    model, parts = _unpack(obj)
    sources = model_sources(model, tokenizer, vae, base_model, parts.get('sources'))
    for part, given, to_source in (('tokenizer', tokenizer, tokenizer_source), ('vae', vae, vae_source)):
        loaded = parts.get(part)
        if given is None and sources.get(part) is None and loaded is not None and loaded() is not None:
            sources[part] = to_source(loaded())
        if include_codecs and sources.get(part) and 'repo_id' in sources[part]:
            sources[part] = _downloaded(part, sources[part], cache_dir)
        if sources.get(part) is None:
            logger.warning('save_pretrained: the %s of this model is unknown; loading the folder will need %s=PATH',
                           part, part)
    config = pretrained_config(model.config, getattr(model, 'spc_tokens', None) or {}, sources,
                               sampling if sampling is not None else parts.get('sampling') or None, training,
                               model.dtype)
    target = os.fspath(save_directory)
    check_model_folder_target(target, overwrite=True, what='save_directory')
    return write_folder_atomic(target, lambda tmp: write_pretrained(tmp, model.state_dict(), config, sources,
                                                                   os.path.basename(os.path.abspath(target)),
                                                                   weights_metadata(model)))


def _downloaded(part: str, source: Source, cache_dir: Optional[str]) -> Source:
    """A hub source as a local file (the cache, else one download), to be copied into a folder."""
    path = hub_download(source['repo_id'], source['filename'], what=f'the {part} ({source["filename"]})',
                        local_arg=f'{part}=PATH', cache_dir=cache_dir)
    return {**{k: v for k, v in source.items() if k not in ('repo_id', 'filename')}, 'path': path}


# ----------------------------------------------------------------------------- reading
def is_pretrained_folder(path: Union[str, os.PathLike]) -> bool:
    return os.path.isfile(os.path.join(os.fspath(path), CONFIG_NAME))


def resolve_pretrained(path: Union[str, os.PathLike]) -> str:
    """The saved-model folder a local path names: itself, a trainer's ``latest`` (file or output folder) or step."""
    path = os.fspath(path)
    if os.path.isfile(path):  # the trainer's `latest`: a file holding the name of the newest step folder
        with open(path, encoding='utf-8') as f:
            step = f.read(256).strip()
        if os.path.basename(path) == LATEST_NAME and step:  # the step folder it names must be beside it
            target = folder_file(os.path.dirname(path) or '.', step, f'the step folder named by {path!r}')
        if os.path.basename(path) != LATEST_NAME or not step or not os.path.isdir(target):
            raise ConfigError(f'{path!r} is a file; expected a saved-model folder (with {CONFIG_NAME}), a fine-tuning '
                              f'output folder or its {LATEST_NAME!r} file')
        path = target
    if is_pretrained_folder(path):
        return path
    if os.path.isdir(path):
        if not (os.path.isfile(os.path.join(path, LATEST_NAME)) or os.path.isfile(os.path.join(path, STATE_NAME)) or
                any(name.startswith('step-') for name in os.listdir(path))):
            raise ConfigError(f'{path!r} has no {CONFIG_NAME} and is no fine-tuning run; a folder of bare weights '
                              'loads with its model name and checkpoint=, e.g. --model 350M --checkpoint FOLDER')
        folder = find_checkpoint(path)  # an output folder: its newest complete step-*/
        if is_pretrained_folder(folder):
            return folder
        raise ConfigError(f'{folder!r} has no {CONFIG_NAME} (a checkpoint of an older rudolph); load it with its '
                          'model name and checkpoint=, e.g. --model 350M --checkpoint FOLDER')
    raise WeightsNotFoundError(f'no such model folder {path!r}')


def _fetcher(name_or_path: str, cache_dir: Optional[str]) -> Tuple[str, Callable[[str], str]]:
    """(label, filename -> local path): :func:`rudolph.model.folder.model_files` of the saved-model folder a local
    path names (a run folder or its ``latest`` resolved first), or of a hub repository."""
    if os.path.exists(os.fspath(name_or_path)):
        name_or_path = resolve_pretrained(name_or_path)
    return model_files(name_or_path, cache_dir)


def _part_path(part: str, stored: Optional[Source], override: Any, fetch: Callable[[str], str],
               cache_dir: Optional[str]) -> Optional[str]:
    """Local path of the tokenizer or VQGAN: ``override``, the folder's file, or the hub file it names."""
    keyword = {'tokenizer': 'tokenizer', 'vae': 'vae'}[part]
    if override is not None:
        path = os.fspath(override)
        if not os.path.isfile(path):
            raise WeightsNotFoundError(f'the {part}: no such file {path!r} (given as {keyword}=)')
        return path
    if not stored:
        if part == 'vae':
            return None  # published VQGAN, as for the registry's models without one
        raise WeightsNotFoundError(f'the saved model records no {part}; pass '
                                   f'{setting(keyword, "PATH", metavar=True)}, or save the folder with '
                                   'save_pretrained(..., include_codecs=True)')
    if 'file' in stored:
        return fetch(stored['file'])
    if 'path' in stored:  # a packaged model's own file (the published model of a model-only folder)
        return stored['path']
    return hub_download(stored['repo_id'], stored['filename'], what=f'the {part} ({stored["filename"]})',
                        local_arg=setting(keyword, 'PATH', metavar=True), cache_dir=cache_dir)


def _stored_parts(config: Mapping[str, Any]) -> Dict[str, Any]:
    """``base_model``, ``tokenizer`` and ``vae`` records of a ``config.json``; a model-only one (no records)
    takes those of the published model with its architecture and task tokens, if any."""
    base = config.get('base_model')
    tokenizer, vae = config.get('tokenizer'), config.get('vae')
    if tokenizer is None and vae is None and base is None:
        base = infer_base_model(RudolphConfig.from_params(config['config']), config.get('spc_tokens') or {})
        if base is not None:
            found = registry_sources(base)
            tokenizer, vae = found['tokenizer'], found['vae']
    return {'base_model': base, 'tokenizer': tokenizer, 'vae': vae or published_vae()}


def _part_source(part: str, stored: Optional[Source], override: Any, label: str, local: bool) -> Optional[Source]:
    """Where a part comes from, without reading it: the override, a hub reference, or the folder's file."""
    if override is not None:
        return {'path': os.fspath(override)}
    if not stored:
        return None
    extra = {k: stored[k] for k in ('config', 'dwt') if k in stored}
    if 'file' in stored:
        if local:
            return {'path': os.path.join(label, stored['file']), **extra}
        return {'repo_id': label, 'filename': stored['file'], **extra}
    return dict(stored)


def saved_vae(name_or_path: Union[str, os.PathLike], cache_dir: Optional[str] = None) -> Tuple[str, Any, bool]:
    """(local path, config, dwt) of the VQGAN a saved model records (its own file or the hub one)."""
    _, fetch = _fetcher(os.fspath(name_or_path), cache_dir)
    stored = read_config(fetch(CONFIG_NAME)).get('vae') or published_vae()
    return _part_path('vae', stored, None, fetch, cache_dir), stored.get('config'), bool(stored.get('dwt'))
