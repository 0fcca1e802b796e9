"""RuDOLPH: one transformer that writes text, draws images (VQGAN codes) and reads them back.

``from rudolph import get_tokenizer, get_vae`` replaces ``from rudalle import ...``;
``rudolph.pipelines`` and ``rudolph.api.ruDolphApi`` keep the original task APIs.
The exports are imported on first use, so ``import rudolph`` (and ``rudolph --help``) does not
load torch.
"""
from rudolph._lazy import lazy_exports

__version__ = '1.0.0'

#: exported name -> (module, attribute; None for the module itself)
_EXPORTS = {
    'MODELS': ('.model.configs', 'MODELS'),
    'FP16Module': ('.model', 'FP16Module'),
    'get_rudolph_model': ('.model', 'get_rudolph_model'),
    'ruDolphModel': ('.model', 'ruDolphModel'),
    'RudolphConfig': ('.model.config', 'RudolphConfig'),
    'get_tokenizer': ('.tokenizer', 'get_tokenizer'),
    'get_vae': ('.vae', 'get_vae'),
    'ruDolphApi': ('.api', 'ruDolphApi'),
    'ImagePrompts': ('.image_prompts', 'ImagePrompts'),
    'Components': ('.pretrained.components', 'Components'),
    'get_realesrgan': ('.superres', 'get_realesrgan'),
    'api': ('.api', None),
    'model': ('.model', None),
    'pipelines': ('.pipelines', None),
    'utils': ('.utils', None),
}

__all__ = list(_EXPORTS)


__getattr__ = lazy_exports(__name__, globals(), _EXPORTS)
