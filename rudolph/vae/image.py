"""Image preprocessing for the VQGAN tokenizer."""
from typing import List

import numpy as np
import torch
from PIL import Image, ImageOps

from rudolph.errors import InputError

__all__ = ['TOKEN_PX', 'preprocess_image', 'to_rgb', 'torch_tensors_to_pil_list']

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


def _scaled_to_uint8(img: Image.Image) -> Image.Image:
    """32-bit int / float / 16-bit greyscale -> 8-bit 'L', scaled from the range of its type."""
    array = np.asarray(img)
    if img.mode == 'F':
        finite = np.nan_to_num(array.astype(np.float64), nan=0.0, posinf=1.0, neginf=0.0)
        # float images are taken as [0, 1] (the usual convention), larger maxima as [0, max]
        scale = max(float(finite.max(initial=0.0)), 1.0)
        array = np.clip(finite / scale, 0.0, 1.0) * 255.0
    else:
        # 16-bit PNG/TIFF greyscale (modes 'I;16*' and the 'I' PIL opens them as) spans [0, 65535];
        # 'I' images with values beyond it are scaled from their own maximum
        array = array.astype(np.float64)
        scale = max(float(array.max(initial=0.0)), 65535.0)
        array = np.clip(array, 0.0, None) / scale * 255.0
    return Image.fromarray(np.rint(array).astype(np.uint8), mode='L')


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL image -> upright 8-bit RGB.

    EXIF orientation is applied (``ImageOps.exif_transpose``); 16-bit and 32-bit greyscale
    (``I;16``, ``I``) are scaled from their full range to 8 bit, float images (``F``) from
    ``[0, 1]`` (or ``[0, max]`` when brighter); transparent images (``RGBA``, ``LA``, ``PA``,
    ``P`` or ``L``/``RGB`` with a transparency key) are composited on white, as viewers show
    them; ``CMYK``, ``YCbCr``, ``HSV``, ``LAB`` and palettes are converted by PIL.
    """
    img = ImageOps.exif_transpose(img)
    if img.mode in ('I', 'F') or img.mode.startswith('I;16'):
        img = _scaled_to_uint8(img)
    if img.mode == 'P' or 'transparency' in img.info:
        img = img.convert('RGBA' if img.mode in ('P', 'RGB', 'L', 'PA', 'LA', 'RGBA') else 'RGB')
    if img.mode in ('RGBA', 'LA', 'PA', 'RGBa', 'La'):
        rgba = img.convert('RGBA')
        background = Image.new('RGBA', rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert('RGB')


def preprocess_image(pil_img: Image.Image, size: int) -> torch.FloatTensor:
    """PIL image -> ``FloatTensor[3, size, size]`` in ``[0, 1]``.

    RGB conversion with :func:`to_rgb` (EXIF rotation applied, 16-bit and float images
    scaled to 8 bit, transparency composited on white), centre crop to the largest square (offset
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
    img = to_rgb(pil_img)
    width, height = img.size
    if min(width, height) < TOKEN_PX:
        raise ValueError(f'image of {width}x{height} px (W x H) is smaller than one token '
                         f'({TOKEN_PX}x{TOKEN_PX} px)')
    side = min(width, height)
    top = (height - side) // 2
    left = (width - side) // 2
    img = img.crop((left, top, left + side, top + side))
    img = img.resize((size, size), Image.BILINEAR)
    array = np.asarray(img, dtype=np.uint8).copy()
    return torch.from_numpy(array).permute(2, 0, 1).contiguous().to(torch.float32).div(255)


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
