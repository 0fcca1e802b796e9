"""Image preprocessing for the VQGAN tokenizer."""
import numpy as np
import torch
from PIL import Image

__all__ = ['preprocess_image']


def preprocess_image(pil_img: Image.Image, size: int) -> torch.FloatTensor:
    """PIL image -> ``FloatTensor[3, size, size]`` in ``[0, 1]``.

    RGB conversion, centre crop to the largest square (offset ``(side_diff) // 2``),
    bilinear resize with PIL (which always antialiases), ``/ 255``. This is what
    ruDALL-E / RuDOLPH's ``T.RandomResizedCrop(size, scale=(1., 1.), ratio=(1., 1.),
    interpolation=BILINEAR)`` + ``T.ToTensor()`` do on PIL images, bit for bit, except
    for images within about one pixel of square, where torchvision picks the crop
    offset (0 or 1 px) at random and this function always centres it.
    """
    if not isinstance(pil_img, Image.Image):
        raise TypeError(f'pil_img must be a PIL.Image.Image, got {type(pil_img).__name__}')
    if not isinstance(size, int) or size <= 0:
        raise ValueError(f'size must be a positive int, got {size!r}')
    img = pil_img.convert('RGB')
    width, height = img.size
    side = min(width, height)
    top = (height - side) // 2
    left = (width - side) // 2
    img = img.crop((left, top, left + side, top + side))
    img = img.resize((size, size), Image.BILINEAR)
    array = np.asarray(img, dtype=np.uint8).copy()
    return torch.from_numpy(array).permute(2, 0, 1).contiguous().to(torch.float32).div(255)
