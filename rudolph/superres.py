"""Super-resolution with ruDALL-E's Real-ESRGAN weights (x2, x4, x8), loaded by ``spandrel``, tiled.

ruDALL-E upscales its pictures with the RRDBNet weights of the hub repo ``sberbank-ai/Real-ESRGAN``
(``RealESRGAN_x2.pth``, ``_x4.pth``, ``_x8.pth``; 23 blocks, 64 features; x2 reads the picture
pixel-unshuffled, x8 has a third upsampling layer ``conv_up3``). The ``realesrgan``/``basicsr``
packages no longer import on current torchvision, so the architecture comes from ``spandrel``
(optional extra ``rudolph-hypermodal[sr]``), which detects it from the state dict. Files are read with
``weights_only=True`` (:func:`rudolph.io.files.safe_torch_load`); weights come through
:func:`rudolph.io.hub.hub_download` (the cache first, then one short try of the hub).

    sr = get_realesrgan('x4', device='cuda', dtype='fp16')
    big = sr(pil_image)            # a PIL image, a list of them, or a [b, 3, H, W] / [3, H, W] tensor in [0, 1]
"""
import logging
import os
import warnings
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch

from rudolph.checks import check_count
from rudolph.errors import CheckpointError, CheckpointMismatchError, ConfigError, InputError, MissingDependencyError
from rudolph.io.files import check_finite, safe_torch_load
from rudolph.io.hub import hub_download
from rudolph.model.device import check_device
from rudolph.model.loading import resolve_dtype
from rudolph.vae.image import to_rgb

__all__ = ['get_realesrgan', 'cached_realesrgan', 'RealESRGAN', 'REPO_ID', 'FILES', 'resolve_scale', 'load_state_dict',
           'tiled_upscale', 'INSTALL_HINT', 'DEFAULT_TILE', 'DEFAULT_OVERLAP']

logger = logging.getLogger(__name__)

#: hub repo of ruDALL-E's Real-ESRGAN weights
REPO_ID = 'sberbank-ai/Real-ESRGAN'
#: name -> (file in REPO_ID, scale)
FILES: Dict[str, Tuple[str, int]] = {'x2': ('RealESRGAN_x2.pth', 2), 'x4': ('RealESRGAN_x4.pth', 4),
                                     'x8': ('RealESRGAN_x8.pth', 8)}
INSTALL_HINT = "pip install 'rudolph-hypermodal[sr]' (or: pip install spandrel)"
#: tile side and context on each side, in input pixels (ruDALL-E's pipeline: 192-px patches, 24 px of padding)
DEFAULT_TILE = 192
DEFAULT_OVERLAP = 24

ImagesIn = Union[Any, Sequence[Any], torch.Tensor]


def _spandrel():
    try:
        import spandrel
    except ImportError as error:
        raise MissingDependencyError(f'super-resolution needs the spandrel package, which cannot be imported '
                                     f'({error}): {INSTALL_HINT}') from error
    return spandrel


def resolve_scale(name: Union[str, int]) -> str:
    """'x2' | 'x4' | 'x8' from that name, its scale (2, 4, 8) or '4'; else a :class:`ConfigError`."""
    key = name
    if isinstance(name, int) and not isinstance(name, bool):
        key = f'x{name}'
    elif isinstance(name, str):
        key = name.strip().lower()
        key = key if key.startswith('x') else f'x{key}'
    if key not in FILES:
        raise ConfigError(f'unknown Real-ESRGAN model {name!r}; expected one of {sorted(FILES)} (or 2, 4, 8)')
    return key


def _unwrap(obj: Any, path: str) -> Dict[str, torch.Tensor]:
    """The RRDBNet state dict of a loaded file: plain, or under 'params' / 'params_ema' (basicsr's layout)."""
    if not isinstance(obj, Mapping):
        raise CheckpointError(f'{path}: expected a state dict (a mapping of tensors), got {type(obj).__name__}')
    for key in ('params', 'params_ema'):  # ruDALL-E's order: 'params' first
        if isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    state = {(k[len('module.'):] if k.startswith('module.') else k): v for k, v in obj.items()}
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f'{path}: entry {bad[0]!r} is not a tensor; expected an RRDBNet state dict '
                              f'(optionally under "params" or "params_ema")')
    return state


