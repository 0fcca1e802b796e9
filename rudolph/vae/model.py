"""ruDALL-E's Gumbel VQGAN (taming-transformers ``GumbelVQ``) in plain PyTorch.

Module and parameter names follow taming-transformers / ruDALL-E, so that the
published checkpoints ``vqgan.gumbelf8-sber.model.ckpt`` (plain) and
``vqgan.gumbelf8-sber-dwt.model.ckpt`` (DWT decoder) load unchanged.
"""
import dataclasses
import math
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from rudolph.errors import CheckpointMismatchError, CorruptCheckpointError
from rudolph.io.files import check_finite, safe_torch_load
from rudolph.io.safetensors import is_safetensors, read_safetensors
from rudolph.vae.dwt import DWTInverse
from rudolph.vae.modules import Decoder, Encoder

__all__ = [
    'VQGanConfig', 'GumbelQuantize', 'DecoderDWT', 'GumbelVQ', 'VQGanGumbelVAE', 'CheckpointMismatchError',
    'CorruptCheckpointError',
    'read_checkpoint_state_dict',
]


@dataclass(frozen=True)
class VQGanConfig:
    """Architecture of the VQGAN; the defaults are ruDALL-E's ``vqgan.gumbelf8-sber.config.yml``.

    ``resolution`` is the training image side: attention blocks go to the levels
    whose side is in ``attn_resolutions``. Images of other (multiple-of-``f``)
    sizes still work, as in taming.
    """
    ch: int = 128
    ch_mult: Tuple[int, ...] = (1, 1, 2, 4)
    num_res_blocks: int = 2
    attn_resolutions: Tuple[int, ...] = (32,)
    z_channels: int = 256
    embed_dim: int = 256
    n_embed: int = 8192
    in_channels: int = 3
    out_ch: int = 3
    resolution: int = 256
    double_z: bool = False
    dropout: float = 0.0
    kl_weight: float = 1e-8
    temperature: float = 1.0
    straight_through: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, 'ch_mult', tuple(int(m) for m in self.ch_mult))
        object.__setattr__(self, 'attn_resolutions', tuple(int(r) for r in self.attn_resolutions))
        if not self.ch_mult:
            raise ValueError('ch_mult must not be empty')
        for mult in (1,) + self.ch_mult:
            if (self.ch * mult) % 32 != 0:
                raise ValueError(f'ch * ch_mult must be divisible by 32 (GroupNorm(32)), got ch={self.ch}, '
                                 f'ch_mult={self.ch_mult}')
        if self.double_z:
            raise ValueError('double_z=True is not supported by GumbelVQ (quant_conv takes z_channels); '
                             'expected double_z=False')
        if self.embed_dim != self.z_channels:
            # quant_conv maps z_channels -> embed_dim, then quantize.proj takes z_channels (taming's GumbelVQ)
            raise ValueError(f'GumbelVQ needs embed_dim == z_channels, got embed_dim={self.embed_dim}, '
                             f'z_channels={self.z_channels}')
        if self.resolution % self.downsample_factor != 0:
            raise ValueError(f'resolution={self.resolution} must be divisible by the downsampling factor '
                             f'{self.downsample_factor} of ch_mult={self.ch_mult}')

    @property
    def downsample_factor(self) -> int:
        """Image side / token-grid side (8 for ruDALL-E's f8 VQGAN)."""
        return 2 ** (len(self.ch_mult) - 1)

    @property
    def tokens_per_side(self) -> int:
        """Token-grid side for an image of ``resolution`` pixels."""
        return self.resolution // self.downsample_factor

    @classmethod
    def from_any(cls, config: Union[None, 'VQGanConfig', Mapping[str, Any]]) -> 'VQGanConfig':
        """``None`` -> defaults; a mapping overrides the defaults key by key (unknown keys are an error)."""
        if config is None:
            return cls()
        if isinstance(config, cls):
            return config
        if isinstance(config, Mapping):
            known = {f.name for f in dataclasses.fields(cls)}
            unknown = sorted(set(config) - known)
            if unknown:
                raise ValueError(f'unknown VQGAN config keys {unknown}; expected some of {sorted(known)}')
            return cls(**dict(config))
        raise TypeError(f'config must be None, a VQGanConfig or a mapping, got {type(config).__name__}')


