"""Image preprocessing for the VQGAN tokenizer."""
import numpy as np
import torch
from PIL import Image

__all__ = ['TOKEN_PX', 'preprocess_image']

#: Side in pixels of the image patch behind one VQGAN token (ruDALL-E's f8 VQGAN).
TOKEN_PX = 8


def _channels_of_array(array) -> str:
    shape = tuple(array.shape)
    if len(shape) == 2:
        return f'{shape}: 1 channel (grayscale)'
    if len(shape) == 3:
        # [C, H, W] (torch) or [H, W, C] (numpy / PIL order): report the small axis
        c = shape[0] if isinstance(array, torch.Tensor) or shape[0] <= 4 else shape[-1]
        return f'{shape}: {c} channel(s)' + {1: ' (grayscale?)', 4: ' (RGBA?)'}.get(c, '')
    return f'{shape}'


def preprocess_image(pil_img: Image.Image, size: int) -> torch.FloatTensor:
    """PIL image -> ``FloatTensor[3, size, size]`` in ``[0, 1]``.

    RGB conversion (grayscale, RGBA, palette, CMYK... images are converted with PIL's
    ``convert('RGB')``, which drops alpha), centre crop to the largest square (offset
    ``(side_diff) // 2``), bilinear resize with PIL (which always antialiases), ``/ 255``.
    This is what ruDALL-E / RuDOLPH's ``T.RandomResizedCrop(size, scale=(1., 1.), ratio=(1., 1.),
    interpolation=BILINEAR)`` + ``T.ToTensor()`` do on PIL images, bit for bit, except
    for images within about one pixel of square, where torchvision picks the crop
    offset (0 or 1 px) at random and this function always centres it.

    Only PIL images are accepted (tensors and arrays raise, naming their shape and
    channels); images and ``size`` smaller than one token (:data:`TOKEN_PX` px) are errors.
    """
    if isinstance(pil_img, (torch.Tensor, np.ndarray)):
        raise TypeError(f'preprocess_image expects a PIL image (converted to RGB here), got a '
                        f'{type(pil_img).__name__} of shape {_channels_of_array(pil_img)}; pass a PIL image, or give '
                        f'float RGB tensors [b, 3, H, W] in [0, 1] straight to get_codebook_indices')
    if not isinstance(pil_img, Image.Image):
        raise TypeError(f'pil_img must be a PIL.Image.Image, got {type(pil_img).__name__}')
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise ValueError(f'size must be a positive int, got {size!r}')
    if size < TOKEN_PX:
        raise ValueError(f'size={size} px is smaller than one token ({TOKEN_PX}x{TOKEN_PX} px)')
    width, height = pil_img.size
    if min(width, height) < TOKEN_PX:
        raise ValueError(f'image of {width}x{height} px (W x H) is smaller than one token '
                         f'({TOKEN_PX}x{TOKEN_PX} px)')
    img = pil_img.convert('RGB')
    side = min(width, height)
    top = (height - side) // 2
    left = (width - side) // 2
    img = img.crop((left, top, left + side, top + side))
    img = img.resize((size, size), Image.BILINEAR)
    array = np.asarray(img, dtype=np.uint8).copy()
    return torch.from_numpy(array).permute(2, 0, 1).contiguous().to(torch.float32).div(255)
