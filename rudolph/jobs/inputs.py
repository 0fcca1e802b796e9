"""Job inputs: pictures from a folder, a glob, a list file or a table; prompts from a text file or a table.

Every input gets a stable ``key``: the path relative to the input root (a folder, the fixed
part of a glob, the folder of a list file or table), or a table row's ``id``. Keys are unique
(a duplicate is a :class:`~rudolph.errors.DataError`); inputs come in a fixed order (sorted for
folders and globs, file order for lists and tables), so every process sees the same list.
"""
import csv
import fnmatch
import glob
import os
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional

from rudolph.errors import DataError, InputError
from rudolph.io.pictures import MAX_PIXELS, open_image  # noqa: F401 (re-exported)
from rudolph.io.tables import jsonl_rows

__all__ = ['Item', 'IMAGE_EXTENSIONS', 'MAX_PIXELS', 'list_images', 'folder_images', 'read_prompts', 'read_table',
           'open_image']

#: file name endings taken from a folder or a glob (case-insensitive)
IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.gif', '.webp', '.tif', '.tiff', '.ppm', '.pgm')
_TABLES = ('.jsonl', '.csv')


@dataclass(frozen=True)
class Item:
    """One input: its ``key``, the picture's ``path`` (if any) and its ``text`` (question or prompt)."""
    key: str
    path: Optional[str] = None
    text: Optional[str] = None


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _relative_key(path: str, root: str) -> str:
    return os.path.relpath(path, root).replace(os.sep, '/')


def _walk_images(root: str) -> List[str]:
    """Picture paths under ``root``, through symlinked folders but never into a folder's own ancestor."""
    chains, paths = {root: {os.path.realpath(root)}}, []
    for folder, dirs, files in os.walk(root, followlinks=True):
        chain = chains.pop(folder)
        kept = []
        for name in sorted(dirs):
            real = os.path.realpath(os.path.join(folder, name))
            if real not in chain:  # a link back to an ancestor would loop until ELOOP
                kept.append(name)
                chains[os.path.join(folder, name)] = chain | {real}
        dirs[:] = kept
        paths.extend(os.path.join(folder, f) for f in files if _is_image(f))
    return paths


def _once(paths: List[str], root: str) -> List[Item]:
    """One item per real file, sorted by key: of several paths to one file (links), the one that is its real
    place under ``root`` if any, else the first key in sorted order."""
    real_root = os.path.realpath(root)

    def preference(path: str):
        key = _relative_key(path, root)
        return _relative_key(os.path.realpath(path), real_root) != key, key

    seen, items = set(), []
    for path in sorted(paths, key=preference):
        real = os.path.realpath(path)
        if real not in seen:
            seen.add(real)
            items.append(Item(_relative_key(path, root), path))
    return sorted(items, key=lambda item: item.key)


def folder_images(root: str) -> List[Item]:
    """The pictures under ``root`` (recursive, through symlinks), keys relative to it, sorted; none is not
    an error here.

    Each file is taken once, by its real path: a symlink loop (``sub/up -> ..``) or a second link to a
    folder or picture does not repeat it.
    """
    return _once(_walk_images(root), root)


def _glob_root(pattern: str) -> str:
    """The folder before the first path component with a wildcard."""
    parts = pattern.replace(os.sep, '/').split('/')
    fixed = []
    for part in parts[:-1]:
        if glob.has_magic(part):
            break
        fixed.append(part)
    return '/'.join(fixed) or '.'


def _matches(parts: List[str], patterns: List[str]) -> bool:
    """Whether the path components ``parts`` match the glob components ``patterns`` as ``glob.glob(recursive=True)``
    matches them (``**``: any number of folders; a wildcard matches no name starting with a dot)."""
    if not patterns:
        return not parts
    if patterns[0] == '**':
        return _matches(parts, patterns[1:]) or (bool(parts) and not parts[0].startswith('.')
                                                 and _matches(parts[1:], patterns))
    if not parts or (parts[0].startswith('.') and not patterns[0].startswith('.')):
        return False
    return fnmatch.fnmatch(parts[0], patterns[0]) and _matches(parts[1:], patterns[1:])


