"""Self-describing model folders: ``save_pretrained``, ``load_pretrained`` (``convert`` and
``push_to_hub``: :mod:`rudolph.pretrained.publish`; the card: :mod:`rudolph.pretrained.model_card`).

A saved model is a folder (or a hub repository holding the same files)::

    model.safetensors   the weights (the four mask buffers are left out: they follow from the config)
    config.json         format and version, the full RudolphConfig, task tokens, where the tokenizer and the
                        VQGAN come from, recommended sampling per task, base model, training run
    README.md           a model card: hub metadata, base model, tasks, training data and steps, how to load
    bpe.model           the tokenizer, when it is not a published one
    vqgan.safetensors   the VQGAN, when it is not a published one (its header records its architecture)

``Components.from_pretrained(folder_or_repo_id)`` loads it with nothing else given.

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
import re
import shutil
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

import torch

from rudolph.checks import setting
from rudolph.errors import ConfigError, CorruptCheckpointError, WeightsNotFoundError
from rudolph.io.files import check_folder_target, write_folder_atomic
from rudolph.pretrained.model_card import model_card
from rudolph.pretrained.sources import (  # noqa: F401 (re-exported)
    Source,
    _plain,
    model_sources,
    published_tokenizer,
    published_vae,
    registry_sources,
    tokenizer_source,
    vae_source,
)

__all__ = ['save_pretrained', 'write_pretrained', 'write_description', 'load_pretrained',
           'read_config', 'model_card', 'resolve_pretrained', 'is_pretrained_folder', 'written_model_folder',
           'looks_like_repo_id',
           'pretrained_config', 'model_sources', 'registry_sources', 'saved_vae', 'FORMAT', 'FORMAT_VERSION',
           'CONFIG_NAME', 'WEIGHTS_NAME', 'CARD_NAME', 'TOKENIZER_NAME', 'VAE_NAME']

logger = logging.getLogger(__name__)

FORMAT = 'rudolph'
FORMAT_VERSION = 1
CONFIG_NAME = 'config.json'
WEIGHTS_NAME = 'model.safetensors'
CARD_NAME = 'README.md'
TOKENIZER_NAME = 'bpe.model'
VAE_NAME = 'vqgan.safetensors'
#: the files of a saved model that are published (a trainer checkpoint also holds optimizer and RNG state)
PUBLISHED_FILES = (CONFIG_NAME, WEIGHTS_NAME, CARD_NAME, TOKENIZER_NAME, VAE_NAME)
_REPO_ID = re.compile(r'^[A-Za-z0-9][\w.-]*/[\w.-]+$')


# ----------------------------------------------------------------------------- writing
def pretrained_config(config: Any, spc_tokens: Mapping[str, int], sources: Mapping[str, Any],
                      sampling: Optional[Mapping[str, Any]] = None, training: Optional[Mapping[str, Any]] = None,
                      dtype: Optional[torch.dtype] = None) -> Dict[str, Any]:
    """The ``config.json`` of a saved model (sources as they will be stored: ``file`` or ``repo_id``)."""
    from rudolph import __version__

    base = sources.get('base_model')
    if sampling is None and base:
        from rudolph.model.configs import MODELS

        sampling = MODELS[base].get('sampling') if base in MODELS else None
    return {'format': FORMAT, 'format_version': FORMAT_VERSION, 'library': 'rudolph', 'library_version': __version__,
            'model_type': 'rudolph', 'base_model': base, 'base_model_repo': _base_repo(base),
            'config': _plain(config.to_params()), 'spc_tokens': dict(spc_tokens or {}),
            'tokenizer': _stored(sources.get('tokenizer'), TOKENIZER_NAME),
            'vae': _stored(sources.get('vae'), VAE_NAME), 'sampling': _plain(sampling or {}),
            'weights': WEIGHTS_NAME, 'torch_dtype': str(dtype or torch.float32).replace('torch.', ''),
            'training': _plain(training) if training else None}


def _base_repo(base: Optional[str]) -> Optional[str]:
    from rudolph.model.configs import MODELS

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
        from rudolph.tokenizer.yttm_format import write_yttm_model

        write_yttm_model(target, source['data'])
    else:
        raise ConfigError(f'tokenizer source {sorted(source)}: expected a path, a tokenizer or a hub file')


def _vae_state(source: Source) -> Dict[str, torch.Tensor]:
    """The VQGAN weights to store: the file's own tensors (dtype kept), or a loaded VQGAN's."""
    if 'object' in source:
        vae = source['object']
        return dict((vae if vae.dwt else vae.model).state_dict())
    from rudolph.vae.model import read_checkpoint_state_dict

    state = read_checkpoint_state_dict(source['path'])
    if source.get('dwt'):
        return state
    keep = ('encoder.', 'decoder.', 'quantize.', 'quant_conv.', 'post_quant_conv.')
    return {k: v for k, v in state.items() if k.startswith(keep)}  # training-only parts (loss.*) stay behind


def _write_vae(source: Source, folder: str) -> None:
    from rudolph.io.safetensors import write_safetensors

    meta = {'dwt': json.dumps(bool(source.get('dwt')))}
    if source.get('config') is not None:
        meta['vqgan_config'] = json.dumps(_plain(source['config']))
    write_safetensors(_vae_state(source), os.path.join(folder, VAE_NAME), meta)


def model_weights(state: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """The tensors to store: everything but the mask buffers (rebuilt from the config at load)."""
    from rudolph.model.loading import _is_mask_key

    return {k: v for k, v in state.items() if not _is_mask_key(k)}


def write_pretrained(folder: str, state: Mapping[str, torch.Tensor], config: Dict[str, Any],
                     sources: Mapping[str, Any], name: Optional[str] = None) -> List[str]:
    """Write the files of a saved model into the existing ``folder``; returns their names.

    ``state`` is the model's state dict (mask buffers are dropped), ``config`` the
    :func:`pretrained_config`, ``sources`` the tokenizer/VQGAN sources it was made from.
    """
    from rudolph.io.safetensors import write_safetensors

    write_safetensors(model_weights(state), os.path.join(folder, WEIGHTS_NAME),
                      {'format_version': str(FORMAT_VERSION), 'library': 'rudolph'})
    files = [WEIGHTS_NAME]
    if config.get('tokenizer') and 'file' in config['tokenizer']:
        _write_tokenizer(sources['tokenizer'], folder)
        files.append(TOKENIZER_NAME)
    if config.get('vae') and 'file' in config['vae']:
        _write_vae(sources['vae'], folder)
        files.append(VAE_NAME)
    return files + write_description(folder, config, name)


def write_description(folder: str, config: Mapping[str, Any], name: Optional[str] = None) -> List[str]:
    """``config.json`` and the ``README.md`` model card of ``folder`` (``name``: how the card calls the model)."""
    _write_text(os.path.join(folder, CONFIG_NAME), json.dumps(config, indent=2, ensure_ascii=False) + '\n')
    _write_text(os.path.join(folder, CARD_NAME), model_card(config, name or os.path.basename(os.path.abspath(folder))))
    return [CONFIG_NAME, CARD_NAME]


def _write_text(path: str, text: str) -> None:
    from rudolph.io.files import write_atomic

    def write(tmp: str) -> None:
        with open(tmp, 'w', encoding='utf-8') as f:
            f.write(text)

    write_atomic(path, write)


def _unpack(obj: Any) -> Tuple[Any, Dict[str, Any]]:
    """(model, what a Components adds: tokenizer, vae, sources, sampling) of a model or a Components."""
    if hasattr(obj, 'model') and hasattr(obj, 'spc_tokens') and hasattr(obj, 'tokenizer'):
        return obj.model, {'tokenizer': obj.tokenizer, 'vae': obj.vae, 'sampling': getattr(obj, 'sampling', None),
                           'sources': getattr(obj, 'sources', None)}
    if isinstance(obj, torch.nn.Module) and hasattr(obj, 'config'):
        return obj, {}
    raise ConfigError(f'save_pretrained: expected a ruDolphModel or Components, got {type(obj).__name__}')


def save_pretrained(obj: Any, save_directory: Union[str, os.PathLike], *, tokenizer: Any = None, vae: Any = None,
                    base_model: Optional[str] = None, sampling: Optional[Mapping[str, Any]] = None,
                    training: Optional[Mapping[str, Any]] = None) -> str:
    """Save a model (or :class:`~rudolph.pretrained.components.Components`) as a self-describing folder; returns its path.

    ``tokenizer`` / ``vae`` (paths, loaded objects) and ``base_model`` (a key of ``MODELS``) override
    what the model was loaded with; unpublished tokenizers and VQGANs are copied into the folder.
    The folder is written in full beside its target and renamed into place, so a reader never
    sees half a model; an existing saved-model folder of that name is replaced, any other non-empty
    folder refused (:func:`rudolph.io.files.check_folder_target`).
    """
    model, parts = _unpack(obj)
    sources = model_sources(model, tokenizer, vae, base_model, parts.get('sources'))
    if tokenizer is None and sources.get('tokenizer') is None and parts.get('tokenizer') is not None:
        sources['tokenizer'] = tokenizer_source(parts['tokenizer'])
    if vae is None and sources.get('vae') is None and parts.get('vae') is not None:
        sources['vae'] = vae_source(parts['vae'])
    for part in ('tokenizer', 'vae'):
        if sources.get(part) is None:
            logger.warning('save_pretrained: the %s of this model is unknown; loading the folder will need %s=PATH',
                           part, part)
    config = pretrained_config(model.config, getattr(model, 'spc_tokens', None) or {}, sources,
                               sampling if sampling is not None else parts.get('sampling') or None, training,
                               next(model.parameters()).dtype)
    target = os.fspath(save_directory)
    check_folder_target(target, ours=written_model_folder, overwrite=True, what='save_directory')
    return write_folder_atomic(target, lambda tmp: write_pretrained(tmp, model.state_dict(), config, sources,
                                                               os.path.basename(os.path.abspath(target))))


def written_model_folder(path: str) -> bool:
    """Whether ``path`` is a saved-model folder as this module writes it: a config of this format and no file
    but those of a saved model (so replacing it loses nothing that rudolph did not write)."""
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


# ----------------------------------------------------------------------------- reading
def looks_like_repo_id(text: str) -> bool:
    """``owner/name`` that is not an existing local path."""
    return bool(_REPO_ID.match(str(text))) and not os.path.exists(str(text))


def is_pretrained_folder(path: Union[str, os.PathLike]) -> bool:
    return os.path.isfile(os.path.join(os.fspath(path), CONFIG_NAME))


def resolve_pretrained(path: Union[str, os.PathLike]) -> str:
    """The saved-model folder a local path names: itself, a trainer's ``latest`` (file or output folder) or step."""
    from rudolph.finetune.checkpoints import LATEST_NAME, STATE_NAME, find_checkpoint

    path = os.fspath(path)
    if os.path.isfile(path):  # the trainer's `latest`: a file holding the name of the newest step folder
        with open(path, encoding='utf-8') as f:
            step = f.read(256).strip()
        target = os.path.join(os.path.dirname(path), step)
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


