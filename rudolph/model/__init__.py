"""The RuDOLPH transformer, its configs and checkpoint loading."""
from .cache import KVCache
from .configs import MODELS
from .fp16 import FP16Module
from .image_attention import get_col_mask, get_conv_mask, get_row_mask
from .loading import get_rudolph_model
from .model import ruDolphModel

__all__ = ['MODELS', 'get_rudolph_model', 'ruDolphModel', 'FP16Module', 'KVCache',
           'get_row_mask', 'get_col_mask', 'get_conv_mask']
