"""One loader of everything a RuDOLPH model needs: the model, its tokenizer, its VQGAN and task tokens.

    from rudolph.pretrained.components import Components
    c = Components.from_pretrained('tiny-shapes')          # offline, from the package files
    c = Components.from_pretrained('350M', device='cuda')  # ruDALL-E's hub tokenizer and VQGAN
    api = ruDolphApi(c.model, c.tokenizer, c.vae, spc_tokens=c.spc_tokens)

Every model of :data:`rudolph.model.configs.MODELS` brings its own tokenizer, VAE, task tokens
and recommended sampling per task (``tokenizer_path``, ``vae_path``, ``vae_config``,
``spc_tokens``, ``sampling``); entries without them use the published ones. All files are
located first (local paths or the Hugging Face cache) and every missing one is reported in one
:class:`~rudolph.errors.WeightsNotFoundError` before anything is loaded. ``MODELS`` is never changed.
"""
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

from rudolph import tokenizer as tokenizer_module  # loaders called through their packages: patchable
from rudolph import vae as vae_module
from rudolph.checks import setting
from rudolph.errors import CheckpointError, ConfigError, WeightsNotFoundError
from rudolph.io.hub import hub_download
from rudolph.io.paths import folder_file
from rudolph.model import get_rudolph_model
from rudolph.model.configs import MODELS
from rudolph.model.device import check_device
from rudolph.model.loading import resolve_checkpoint
from rudolph.model.model import ruDolphModel
from rudolph.pretrained import folder as saved_folder
from rudolph.pretrained.folder import (
    looks_like_repo_id,
    published_tokenizer,
    published_vae,
    registry_sources,
    save_pretrained,
    saved_vae,
)
from rudolph.pretrained.publish import push_to_hub

__all__ = ['Components', 'Deferred', 'load_vae', 'describe_missing']

#: the keyword of :meth:`Components.from_pretrained` that replaces each file (the CLI maps them to options)
PART_KEYWORDS = {'model': 'checkpoint', 'tokenizer': 'tokenizer', 'vae': 'vae'}


def _hub_file(what: str, repo: str, filename: str, keyword: str, cache_dir: Optional[str]) -> str:
    """Local path of a hub file (cache, else one quick download); WeightsNotFoundError naming the fixes if not."""

    return hub_download(repo, filename, what=what, local_arg=setting(keyword, 'PATH', metavar=True),
                        cache_dir=cache_dir)


def _local_file(what: str, path: str, keyword: str) -> str:
    if not os.path.isfile(path):
        raise WeightsNotFoundError(f'{what}: no such file {path!r} (given as {keyword}=)')
    return path


@dataclass
class _Plan:
    """The files to load, found before anything is read."""
    model_path: Optional[str] = None
    tokenizer_path: Optional[str] = None
    tokenizer: Any = None  # the published tokenizer, loaded while the files are looked for
    vae_path: Optional[str] = None
    vae_config: Any = None
    problems: Dict[str, str] = field(default_factory=dict)


def _model_path(name: str, entry: Dict[str, Any], checkpoint: Optional[str], cache_dir: Optional[str]) -> str:

    if checkpoint is not None or entry.get('local_path'):  # a file, or a folder (e.g. a trainer's step-N/)
        try:
            return resolve_checkpoint(name if entry else '', checkpoint or entry['local_path'])
        except FileNotFoundError as error:
            raise WeightsNotFoundError(f'RuDOLPH {name}: {error}') from None
    return _hub_file(f'RuDOLPH {name}', entry['repo_id'], entry['filename'], 'checkpoint', cache_dir)


def _tokenizer_path(entry: Dict[str, Any], tokenizer: Optional[str]) -> Optional[str]:

    if tokenizer is not None:
        return _local_file('the tokenizer', str(tokenizer_module.NAMED_TOKENIZERS.get(tokenizer, tokenizer)), 'tokenizer')
    if entry.get('tokenizer_path'):
        return _local_file('the tokenizer', entry['tokenizer_path'], 'tokenizer')
    return None  # the published tokenizer: fetched (or found in the cache) by get_tokenizer() itself