def _glob(pattern: str) -> List[Item]:
    """The pictures a glob matches, each file once (a file reached through several links is one input).

    A ``**`` pattern walks its fixed folder as a folder input does, never into a folder's own ancestor:
    ``glob.glob`` follows symlink loops, and two loops make that walk exponential."""
    root = _glob_root(pattern)
    parts = pattern.replace(os.sep, '/').split('/')
    if '**' not in parts:
        return _once([p for p in glob.glob(pattern) if os.path.isfile(p) and _is_image(p)], root)
    rest = parts[len(root.split('/')):] if root != '.' or parts[0] == '.' else parts
    paths = [p for p in _walk_images(root) if _matches(_relative_key(p, root).split('/'), rest)]
    if rest is parts:  # no folder in the pattern: paths as glob gives them, without './'
        paths = [os.path.relpath(p, root) for p in paths]
    return _once(paths, root)


def _list_file(path: str) -> List[Item]:
    root = os.path.dirname(path)
    with open(path, encoding='utf-8') as f:
        names = [line.strip() for line in f]
    return [Item(name, os.path.join(root, name)) for name in names if name and not name.startswith('#')]


def _rows(path: str) -> Iterable[Dict[str, object]]:
    with open(path, encoding='utf-8', newline='') as f:
        if path.lower().endswith('.csv'):
            yield from csv.DictReader(f)
            return
        yield from jsonl_rows(f, path)


def read_table(path: str, column: str, text_column: Optional[str] = None, id_column: str = 'id',
               root: Optional[str] = None) -> List[Item]:
    """Rows of a JSONL/CSV file: ``column`` (a picture path, relative to ``root`` or the file's folder; or
    the text itself when ``column`` is ``None``), ``text_column`` (a question or a prompt) and an optional id."""
    base = os.path.dirname(path) if root is None else root
    items = []
    for number, row in enumerate(_rows(path), 1):
        wanted = [c for c in (column, text_column) if c]
        missing = [c for c in wanted if row.get(c) in (None, '')]
        if missing:
            raise DataError(f'{path}: row {number} has no {missing[0]!r} (columns found: {sorted(row)})')
        value = str(row[column]) if column else None
        key = str(row[id_column]) if row.get(id_column) not in (None, '') else (value or f'{number - 1:06d}')
        text = str(row[text_column]) if text_column else None
        items.append(Item(key, os.path.join(base, value) if value else None, text))
    return items


def _unique(items: List[Item], source: str) -> List[Item]:
    seen = set()
    for item in items:
        if item.key in seen:
            raise DataError(f'{source}: the key {item.key!r} appears twice; keys (relative paths or the id '
                            'column) must be unique')
        seen.add(item.key)
    return items


def list_images(source: str, *, image_column: str = 'image', question_column: Optional[str] = None,
                id_column: str = 'id', root: Optional[str] = None) -> List[Item]:
    """The pictures of ``source``: a folder (recursive), a glob, a ``.txt`` list of paths or a JSONL/CSV table."""
    if os.path.isdir(source):
        items = folder_images(source)
    elif os.path.isfile(source) and source.lower().endswith(_TABLES):
        items = read_table(source, image_column, question_column, id_column, root)
    elif os.path.isfile(source) and _is_image(source):
        items = [Item(os.path.basename(source), source)]
    elif os.path.isfile(source):
        items = _list_file(source)
    elif glob.has_magic(source):
        items = _glob(source)
    else:
        raise InputError(f'input {source!r}: no such folder or file (expected a folder, a glob, a text file of '
                         'paths or a JSONL/CSV table)')
    if not items:
        raise InputError(f'input {source!r}: no pictures found (image files end in {", ".join(IMAGE_EXTENSIONS)})')
    return _unique(items, source)


def read_prompts(path: str, *, column: str = 'prompt', id_column: str = 'id',
                 option: str = '--prompts') -> List[Item]:
    """Prompts: one a line of a text file (key: the line's index among the prompts, ``000000``...), or
    ``column`` of a table; errors name the file as ``option`` (how the caller's user gave it)."""
    if not os.path.isfile(path):
        raise InputError(f'{option} {path!r}: no such file')
    if path.lower().endswith(_TABLES):
        items = read_table(path, None, column, id_column)
    else:
        with open(path, encoding='utf-8') as f:
            texts = [line.strip() for line in f if line.strip()]
        items = [Item(f'{i:06d}', None, t) for i, t in enumerate(texts)]
    if not items:
        raise InputError(f'{option} {path!r}: no texts found (expected one a line, or a table with a {column!r} '
                         'column)')
    return _unique(items, path)
