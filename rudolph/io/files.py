"""Reading ``torch.save`` files without ever running code from them.

Every weights or state file the package reads goes through :func:`safe_torch_load`
(``weights_only=True``): tensors, numbers, strings and containers only. PyTorch-Lightning
checkpoints (the published VQGAN) also pickle training objects (hyper-parameters, callbacks);
with ``training_objects=True`` those load as inert stand-ins, the real classes never imported.
"""
import os
import pickle
import re
import zipfile
from typing import Any, Mapping, Optional

import torch

from rudolph.errors import CheckpointError, CorruptCheckpointError, UnsafeCheckpointError

__all__ = ['safe_torch_load', 'check_finite', 'describe_unreadable']


# Modules and names of the training objects (hyper-parameters, callbacks, numpy scalars in their
# state) that PyTorch-Lightning checkpoints pickle beside the weights. They are mapped to an inert
# stand-in: the real class is never imported and nothing from the file runs.
_TRAINING_OBJECT_PREFIXES = ('pytorch_lightning.', 'lightning.', 'lightning_fabric.', 'omegaconf.', 'numpy.dtypes.')
_TRAINING_OBJECT_NAMES = frozenset({'argparse.Namespace', 'typing.Any', 'numpy.dtype', 'numpy.core.multiarray.scalar',
                                    'numpy._core.multiarray.scalar'})


class _InertObject:
    """Stand-in for a training object of a checkpoint: keeps the arguments and state it is given, runs nothing."""

    def __new__(cls, *args: Any, **kwargs: Any) -> '_InertObject':
        self = super().__new__(cls)
        self.args = args
        return self

    def __setstate__(self, state: Any) -> None:
        self.state = state


def _is_training_object(name: str) -> bool:
    return name in _TRAINING_OBJECT_NAMES or name.startswith(_TRAINING_OBJECT_PREFIXES)


def _stand_in(name: str) -> Any:
    # Lightning's AttributeDict is a dict filled by SETITEMS, which the safe unpickler allows on plain dicts only.
    if name.endswith('.AttributeDict'):
        return dict
    return type(name.rsplit('.', 1)[-1], (_InertObject,), {'__module__': 'rudolph.inert'})


def describe_unreadable(path: str) -> str:
    """Why ``path`` is probably not a loadable ``torch.save`` file (for error messages)."""
    try:
        size = os.path.getsize(path)
        with open(path, 'rb') as file:
            head = file.read(4)
    except OSError as err:
        return f'it cannot be read ({err})'
    if size == 0:
        return 'the file is empty (0 bytes): truncated or corrupt'
    if head == b'PK\x03\x04' and not zipfile.is_zipfile(path):
        return (f'it starts like a torch.save zip archive but its end (the zip central directory) is missing: '
                f'the file ({size} bytes) is truncated or corrupt, e.g. an interrupted download')
    return f'the file ({size} bytes) is truncated or corrupt, or not a torch.save checkpoint'


def _torch_load(path: str, mmap: bool) -> Any:
    try:
        return torch.load(path, map_location='cpu', mmap=mmap, weights_only=True)
    except RuntimeError as error:
        if not mmap or 'mmap' not in str(error):
            raise
        return torch.load(path, map_location='cpu', weights_only=True)  # legacy format: cannot be memory-mapped


def _refused_global(error: Exception) -> Optional[str]:
    found = re.search(r'GLOBAL (\S+)', str(error))
    return found.group(1) if found else None


def _load_with_stand_ins(path: str, what: str, error: pickle.UnpicklingError, mmap: bool,
                         training_objects: bool) -> Any:
    """Retry a file the safe loader refused while every refused global is a known training object."""
    try:  # zip checkpoints: all globals at once; legacy files: one per refusal, from the error
        names = list(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except (ValueError, RuntimeError, pickle.UnpicklingError):
        names = []
    if not names and _refused_global(error) is None:
        raise error  # not a refused global: a damaged or foreign file, reported as corrupt
    names = names or [_refused_global(error)]
    while True:
        bad = [n for n in names if not (training_objects and _is_training_object(n))]
        if bad:
            raise UnsafeCheckpointError(
                f'refusing to load the {what} {path}: reading it would run code from the file (it pickles '
                f'{bad[0]}, which is neither a tensor nor a known training object); expected a torch.save file '
                f'of tensors (a state dict, or a PyTorch-Lightning checkpoint)') from error
        try:
            with torch.serialization.safe_globals([(_stand_in(n), n) for n in names]):
                return _torch_load(path, mmap)
        except pickle.UnpicklingError as again:
            name = _refused_global(again)
            if name is None or name in names:
                raise
            names.append(name)


def safe_torch_load(path: str, what: str = 'checkpoint', mmap: bool = False, training_objects: bool = True) -> Any:
    """``torch.load(path, weights_only=True)`` that never unpickles code, with errors naming ``path``.

    With ``training_objects``, the training objects of PyTorch-Lightning checkpoints (hyper-parameters,
    callbacks) load as inert stand-ins; any other pickled global (every one without
    ``training_objects``) is an :class:`UnsafeCheckpointError`; an unreadable file
    (empty, truncated, not a torch file) is a :class:`CorruptCheckpointError`.
    """
    path = os.fspath(path)
    try:
        try:
            return _torch_load(path, mmap)
        except pickle.UnpicklingError as error:
            return _load_with_stand_ins(path, what, error, mmap, training_objects)
    except (FileNotFoundError, IsADirectoryError, PermissionError, MemoryError, UnsafeCheckpointError):
        raise
    except Exception as err:  # noqa: BLE001 -- torch.load reports damaged files with many types
        detail = _load_failure(err)
        error = CorruptCheckpointError(
            f'cannot read the {what} {path}: {describe_unreadable(path)} '
            f'[{type(err).__name__}{": " + detail if detail else ""}]; expected a torch.save file '
            f'(delete it to download it again)')
        if isinstance(err, pickle.UnpicklingError):
            # torch's own message advises turning the safe loader off: chained without it, so no traceback shows it
            raise error from pickle.UnpicklingError(detail)
        raise error from err


def _load_failure(err: Exception) -> str:
    """What went wrong in ``torch.load``, without torch's advice to load the file unsafely.

    The safe unpickler's message wraps its reason (after "error:") in a hint to retry
    with the safe loader off; that would run code from the file, so only the reason is kept.
    """
    text = str(err).strip()
    if isinstance(err, pickle.UnpicklingError) or 'weights_only' in text:
        found = re.search(r'Weights\w+ error:\s*(.+?)\s*(?:\n\s*\n|Check the documentation|$)', text, re.S)
        text = found.group(1) if found else 'not a pickle of tensors'
    return ' '.join(text.splitlines()[0].split())[:200] if text else ''


def check_finite(state: Mapping[str, torch.Tensor], source: str) -> None:
    """Raise :class:`CheckpointError` naming ``source`` and the first floating tensor holding NaN or inf."""
    for key, value in state.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise CheckpointError(f'{source}: tensor {key!r} holds non-finite values (NaN or inf); expected '
                                  f'finite weights (the checkpoint is corrupt or comes from a diverged training)')