def _hub_tokenizer(cache_dir: Optional[str]):
    """ruDALL-E's tokenizer from the hub cache (or a download); WeightsNotFoundError if it is not there."""

    try:
        return tokenizer_module.get_tokenizer(cache_dir=cache_dir)
    except WeightsNotFoundError as error:
        raise WeightsNotFoundError(f'{error}; here: {setting("tokenizer", "PATH", metavar=True)}') from error


def _vae_path(entry: Dict[str, Any], vae: Optional[str], vae_config: Any, cache_dir: Optional[str]) -> Tuple[str, Any]:

    if vae is not None:
        if vae in vae_module.NAMED_VAES and vae_config is None:
            path, vae_config = vae_module.NAMED_VAES[vae]
            return _local_file('the VQGAN', str(path), 'vae'), vae_config
        return _local_file('the VQGAN', str(vae), 'vae'), vae_config
    if entry.get('vae_path'):
        config = entry.get('vae_config') if vae_config is None else vae_config
        return _local_file('the VQGAN', entry['vae_path'], 'vae'), config
    path = _hub_file('the VQGAN', vae_module.HF_REPO_ID, vae_module.HF_FILENAMES[False], 'vae', cache_dir)
    return path, vae_config


def _plan(name: str, entry: Dict[str, Any], checkpoint, tokenizer, vae, vae_config, cache_dir, *,
          pretrained: bool = True, with_vae: bool = True) -> _Plan:
    """Every file located; each one that is missing is recorded in ``problems`` (by part) rather than raised."""
    plan = _Plan(vae_config=vae_config)

    def find_tokenizer() -> None:
        plan.tokenizer_path = _tokenizer_path(entry, tokenizer)
        if plan.tokenizer_path is None:
            plan.tokenizer = _hub_tokenizer(cache_dir)

    steps = [('tokenizer', find_tokenizer)]
    if pretrained:
        steps.insert(0, ('model', lambda: setattr(plan, 'model_path', _model_path(name, entry, checkpoint, cache_dir))))
    if with_vae:
        steps.append(('vae', lambda: _set_vae(plan, _vae_path(entry, vae, vae_config, cache_dir))))
    for part, step in steps:
        try:
            step()
        except WeightsNotFoundError as error:
            plan.problems[part] = str(error)
    return plan


def _set_vae(plan: _Plan, found: Tuple[str, Any]) -> None:
    plan.vae_path, plan.vae_config = found


def _missing_error(problems: Dict[str, str]) -> WeightsNotFoundError:
    error = WeightsNotFoundError('\n'.join(problems.values()))
    error.problems = dict(problems)  # part ('model', 'tokenizer', 'vae') -> message, for callers that add hints
    return error


class Deferred:
    """A part (the tokenizer or the VQGAN) loaded on first use: ``load()`` reads it, or raises the error that
    names the missing file and how to provide it."""

    def __init__(self, part: str, load: Callable[[], Any]):
        self.part, self.load = part, load

    def __repr__(self) -> str:
        return f'<{self.part}: loaded on first use>'


