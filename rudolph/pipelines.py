"""The reference RuDOLPH pipelines (``rudolph.pipelines`` of the original package), on one engine.

Signatures are the original ones, so notebooks keep working; ``progress`` is new. All
randomness comes from a private generator seeded by ``seed`` (``None``: fresh entropy),
never from the global RNG.

Layouts (``L`` left text, ``N2`` image, ``R`` right text):

* images from text: ``[text (L) | sampled image]``;
* texts: ``[template + sampled text (L)]``;
* captions: ``[pads (L) | image | template + sampled text (R)]``;
* reranking by text: ``[pads | codebook | text (R)]``, scoring the image and right text;
* reranking by image: ``[text (L) | image]``, scoring the left text and the image;
* zero-shot classification: ``[pads | image | template.format(class) (R)]``.
"""
import os
import warnings
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from . import utils
from .codec import BOS_ID, EOS_ID, PAD_ID, UNK_ID, encode_image, encode_text
from .engine import (Layout, ScorePart, ce_to_ppl, check_tokenizer, cross_entropy, first_eos_cut, generate,
                     model_device, require_vae, tokenizer_vocab_limit)
from .errors import ConfigError, InputError
from .sampling import check_sampling_args

__all__ = ['generate_codebooks', 'generate_captions', 'generate_texts', 'self_reranking_by_text',
           'self_reranking_by_image', 'zs_clf', 'show', 'ce_to_ppl']


def _check_count(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f'{name} must be a positive int, got {value!r}')


def _check_text(name: str, value, allow_empty: bool = False) -> str:
    """``value.lower().strip()``; ``TypeError`` for a non-string, ``ValueError`` for an empty one."""
    if not isinstance(value, str):
        raise TypeError(f'{name} must be a str, got {type(value).__name__}')
    value = value.lower().strip()
    if not value and not allow_empty:
        raise InputError(f'{name} must be a non-empty string, got {value!r}')
    return value


def _check_texts(name: str, values) -> List[str]:
    if isinstance(values, str) or not isinstance(values, Sequence) or len(values) == 0:
        raise InputError(f'{name} must be a non-empty list of strings, got {values!r}')
    return [_check_text(f'{name}[{i}]', v) for i, v in enumerate(values)]


def _check_classes(classes) -> List[str]:
    """Class names as non-empty, distinct strings (after lower-casing and stripping)."""
    if isinstance(classes, str) or not isinstance(classes, Sequence) or len(classes) == 0:
        raise InputError(f'classes must be a non-empty list of class names, got {classes!r}')
    names = [_check_text(f'classes[{i}]', c) for i, c in enumerate(classes)]
    seen: Dict[str, int] = {}
    for i, name in enumerate(names):
        if name in seen:
            raise InputError(f'classes must be distinct: classes[{seen[name]}] and classes[{i}] are both {name!r}')
        seen[name] = i
    return names


def _check_template(name: str, template, default: str = '{}', slot: Optional[str] = None, what: str = 'class name',
                    required: bool = True) -> str:
    """A template whose only replacement field is ``{}`` (``slot=None``) or ``{slot}``; the one check of all templates.

    ``required``: the field must be there (otherwise the template is used as it is).
    """
    template = default if template is None else template
    field = '{}' if slot is None else '{' + slot + '}'
    if not isinstance(template, str):
        raise TypeError(f'{name} must be a str with a {field} slot, got {type(template).__name__}')
    try:
        a, b = (template.format(v) if slot is None else template.format(**{slot: v}) for v in ('\x00a', '\x00b'))
    except (IndexError, KeyError, ValueError, AttributeError) as error:
        raise InputError(f'{name} must have exactly one {field} slot for the {what} (and no other braces; write '
                         f'{{{{ }}}} for a literal brace), got {template!r} ({type(error).__name__}: {error})') from None
    if required and a == b:
        example = f"'на картинке {field}'" if slot in (None, 'text') else repr(f'вопрос: {field} ответ:')
        raise InputError(f"{name} must contain '{field}' where the {what} goes, got {template!r} (e.g. {example})")
    return template


def _only_unknown(tokenizer, text: str) -> bool:
    """Whether ``text`` encodes to unknown ids only (and perhaps ids that decode to nothing but spaces)."""
    ids = tokenizer.encode_text(text, text_seq_length=2 * len(text) + 3)
    content = ids[(ids != PAD_ID) & (ids != BOS_ID) & (ids != EOS_ID)]
    known = content[content != UNK_ID]
    return content.numel() > 0 and (known.numel() == 0 or not tokenizer.decode_text(known).strip())


