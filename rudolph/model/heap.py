"""Giving memory back to the system while a large checkpoint is converted tensor by tensor (Linux, best effort)."""
import ctypes
import mmap
import sys

import torch

__all__ = ['release_pages', 'trim_heap']


def release_pages(tensor: torch.Tensor) -> None:
    """Drop the resident pages of a read-only memory-mapped CPU ``tensor`` (Linux ``madvise``), best effort.

    Only for tensors of a private file mapping that nothing wrote to: the kernel reads the pages
    from the file again if they are touched later. Keeps the resident size of a tensor-by-tensor
    conversion at about one tensor of the source file.
    """
    if not sys.platform.startswith('linux') or tensor.device.type != 'cpu':
        return
    storage = tensor.untyped_storage()
    start, nbytes = storage.data_ptr(), storage.nbytes()
    page = mmap.PAGESIZE
    first = -(-start // page) * page  # whole pages inside the storage only
    last = (start + nbytes) // page * page
    if last <= first:
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.madvise(ctypes.c_void_p(first), ctypes.c_size_t(last - first), 4)  # MADV_DONTNEED
    except (OSError, AttributeError):
        pass


def trim_heap() -> None:
    """Give glibc's free heap pages back to the system (``malloc_trim``), best effort (Linux/glibc only).

    A checkpoint converted tensor by tensor frees float32 temporaries between the int8 tensors it
    keeps; without trimming, glibc's heap keeps those holes resident.
    """
    if not sys.platform.startswith('linux'):
        return
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (e.g. musl)
        pass