def _fetcher(name_or_path: str, cache_dir: Optional[str]) -> Tuple[str, Callable[[str], str]]:
    """(label, filename -> local path) for a local folder or a hub repository of this layout."""
    from rudolph.io.hub import hub_download

    if os.path.exists(os.fspath(name_or_path)):
        folder = resolve_pretrained(name_or_path)

        def local(filename: str) -> str:
            path = os.path.join(folder, filename)
            if not os.path.isfile(path):
                raise WeightsNotFoundError(f'{filename} is missing from the model folder {folder!r}')
            return path
        return folder, local
    if not looks_like_repo_id(name_or_path):
        raise WeightsNotFoundError(f'{name_or_path!r}: no such folder, and not a hub repo id (owner/name)')

    def remote(filename: str) -> str:
        return hub_download(name_or_path, filename, what=f'{filename} of the model {name_or_path}',
                            local_arg='a local copy of the folder: from_pretrained(PATH)', cache_dir=cache_dir)
    return name_or_path, remote


def _part_path(part: str, stored: Optional[Source], override: Any, fetch: Callable[[str], str],
               cache_dir: Optional[str]) -> Optional[str]:
    """Local path of the tokenizer or VQGAN: ``override``, the folder's file, or the hub file it names."""
    from rudolph.io.hub import hub_download

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
                                   f'{setting(keyword, "PATH", metavar=True)}')
    if 'file' in stored:
        return fetch(stored['file'])
    return hub_download(stored['repo_id'], stored['filename'], what=f'the {part} ({stored["filename"]})',
                        local_arg=setting(keyword, 'PATH', metavar=True), cache_dir=cache_dir)


