"""Where a model's parts come from (published hub files, registry entries, local files): what a saved
model's ``config.json`` records so that it loads with nothing else given."""
import dataclasses
import os
from typing import Any, Dict, Mapping, Optional

from rudolph import tokenizer as tokenizer_module
from rudolph import vae as vae_module
from rudolph.errors import ConfigError
from rudolph.model.configs import MODELS
from rudolph.tokenizer import NAMED_TOKENIZERS
from rudolph.vae import NAMED_VAES

__all__ = ['Source', 'published_tokenizer', 'published_vae', 'registry_sources', 'infer_base_model', 'model_sources',
           'tokenizer_source', 'vae_source']

Source = Dict[str, Any]
#: config fields that change how a model trains, not what it computes
_TRAINING_ONLY = ('embedding_dropout_prob', 'attention_dropout_prob', 'output_dropout_prob', 'gradient_checkpointing',
                  'is_bool_mask')


def published_tokenizer() -> Source:

    return {'repo_id': tokenizer_module.HF_REPO_ID, 'filename': tokenizer_module.HF_FILENAME}


def published_vae() -> Source:

    return {'repo_id': vae_module.HF_REPO_ID, 'filename': vae_module.HF_FILENAMES[False], 'config': None, 'dwt': False}


def registry_sources(name: str) -> Dict[str, Any]:
    """``{'base_model', 'tokenizer', 'vae'}`` of a model of ``MODELS``: its packaged files or the published ones."""

    entry = MODELS[name]
    tokenizer = {'path': entry['tokenizer_path']} if entry.get('tokenizer_path') else published_tokenizer()
    vae = published_vae()
    if entry.get('vae_path'):
        config = entry.get('vae_config')
        vae = {'path': entry['vae_path'], 'config': _plain(config) if config is not None else None, 'dwt': False}
    return {'base_model': name, 'tokenizer': tokenizer, 'vae': vae}


def _plain(value: Any) -> Any:
    """JSON-ready copy of configs (mappings, tuples, dataclasses)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def infer_base_model(config: Any, spc_tokens: Mapping[str, int]) -> Optional[str]:
    """The first model of ``MODELS`` with this architecture and these task tokens (dropout aside), if any."""

    def key(params: Mapping[str, Any]) -> Dict[str, Any]:
        return {k: v for k, v in params.items() if k not in _TRAINING_ONLY}

    mine = key(config.to_params())
    for name, spec in MODELS.items():
        if key(spec['model_params']) == mine and dict(spec.get('spc_tokens') or {}) == dict(spc_tokens):
            return name
    return None


def tokenizer_source(tokenizer: Any) -> Source:
    """A source from a path, a registered name, a loaded tokenizer or a source dict."""
    if isinstance(tokenizer, Mapping):
        return dict(tokenizer)
    if isinstance(tokenizer, (str, os.PathLike)):
        if tokenizer in MODELS and tokenizer not in NAMED_TOKENIZERS and not os.path.exists(tokenizer):
            return registry_sources(tokenizer)['tokenizer']  # a model's name: its tokenizer, as get_tokenizer reads it
        return {'path': os.fspath(NAMED_TOKENIZERS.get(tokenizer, tokenizer))}
    bpe = getattr(tokenizer, 'tokenizer', tokenizer)
    if getattr(bpe, 'model_path', None):
        return {'path': bpe.model_path}
    if getattr(bpe, 'data', None) is not None:
        return {'data': bpe.data}  # trained in memory: written out when saved
    raise ConfigError(f'tokenizer={type(tokenizer).__name__}: expected a bpe.model path, a loaded YTTM tokenizer or '
                      'a source dict')


def vae_source(vae: Any) -> Source:
    if isinstance(vae, Mapping):
        return dict(vae)
    if isinstance(vae, (str, os.PathLike)):
        if vae in MODELS and vae not in NAMED_VAES and not os.path.exists(vae):
            return registry_sources(vae)['vae']  # a model's name: its VQGAN, as get_vae reads it
        if vae in NAMED_VAES:
            path, config = NAMED_VAES[vae]
            return {'path': path, 'config': _plain(config), 'dwt': False}
        return {'path': os.fspath(vae), 'config': None, 'dwt': False}
    if hasattr(vae, 'config') and hasattr(vae, 'model'):
        return {'object': vae, 'config': _plain(vae.config), 'dwt': bool(getattr(vae, 'dwt', False))}
    raise ConfigError(f'vae={type(vae).__name__}: expected a VQGAN checkpoint path, a loaded VQGAN or a source dict')


def model_sources(model: Any, tokenizer: Any = None, vae: Any = None, base_model: Optional[str] = None,
                  sources: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """Base model and tokenizer/VQGAN sources: those given, those the model was loaded with, or the registry's."""
    found = dict(sources or getattr(model, 'pretrained_sources', None) or {})
    if not found:
        name = base_model or infer_base_model(model.config, getattr(model, 'spc_tokens', None) or {})
        found = registry_sources(name) if name else {'base_model': None, 'tokenizer': None, 'vae': None}
    if base_model is not None:
        found['base_model'] = base_model
    if tokenizer is not None:
        found['tokenizer'] = tokenizer_source(tokenizer)
    if vae is not None:
        found['vae'] = vae_source(vae)
    return found
