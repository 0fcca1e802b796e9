"""Reading ``torch.save`` files without ever running code from them.

Every weights or state file the package reads goes through :func:`safe_torch_load`
(``weights_only=True``): tensors, numbers, strings and containers only. PyTorch-Lightning
checkpoints (the published VQGAN) also pickle training objects (hyper-parameters, callbacks);
with ``training_objects=True`` those load as inert stand-ins, the real classes never imported.
"""
import os
import pickle
import re
import shutil
import tempfile
import zipfile
from typing import Any, Callable, Iterable, Mapping, Optional

import torch

from rudolph.errors import CheckpointError, ConfigError, CorruptCheckpointError, UnsafeCheckpointError
from rudolph.io.paths import naming_file

__all__ = ['safe_torch_load', 'check_finite', 'describe_unreadable', 'write_atomic', 'check_folder_target',
           'write_folder_atomic']


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
        detail = str(err).strip().splitlines()[0][:200] if str(err).strip() else ''
        raise CorruptCheckpointError(
            f'cannot read the {what} {path}: {describe_unreadable(path)} '
            f'[{type(err).__name__}{": " + detail if detail else ""}]; expected a torch.save file '
            f'(delete it to download it again)') from err


def check_finite(state: Mapping[str, torch.Tensor], source: str) -> None:
    """Raise :class:`CheckpointError` naming ``source`` and the first floating tensor holding NaN or inf."""
    for key, value in state.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise CheckpointError(f'{source}: tensor {key!r} holds non-finite values (NaN or inf); expected '
                                  f'finite weights (the checkpoint is corrupt or comes from a diverged training)')


def write_atomic(path: str, write: Callable[[str], None]) -> str:
    """``write(tmp)`` fills a temporary file beside ``path``, which is fsynced and renamed onto ``path``:
    a reader (or a crash) sees the old file or the complete new one, never half of it."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f'.{os.path.basename(path)}.', suffix='.tmp', dir=folder)
    os.close(fd)
    try:
        with naming_file(path):
            write(tmp)
            with open(tmp, 'rb') as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def _contains(folder: str, path: str) -> bool:
    """Whether the real path ``path`` is ``folder`` or lies under it (both real paths)."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def check_folder_target(target: str, *, ours: Callable[[str], bool], overwrite: bool,
                        inputs: Iterable[str] = (), what: str = 'OUT_DIR', option: str = '--overwrite') -> bool:
    """Refuse a folder that writing ``target`` whole would destroy; returns whether it exists and will be replaced.

    Never the current folder, an input or a folder holding one; a non-empty folder only if ``ours(target)``
    says this command wrote all of it earlier, and then only with ``overwrite`` (``option`` names that flag).
    """
    real = os.path.realpath(target)
    if _contains(real, os.path.realpath(os.getcwd())):
        raise ConfigError(f'{what} {target!r} is the current folder or one holding it; expected a new folder '
                          '(writing it replaces the whole folder)')
    for source in inputs:
        if _contains(real, os.path.realpath(source)):
            raise ConfigError(f'{what} {target!r} is the input {source!r} or a folder holding it; expected '
                              'a folder elsewhere')
    if os.path.exists(real) and not os.path.isdir(real):
        raise ConfigError(f'{what} {target!r} is a file; expected a folder to create')
    if not os.path.isdir(real) or not os.listdir(real):
        return False
    if not ours(real):
        raise ConfigError(f'{what} {target!r} is a folder that is not empty and holds more than a model folder '
                          'written by rudolph; refusing to replace it (its files would be lost): choose a new '
                          'or empty folder')
    if not overwrite:
        raise ConfigError(f'{what} {target!r} already holds a model folder; pass {option} to replace it')
    return True


def write_folder_atomic(target: str, fill: Callable[[str], Any]) -> str:
    """Fill a temporary folder beside ``target``, then rename it into place; returns ``target`` (absolute).

    An existing ``target`` must have been accepted by :func:`check_folder_target`: it is moved aside
    and deleted only once the new folder is in place (put back if that rename fails).
    """
    target = os.path.abspath(target)
    parent = os.path.dirname(target)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f'.tmp-{os.path.basename(target)}-', dir=parent)
    try:
        fill(tmp)
        if os.path.isdir(target):
            old = tempfile.mkdtemp(prefix=f'.old-{os.path.basename(target)}-', dir=parent)
            os.replace(target, os.path.join(old, 'x'))
            try:
                os.replace(tmp, target)
            except OSError:
                os.replace(os.path.join(old, 'x'), target)
                raise
            finally:
                shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    return target