def warn_unknown_classes(tokenizer, names: Sequence[str]) -> None:
    """Warn, naming them, about class names the tokenizer can only encode as unknown ids."""
    unknown = [name for name in names if _only_unknown(tokenizer, name)]
    if unknown:
        warnings.warn(f'classes {unknown} encode to unknown tokens only (the tokenizer cannot spell them), so the '
                      'model sees the same text for each of them and they score alike whatever the picture; '
                      'write class names the tokenizer knows (Russian for the published models)', stacklevel=3)


def _encode(tokenizer, text: str, length: int, layout: Layout, name: str = 'text',
            allow_empty: bool = False) -> torch.Tensor:
    """Checked, normalised and encoded text (warns if it is cut to ``length``)."""
    check_tokenizer(tokenizer, layout)
    return encode_text(tokenizer, _check_text(name, text, allow_empty), length, name)


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


def template_prefix(encoded: torch.Tensor) -> torch.Tensor:
    """An encoded template without its eos and pads: the prefix generation continues.

    A template cut at the part length has no eos and is kept whole (callers then find
    nothing left to generate and say so).
    """
    size = int((encoded != 0).sum())
    if size > 1 and int(encoded[size - 1]) == EOS_ID:
        size -= 1
    return encoded[:max(size, 1)]


def decode_unique(tokenizer, tokens: torch.Tensor) -> List[str]:
    """Texts up to the first eos, stripped, non-empty, unique, in order of first appearance."""
    texts: Dict[str, None] = {}
    for row in tokens:
        text = tokenizer.decode_text(first_eos_cut(row)).strip()
        if text:
            texts.setdefault(text, None)
    return list(texts)


def generate_codebooks(text: str, tokenizer, model, top_k: int, top_p: float, images_num: int,
                       image_prompts=None, temperature: float = 1.0, bs: int = 8, seed: Optional[int] = None,
                       use_cache: bool = True, *, progress: bool = True) -> torch.LongTensor:
    """Sample ``images_num`` image codebooks ``[images_num, N*N]`` for ``text`` (left text).

    ``image_prompts`` (an :class:`~rudolph.image_prompts.ImagePrompts`) fixes some positions.
    """
    _check_count('images_num', images_num)
    _check_count('bs', bs)
    check_sampling_args(top_k, top_p, temperature)
    layout = Layout.from_model(model)
    encoded = _encode(tokenizer, text, layout.L, layout)
    fixed = prompt_positions(image_prompts, layout) if image_prompts is not None else None
    seq = generate(model, encoded, layout.L + layout.N2, images_num, vocab=layout.image_slice, top_k=top_k,
                   top_p=top_p, temperature=temperature, seed=seed, bs=bs, use_cache=use_cache, fixed=fixed,
                   progress=progress, desc='images')
    return seq[:, layout.L:]


def generate_captions(pil_img, tokenizer, model, vae, template: str = '', top_k: int = 32, top_p: float = 0.6,
                      captions_num: int = 128, temperature: float = 1.0, bs: int = 64, seed: Optional[int] = None,
                      use_cache: bool = True, limit_eos: bool = True, *, progress: bool = True) -> List[str]:
    """Unique captions of ``pil_img`` (right text after the image), each starting with ``template``.

    ``limit_eos=True``: sample over the whole text vocabulary (but the left-pad ids) and
    turn samples outside the plain BPE ids into eos, as the reference does; ``False``:
    sample only among the plain BPE ids, so a caption ends only on a sampled eos.
    """
    _check_count('captions_num', captions_num)
    _check_count('bs', bs)
    check_sampling_args(top_k, top_p, temperature)
    require_vae(vae, 'generate_captions')
    layout = Layout.from_model(model)
    template = template_prefix(_encode(tokenizer, template, layout.R, layout, 'template', allow_empty=True))
    image = encode_image(pil_img, vae, model)
    prefix = torch.cat((torch.zeros(layout.L, dtype=torch.long, device=image.device), image, template.to(image.device)))
    seq = generate(model, prefix, layout.S, captions_num, top_k=top_k, top_p=top_p, temperature=temperature,
                   seed=seed, bs=bs, use_cache=use_cache, progress=progress, desc='captions', stop_at_eos=True,
                   **_text_sampling(layout, limit_eos, tokenizer))
    return decode_unique(tokenizer, seq[:, layout.L + layout.N2:])