def _locate(config: Dict[str, Any], fetch: Callable[[str], str], tokenizer: Any, vae: Any, cache_dir: Optional[str],
            pretrained: bool, with_vae: bool) -> Dict[str, Optional[str]]:
    """Every file found first; all the missing ones are reported in one ``WeightsNotFoundError``."""
    from rudolph.pretrained.components import _missing_error

    steps = {'tokenizer': lambda: _part_path('tokenizer', config.get('tokenizer'), tokenizer, fetch, cache_dir)}
    if pretrained:
        steps = {'model': lambda: fetch(config.get('weights') or WEIGHTS_NAME), **steps}
    stored_vae = config.get('vae') or published_vae()
    if with_vae or (vae is None and 'file' in stored_vae):  # a VQGAN of the folder travels with the model
        steps['vae'] = lambda: _part_path('vae', stored_vae, vae, fetch, cache_dir)
    paths: Dict[str, Optional[str]] = {}
    problems: Dict[str, str] = {}
    for part, step in steps.items():
        try:
            paths[part] = step()
        except WeightsNotFoundError as error:
            problems[part] = str(error)
    if problems:
        raise _missing_error(problems)
    return paths


def load_pretrained(name_or_path: Union[str, os.PathLike], *, device: Optional[str] = 'cpu', dtype=None,
                    fp16: bool = False, cache_dir: Optional[str] = None, tokenizer: Any = None, vae: Any = None,
                    vae_config: Any = None, pretrained: bool = True, with_vae: bool = True,
                    model_kwargs: Optional[Mapping[str, Any]] = None, quantize: Optional[str] = None):
    """A saved model (folder, fine-tuning output folder or its ``latest``, or hub repo id) as ``Components``.

    The hub files come through :func:`rudolph.io.hub.hub_download` (the cache first, ``HF_HUB_OFFLINE``
    honoured). ``tokenizer`` / ``vae`` (+ ``vae_config``) replace the stored ones.
    """
    from rudolph.model import get_rudolph_model
    from rudolph.pretrained.components import Components, _load_tokenizer, check_device
    from rudolph.vae import get_vae

    device = check_device(device)
    label, fetch = _fetcher(os.fspath(name_or_path), cache_dir)
    config = read_config(fetch(CONFIG_NAME))
    paths = _locate(config, fetch, tokenizer, vae, cache_dir, pretrained, with_vae)
    params = {**config['config'], **(model_kwargs or {})}
    model = get_rudolph_model(str(label), pretrained=pretrained, fp16=fp16, dtype=dtype, quantize=quantize,
                              device=device, checkpoint_path=paths.get('model'), model_params=params)
    model.spc_tokens = {str(k): int(v) for k, v in (config.get('spc_tokens') or {}).items()}
    tokenizer_source, vae_source = _loaded_sources(config, paths, tokenizer, vae, vae_config)
    vqgan = None
    if with_vae:
        vqgan = get_vae(path=paths['vae'], config=vae_source.get('config'), dwt=bool(vae_source.get('dwt'))).to(device)
    model.pretrained_sources = {'base_model': config.get('base_model'), 'tokenizer': tokenizer_source,
                                'vae': vae_source}
    return Components(model, _load_tokenizer(paths['tokenizer']), vqgan, dict(model.spc_tokens), str(label),
                      {k: dict(v) for k, v in (config.get('sampling') or {}).items()}, model.pretrained_sources)


