"""The one picture reader: every reader of picture files (the CLI, jobs, fine-tuning, the web app) opens
them here, so a missing, undecodable or oversized file is the same error everywhere."""
import os
import warnings
from typing import Optional, Tuple, Union

from PIL import Image, UnidentifiedImageError

from rudolph.errors import ImageFileError

__all__ = ['MAX_PIXELS', 'open_image']

#: the largest picture decoded, in pixels (PIL's own default limit, whatever PIL.Image.MAX_IMAGE_PIXELS is set to)
MAX_PIXELS = 89_478_485
_TOO_LARGE = (f'pictures of more than {MAX_PIXELS // 10**6} megapixels are refused (a decompression bomb?); '
              'shrink it first')


def open_image(path: Optional[Union[str, os.PathLike]]) -> Image.Image:
    """The picture file ``path``, decoded (its file closed), in its own mode (``rudolph.vae.image.to_rgb``
    converts it).

    Every reader of picture files (the CLI, jobs, fine-tuning, the web app) uses this one, so a
    missing, undecodable or oversized file is the same :class:`~rudolph.errors.ImageFileError`
    everywhere. A picture of more than :data:`MAX_PIXELS` pixels is refused from its header, before
    it is decoded: a small file can expand to gigabytes (a decompression bomb), and the model sees
    a few hundred pixels a side anyway.
    """
    if not path or not os.path.isfile(path):
        raise ImageFileError(f'image not found: {path}')
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('error', Image.DecompressionBombWarning)  # PIL's own limit is an error too
            with Image.open(path) as img:
                _check_pixels(img.size, path)
                img.load()
                return img.copy()
    except ImageFileError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageFileError(f'cannot read the image {os.fspath(path)}: {_TOO_LARGE} ({error})') from None
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise ImageFileError(f'cannot read the image {os.fspath(path)}: {error}') from None


def _check_pixels(size: Tuple[int, int], path: Union[str, os.PathLike]) -> None:
    width, height = size
    if width * height > MAX_PIXELS:
        raise ImageFileError(f'cannot read the image {os.fspath(path)}: it is {width}x{height} px '
                             f'({width * height / 10**6:.0f} megapixels); {_TOO_LARGE}')