class Components:
    """A loaded model with what it needs: ``model``, ``tokenizer``, ``vae``, ``spc_tokens``, ``name``, ``sampling``.

    ``sampling`` maps a task (e.g. ``'text2image'``) to the model's recommended keyword
    arguments (``top_k``, ``top_p``, ``temperature``); :meth:`sampling_for` reads it. ``tokenizer``
    and ``vae`` may be given as :class:`Deferred`: they are then loaded when first asked for, so a
    saved model loads (and runs on token ids) without them.
    """

    def __init__(self, model: Any, tokenizer: Any, vae: Any, spc_tokens: Dict[str, int], name: str,
                 sampling: Optional[Dict[str, Dict[str, Any]]] = None, sources: Optional[Dict[str, Any]] = None):
        self.model, self.tokenizer, self.vae = model, tokenizer, vae
        self.spc_tokens, self.name = spc_tokens, name
        self.sampling = dict(sampling or {})
        #: where the parts came from (``base_model``, ``tokenizer``, ``vae``), for :meth:`save_pretrained`
        self.sources = dict(sources or {})

    def __repr__(self) -> str:
        return (f'Components(name={self.name!r}, model={type(self.model).__name__}, tokenizer={self._tokenizer!r}, '
                f'vae={self._vae!r})')

    def _part(self, attribute: str) -> Any:
        value = getattr(self, attribute)
        if isinstance(value, Deferred):
            value = value.load()
            setattr(self, attribute, value)
        return value

    @property
    def tokenizer(self) -> Any:
        """The tokenizer (loaded now if it was deferred)."""
        return self._part('_tokenizer')

    @tokenizer.setter
    def tokenizer(self, value: Any) -> None:
        self._tokenizer = value

    @property
    def vae(self) -> Any:
        """The VQGAN, or ``None`` (loaded now if it was deferred)."""
        return self._part('_vae')

    @vae.setter
    def vae(self, value: Any) -> None:
        self._vae = value

    def loaded_parts(self) -> Dict[str, Any]:
        """``tokenizer`` and ``vae`` as they are now, :class:`Deferred` ones included (nothing is loaded)."""
        return {'tokenizer': self._tokenizer, 'vae': self._vae}

    def save_pretrained(self, save_directory: str, **kwargs: Any) -> str:
        """Save model, task tokens, sampling and tokenizer/VQGAN (copied in unless published) as a folder
        that :meth:`from_pretrained` loads alone; see :func:`rudolph.pretrained.folder.save_pretrained`."""

        return save_pretrained(self, save_directory, **kwargs)

    def push_to_hub(self, repo_id: str, **kwargs: Any) -> str:
        """Save and publish as hub repository ``repo_id``; see :func:`rudolph.pretrained.publish.push_to_hub`."""

        return push_to_hub(self, repo_id, **kwargs)

    def sampling_for(self, task: str) -> Dict[str, Any]:
        """The recommended sampling keywords of ``task`` for this model (``{}`` when none are recorded)."""
        return dict(self.sampling.get(task, {}))

    @classmethod
    def from_pretrained(cls, name_or_path: str, *, device: Optional[str] = 'cpu', dtype=None,
                        checkpoint: Optional[str] = None, tokenizer: Optional[str] = None, vae: Optional[str] = None,
                        vae_config: Any = None, config: Optional[Dict[str, Any]] = None,
                        cache_dir: Optional[str] = None, fp16: bool = False, pretrained: bool = True,
                        with_vae: bool = True, model_kwargs: Optional[Dict[str, Any]] = None,
                        quantize: Optional[str] = None) -> 'Components':
        """Load model ``name_or_path``: a key of ``MODELS``, a saved-model folder (``save_pretrained``, a
        fine-tuning output folder or its ``latest``), a hub repo id of that layout, or a checkpoint
        file/folder with ``config``.

        ``checkpoint``, ``tokenizer``, ``vae`` (+ ``vae_config``) replace the model's own files;
        ``config`` holds the constructor params of an unregistered architecture (needs a
        checkpoint). ``device=None`` picks cuda when available. ``pretrained=False``: random weights
        (e.g. before resuming a run); ``with_vae=False``: ``vae`` is ``None`` (see :func:`load_vae`);
        ``model_kwargs`` override constructor arguments (dropout...). ``dtype`` (a torch dtype, a name
        or ``'auto'``) and ``quantize`` (``None`` or ``'int8'``): see ``get_rudolph_model``. Raises
        :class:`~rudolph.errors.WeightsNotFoundError` naming every missing file at once.
        """

        if config is None and checkpoint is None and _is_saved_model(name_or_path, MODELS):
            return load_pretrained(name_or_path, device=device, dtype=dtype, fp16=fp16, cache_dir=cache_dir,
                                   tokenizer=tokenizer, vae=vae, vae_config=vae_config, pretrained=pretrained,
                                   with_vae=with_vae, model_kwargs=model_kwargs, quantize=quantize)
        name, checkpoint = _name_and_checkpoint(name_or_path, checkpoint, config, MODELS)
        entry = dict(MODELS.get(name, {})) if config is None else {}
        device = check_device(device)
        plan = _plan(name, entry, checkpoint, tokenizer, vae, vae_config, cache_dir, pretrained=pretrained,
                     with_vae=with_vae)
        if plan.problems:
            raise _missing_error(plan.problems)
        tok = plan.tokenizer if plan.tokenizer is not None else _load_tokenizer(plan.tokenizer_path)
        vqgan = _load_vae(plan, device) if with_vae else None
        model = _load_model(name, config, plan.model_path, device, dtype, fp16, pretrained, model_kwargs or {},
                            quantize)
        spc = dict(getattr(model, 'spc_tokens', None) or {})
        model.pretrained_sources = _sources(name, entry, plan, tokenizer, vae)
        return cls(model, tok, vqgan, spc, name, {k: dict(v) for k, v in (entry.get('sampling') or {}).items()},
                   model.pretrained_sources)


