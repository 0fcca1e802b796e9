"""Reading and writing ``.safetensors`` weight files (the format of the Hugging Face hub, no pickle at all).

Every loader that accepts a ``.bin`` / ``.ckpt`` file also accepts a safetensors file: the format is
recognised by its content (an 8-byte header length followed by a JSON header), not by its name, so a
file keeps loading whatever it was called. Writing streams the tensors from their own memory (a
memory-mapped checkpoint is never copied whole into RAM) into a temporary file renamed into place.
"""
import json
import os
import struct
from typing import Dict, Mapping, Optional, Tuple

import torch

from rudolph.errors import CorruptCheckpointError
from rudolph.io.atomic import write_atomic

__all__ = ['read_safetensors_header', 'is_safetensors', 'read_safetensors', 'read_safetensors_metadata',
           'read_safetensors_shapes', 'write_safetensors']

#: the largest JSON header accepted (the format's own limit is 100 MB)
_MAX_HEADER = 100 * 1024 * 1024


def read_safetensors_header(path: str) -> Optional[Tuple[int, dict]]:
    """``(data offset, header)`` of a safetensors file, or ``None`` when ``path`` is not one."""
    with open(path, 'rb') as f:
        head = f.read(8)
        if len(head) < 8:
            return None
        (n,) = struct.unpack('<Q', head)
        if not 2 <= n <= _MAX_HEADER:
            return None
        try:
            header = json.loads(f.read(n))
        except (ValueError, UnicodeDecodeError):
            return None
    return (8 + n, header) if isinstance(header, dict) else None


def is_safetensors(path: str) -> bool:
    """Whether ``path`` starts like a safetensors file (a plausible header length, then ``{``)."""
    try:
        with open(path, 'rb') as f:
            head = f.read(9)
        size = os.path.getsize(path)
    except OSError:
        return False
    if len(head) < 9:
        return False
    (length,) = struct.unpack('<Q', head[:8])
    return head[8:9] == b'{' and 0 < length <= min(_MAX_HEADER, size - 8)


def read_safetensors_metadata(path: str) -> Dict[str, str]:
    """The ``__metadata__`` strings of a safetensors file (``{}`` when it has none)."""
    from safetensors import safe_open

    try:
        with safe_open(os.fspath(path), framework='pt') as f:
            return dict(f.metadata() or {})
    except Exception as error:  # noqa: BLE001 -- safetensors reports damaged files with its own error type
        raise _corrupt(path, error) from error


def read_safetensors_shapes(path: str, what: str = 'checkpoint') -> Dict[str, Tuple[int, ...]]:
    """The name and shape of every tensor of a safetensors file, from its header only (nothing is loaded)."""
    found = read_safetensors_header(os.fspath(path))
    try:
        if found is None:
            raise ValueError('no safetensors header')
        return {key: tuple(int(n) for n in info['shape']) for key, info in found[1].items() if key != '__metadata__'}
    except (ValueError, TypeError, KeyError) as error:
        raise _corrupt(path, error, what) from error


def read_safetensors(path: str, what: str = 'checkpoint') -> Dict[str, torch.Tensor]:
    """Every tensor of the safetensors file ``path`` (on CPU); an unreadable file is a ``CorruptCheckpointError``."""
    from safetensors import safe_open

    path = os.fspath(path)
    try:
        with safe_open(path, framework='pt') as f:
            return {key: f.get_tensor(key) for key in f.keys()}
    except Exception as error:  # noqa: BLE001 -- see read_safetensors_metadata
        raise _corrupt(path, error, what) from error


def _corrupt(path: str, error: Exception, what: str = 'checkpoint') -> CorruptCheckpointError:
    size = os.path.getsize(path) if os.path.exists(path) else 0
    return CorruptCheckpointError(f'cannot read the {what} {path}: the safetensors file ({size} bytes) is truncated or '
                                  f'corrupt [{type(error).__name__}: {str(error)[:200]}]; expected a complete '
                                  f'.safetensors file (delete it to download it again)')


def _distinct_storages(tensors: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Contiguous CPU tensors, each with its own memory: safetensors refuses aliases (tied or sliced weights)."""
    seen = set()
    out = {}
    for key, value in tensors.items():
        value = value.detach().cpu()
        storage = value.untyped_storage().data_ptr() if value.numel() else None
        if not value.is_contiguous() or (storage is not None and storage in seen):
            value = value.contiguous().clone()  # only this tensor is copied
        elif storage is not None:
            seen.add(storage)
        out[key] = value
    return out


def write_safetensors(tensors: Mapping[str, torch.Tensor], path: str,
                      metadata: Optional[Mapping[str, str]] = None) -> str:
    """Write ``tensors`` to ``path`` atomically (a temporary file beside it, then a rename); returns ``path``.

    Tensors are written one after the other from their own memory (memory-mapped ones included);
    ``metadata`` (strings only) goes into the header, with ``format: pt`` as the hub expects.
    """
    from safetensors.torch import save_file

    path = os.fspath(path)
    meta = {'format': 'pt', **{str(k): v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()}}
    return write_atomic(path, lambda tmp: save_file(_distinct_storages(tensors), tmp, metadata=meta))