def _text_sampling(layout: Layout, limit_eos: bool = True, tokenizer=None) -> Dict[str, Any]:
    limit = tokenizer_vocab_limit(tokenizer, layout)
    if limit_eos:
        return dict(vocab=layout.text_sample_slice, eos_from=limit)
    return dict(vocab=slice(0, limit))


def generate_texts(tokenizer, model, template: str = '', top_k: int = 32, top_p: float = 0.8, texts_num: int = 128,
                   temperature: float = 1.0, bs: int = 64, seed: Optional[int] = None, use_cache: bool = True, *,
                   progress: bool = True) -> List[Dict[str, Any]]:
    """Unique texts continuing ``template`` (left text), as ``{'text', 'ppl'}`` sorted by perplexity."""
    _check_count('texts_num', texts_num)
    _check_count('bs', bs)
    check_sampling_args(top_k, top_p, temperature)
    layout = Layout.from_model(model)
    template = template_prefix(_encode(tokenizer, template, layout.L, layout, 'template', allow_empty=True))
    if len(template) >= layout.L:
        raise InputError(f'the template fills the whole left text ({len(template)} >= {layout.L} tokens); '
                         'nothing is left to generate')
    seq = generate(model, template, layout.L, texts_num, top_k=top_k, top_p=top_p, temperature=temperature,
                   seed=seed, bs=bs, use_cache=use_cache, progress=progress, desc='texts', stop_at_eos=True,
                   **_text_sampling(layout, tokenizer=tokenizer))
    texts = decode_unique(tokenizer, seq)
    if not texts:
        return []
    ppl = left_text_ppl(texts, tokenizer, model, bs=bs, progress=progress)
    return [{'text': texts[i], 'ppl': round(ppl[i].item(), 2)} for i in ppl.argsort().tolist()]


def left_text_ppl(texts: Sequence[str], tokenizer, model, bs: int = 64, special_token: Optional[int] = None,
                  vocab: Optional[slice] = None, progress: bool = False) -> torch.Tensor:
    """Perplexity of each text placed alone in the left text."""
    layout = Layout.from_model(model)
    texts = _check_texts('texts', texts)
    ids = torch.stack([_encode(tokenizer, t, layout.L, layout, f'texts[{i}]') for i, t in enumerate(texts)])
    part = ScorePart(0, layout.L - 1, vocab or layout.text_slice, ignore_index=0)
    return ce_to_ppl(cross_entropy(model, ids, [part], bs=bs, progress=progress)[0])


def _stack_codebooks(codebooks, layout: Layout) -> torch.Tensor:
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