def _is_saved_model(name_or_path: Any, models) -> bool:
    """A saved-model folder, a fine-tuning run (folder or its ``latest``) or a hub repo id, not a registry name."""

    text = os.fspath(name_or_path)
    return text not in models and (os.path.exists(text) or looks_like_repo_id(text))


def _sources(name: str, entry: Dict[str, Any], plan: _Plan, tokenizer, vae) -> Dict[str, Any]:
    """Where the tokenizer and VQGAN of a registry model came from (what ``save_pretrained`` records)."""

    found = registry_sources(name) if entry else {'base_model': None, 'tokenizer': None, 'vae': None}
    if tokenizer is not None or (plan.tokenizer_path and not entry.get('tokenizer_path')):
        found['tokenizer'] = {'path': plan.tokenizer_path}
    elif plan.tokenizer is not None:
        found['tokenizer'] = published_tokenizer()
    if vae is not None:
        config = plan.vae_config
        found['vae'] = {'path': plan.vae_path, 'config': dict(config) if isinstance(config, dict) else config,
                        'dwt': False}
    elif not entry:
        found['vae'] = published_vae()
    return found


def _name_and_checkpoint(name_or_path: str, checkpoint, config, models) -> Tuple[str, Optional[str]]:
    if config is not None:
        if not isinstance(config, dict):
            raise ConfigError(f'config must be a dict of model constructor params, got {type(config).__name__}')
        if checkpoint is None and name_or_path not in models and os.path.exists(name_or_path):
            checkpoint = name_or_path  # the path itself is the checkpoint of that architecture
        if checkpoint is None:
            raise ConfigError('config describes the architecture of a local checkpoint; pass checkpoint= too')
        return str(name_or_path), checkpoint
    if name_or_path not in models:
        raise ConfigError(f'unknown model {name_or_path!r}; expected one of {sorted(models)} '
                          '(or config= params with a checkpoint)')
    return name_or_path, checkpoint


def _load_tokenizer(path: str):

    try:
        return tokenizer_module.get_tokenizer(path)
    except (OSError, ValueError) as error:
        raise CheckpointError(f'cannot read the tokenizer {path!r}: {error}') from None


def _load_vae(plan: _Plan, device: str):

    try:
        return vae_module.get_vae(path=plan.vae_path, config=plan.vae_config).to(device)
    except (OSError, ValueError, RuntimeError) as error:
        hint = '' if plan.vae_config else ' (pass a vae_config for a VQGAN of another architecture)'
        raise CheckpointError(f'cannot load the VQGAN {plan.vae_path!r}: {error}{hint}') from None


def _load_model(name: str, config: Optional[Dict[str, Any]], path: Optional[str], device: str, dtype, fp16: bool,
                pretrained: bool, model_kwargs: Dict[str, Any], quantize: Optional[str] = None):

    extra = dict(model_kwargs) if config is None else {'model_params': {**config, **model_kwargs}}
    if fp16 and dtype is None:  # the same precision, without the FP16Module wrapper fp16=True returns
        fp16, dtype = False, 'float16'
    try:
        return get_rudolph_model(name, pretrained=pretrained, fp16=fp16, dtype=dtype, quantize=quantize,
                                 device=device, checkpoint_path=path, **extra)
    except (CheckpointError, ConfigError):  # ConfigError: an unsupported dtype / quantize request
        raise
    except (OSError, ValueError, RuntimeError, TypeError) as error:
        raise CheckpointError(f'cannot load RuDOLPH {name} from {path!r}: {error}') from None