def _loaded_sources(config: Dict[str, Any], paths: Mapping[str, Optional[str]], tokenizer: Any, vae: Any,
                    vae_config: Any) -> Tuple[Source, Source]:
    """Where the tokenizer and VQGAN came from, so that saving again keeps hub references as references."""
    stored_tok = config.get('tokenizer') or {}
    tok = dict(stored_tok) if tokenizer is None and 'repo_id' in stored_tok else {'path': paths['tokenizer']}
    stored_vae = config.get('vae') or published_vae()
    if vae is not None:
        return tok, {'path': paths['vae'], 'config': _plain(vae_config), 'dwt': False}
    if 'repo_id' in stored_vae:
        return tok, {'config': None, 'dwt': False, **stored_vae}
    return tok, {'path': paths['vae'], 'config': stored_vae.get('config'), 'dwt': bool(stored_vae.get('dwt'))}


def saved_vae(name_or_path: Union[str, os.PathLike], cache_dir: Optional[str] = None) -> Tuple[str, Any, bool]:
    """(local path, config, dwt) of the VQGAN a saved model records (its own file or the hub one)."""
    _, fetch = _fetcher(os.fspath(name_or_path), cache_dir)
    stored = read_config(fetch(CONFIG_NAME)).get('vae') or published_vae()
    return _part_path('vae', stored, None, fetch, cache_dir), stored.get('config'), bool(stored.get('dwt'))
