"""RuDOLPH: one transformer that writes text, draws images (VQGAN codes) and reads them back."""
from .model import MODELS, FP16Module, get_rudolph_model, ruDolphModel

__version__ = '1.0.0'

__all__ = ['MODELS', 'FP16Module', 'get_rudolph_model', 'ruDolphModel']
