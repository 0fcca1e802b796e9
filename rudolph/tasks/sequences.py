"""The one codec of RuDOLPH segments: special ids, task tokens, text and image encoders, and the
checks that a tokenizer and a VAE fit the model.

A text segment is ``[bos, <task token>] + bpe(text) + [eos]`` right-padded with ``pad`` (or cut)
to its length; models without task tokens (``350M_v1``, ``spc_tokens == {}``) get no task
token. An image segment is the VQGAN's ``N*N`` codes of a picture.
"""
import warnings
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch

from rudolph.errors import ConfigError, InputError
from rudolph.model.config import BOS_ID, EOS_ID, PAD_ID, UNK_ID, Layout
from rudolph.model.device import model_device
from rudolph.vae.image import preprocess_image

__all__ = ['PAD_ID', 'UNK_ID', 'BOS_ID', 'EOS_ID', 'model_device', 'require_vae', 'check_tokenizer',
           'tokenizer_vocab_limit', 'check_vae', 'task_token', 'bpe_ids', 'text_segment', 'encode_text',
           'encode_image', 'template_prefix', 'prompt_positions', 'stack_codebooks', 'unknown_share',
           'warn_unknown_classes']



def require_vae(vae, task: str) -> None:
    """``ConfigError`` if a task that encodes or decodes pictures got no VAE."""
    if vae is None:
        raise ConfigError(f'{task} needs a VAE to encode or decode pictures, got vae=None; pass one, e.g. '
                          'vae=get_vae(...) (from rudolph.vae import get_vae)')


def check_tokenizer(tokenizer, layout: Layout) -> None:
    """``ValueError`` if the tokenizer produces ids beyond the model's plain text vocabulary."""
    size = getattr(tokenizer, 'vocab_size', None)
    if callable(size):
        size = size()
    if isinstance(size, int) and size > layout.plain_text_vocab:
        raise ConfigError(f'the tokenizer has {size} ids but the model reads only {layout.plain_text_vocab} plain text '
                         f'ids (its text vocabulary {layout.V} holds special tokens and {layout.L} left-pad ids too); '
                         'use the tokenizer the model was trained with')


def tokenizer_vocab_limit(tokenizer, layout: Layout) -> int:
    """Text ids the tokenizer can decode: ``min(plain text vocab, tokenizer vocab)``.

    Sampled text ids at or beyond it become eos, as ids beyond the plain BPE ids do (SPEC 7);
    for the published models both numbers are 16384.
    """
    size = getattr(tokenizer, 'vocab_size', None)
    if callable(size):
        size = size()
    return min(layout.plain_text_vocab, size) if isinstance(size, int) and size > EOS_ID else layout.plain_text_vocab


def check_vae(vae, layout: Layout) -> None:
    """``ValueError`` if the VAE's codes or grid do not fit the model (``N x N`` codes of ``image_vocab``)."""
    factor = getattr(vae, 'downsample_factor', None)
    if isinstance(factor, int) and factor != 8:
        raise ConfigError(f'the VAE downsamples images by {factor}, so a {layout.N * 8}px image gives a '
                         f'{layout.N * 8 // factor}x{layout.N * 8 // factor} code grid; the model draws '
                         f'{layout.N}x{layout.N} codes (8 px each)')
    codes = getattr(vae, 'num_tokens', None)
    if isinstance(codes, int) and codes != layout.image_vocab:
        raise ConfigError(f'the VAE has {codes} codes but the model draws {layout.image_vocab} image codes; '
                         'use the VAE the model was trained with')


def task_token(spc_tokens: Mapping[str, int], name: Optional[str]) -> Optional[int]:
    """Id of the task token ``name``; ``None`` for ``name=None`` or a model without task tokens."""
    if name is None or not spc_tokens:
        return None
    if name not in spc_tokens:
        raise ConfigError(f'unknown special token {name!r}; expected one of {sorted(spc_tokens)}')
    return spc_tokens[name]


def bpe_ids(tokenizer, text: str) -> List[int]:
    """The plain BPE ids of ``text`` (no bos/eos/pads)."""
    if not hasattr(tokenizer, 'encode_text'):  # a bare ruDALL-E-style wrapper: its YTTM model encodes
        return list(tokenizer.tokenizer.encode([text])[0])
    # Every character is at most two ids (itself and a word-start marker), plus bos and eos.
    full = tokenizer.encode_text(text, text_seq_length=2 * len(text) + 3)
    count = int((full != PAD_ID).sum())
    return full[1:count - 1].tolist()


def text_segment(tokenizer, text: str, length: int, special: Optional[int] = None) -> Tuple[torch.Tensor, int]:
    """``[bos, (special)] + bpe(text) + [eos]`` padded/cut to ``length``, and its uncut token count."""
    tokens = [BOS_ID] + ([] if special is None else [special]) + bpe_ids(tokenizer, text) + [EOS_ID]
    ids = tokens[:length] + [PAD_ID] * max(0, length - len(tokens))
    return torch.tensor(ids, dtype=torch.long), len(tokens)


