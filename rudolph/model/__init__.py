"""The RuDOLPH transformer, its configs and checkpoint loading (exports imported on first use)."""
from rudolph._lazy import lazy_exports

_EXPORTS = {
    'KVCache': ('.cache', 'KVCache'),
    'MODELS': ('.configs', 'MODELS'),
    'RudolphConfig': ('.config', 'RudolphConfig'),
    'FP16Module': ('.fp16', 'FP16Module'),
    'unwrap_model': ('.fp16', 'unwrap_model'),
    'get_col_mask': ('.image_attention', 'get_col_mask'),
    'get_conv_mask': ('.image_attention', 'get_conv_mask'),
    'get_row_mask': ('.image_attention', 'get_row_mask'),
    'get_rudolph_model': ('.loading', 'get_rudolph_model'),
    'ruDolphModel': ('.model', 'ruDolphModel'),
    'Int8Linear': ('.quant', 'Int8Linear'),
    'resolve_precision': ('.precision', 'resolve_precision'),
    'save_int8': ('.quant', 'save_int8'),
}
__all__ = list(_EXPORTS)
__getattr__ = lazy_exports(__name__, globals(), _EXPORTS)
