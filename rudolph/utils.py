"""Seeding and PIL <-> tensor helpers (ruDALL-E / RuDOLPH ``utils`` compatible)."""
import os
import random
from typing import List, Sequence

import numpy as np
import torch
from PIL import Image

from .errors import ConfigError, InputError

__all__ = ['seed_everything', 'torch_tensors_to_pil_list', 'pil_list_to_torch_tensors']


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


def torch_tensors_to_pil_list(input_images: torch.Tensor) -> List[Image.Image]:
    """Images ``[b, 3, H, W]`` in ``[0, 1]`` -> list of RGB PIL images."""
    if not isinstance(input_images, torch.Tensor) or input_images.dim() != 4 or input_images.shape[1] != 3:
        shape = tuple(input_images.shape) if isinstance(input_images, torch.Tensor) else type(input_images).__name__
        raise InputError(f'input_images must be a [b, 3, H, W] tensor in [0, 1], got {shape}')
    out = []
    for image in input_images:
        # mul(255).byte() truncates, exactly as torchvision's to_pil_image does for float images.
        array = image.detach().float().clamp(0, 1).mul(255).byte().permute(1, 2, 0).cpu().numpy()
        out.append(Image.fromarray(array).convert('RGB'))
    return out


def pil_list_to_torch_tensors(pil_images: Sequence[Image.Image]) -> torch.Tensor:
    """List of same-size PIL images -> ``uint8`` tensor ``[b, 3, H, W]``."""
    if not pil_images:
        raise InputError('pil_images is empty; expected at least one image')
    tensors = [torch.from_numpy(np.array(img.convert('RGB'), dtype=np.uint8)).permute(2, 0, 1) for img in pil_images]
    sizes = {tuple(t.shape) for t in tensors}
    if len(sizes) != 1:
        raise InputError(f'all images must have the same size, got shapes {sorted(sizes)}')
    return torch.stack(tensors)
