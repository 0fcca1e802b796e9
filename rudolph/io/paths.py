"""Paths: which files a model folder may name, and the names and checks of the files a command writes.

A saved model's ``config.json``, a trainer's ``latest`` file and a folder of bare weights name
files by relative path; :func:`folder_file` is the one place those names become paths, and it
refuses any that leads out of the folder, before anything is read. Every command that writes a
file per input (``text2image -o DIR``, ``text2image --prompts``) names its files with
:func:`file_stems` and checks them with :func:`refuse_existing` before any work, so two inputs
never share a file and a file the command did not write is never replaced unless the user asks
(``--overwrite``). No torch here: ``rudolph --help`` and the web app's help import this.
"""
import contextlib
import hashlib
import os
import re
from typing import Any, Dict, Iterable, Iterator, Sequence, Union

from rudolph.errors import ConfigError

__all__ = ['folder_file', 'is_inside', 'file_stems', 'refuse_existing', 'naming_file', 'check_writable_folder']


def is_inside(path: Union[str, os.PathLike], folder: Union[str, os.PathLike]) -> bool:
    """Whether ``path``, links followed, is ``folder`` or lies under it (links followed too)."""
    root = os.path.realpath(folder)
    return os.path.commonpath([root, os.path.realpath(path)]) == root


def _root_of(folder: str) -> str:
    """Where the files of ``folder`` may really live: the folder, or for a snapshot of the Hugging Face
    cache (``.../snapshots/<commit>``, files linked to ``../../blobs``) its repository's cache folder."""
    real = os.path.realpath(folder)
    parent = os.path.dirname(real)
    if os.path.basename(parent) == 'snapshots' and os.path.isdir(os.path.join(os.path.dirname(parent), 'blobs')):
        return os.path.dirname(parent)
    return real


def folder_file(folder: str, name: Any, what: str) -> str:
    """The path of the file ``name`` that a model folder (its ``config.json``, its ``latest``) names.

    ``name`` must be a relative path that stays inside ``folder``, links followed: an absolute
    path, ``..`` or a link out of the folder is a :class:`ConfigError` raised before anything is
    read, so a folder can neither load weights from elsewhere nor show another file's contents
    in an error. ``what`` says what named it (e.g. ``'the tokenizer of .../config.json'``).
    """
    folder = os.fspath(folder)
    if not isinstance(name, str) or not name.strip() or os.path.isabs(name) or '\x00' in name:
        raise ConfigError(f'{what}: {name!r} is not a file name inside the model folder {folder!r}; expected a '
                          'relative path such as "bpe.model" (or a hub file: repo_id and filename)')
    path = os.path.join(folder, name)
    top = os.path.abspath(folder)
    if (os.path.commonpath([top, os.path.abspath(path)]) != top  # '..' out of the folder
            or not is_inside(path, _root_of(folder))):  # a link out of it
        raise ConfigError(f'{what}: {name!r} points outside the model folder {folder!r}; a saved folder may name '
                          'only files inside itself (or a hub file: repo_id and filename)')
    return path


#: characters kept in a file name; every other one becomes '_'
_UNSAFE = re.compile(r'[^\w.-]')
#: longest sanitized part of a stem (file names are limited to 255 bytes; UTF-8 takes up to 4 a character)
_MAX_STEM = 60


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode('utf-8')).hexdigest()[:8]


def _sanitized(key: str) -> str:
    """``key`` as a file name: letters, digits, ``_``, ``.`` and ``-``; no leading dot; shortened."""
    return _UNSAFE.sub('_', key).lstrip('.')[:_MAX_STEM] or '_'


def file_stems(keys: Sequence[str]) -> Dict[str, str]:
    """A file stem for each key, never shared (not even by case, for case-insensitive file systems).

    A key that is already a safe file name is its own stem; one that sanitizing changes (``a/b``,
    a leading dot, too long) gets a short hash of the key added (``a_b-1f2e3d4c``), so ``a/b`` and
    ``a_b`` differ. Stems that would still collide all get the hash of their key added, until none does.
    """
    stems = {}
    for key in keys:
        clean = _sanitized(key)
        stems[key] = clean if clean == key else f'{clean}-{_digest(key)}'
    for _ in range(len(stems)):
        owners: Dict[str, list] = {}
        for key, stem in stems.items():
            owners.setdefault(stem.lower(), []).append(key)
        shared = [key for group in owners.values() if len(group) > 1 for key in group]
        if not shared:
            return stems
        for key in shared:
            stems[key] = f'{stems[key]}-{_digest(key)}'
    raise AssertionError(f'file_stems: no collision-free names for {len(stems)} keys')  # distinct keys: unreachable


def refuse_existing(paths: Iterable[str], option: str = '--overwrite') -> None:
    """``ConfigError`` naming the first of ``paths`` that exists (and ``option``, which allows replacing it)."""
    for path in paths:
        if os.path.lexists(path):
            raise ConfigError(f'{path} already exists; refusing to replace a file this run did not write: pass '
                              f'{option} to replace it, or choose another output folder')


@contextlib.contextmanager
def naming_file(path: str) -> Iterator[None]:
    """An ``OSError`` raised inside that names no file (a full disk: ``ENOSPC`` from ``write``) names ``path``."""
    try:
        yield
    except OSError as error:
        if error.filename is not None or error.errno is None:
            raise
        raise OSError(error.errno, f'{error.strerror or error} while writing', os.fspath(path)) from error


def check_writable_folder(path: str, option: str = '-o/--out') -> None:
    """Create ``path`` and make sure files can be written there (before any expensive work)."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as error:
        raise ConfigError(f'{option} {path!r}: cannot create the folder ({error.strerror or error})') from None
    if not os.path.isdir(path) or not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f'{option} {path!r}: not a writable folder')
