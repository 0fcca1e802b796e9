"""ruDALL-E / RuDOLPH ``utils``: seeding, PIL <-> tensor conversion, grids; the argument checks re-exported."""
import os
import random
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image

from rudolph.checks import (  # noqa: F401
    check_classes,
    check_count,
    check_fraction,
    check_template,
    check_text,
    check_texts,
    warn_ignored_seed,
)
from rudolph.errors import ConfigError, InputError
from rudolph.io.atomic import write_atomic
from rudolph.io.paths import file_stems, refuse_existing
from rudolph.tasks.core import decode_images
from rudolph.tasks.sequences import warn_unknown_classes  # noqa: F401 (re-exported)
from rudolph.vae.image import torch_tensors_to_pil_list  # noqa: F401 (re-exported)

__all__ = ['seed_everything', 'torch_tensors_to_pil_list', 'pil_list_to_torch_tensors', 'check_count', 'check_text',
           'check_fraction', 'check_texts', 'check_classes', 'check_template', 'warn_unknown_classes', 'show',
           'make_grid', 'save_codebook_images', 'codebook_image_paths']


def seed_everything(seed: int) -> None:
    """Seed ``random``, ``numpy``, ``torch`` and CUDA (the pipelines themselves use private generators)."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f'seed must be an int, got {seed!r}')
    random.seed(seed)
    os.environ['PYTHONHASHSEED'] = str(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def pil_list_to_torch_tensors(pil_images: Sequence[Image.Image]) -> torch.Tensor:
    """List of same-size PIL images -> ``uint8`` tensor ``[b, 3, H, W]``."""
    if not pil_images:
        raise InputError('pil_images is empty; expected at least one image')
    tensors = [torch.from_numpy(np.array(img.convert('RGB'), dtype=np.uint8)).permute(2, 0, 1) for img in pil_images]
    sizes = {tuple(t.shape) for t in tensors}
    if len(sizes) != 1:
        raise InputError(f'all images must have the same size, got shapes {sorted(sizes)}')
    return torch.stack(tensors)


# ----------------------------------------------------------------------------- grids
def show(pil_images, nrow: int = 4, size: int = 14, save_dir: Optional[str] = None, show: bool = True) -> None:
    """Grid of ``pil_images`` with matplotlib; with ``save_dir`` also save ``img_*.png`` / ``group_*.png``."""
    from glob import glob

    from PIL import Image

    if not pil_images:
        raise InputError('pil_images is empty')
    check_count('nrow', nrow)
    if save_dir is not None:
        os.makedirs(save_dir, exist_ok=True)
        count = len(glob(os.path.join(save_dir, 'img_*.png')))
        for i, pil_image in enumerate(pil_images):
            pil_image.save(os.path.join(save_dir, f'img_{count + i}.png'))
    images = pil_list_to_torch_tensors([img.convert('RGB') for img in pil_images])
    grid = make_grid(images, nrow)
    grid_img = Image.fromarray(grid.permute(1, 2, 0).numpy())
    if save_dir is not None:
        count = len(glob(os.path.join(save_dir, 'group_*.png')))
        grid_img.save(os.path.join(save_dir, f'group_{count}.png'))
    if show:
        try:
            import matplotlib.pyplot as plt
        except ImportError as error:
            raise ImportError('show(..., show=True) needs matplotlib: pip install matplotlib '
                              '(or pass show=False, save_dir=... to only save the grid)') from error
        fig, ax = plt.subplots(figsize=(size, size))
        ax.imshow(np.asarray(grid_img))
        ax.set(xticklabels=[], yticklabels=[], xticks=[], yticks=[])
        plt.show()


def make_grid(images: torch.Tensor, nrow: int, padding: int = 2) -> torch.Tensor:
    """torchvision's ``make_grid`` layout (``nrow`` images per row, 2 px black padding) for uint8 images."""
    b, c, h, w = images.shape
    ncol = min(nrow, b)
    nrows = (b + ncol - 1) // ncol
    grid = torch.zeros(c, nrows * (h + padding) + padding, ncol * (w + padding) + padding, dtype=images.dtype)
    for i, img in enumerate(images):
        y, x = (i // ncol) * (h + padding) + padding, (i % ncol) * (w + padding) + padding
        grid[:, y:y + h, x:x + w] = img
    return grid


def codebook_image_paths(out: str, n: int) -> Tuple[List[str], str]:
    """The files :func:`save_codebook_images` writes for ``n`` pictures: ``out/img_i.png`` and ``out/grid.png``."""
    stems = file_stems([f'img_{i}' for i in range(n)] + ['grid'])
    return [os.path.join(out, f'{stems[f"img_{i}"]}.png') for i in range(n)], os.path.join(out, f'{stems["grid"]}.png')


def _save_png(img: Image.Image, path: str) -> None:
    write_atomic(path, lambda tmp: img.save(tmp, format='PNG'))


def save_codebook_images(vae, codebooks: torch.Tensor, out: str, nrow: int, bs: int = 8,
                         upscaler=None, overwrite: bool = False) -> Tuple[List[str], str]:
    """Decode ``codebooks`` ``bs`` at a time (each batch through ``upscaler`` if given) into ``out/img_i.png``
    and one grid ``out/grid.png`` (the :func:`make_grid` layout); returns the image paths and the grid path.

    Existing files are refused (``ConfigError`` naming the first) unless ``overwrite``; each file is written
    atomically."""
    names, grid_path = codebook_image_paths(out, len(codebooks))
    if not overwrite:
        refuse_existing(names + [grid_path])
    pad, grid, paths = 2, None, []
    ncol = min(nrow, len(codebooks))
    pictures = (img for batch in decode_images(vae, codebooks, bs, upscaler) for img in batch)
    for i, img in enumerate(pictures):
        paths.append(names[i])
        _save_png(img, paths[-1])
        w, h = img.size
        if grid is None:
            nrows = (len(codebooks) + ncol - 1) // ncol
            grid = Image.new('RGB', (ncol * (w + pad) + pad, nrows * (h + pad) + pad), 'black')
        grid.paste(img.convert('RGB'), ((i % ncol) * (w + pad) + pad, (i // ncol) * (h + pad) + pad))
    _save_png(grid, grid_path)
    return paths, grid_path