def load_state_dict(path: Union[str, os.PathLike]) -> Dict[str, torch.Tensor]:
    """Read a Real-ESRGAN ``.pth`` (never unpickling code), unwrap it and check its weights are finite."""

    path = os.fspath(path)
    state = _unwrap(safe_torch_load(path, what='Real-ESRGAN weights'), path)
    check_finite(state, path)
    return state


def _descriptor(state: Dict[str, torch.Tensor], path: str, scale: int):
    """spandrel's model for ``state``, checked to be an ESRGAN/RRDBNet of ``scale``."""
    spandrel = _spandrel()
    try:
        descriptor = spandrel.ModelLoader(device='cpu').load_from_state_dict(state)
    except spandrel.UnsupportedModelError as error:
        raise CheckpointError(f'{path}: not a Real-ESRGAN (RRDBNet) state dict: spandrel detects no architecture '
                              f'in keys such as {sorted(state)[:4]}') from error
    except (KeyError, RuntimeError, ValueError) as error:
        raise CheckpointMismatchError(f'{path}: an RRDBNet state dict whose tensors do not fit together '
                                      f'({type(error).__name__}: {str(error)[:200]})') from error
    arch = descriptor.architecture.id
    if arch != 'ESRGAN' or not isinstance(descriptor, spandrel.ImageModelDescriptor):
        raise CheckpointError(f'{path}: spandrel detects a {arch} model; expected Real-ESRGAN (RRDBNet, ESRGAN)')
    if descriptor.scale != scale:
        raise CheckpointMismatchError(f'{path}: a x{descriptor.scale} RRDBNet; expected x{scale} '
                                      f'(the file of {FILES[f"x{scale}"][0]})')
    return descriptor


def _dtype_for(dtype: Union[None, str, torch.dtype], fp16: bool, device: torch.device) -> torch.dtype:

    dtype = resolve_dtype(dtype)
    if fp16 and dtype not in (None, torch.float16):
        raise ConfigError(f'fp16=True contradicts dtype={dtype}; pass one of them')
    if (fp16 or dtype == torch.float16) and device.type == 'cpu':
        warnings.warn('float16 on CPU: its convolutions there are slow and poorly supported, so Real-ESRGAN stays '
                      'in float32. Use dtype=torch.bfloat16 for reduced precision on CPU.', stacklevel=3)
        return torch.float32
    return torch.float16 if fp16 else (dtype or torch.float32)


def _spans(size: int, tile: int, overlap: int) -> List[Tuple[int, int, int, int]]:
    """``(core_start, core_end, window_start, window_end)`` along one axis: cores tile ``size``, windows add context."""
    return [(s, min(s + tile, size), max(0, s - overlap), min(size, s + tile + overlap)) for s in range(0, size, tile)]


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def tiled_upscale(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, scale: int, tile: int, overlap: int,
                  multiple_of: int = 1) -> torch.Tensor:
    """``fn`` (an image-to-image model of ``scale``) over ``x`` [b, c, H, W], tile by tile.

    Each ``tile`` x ``tile`` core is computed with ``overlap`` input pixels of context on each side
    and only the core is kept, so the result equals one call on the whole picture wherever the
    model's receptive field fits in the overlap (no seams, no blending). Tile and overlap are
    rounded up to ``multiple_of`` so that every window starts on the model's pixel-unshuffle grid.
    """
    height, width = x.shape[-2:]
    tile, overlap = _round_up(tile, multiple_of), _round_up(overlap, multiple_of)
    if height <= tile and width <= tile:
        return fn(x)
    out = x.new_empty(*x.shape[:-2], height * scale, width * scale)
    for c0, c1, w0, w1 in _spans(height, tile, overlap):
        for d0, d1, v0, v1 in _spans(width, tile, overlap):
            y = fn(x[..., w0:w1, v0:v1])
            out[..., c0 * scale:c1 * scale, d0 * scale:d1 * scale] = \
                y[..., (c0 - w0) * scale:(c1 - w0) * scale, (d0 - v0) * scale:(d1 - v0) * scale]
    return out


