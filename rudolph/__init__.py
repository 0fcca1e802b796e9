"""RuDOLPH: one transformer that writes text, draws images (VQGAN codes) and reads them back.

``from rudolph import get_tokenizer, get_vae`` replaces ``from rudalle import ...``;
``rudolph.pipelines`` and ``rudolph.api.ruDolphApi`` keep the original task APIs.
"""
from . import model, pipelines, utils
from .api import ruDolphApi
from .image_prompts import ImagePrompts
from .model import MODELS, FP16Module, get_rudolph_model, ruDolphModel
from .tokenizer import get_tokenizer
from .vae import get_vae

__version__ = '1.0.0'

__all__ = ['MODELS', 'FP16Module', 'get_rudolph_model', 'ruDolphModel', 'get_tokenizer', 'get_vae', 'ruDolphApi',
           'ImagePrompts', 'model', 'pipelines', 'utils']