def load_vae(name: str, *, vae: Optional[str] = None, vae_config: Any = None, device: str = 'cpu',
             cache_dir: Optional[str] = None):
    """The VQGAN of model ``name`` (a ``MODELS`` key or a saved model: its own VQGAN, ruDALL-E's, or ``vae`` with
    ``vae_config``) on ``device``."""

    if vae is None and _is_saved_model(name, MODELS):  # a saved model's own VQGAN (or the hub one it names)

        path, config, dwt = saved_vae(name, cache_dir)
        return vae_module.get_vae(path=path, config=config if vae_config is None else vae_config, dwt=dwt).to(device)
    plan = _Plan(vae_config=vae_config)
    _set_vae(plan, _vae_path(dict(MODELS.get(name, {})), vae, vae_config, cache_dir))
    return _load_vae(plan, device)


def describe_missing(error: WeightsNotFoundError, options: Dict[str, str]) -> List[str]:
    """The lines of ``error`` with the option replacing each part (e.g. ``{'model': '--checkpoint'}``) added."""
    problems = getattr(error, 'problems', None) or {}
    if not problems:
        return [str(error)]
    return [f'{message}\n  (command line: {options[part]} PATH)' if part in options else message
            for part, message in problems.items()]


def load_pretrained(name_or_path: Union[str, os.PathLike], *, device: Optional[str] = 'cpu', dtype=None,
                    fp16: bool = False, cache_dir: Optional[str] = None, tokenizer: Any = None, vae: Any = None,
                    vae_config: Any = None, pretrained: bool = True, with_vae: bool = True,
                    model_kwargs: Optional[Mapping[str, Any]] = None, quantize: Optional[str] = None) -> Components:
    """A saved model (folder, fine-tuning output folder or its ``latest``, or hub repo id) as ``Components``.

    The model comes from ``config.json`` and the weights alone (``ruDolphModel``'s own loader); the
    tokenizer and the VQGAN are loaded when first asked for (``components.tokenizer``), and a missing
    one is then named with how to provide it. ``tokenizer`` / ``vae`` (+ ``vae_config``) replace the
    stored ones. A folder that records neither (``ruDolphModel.save_pretrained``) uses those of the
    published model of its architecture, if there is one. The hub files come through
    :func:`rudolph.io.hub.hub_download` (the cache first, ``HF_HUB_OFFLINE`` honoured).
    """
    device = check_device(device)
    label, fetch = saved_folder._fetcher(os.fspath(name_or_path), cache_dir)
    config = saved_folder.read_config(fetch(saved_folder.CONFIG_NAME))
    model = saved_folder.load_model(ruDolphModel, label, device=device, dtype=dtype, quantize=quantize, fp16=fp16,
                                    cache_dir=cache_dir, pretrained=pretrained, model_kwargs=model_kwargs)
    stored = saved_folder._stored_parts(config)
    local = os.path.isdir(label)
    if local:  # a file the folder names must be inside it: refused now, though it is read at first use
        for part, override in (('tokenizer', tokenizer), ('vae', vae)):
            if override is None and 'file' in (stored[part] or {}):
                named_by = os.path.join(label, saved_folder.CONFIG_NAME)
                folder_file(label, stored[part]['file'], f'the {part} named by {named_by!r}')
    tok_source = saved_folder._part_source('tokenizer', stored['tokenizer'], tokenizer, label, local)
    vae_source = saved_folder._part_source('vae', stored['vae'], vae, label, local)
    if vae is not None:
        vae_source = {**vae_source, 'config': saved_folder._plain(vae_config), 'dwt': False}
    model.pretrained_sources = {'base_model': stored['base_model'], 'tokenizer': tok_source, 'vae': vae_source}
    tok = Deferred('tokenizer', lambda: _load_tokenizer(
        saved_folder._part_path('tokenizer', stored['tokenizer'], tokenizer, fetch, cache_dir)))
    vqgan = Deferred('vae', lambda: vae_module.get_vae(path=saved_folder._part_path('vae', stored['vae'], vae, fetch, cache_dir),
                                            config=vae_source.get('config'),
                                            dwt=bool(vae_source.get('dwt'))).to(device)) if with_vae else None
    return Components(model, tok, vqgan, dict(model.spc_tokens), str(label),
                      {k: dict(v) for k, v in (config.get('sampling') or {}).items()}, model.pretrained_sources)
