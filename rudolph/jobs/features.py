"""Features of ``rudolph embed``: ``features.npy`` (``[n, hidden]`` float32) and ``features.index.jsonl``.

While the job runs its records (one embedding a line) go to ``features.npy.rows.jsonl``, which
resumes like every job output. At the end the rows become the ``.npy`` (input order) and the
index (line ``i``: the key and path or text of row ``i``), both written atomically, and the
rows file is removed. ``--resume`` on a finished output restores the rows file from the two.
"""
import json
import os
from typing import Sequence

import numpy as np

from rudolph.io.atomic import write_atomic_stream
from rudolph.jobs.output import Format, read_records

__all__ = ['ROWS_SUFFIX', 'rows_path', 'npy_of', 'index_path', 'restore_rows', 'remove_features', 'write_features',
           'read_features']

ROWS_SUFFIX = '.rows.jsonl'


def rows_path(npy: str) -> str:
    """The job's record file for the features file ``npy``."""
    return npy + ROWS_SUFFIX


def npy_of(rows: str) -> str:
    """The features file of the rows file ``rows``."""
    return rows[:-len(ROWS_SUFFIX)]


def index_path(npy: str) -> str:
    """``features.npy`` -> ``features.index.jsonl``."""
    base = npy[:-4] if npy.lower().endswith('.npy') else npy
    return base + '.index.jsonl'


def read_features(npy: str):
    """``(features, index)`` of a finished embed output: the array and the index records (dicts)."""
    features = np.load(npy, allow_pickle=False)
    with open(index_path(npy), encoding='utf-8') as f:
        index = [json.loads(line) for line in f if line.strip()]
    return features, index


def remove_features(rows: str) -> None:
    """``--overwrite``: the finished ``.npy`` and index of the rows file ``rows`` go."""
    npy = npy_of(rows)
    for path in (npy, index_path(npy)):
        if os.path.exists(path):
            os.remove(path)


def restore_rows(rows: str, columns: Sequence[str]) -> None:
    """Recreate the rows file of a finished output (so a resumed run adds to it); nothing if there is one."""
    npy = npy_of(rows)
    if os.path.exists(rows) or not (os.path.exists(npy) and os.path.exists(index_path(npy))):
        return
    features, index = read_features(npy)
    fmt = Format(columns)
    lines = [fmt.encode({**entry, 'embedding': row.tolist()}) for entry, row in zip(index, features)]
    write_atomic_stream(rows, lambda f: f.write(''.join(lines).encode('utf-8')))


def write_features(rows: str, columns: Sequence[str]) -> None:
    """The rows file (already in input order) as the ``.npy`` and its index; then the rows file goes."""
    npy = npy_of(rows)
    records = read_records(rows, Format(columns))
    features = np.asarray([r[2]['embedding'] for r in records], dtype=np.float32)
    write_atomic_stream(npy, lambda f: np.save(f, features, allow_pickle=False))
    index = [json.dumps({c: r[2][c] for c in columns if c != 'embedding'}, ensure_ascii=False) + '\n'
             for r in records]
    write_atomic_stream(index_path(npy), lambda f: f.write(''.join(index).encode('utf-8')))
    os.remove(rows)
