"""``rudolph.components``, the path earlier releases documented: :mod:`rudolph.pretrained.components`."""
from rudolph.pretrained.components import Components, Deferred, describe_missing, load_vae

__all__ = ['Components', 'Deferred', 'describe_missing', 'load_vae']