def self_reranking_by_text(text: str, codebooks, tokenizer, model, bs: int = 64, *,
                           progress: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(ppl_text, ppl_image)`` of each codebook with ``text`` as the right text; lower is better."""
    layout = Layout.from_model(model)
    L, N2, R, S = layout.L, layout.N2, layout.R, layout.S
    device = model_device(model)
    codes = _stack_codebooks(codebooks, layout).to(device)
    encoded = _encode(tokenizer, text, R, layout).to(device)
    n = codes.shape[0]
    ids = torch.cat((torch.zeros(n, L, dtype=torch.long, device=device), codes, encoded.expand(n, -1)), dim=1)
    ce_image, ce_text = cross_entropy(model, ids, [
        ScorePart(L, L + N2 - 1, layout.image_full_slice),
        ScorePart(S - R, S - 1, layout.text_slice, ignore_index=0),
    ], bs=bs, progress=progress)
    return ce_to_ppl(ce_text), ce_to_ppl(ce_image)


def self_reranking_by_image(texts: Sequence[str], pil_img, tokenizer, model, vae, bs: int = 64, seed: int = 42, *,
                            progress: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(ppl_text, ppl_image)`` of each text as the left text before ``pil_img``; lower is better.

    ``seed`` is accepted for compatibility; scoring is deterministic.
    """
    texts = _check_texts('texts', texts)
    _check_count('bs', bs)
    require_vae(vae, 'self_reranking_by_image')
    layout = Layout.from_model(model)
    L, N2 = layout.L, layout.N2
    left = torch.stack([_encode(tokenizer, t, L, layout, f'texts[{i}]') for i, t in enumerate(texts)])
    image = encode_image(pil_img, vae, model)
    left = left.to(image.device)
    ids = torch.cat((left, image.expand(len(texts), -1)), dim=1)
    ce_text, ce_image = cross_entropy(model, ids, [
        ScorePart(0, L - 1, layout.text_slice, ignore_index=0),
        ScorePart(L, L + N2 - 1, layout.image_full_slice),
    ], bs=bs, progress=progress)
    return ce_to_ppl(ce_text), ce_to_ppl(ce_image)


def zs_clf(pil_img, classes: Sequence[str], model, tokenizer, vae, bs: int = 8, template: Optional[str] = None, *,
           progress: bool = False) -> Dict[str, Any]:
    """Zero-shot classification: the class whose ``template.format(class)`` right text is least perplexing.

    Perplexities are normalised by their L2 norm and softmaxed (``scores``); the label is the argmin.
    Returns ``{'label', 'class', 'scores', 'ties'}`` (see :func:`classify`); warns about classes
    the tokenizer encodes to unknown tokens only (they score alike).
    """
    names = _check_classes(classes)
    template = _check_template('template', template or None)
    _check_count('bs', bs)
    require_vae(vae, 'zs_clf')
    layout = Layout.from_model(model)
    check_tokenizer(tokenizer, layout)
    warn_unknown_classes(tokenizer, names)
    L, R, S = layout.L, layout.R, layout.S
    right = torch.stack([_encode(tokenizer, template.format(c), R, layout, f'template.format(classes[{i}])')
                         for i, c in enumerate(names)])
    image = encode_image(pil_img, vae, model)
    right = right.to(image.device)
    n = len(classes)
    ids = torch.cat((torch.zeros(n, L, dtype=torch.long, device=image.device), image.expand(n, -1), right), dim=1)
    ce = cross_entropy(model, ids, [ScorePart(S - R, S - 1, layout.text_slice, ignore_index=0)],
                       bs=bs, progress=progress)[0]
    return classify(ce_to_ppl(ce), classes)


def classify(ppl: torch.Tensor, classes: Sequence[str]) -> Dict[str, Any]:
    """Reference normalisation: ``softmax(ppl / ||ppl||)``, prediction = argmin.

    ``'label'`` / ``'class'``: the first best class; ``'ties'``: every class whose score equals
    the best one (up to float rounding), in class order, so ``len(result['ties']) > 1`` says the
    prediction is a tie (e.g. classes the tokenizer cannot encode).
    """
    if ppl.dim() != 1 or ppl.numel() == 0 or ppl.numel() != len(classes):
        raise InputError(f'classify needs one perplexity per class, got shape {tuple(ppl.shape)} for '
                         f'{len(classes)} classes')
    ppl = ppl / ppl.norm(dim=0, keepdim=True)
    scores = ppl.softmax(0)
    pred = int(scores.argmin())
    tied = torch.isclose(scores, scores[pred], rtol=1e-5, atol=0.0).nonzero().flatten().tolist()
    return {'label': pred, 'class': classes[pred], 'scores': scores.cpu().numpy(), 'ties': [classes[i] for i in tied]}


def show(pil_images, nrow: int = 4, size: int = 14, save_dir: Optional[str] = None, show: bool = True) -> None:
    """Grid of ``pil_images`` with matplotlib; with ``save_dir`` also save ``img_*.png`` / ``group_*.png``."""
    from glob import glob

    from PIL import Image

    if not pil_images:
        raise InputError('pil_images is empty')
    _check_count('nrow', nrow)
    if save_dir is not None:
        os.makedirs(save_dir, exist_ok=True)
        count = len(glob(os.path.join(save_dir, 'img_*.png')))
        for i, pil_image in enumerate(pil_images):
            pil_image.save(os.path.join(save_dir, f'img_{count + i}.png'))
    images = utils.pil_list_to_torch_tensors([img.convert('RGB') for img in pil_images])
    grid = _make_grid(images, nrow)
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


def _make_grid(images: torch.Tensor, nrow: int, padding: int = 2) -> torch.Tensor:
    """torchvision's ``make_grid`` layout (``nrow`` images per row, 2 px black padding) for uint8 images."""
    b, c, h, w = images.shape
    ncol = min(nrow, b)
    nrows = (b + ncol - 1) // ncol
    grid = torch.zeros(c, nrows * (h + padding) + padding, ncol * (w + padding) + padding, dtype=images.dtype)
    for i, img in enumerate(images):
        y, x = (i // ncol) * (h + padding) + padding, (i % ncol) * (w + padding) + padding
        grid[:, y:y + h, x:x + w] = img
    return grid