class GumbelQuantize(nn.Module):
    """Gumbel-softmax quantizer: 1x1 ``proj`` to ``n_embed`` logits, codebook ``embed``.

    Returns taming's VQ interface ``(z_q, kl_loss, (None, None, indices))``.
    """

    def __init__(self, num_hiddens: int, embedding_dim: int, n_embed: int, straight_through: bool = True,
                 kl_weight: float = 5e-4, temp_init: float = 1.0):
        super().__init__()
        self.embedding_dim = embedding_dim
        self.n_embed = n_embed
        self.straight_through = straight_through
        self.temperature = temp_init
        self.kl_weight = kl_weight
        self.proj = nn.Conv2d(num_hiddens, n_embed, 1)
        self.embed = nn.Embedding(n_embed, embedding_dim)

    def embed_code(self, code: torch.Tensor) -> torch.Tensor:
        """Token ids ``[b, h, w]`` -> codebook vectors ``[b, embedding_dim, h, w]``."""
        return self.embed(code).permute(0, 3, 1, 2)

    def forward(self, z: torch.Tensor, temp: Optional[float] = None, return_logits: bool = False,
                disable_gumbel_softmax: bool = False):
        """Quantize ``z [b, num_hiddens, h, w]``.

        With ``disable_gumbel_softmax`` the code is the argmax of the logits (hard
        one-hot, no noise); otherwise ``F.gumbel_softmax(logits, tau=temp, dim=1,
        hard=...)`` with ``hard = straight_through`` in training and ``True`` in eval.
        The loss is the KL term to the uniform prior (computed in both cases).
        """
        logits = self.proj(z)
        if disable_gumbel_softmax:
            ind = logits.argmax(dim=1)
            z_q = self.embed_code(ind)
        else:
            hard = self.straight_through if self.training else True
            tau = self.temperature if temp is None else temp
            soft_one_hot = F.gumbel_softmax(logits, tau=tau, dim=1, hard=hard)
            z_q = torch.einsum('bnhw,nd->bdhw', soft_one_hot, self.embed.weight)
            ind = soft_one_hot.argmax(dim=1)
        qy = F.softmax(logits, dim=1)
        diff = self.kl_weight * torch.sum(qy * torch.log(qy * self.n_embed + 1e-10), dim=1).mean()
        if return_logits:
            return z_q, diff, (None, None, ind), logits
        return z_q, diff, (None, None, ind)


