"""The web app (``rudolph app``, ``python -m rudolph.app``): a tab per task on any model, in Gradio.

:mod:`rudolph.app.handlers` holds the work as plain functions over :mod:`rudolph.tasks.core`
(no gradio needed); :mod:`rudolph.app.ui` builds the page (``pip install 'rudolph-hypermodal[app]'``).
Importing this package imports neither gradio nor torch.
"""
import importlib

from rudolph.errors import MissingDependencyError

__all__ = ['require_gradio', 'INSTALL_HINT', 'DTYPES']

#: the precisions the app offers (``--dtype`` and the page's picker)
DTYPES = ('fp32', 'auto', 'bf16', 'fp16', 'int8', 'int8-dynamic')

INSTALL_HINT = "pip install 'rudolph-hypermodal[app]'  (or: pip install gradio)"


def require_gradio():
    """The ``gradio`` module, or a :class:`~rudolph.errors.MissingDependencyError` saying what to install."""
    try:
        return importlib.import_module('gradio')
    except ImportError as error:
        raise MissingDependencyError(f'the web app needs gradio, which is not installed ({error}); '
                                     f'install it with: {INSTALL_HINT}') from None
