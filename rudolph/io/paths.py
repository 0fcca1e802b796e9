"""Output paths: file names from input keys, existing files kept, write errors that name the file.

Every command that writes a file per input (``text2image -o DIR``, ``text2image --prompts``) names
its files with :func:`file_stems` and checks them with :func:`refuse_existing` before any work,
so two inputs never share a file and a file the command did not write is never replaced unless
the user asks (``--overwrite``). Imports no torch (``rudolph --help`` stays fast).
"""
import contextlib
import hashlib
import os
import re
from typing import Dict, Iterable, Iterator, Sequence

from rudolph.errors import ConfigError

__all__ = ['file_stems', 'refuse_existing', 'naming_file']

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