class RealESRGAN:
    """A loaded Real-ESRGAN: ``sr(images)`` returns them ``scale`` times larger, as the same kind.

    ``images``: a PIL image (-> PIL image), a list of them (-> list; sizes may differ), or a float
    tensor in [0, 1] of shape [3, H, W] or [b, 3, H, W] (-> same dtype and device as the input).
    Inputs larger than ``tile`` are processed tile by tile (see :func:`tiled_upscale`); ``batch_size``
    tensor images run at once.
    """

    def __init__(self, descriptor, name: str, tile: int = DEFAULT_TILE, overlap: int = DEFAULT_OVERLAP,
                 batch_size: int = 4):

        check_count('tile', tile)
        check_count('batch_size', batch_size)
        if isinstance(overlap, bool) or not isinstance(overlap, int) or overlap < 0:
            raise ConfigError(f'overlap must be an int >= 0, got {overlap!r}')
        self.descriptor, self.name, self.scale = descriptor, name, FILES[name][1]
        self.tile, self.overlap, self.batch_size = tile, overlap, batch_size

    @property
    def model(self) -> torch.nn.Module:
        """The RRDBNet module (spandrel's ESRGAN)."""
        return self.descriptor.model

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def __repr__(self) -> str:
        return (f'RealESRGAN({self.name!r}, device={str(self.device)!r}, dtype={self.dtype}, tile={self.tile}, '
                f'overlap={self.overlap})')

    def __call__(self, images: ImagesIn, tile: Optional[int] = None, overlap: Optional[int] = None) -> ImagesIn:
        """Upscale a PIL image, a list of them, or a [3, H, W] / [b, 3, H, W] tensor in [0, 1]."""
        from PIL import Image

        if isinstance(images, torch.Tensor):
            return self.upscale_tensor(images, tile, overlap)
        if isinstance(images, Image.Image):
            return self._upscale_pil(images, tile, overlap)
        if isinstance(images, (list, tuple)) and all(isinstance(i, Image.Image) for i in images):
            return [self._upscale_pil(i, tile, overlap) for i in images]
        raise InputError(f'expected a PIL image, a list of PIL images or a [b, 3, H, W] tensor in [0, 1], '
                         f'got {type(images).__name__}')

    def predict(self, lr_image, batch_size: Optional[int] = None, patches_size: Optional[int] = None,
                padding: Optional[int] = None, pad_size: Optional[int] = None) -> Any:
        """ruDALL-E's call: one PIL image in, one out; ``patches_size`` is the tile, ``padding`` the overlap.

        ``batch_size`` and ``pad_size`` (ruDALL-E's reflection border) are accepted for compatibility
        and not used: one picture is one batch, and the network's own zero padding makes the border.
        """
        return self._upscale_pil(lr_image, patches_size, padding)

    def upscale_tensor(self, x: torch.Tensor, tile: Optional[int] = None,
                       overlap: Optional[int] = None) -> torch.Tensor:
        """[3, H, W] or [b, 3, H, W] in [0, 1] -> ``scale`` times larger, same dtype and device as ``x``."""
        single = x.dim() == 3
        batch = x.unsqueeze(0) if single else x
        if batch.dim() != 4 or batch.shape[1] != 3 or not batch.is_floating_point() or 0 in batch.shape[-2:]:
            raise InputError(f'expected a float image tensor [3, H, W] or [b, 3, H, W] in [0, 1], '
                             f'got {x.dtype} {tuple(x.shape)}')
        tile, overlap = tile or self.tile, self.overlap if overlap is None else overlap
        multiple_of = self.descriptor.size_requirements.multiple_of
        parts = []
        for start in range(0, batch.shape[0], self.batch_size):
            chunk = batch[start:start + self.batch_size]
            parts.append(tiled_upscale(self._run, chunk, self.scale, tile, overlap, multiple_of).to(x.dtype))
        out = torch.cat(parts)
        return out[0] if single else out

    def _run(self, window: torch.Tensor) -> torch.Tensor:
        """One window through the network on its device and dtype; the result back where the input lives."""
        result = self.descriptor(window.to(self.device, self.dtype))
        return result.to(window.device)

    def _upscale_pil(self, img, tile: Optional[int], overlap: Optional[int]):
        import numpy as np
        from PIL import Image


        rgb = torch.from_numpy(np.asarray(to_rgb(img), dtype=np.uint8).copy()).permute(2, 0, 1)
        out = self.upscale_tensor(rgb.float().div_(255), tile, overlap)
        # round to nearest (not truncate): the upscaled picture keeps the input's levels
        array = out.float().clamp_(0, 1).mul_(255).round_().byte().permute(1, 2, 0).cpu().numpy()
        return Image.fromarray(array, 'RGB')