def encode_text(tokenizer, text: str, length: int, name: str = 'text', special: Optional[int] = None, *,
                warn_unknown: bool = True) -> torch.Tensor:
    """:func:`text_segment` of ``text`` (as it is); a text that does not fit is cut, with one warning.

    A text that is mostly unknown tokens (see :func:`unknown_share`) is encoded too, with a warning
    (``warn_unknown=False``: the caller has already said so, e.g. :func:`warn_unknown_classes`).
    """
    if not isinstance(text, str):
        raise TypeError(f'{name} must be a str, got {type(text).__name__}')
    if warn_unknown and unknown_share(tokenizer, text) > 0.5:
        warnings.warn(f'{name} {text[:60]!r} is mostly unknown tokens (the tokenizer cannot spell most of it), so '
                      'the model sees little of it and its result will not follow it; write text the tokenizer '
                      'knows (Russian for the published models)', stacklevel=3)
    ids, count = text_segment(tokenizer, text, length, special)
    if count > length:
        warnings.warn(f'{name} takes {count} tokens but its segment holds {length}: it is cut to {length} '
                      f'tokens (the end of the text and its eos are dropped): {text[:60]!r}', stacklevel=3)
    return ids


@torch.no_grad()
def encode_image(pil_img, vae, model) -> torch.Tensor:
    """PIL image (any mode and size: converted to RGB, centre-cropped, resized) -> VQGAN ids ``[N*N]``."""

    require_vae(vae, 'encoding a picture')
    layout = Layout.from_model(model)
    check_vae(vae, layout)
    img = preprocess_image(pil_img, layout.N * 8).unsqueeze(0)
    ids = vae.get_codebook_indices(img.to(model_device(vae)))
    if ids.shape != (1, layout.N2):
        raise ConfigError(f'the VAE returned ids of shape {tuple(ids.shape)} for a {layout.N * 8}px image; '
                         f'the model expects [1, {layout.N2}]')
    return ids[0].to(device=model_device(model), dtype=torch.long)


def template_prefix(encoded: torch.Tensor) -> torch.Tensor:
    """An encoded template without its eos and pads: the prefix generation continues.

    A template cut at the part length has no eos and is kept whole (callers then find
    nothing left to generate and say so).
    """
    size = int((encoded != PAD_ID).sum())
    if size > 1 and int(encoded[size - 1]) == EOS_ID:
        size -= 1
    return encoded[:max(size, 1)]


def prompt_positions(image_prompts, layout: Layout) -> Dict[int, int]:
    """``{absolute position: token}`` of an ``ImagePrompts`` (ours or ruDALL-E's)."""
    tokens = torch.as_tensor(image_prompts.image_prompts).reshape(-1)
    if tokens.numel() != layout.N2:
        raise InputError(f'image prompts hold {tokens.numel()} tokens, the model draws {layout.N2} '
                         f'({layout.N}x{layout.N}); build them from a {layout.N * 8}px image')
    idx = sorted(int(i) for i in image_prompts.image_prompts_idx)
    if idx and not 0 <= idx[0] <= idx[-1] < layout.N2:
        raise InputError(f'image prompt positions must be in [0, {layout.N2}), got {idx[0]}..{idx[-1]}')
    tokens = tokens.tolist()
    return {layout.L + i: int(tokens[i]) for i in idx}


def stack_codebooks(codebooks, layout: Layout) -> torch.Tensor:
    """Codebooks as a checked ``[n, N*N]`` long tensor of plain or special image codes."""
    if isinstance(codebooks, torch.Tensor):
        ids = codebooks
    else:
        try:
            ids = torch.stack([torch.as_tensor(c) for c in codebooks])
        except (RuntimeError, TypeError, ValueError) as error:
            raise InputError(f'codebooks must be a [n, {layout.N2}] tensor or a list of n codebooks of '
                             f'{layout.N2} codes each ({error})') from None
    if ids.dim() != 2 or ids.shape[1] != layout.N2 or ids.shape[0] == 0:
        raise InputError(f'codebooks must be [n >= 1, {layout.N2}] (N*N = {layout.N}*{layout.N} codes each), '
                         f'got shape {tuple(ids.shape)}')
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        raise TypeError(f'codebooks must hold integer image codes, got dtype {ids.dtype}')
    if int(ids.min()) < 0 or int(ids.max()) >= layout.image_vocab_total:
        raise InputError(f'codebooks must hold image codes in [0, {layout.image_vocab_total}), '
                         f'got values in [{int(ids.min())}, {int(ids.max())}]')
    return ids.long()


def unknown_share(tokenizer, text: str) -> float:
    """The share of ``text``'s tokens that are unknown ids, among the tokens that spell something.

    Ids that decode to nothing but spaces (word-start markers) count for neither side, so a text
    of unknown words only is 1.0 however the tokenizer marks their starts; an empty text is 0.0,
    a text of spaces only 1.0 (the model sees nothing of it either).
    """
    ids = bpe_ids(tokenizer, text)
    unknown = sum(1 for i in ids if i == UNK_ID)
    decode = getattr(tokenizer, 'decode_text', None)
    spelled = sum(1 for i in ids if i != UNK_ID and (decode is None or decode(torch.tensor([i])).strip()))
    if unknown + spelled == 0:
        return 1.0 if ids else 0.0
    return unknown / (unknown + spelled)


def warn_unknown_classes(tokenizer, names: Sequence[str]) -> List[str]:
    """Warn, naming them, about class names the tokenizer can only encode as unknown ids; returns them."""
    unknown = [name for name in names if unknown_share(tokenizer, name) == 1.0]
    if unknown:
        warnings.warn(f'classes {unknown} encode to unknown tokens only (the tokenizer cannot spell them), so the '
                      'model sees the same text for each of them and they score alike whatever the picture; '
                      'write class names the tokenizer knows (Russian for the published models)', stacklevel=4)
    return unknown
