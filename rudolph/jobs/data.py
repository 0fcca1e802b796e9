"""A ``DataLoader`` over job inputs whose worker processes decode and preprocess the pictures.

Each worker opens a picture, converts it with :func:`rudolph.vae.image.to_rgb` and centre-crops
and resizes it exactly as :func:`rudolph.vae.image.preprocess_image` does, so the model process
receives square RGB pictures of the model's size (encoding them again is a no-op resize). A
picture that cannot be used comes back as its error text instead (the run goes on).
"""
import ctypes
import functools
import os
import signal
import sys
from typing import List, NamedTuple, Optional, Sequence

import numpy as np
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from rudolph.errors import InputError
from rudolph.jobs.inputs import Item, open_image
from rudolph.vae.image import TOKEN_PX, to_rgb

__all__ = ['Loaded', 'ImageDataset', 'make_loader', 'load_picture', 'default_workers', 'die_with_parent']

#: errors that mean "this input cannot be used" (anything else stops the run)
PICTURE_ERRORS = (OSError, ValueError, TypeError, Image.DecompressionBombError)


class Loaded(NamedTuple):
    """One input after the worker: its index in the job's list, the picture (``HxWx3`` uint8) or the error."""
    index: int
    image: Optional[np.ndarray]
    error: Optional[str]


def load_picture(path: str, size: int) -> np.ndarray:
    """``path`` as the model sees it: RGB (``to_rgb``), centre square, ``size`` px (bilinear), uint8."""

    with open_image(path) as img:
        rgb = to_rgb(img)
    width, height = rgb.size
    if min(width, height) < TOKEN_PX:
        raise ValueError(f'image of {width}x{height} px (W x H) is smaller than one token ({TOKEN_PX}x{TOKEN_PX} px)')
    side = min(width, height)
    top, left = (height - side) // 2, (width - side) // 2
    rgb = rgb.crop((left, top, left + side, top + side)).resize((size, size), Image.BILINEAR)
    return np.asarray(rgb, dtype=np.uint8).copy()


class ImageDataset(Dataset):
    """The pictures of ``items`` at ``size`` px (``size=None``: no pictures, e.g. prompts); the ``text`` of
    an item is checked when ``needs_text``."""

    def __init__(self, items: Sequence[Item], size: Optional[int], needs_text: bool = False):
        self.items, self.size, self.needs_text = list(items), size, needs_text

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Loaded:
        item = self.items[index]
        if self.needs_text and not (item.text or '').strip():
            return Loaded(index, None, 'empty text (question or prompt)')
        if self.size is None:
            return Loaded(index, None, None)
        try:
            return Loaded(index, load_picture(item.path, self.size), None)
        except InputError as error:  # missing or unreadable: open_image's message names the file
            return Loaded(index, None, str(error))
        except PICTURE_ERRORS as error:
            return Loaded(index, None, f'cannot read the image: {type(error).__name__}: {error}')


def _as_list(batch: List[Loaded]) -> List[Loaded]:
    return batch


def default_workers() -> int:
    """Decoding workers by default: half the CPUs (the model uses the rest), at most 4, 0 on one CPU."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else (os.cpu_count() or 1)
    return min(4, cpus // 2)


#: ``prctl`` option: the signal the kernel sends this process when its parent dies (linux/prctl.h)
_PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int, worker_id: int = 0) -> None:
    """Worker start (``worker_init_fn``): the worker leaves stopping to the process that started it.

    ``SIGTERM`` to the whole process group is ignored here (the parent stops the run as for Ctrl-C and
    shuts its workers down; a worker dying first would turn that into a worker-crash error), and on Linux
    the kernel kills the worker when its parent dies, even by ``SIGKILL`` (``prctl(PR_SET_PDEATHSIG)``;
    PyTorch's own check notices only seconds later). Elsewhere that PyTorch check remains."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if not sys.platform.startswith('linux'):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):  # no prctl in this C library
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def make_loader(dataset: ImageDataset, bs: int, workers: int) -> DataLoader:
    """Batches of ``bs`` :class:`Loaded` in input order, decoded by ``workers`` processes (0: in this one),
    which die with this process (:func:`die_with_parent`)."""
    return DataLoader(dataset, batch_size=bs, shuffle=False, num_workers=workers, collate_fn=_as_list,
                      prefetch_factor=2 if workers else None, persistent_workers=False,
                      worker_init_fn=functools.partial(die_with_parent, os.getpid()) if workers else None)
