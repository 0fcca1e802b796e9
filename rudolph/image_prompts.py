"""Image prompts: keep border bands of a given image fixed while the rest is generated."""
import warnings
from typing import Dict, Mapping, Optional, Union

import numpy as np
import torch
from PIL import Image

from rudolph.errors import InputError
from rudolph.vae.image import preprocess_image

__all__ = ['ImagePrompts']

BORDERS = ('up', 'down', 'left', 'right')


class ImagePrompts:
    """Token ids of ``pil_image`` and the grid positions that generation must keep (SPEC 6).

    ``borders`` gives band widths in tokens (1 token = 8 px): ``up``/``down`` rows at the
    top/bottom, ``left``/``right`` columns at the left/right edge; the fixed positions are
    the union of the bands. With ``crop_first=True`` each band is encoded by the VAE from
    its own crop (so the rest of the picture does not leak into its codes); where bands
    overlap, the later band in ``up, down, left, right`` order wins.

    The image is used as is (square, sides a multiple of 8 px) unless ``image_size`` is
    given, in which case it is centre-cropped and resized like every pipeline input.

    Attributes (as in ruDALL-E): ``image_prompts`` (LongTensor ``[1, n*n]``) and
    ``image_prompts_idx`` (sorted list of flat grid positions), plus ``mask`` (bool ``[n*n]``).
    """

    def __init__(self, pil_image: Image.Image, borders: Mapping[str, int], vae,
                 device: Union[str, torch.device] = 'cpu', crop_first: bool = False,
                 disable_gumbel_softmax: bool = True, *, image_size: Optional[int] = None):
        """``disable_gumbel_softmax`` is ruDALL-E's keyword (default ``True`` there too).

        In ruDALL-E it chose how its VQGAN encoded the prompt: ``True`` the argmax of the codebook
        logits, ``False`` a hard Gumbel-softmax draw (random codes, different on every call; in older
        ruDALL-E releases the flag even reached the quantiser as its temperature). This package's
        VQGAN always takes the argmax, so ``True`` gives exactly ruDALL-E's codes and ``False`` gives
        the same argmax codes, with a warning that the random draw is not reproduced.
        """
        self.device = torch.device(device)
        self.disable_gumbel_softmax = bool(disable_gumbel_softmax)
        if not self.disable_gumbel_softmax:
            warnings.warn('ImagePrompts(disable_gumbel_softmax=False): the VQGAN here always encodes with the argmax '
                          'of its codebook logits (ruDALL-E drew random Gumbel-softmax codes); the prompt codes are '
                          'those of disable_gumbel_softmax=True', UserWarning, stacklevel=2)
        self.vae = vae
        self.borders = self._check_borders(borders)
        img = self.preprocess_img(pil_image, image_size)
        side = img.shape[-1]
        if img.shape[-2] != side or side % 8:
            raise InputError(f'the prompt image must be square with sides a multiple of 8 px, got '
                             f'{img.shape[-1]}x{img.shape[-2]}; pass image_size= to resize it')
        self.tokens_per_side = n = side // 8
        b = self.borders
        if b['up'] + b['down'] > n or b['left'] + b['right'] > n:
            raise InputError(f'borders {b} do not fit a {n}x{n} token grid')
        self.image_prompts_idx, self.image_prompts, self.mask = self.get_image_prompts(img, crop_first)

    @staticmethod
    def _check_borders(borders: Mapping[str, int]) -> Dict[str, int]:
        unknown = set(borders) - set(BORDERS)
        if unknown:
            raise InputError(f'unknown border names {sorted(unknown)}; expected some of {list(BORDERS)}')
        out = {k: borders.get(k, 0) for k in BORDERS}
        for k, v in out.items():
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise InputError(f'border {k!r} must be an int >= 0 (tokens), got {v!r}')
        if not any(out.values()):
            raise InputError(f'all borders are 0: nothing would be fixed ({out})')
        return out

    def preprocess_img(self, pil_img: Image.Image, image_size: Optional[int] = None) -> torch.Tensor:
        """PIL -> ``[1, 3, H, W]`` float in ``[0, 1]`` on ``device``."""
        if image_size is not None:

            img = preprocess_image(pil_img, image_size)
        else:
            img = torch.from_numpy(np.array(pil_img.convert('RGB'), dtype=np.uint8)).permute(2, 0, 1).float() / 255
        return img.unsqueeze(0).to(self.device)

    def _bands(self, n: int):
        """(name, row slice, col slice) of every non-empty band, in token units."""
        b = self.borders
        bands = [('up', slice(0, b['up']), slice(0, n)), ('down', slice(n - b['down'], n), slice(0, n)),
                 ('left', slice(0, n), slice(0, b['left'])), ('right', slice(0, n), slice(n - b['right'], n))]
        return [band for band in bands if b[band[0]]]

    @torch.no_grad()
    def get_image_prompts(self, img: torch.Tensor, crop_first: bool = False):
        n = self.tokens_per_side
        mask = torch.zeros(n, n, dtype=torch.bool)
        grid = torch.zeros(n, n, dtype=torch.long)
        if not crop_first:
            grid = self.vae.get_codebook_indices(img).reshape(n, n).cpu().long()
        for _, rows, cols in self._bands(n):
            mask[rows, cols] = True
            if crop_first:
                crop = img[:, :, rows.start * 8:rows.stop * 8, cols.start * 8:cols.stop * 8]
                ids = self.vae.get_codebook_indices(crop).cpu().long()
                grid[rows, cols] = ids.reshape(rows.stop - rows.start, cols.stop - cols.start)
        mask = mask.reshape(-1)
        idx = torch.nonzero(mask).flatten().tolist()
        return idx, grid.reshape(1, -1).to(self.device), mask
