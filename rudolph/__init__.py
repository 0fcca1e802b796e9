"""RuDOLPH: one transformer that writes text, draws images (VQGAN codes) and reads them back.

``from rudolph import get_tokenizer, get_vae`` replaces ``from rudalle import ...``;
``rudolph.pipelines`` and ``rudolph.api.ruDolphApi`` keep the original task APIs.
The exports are imported on first use, so ``import rudolph`` (and ``rudolph --help``) does not
load torch.
"""
import importlib
from typing import Any

__version__ = '1.0.0'

#: exported name -> (module, attribute; None for the module itself)
_EXPORTS = {
    'MODELS': ('.model.configs', 'MODELS'),
    'FP16Module': ('.model', 'FP16Module'),
    'get_rudolph_model': ('.model', 'get_rudolph_model'),
    'ruDolphModel': ('.model', 'ruDolphModel'),
    'get_tokenizer': ('.tokenizer', 'get_tokenizer'),
    'get_vae': ('.vae', 'get_vae'),
    'ruDolphApi': ('.api', 'ruDolphApi'),
    'ImagePrompts': ('.image_prompts', 'ImagePrompts'),
    'Components': ('.components', 'Components'),
    'model': ('.model', None),
    'pipelines': ('.pipelines', None),
    'utils': ('.utils', None),
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
    module_name, attribute = _EXPORTS[name]
    module = importlib.import_module(module_name, __name__)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
