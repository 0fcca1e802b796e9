"""Atomic writes: a file or a folder is written beside its target and renamed into place, so a reader (or a
crash) sees the old one or the complete new one, never half of it; and the check that writing a folder whole
destroys nothing the command did not write. No torch here (``rudolph --help`` imports this)."""
import os
import shutil
import tempfile
from typing import Any, BinaryIO, Callable, Iterable

from rudolph.errors import ConfigError
from rudolph.io.paths import naming_file

__all__ = ['write_atomic', 'write_atomic_stream', 'check_folder_target', 'write_folder_atomic']


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
    _fsync_folder(path)
    return path


def write_atomic_stream(path: str, write: Callable[[BinaryIO], None]) -> str:
    """:func:`write_atomic` for a writer of an open binary file (``write(f)``)."""
    def fill(tmp: str) -> None:
        with open(tmp, 'wb') as f:
            write(f)
    return write_atomic(path, fill)


def _fsync_folder(path: str) -> None:
    """Make the rename itself durable (the folder's entry), where the system can open folders."""
    try:
        fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    except OSError:  # not every system opens folders
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
