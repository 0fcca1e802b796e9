"""Which files a model folder may name, and whether a path lies inside a folder (links followed).

A saved model's ``config.json``, a trainer's ``latest`` file and a folder of bare weights name
files by relative path; :func:`folder_file` is the one place those names become paths, and it
refuses any that leads out of the folder, before anything is read. No torch here: the web app's
command line imports this for its help.
"""
import os
from typing import Any, Union

from rudolph.errors import ConfigError

__all__ = ['folder_file', 'is_inside']


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
