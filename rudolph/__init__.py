"""RuDOLPH: one transformer that writes text, draws images (VQGAN codes) and reads them back."""
__version__ = '1.0.0'