def _weights_file(name: str, cache_dir: Optional[str], local_arg: Optional[str]) -> str:

    filename = FILES[name][0]
    return hub_download(REPO_ID, filename, what=f'the Real-ESRGAN {name} weights of ruDALL-E',
                        local_arg=local_arg or f"get_realesrgan('{name}', path='{filename}')", cache_dir=cache_dir)


def get_realesrgan(name: Union[str, int] = 'x4', device: Union[str, torch.device] = 'cpu', fp16: bool = False,
                   cache_dir: Optional[Union[str, os.PathLike]] = None, *,
                   dtype: Union[None, str, torch.dtype] = None, path: Optional[Union[str, os.PathLike]] = None,
                   tile: Optional[int] = DEFAULT_TILE, overlap: int = DEFAULT_OVERLAP, batch_size: int = 4,
                   local_arg: Optional[str] = None) -> RealESRGAN:
    """Real-ESRGAN ``name`` ('x2', 'x4', 'x8'; or 2, 4, 8) of ruDALL-E, ready to call.

    Weights: ``path`` (a local ``.pth``), else ``RealESRGAN_xN.pth`` of ``sberbank-ai/Real-ESRGAN``
    from the Hugging Face cache (``cache_dir`` overrides it) or the hub, else a
    :class:`~rudolph.errors.WeightsNotFoundError` saying how to get it (``local_arg`` names the
    option that takes a local file in that message); ``tile=None``: :data:`DEFAULT_TILE`. ``fp16`` /
    ``dtype`` ('fp16', 'bf16', a torch dtype): float16 on CUDA (on CPU it warns and keeps float32), bfloat16 anywhere.
    Needs ``spandrel`` (:class:`~rudolph.errors.MissingDependencyError` otherwise).
    """

    name = resolve_scale(name)
    _spandrel()  # before any download: a missing package is the first thing to say
    device = torch.device(check_device(device) if isinstance(device, str) else device)
    dtype = _dtype_for(dtype, fp16, device)
    cache_dir = None if cache_dir is None else os.fspath(cache_dir)
    path = os.fspath(path) if path is not None else _weights_file(name, cache_dir, local_arg)
    descriptor = _descriptor(load_state_dict(path), path, FILES[name][1])
    descriptor.model.eval().requires_grad_(False)
    descriptor.to(device=device, dtype=dtype)
    logger.info('Real-ESRGAN %s loaded from %s on %s (%s)', name, path, device, dtype)
    return RealESRGAN(descriptor, name, tile=tile or DEFAULT_TILE, overlap=overlap, batch_size=batch_size)


def cached_realesrgan(cache: Dict[str, Any], upscale: Any, device: Union[str, torch.device],
                      dtype: Union[None, str, torch.dtype] = None) -> Any:
    """``None``, a loaded upscaler (any callable, as is), or the Real-ESRGAN of scale ``upscale`` from
    ``cache`` (loaded into it on first use, on ``device`` in ``dtype``)."""
    if upscale is None or callable(upscale):
        return upscale
    name = resolve_scale(upscale)
    if name not in cache:
        cache[name] = get_realesrgan(name, device=device, dtype=dtype)
    return cache[name]