class DecoderDWT(nn.Module):
    """ruDALL-E's wavelet decoder: its own ``post_quant_conv``, a taming ``Decoder`` emitting
    ``4 * out_ch`` wavelet bands at the usual size, and a one-level inverse Haar
    transform (``idwt``) giving an image of twice that size.

    Channel layout of the decoder output: ``[:out_ch]`` the low-pass image, then for
    each image channel ``c`` the three bands (LH, HL, HH) at ``out_ch + 3c + (0, 1, 2)``.
    ``forward`` does not apply ``post_quant_conv`` (:meth:`GumbelVQ.decode` does).
    """

    def __init__(self, config: VQGanConfig):
        super().__init__()
        self.image_channels = config.out_ch
        self.post_quant_conv = nn.Conv2d(config.embed_dim, config.z_channels, 1)
        self.decoder = Decoder(ch=config.ch, out_ch=4 * config.out_ch, ch_mult=config.ch_mult,
                               num_res_blocks=config.num_res_blocks, attn_resolutions=config.attn_resolutions,
                               resolution=config.resolution, z_channels=config.z_channels, dropout=config.dropout)
        self.idwt = DWTInverse(mode='zero')

    def dwt_to_img(self, bands: torch.Tensor) -> torch.Tensor:
        """``[b, 4c, h, w]`` wavelet bands -> ``[b, c, 2h, 2w]`` image."""
        b, _, h, w = bands.shape
        c = self.image_channels
        low = bands[:, :c]
        high = bands[:, c:].reshape(b, c, 3, h, w)
        return self.idwt((low, [high]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dwt_to_img(self.decoder(x))


class GumbelVQ(nn.Module):
    """taming's ``GumbelVQ`` without the training machinery (loss, optimizers, schedulers).

    With ``dwt=True`` the decoder is a :class:`DecoderDWT`; the top-level
    ``post_quant_conv`` then exists (ruDALL-E's checkpoint holds it) but is unused.
    """

    def __init__(self, config: Union[None, VQGanConfig, Mapping[str, Any]] = None, dwt: bool = False):
        super().__init__()
        config = VQGanConfig.from_any(config)
        self.config = config
        self.dwt = dwt
        self.encoder = Encoder(ch=config.ch, ch_mult=config.ch_mult, num_res_blocks=config.num_res_blocks,
                               attn_resolutions=config.attn_resolutions, in_channels=config.in_channels,
                               resolution=config.resolution, z_channels=config.z_channels,
                               double_z=config.double_z, dropout=config.dropout)
        if dwt:
            self.decoder = DecoderDWT(config)
        else:
            self.decoder = Decoder(ch=config.ch, out_ch=config.out_ch, ch_mult=config.ch_mult,
                                   num_res_blocks=config.num_res_blocks, attn_resolutions=config.attn_resolutions,
                                   resolution=config.resolution, z_channels=config.z_channels,
                                   dropout=config.dropout)
        self.quantize = GumbelQuantize(config.z_channels, config.embed_dim, n_embed=config.n_embed,
                                       straight_through=config.straight_through, kl_weight=config.kl_weight,
                                       temp_init=config.temperature)
        self.quant_conv = nn.Conv2d(config.z_channels, config.embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(config.embed_dim, config.z_channels, 1)

    def encode_to_prequant(self, x: torch.Tensor) -> torch.Tensor:
        """Image in ``[-1, 1]`` -> pre-quantization features ``[b, embed_dim, h, w]``."""
        return self.quant_conv(self.encoder(x))

    def encode_to_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Image in ``[-1, 1]`` -> codebook logits ``[b, n_embed, h, w]``."""
        return self.quantize.proj(self.encode_to_prequant(x))

    def encode(self, x: torch.Tensor, disable_gumbel_softmax: bool = False, temp: Optional[float] = None):
        """Image in ``[-1, 1]`` -> ``(quant, kl_loss, (None, None, indices [b, h, w]))``."""
        return self.quantize(self.encode_to_prequant(x), temp=temp, disable_gumbel_softmax=disable_gumbel_softmax)

    def decode(self, quant: torch.Tensor) -> torch.Tensor:
        """Codebook vectors ``[b, embed_dim, h, w]`` -> image (roughly ``[-1, 1]``)."""
        post_quant_conv = self.decoder.post_quant_conv if self.dwt else self.post_quant_conv
        return self.decoder(post_quant_conv(quant))

    def decode_code(self, code: torch.Tensor) -> torch.Tensor:
        """Token ids ``[b, h, w]`` -> image (taming's ``GumbelVQ`` leaves this unimplemented)."""
        return self.decode(self.quantize.embed_code(code))

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Reconstruction and KL loss, as taming's ``VQModel.forward``."""
        quant, diff, _ = self.encode(x)
        return self.decode(quant), diff


def read_checkpoint_state_dict(path: str) -> Dict[str, torch.Tensor]:
    """Load ``path`` on CPU and return its ``'state_dict'`` (or the file itself when it is a bare state dict).

    Read with ``weights_only=True`` only (:func:`rudolph.io.files.safe_torch_load`): the
    training objects of PyTorch-Lightning checkpoints load as inert stand-ins, any other pickled
    object raises :class:`UnsafeCheckpointError`. A file that ``torch.load`` cannot read (empty,
    truncated, random bytes) raises :class:`CorruptCheckpointError` (a ``ValueError``) naming the
    path; NaN or inf weights raise :class:`CheckpointError` naming the first bad key.
    """

    path = os.fspath(path)
    if is_safetensors(path):  # a bare state dict (what save_pretrained writes), no pickle
        state_dict = read_safetensors(path, 'VAE checkpoint')
        check_finite(state_dict, path)
        return state_dict
    checkpoint = safe_torch_load(path, 'VAE checkpoint')
    if isinstance(checkpoint, Mapping) and 'state_dict' in checkpoint:
        state_dict = checkpoint['state_dict']
    elif isinstance(checkpoint, Mapping) and all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        state_dict = checkpoint
    else:
        keys = sorted(checkpoint)[:10] if isinstance(checkpoint, Mapping) else type(checkpoint).__name__
        raise CheckpointMismatchError(f"{path}: expected a dict with a 'state_dict' entry (or a bare state dict), "
                                      f'got {keys}')
    if not isinstance(state_dict, Mapping):
        raise CheckpointMismatchError(f"{path}: 'state_dict' must be a mapping, got {type(state_dict).__name__}")
    check_finite(state_dict, path)
    return dict(state_dict)


def _first(keys: List[str], limit: int = 5) -> str:
    shown = ', '.join(keys[:limit])
    return f'{shown}, ... ({len(keys)} in all)' if len(keys) > limit else shown


class VQGanGumbelVAE(nn.Module):
    """ruDALL-E's image tokenizer: images in ``[0, 1]`` <-> ``num_tokens``-way codes on an ``n x n`` grid.

    Attributes follow ruDALL-E: ``model`` (:class:`GumbelVQ`), ``num_tokens``,
    ``image_size`` (``config.resolution``: 256 for both published models, although
    the DWT model decodes to twice that), ``num_layers`` (``log2`` of the first
    attention resolution). ``image_tokens_per_side`` = ``image_size // 8`` for f8.
    """

    def __init__(self, config: Union[None, VQGanConfig, Mapping[str, Any]] = None, dwt: bool = False):
        super().__init__()
        self.config = VQGanConfig.from_any(config)
        self.dwt = dwt
        self.model = GumbelVQ(self.config, dwt=dwt)
        attn = self.config.attn_resolutions
        self.num_layers = int(math.log2(attn[0])) if attn else 0
        self.image_size = self.config.resolution
        self.num_tokens = self.config.n_embed
        self.downsample_factor = self.config.downsample_factor
        self.image_tokens_per_side = self.config.tokens_per_side

    def check_images(self, img: torch.Tensor) -> None:
        """Raise a clear error unless ``img`` is a float batch ``[b, in_channels, H, W]`` whose sides are
        multiples of the downsampling factor (and at least one token)."""
        if not isinstance(img, torch.Tensor):
            raise TypeError(f'expected a float tensor of images [b, 3, H, W] in [0, 1], got {type(img).__name__} '
                            f'(PIL images: use rudolph.vae.preprocess_image first)')
        c = self.config.in_channels
        if img.dim() == 3 and img.shape[0] == c:
            raise ValueError(f'expected a batch of images [b, {c}, H, W], got one image {tuple(img.shape)}; '
                             f'add the batch dimension with img.unsqueeze(0)')
        if img.dim() != 4:
            raise ValueError(f'expected images [b, {c}, H, W], got a {img.dim()}-D tensor of shape {tuple(img.shape)}')
        if img.shape[1] != c:
            kind = {1: ' (grayscale?)', 2: ' (grayscale + alpha?)', 4: ' (RGBA?)'}.get(img.shape[1], '')
            raise ValueError(f'expected RGB images with {c} channels [b, {c}, H, W], got {img.shape[1]} '
                             f'channel(s){kind}, shape {tuple(img.shape)}; convert them to RGB first '
                             f'(preprocess_image converts grayscale, RGBA and palette PIL images)')
        if not img.is_floating_point():
            raise TypeError(f'expected float images in [0, 1], got dtype {img.dtype} '
                            f'(uint8 images: img.float() / 255)')
        f = self.downsample_factor
        height, width = img.shape[-2:]
        if height < f or width < f:
            raise ValueError(f'image of {height}x{width} px (H x W) is smaller than one token ({f}x{f} px)')
        if height % f or width % f:
            raise ValueError(f'image sides must be multiples of the downsampling factor {f}, got {height}x{width} px '
                             f'(H x W); crop or resize to e.g. {height // f * f}x{width // f * f}')

    def get_codebook_indices(self, img: torch.Tensor, disable_gumbel_softmax: bool = False) -> torch.Tensor:
        """Images ``[b, 3, H, W]`` in ``[0, 1]`` -> token ids ``[b, (H/f) * (W/f)]`` (row-major, long).

        The ids are always the argmax of the codebook logits (no Gumbel noise);
        ``disable_gumbel_softmax`` is accepted for ruDALL-E compatibility only. The
        encoder runs under ``torch.inference_mode()``; the returned tensor is an ordinary
        one (no grad), free to be modified in place or used in autograd graphs.
        """
        self.check_images(img)
        with torch.inference_mode():
            logits = self.model.encode_to_logits(2 * img - 1)
            ids = logits.argmax(dim=1).flatten(1)
        return ids.clone()  # clone outside inference mode: a normal tensor, not an inference tensor

    def check_ids(self, img_seq: torch.Tensor) -> int:
        """Raise a clear error unless ``img_seq`` is ``[b, n*n]`` integer ids in ``[0, num_tokens)``; returns ``n``."""
        if not isinstance(img_seq, torch.Tensor):
            raise TypeError(f'expected token ids as a tensor [b, n*n], got {type(img_seq).__name__}')
        if img_seq.dtype == torch.bool or img_seq.is_floating_point() or img_seq.is_complex():
            raise TypeError(f'token ids must be an integer tensor, got dtype {img_seq.dtype}')
        if img_seq.dim() != 2:
            hint = '; add the batch dimension with ids.unsqueeze(0)' if img_seq.dim() == 1 else ''
            raise ValueError(f'expected token ids [b, n*n] (2-D), got a {img_seq.dim()}-D tensor of shape '
                             f'{tuple(img_seq.shape)}{hint}')
        length = img_seq.shape[1]
        side = math.isqrt(length)
        if length == 0 or side * side != length:
            raise ValueError(f'the number of tokens per image must be a perfect square n*n (an n x n grid), '
                             f'got {length}')
        if img_seq.numel():
            low, high = (int(v) for v in torch.aminmax(img_seq))
            if low < 0 or high >= self.num_tokens:
                raise ValueError(f'token ids must be in [0, {self.num_tokens}) (the codebook size), got ids from '
                                 f'min {low} to max {high}')
        return side

    def decode(self, img_seq: torch.Tensor, batch_size: Optional[int] = None) -> torch.Tensor:
        """Token ids ``[b, n*n]`` -> images ``[b, 3, n*f, n*f]`` in ``[0, 1]`` (``2*n*f`` for DWT).

        The whole batch goes through the decoder at once, or in chunks of ``batch_size``
        images (to bound memory), under ``torch.inference_mode()``; the result is an
        ordinary tensor without grad.
        """
        side = self.check_ids(img_seq)
        b = img_seq.shape[0]
        if batch_size is None:
            batch_size = max(b, 1)
        elif isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
            raise ValueError(f'batch_size must be a positive int or None, got {batch_size!r}')
        chunks = []
        with torch.inference_mode():
            for chunk in img_seq.split(batch_size) if b else [img_seq]:
                z = self.model.quantize.embed(chunk)  # [b, n*n, embed_dim]
                z = z.reshape(chunk.shape[0], side, side, self.config.embed_dim).permute(0, 3, 1, 2)
                img = self.model.decode(z)
                chunks.append((img.clamp(-1.0, 1.0) + 1) * 0.5)
            out = chunks[0] if len(chunks) == 1 else torch.cat(chunks)
        return out.clone()  # clone outside inference mode: a normal tensor, not an inference tensor

    def load_checkpoint_state_dict(self, state_dict: Mapping[str, torch.Tensor], source: str = 'checkpoint') -> None:
        """Load a published-format state dict, strictly.

        Plain model: keys ``encoder.*``, ``decoder.*``, ``quantize.*``, ``quant_conv.*``,
        ``post_quant_conv.*``; keys outside these modules (training-only ``loss.*``)
        are ignored. DWT model: the whole :class:`VQGanGumbelVAE` state dict
        (``model.``-prefixed, including the ``idwt`` filter buffers), nothing extra.
        Missing keys, wrong shapes and unexpected keys inside the model raise
        :class:`CheckpointMismatchError` naming the first offending keys and the config.
        """
        if self.dwt:
            target: nn.Module = self
            ignored = lambda key: False  # noqa: E731
        else:
            target = self.model
            prefixes = tuple(f'{name}.' for name, _ in self.model.named_children())
            ignored = lambda key: not key.startswith(prefixes)  # noqa: E731
        expected = target.state_dict()
        missing = [k for k in expected if k not in state_dict]
        wrong_shape = [f'{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(expected[k].shape)}'
                       for k in expected if k in state_dict and tuple(state_dict[k].shape) != tuple(expected[k].shape)]
        unexpected = [k for k in state_dict if k not in expected and not ignored(k)]
        if missing or wrong_shape or unexpected:
            problems = []
            if missing:
                problems.append(f'missing keys: {_first(missing)}')
            if wrong_shape:
                problems.append(f'wrong shapes: {_first(wrong_shape)}')
            if unexpected:
                problems.append(f'unexpected keys: {_first(unexpected)}')
            keys = list(state_dict)
            if not self.dwt and keys and all(k.startswith('model.') for k in keys):
                problems.append("hint: keys are prefixed 'model.' as in the DWT checkpoint; pass dwt=True")
            elif self.dwt and not any(k.startswith('model.') for k in keys):
                problems.append("hint: no key is prefixed 'model.' as in the plain checkpoint; pass dwt=False")
            raise CheckpointMismatchError(f'{source} does not fit VQGanGumbelVAE(dwt={self.dwt}, '
                                          f'config={self.config}): ' + '; '.join(problems))
        target.load_state_dict({k: state_dict[k] for k in expected}, strict=True)

    def load_checkpoint(self, path: str) -> 'VQGanGumbelVAE':
        """Read ``path`` (``{'state_dict': ...}``) and load it with :meth:`load_checkpoint_state_dict`."""
        self.load_checkpoint_state_dict(read_checkpoint_state_dict(path), source=str(path))
        return self
