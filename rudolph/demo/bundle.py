"""The embedded model's four parts, loaded from the package files only."""
from typing import Any, Dict, NamedTuple

from rudolph.demo import NAME
from rudolph.errors import ConfigError
from rudolph.pretrained.components import Components

__all__ = ['Bundle', 'load_bundle']


class Bundle(NamedTuple):
    model: Any
    tokenizer: Any
    vae: Any
    spc_tokens: Dict[str, int]


def load_bundle(name: str = NAME, device: str = 'cpu', dtype=None, quantize=None) -> Bundle:
    """``(model, tokenizer, vae, spc_tokens)`` of the embedded model, from the package files only
    (:meth:`rudolph.pretrained.components.Components.from_pretrained` as a 4-tuple).

    ``dtype`` / ``quantize``: the model's precision (see ``get_rudolph_model``; default float32)."""

    if name != NAME:
        raise ConfigError(f'unknown bundle {name!r}; expected {NAME!r}')
    parts = Components.from_pretrained(NAME, device=device, dtype=dtype, quantize=quantize)
    return Bundle(parts.model, parts.tokenizer, parts.vae, dict(parts.spc_tokens))


