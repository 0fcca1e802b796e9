"""The reference RuDOLPH pipelines (``rudolph.pipelines`` of the original package), on :mod:`rudolph.tasks.core`.

Signatures are the original ones, so notebooks keep working; ``progress`` is new. All
randomness comes from a private generator seeded by ``seed`` (``None``: fresh entropy),
never from the global RNG. The tasks run by the reference convention (no task tokens, empty
segments as pads, scores over the whole vocabularies) whatever the model.

Layouts (``L`` left text, ``N2`` image, ``R`` right text):

* images from text: ``[text (L) | sampled image]``;
* texts: ``[template + sampled text (L)]``;
* captions: ``[pads (L) | image | template + sampled text (R)]``;
* reranking by text: ``[pads | codebook | text (R)]``, scoring the image and right text;
* reranking by image: ``[text (L) | image]``, scoring the left text and the image;
* zero-shot classification: ``[pads | image | template.format(class) (R)]``.
"""
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from rudolph.generation.engine import ce_to_ppl
from rudolph.tasks import core as tasks
from rudolph.tasks.core import Parts, SamplingConfig, classify, prompt_positions, template_prefix  # noqa: F401 (re-exported)
from rudolph.utils import check_count, check_texts, show, warn_ignored_seed, warn_unknown_classes  # noqa: F401 (re-exported)
from rudolph.utils import make_grid as _make_grid  # noqa: F401 (re-exported)

__all__ = ['generate_codebooks', 'generate_captions', 'generate_texts', 'self_reranking_by_text',
           'self_reranking_by_image', 'zs_clf', 'show', 'ce_to_ppl']


def _parts(model, tokenizer, vae=None, progress: bool = False) -> Parts:
    return Parts(model, tokenizer, vae, {}, reference=True, progress=progress)


def generate_codebooks(text: str, tokenizer, model, top_k: int, top_p: float, images_num: int,
                       image_prompts=None, temperature: float = 1.0, bs: int = 8, seed: Optional[int] = None,
                       use_cache: bool = True, *, progress: bool = True) -> torch.LongTensor:
    """Sample ``images_num`` image codebooks ``[images_num, N*N]`` for ``text`` (left text).

    ``image_prompts`` (an :class:`~rudolph.image_prompts.ImagePrompts`) fixes some positions.
    """
    return tasks.text_to_image(_parts(model, tokenizer, progress=progress), text, images_num,
                               SamplingConfig(top_k, top_p, temperature), bs=bs, seed=seed, use_cache=use_cache,
                               image_prompts=image_prompts)


def generate_captions(pil_img, tokenizer, model, vae, template: str = '', top_k: int = 32, top_p: float = 0.6,
                      captions_num: int = 128, temperature: float = 1.0, bs: int = 64, seed: Optional[int] = None,
                      use_cache: bool = True, limit_eos: bool = True, *, progress: bool = True) -> List[str]:
    """Unique captions of ``pil_img`` (right text after the image), each starting with ``template``.

    ``limit_eos=True``: sample over the whole text vocabulary (but the left-pad ids) and
    turn samples outside the plain BPE ids into eos, as the reference does; ``False``:
    sample only among the plain BPE ids, so a caption ends only on a sampled eos.
    """
    sampling = SamplingConfig(top_k, top_p, temperature)
    return list(tasks.caption_counts(_parts(model, tokenizer, vae, progress), pil_img, captions_num, sampling, bs,
                                     seed=seed, use_cache=use_cache, r_template=template, limit_eos=limit_eos,
                                     r_name='template'))


def generate_texts(tokenizer, model, template: str = '', top_k: int = 32, top_p: float = 0.8, texts_num: int = 128,
                   temperature: float = 1.0, bs: int = 64, seed: Optional[int] = None, use_cache: bool = True, *,
                   progress: bool = True) -> List[Dict[str, Any]]:
    """Unique texts continuing ``template`` (left text), as ``{'text', 'ppl'}`` sorted by perplexity."""
    return tasks.texts(_parts(model, tokenizer, progress=progress), template, texts_num,
                       SamplingConfig(top_k, top_p, temperature), bs, seed=seed, use_cache=use_cache,
                       progress=progress)


def left_text_ppl(texts: Sequence[str], tokenizer, model, bs: int = 64, special_token: Optional[int] = None,
                  vocab: Optional[slice] = None, progress: bool = False) -> torch.Tensor:
    """Perplexity of each text placed alone in the left text."""
    return tasks.text_perplexity(_parts(model, tokenizer), check_texts('texts', texts), bs, vocab=vocab,
                                 progress=progress)


def self_reranking_by_text(text: str, codebooks, tokenizer, model, bs: int = 64, *,
                           progress: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(ppl_text, ppl_image)`` of each codebook with ``text`` as the right text; lower is better."""
    return tasks.rerank_by_text(_parts(model, tokenizer, progress=progress), text, codebooks, bs)


def self_reranking_by_image(texts: Sequence[str], pil_img, tokenizer, model, vae, bs: int = 64,
                            seed: Optional[int] = None, *, progress: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(ppl_text, ppl_image)`` of each text as the left text before ``pil_img``; lower is better.

    ``seed`` (the original's default was 42) has no effect: scoring is deterministic; passing it warns.
    """
    warn_ignored_seed('self_reranking_by_image', seed)
    return tasks.rerank_by_image(_parts(model, tokenizer, vae, progress), texts, pil_img, bs)


def zs_clf(pil_img, classes: Sequence[str], model, tokenizer, vae, bs: int = 8, template: Optional[str] = None, *,
           progress: bool = False) -> Dict[str, Any]:
    """Zero-shot classification: the class whose ``template.format(class)`` right text is least perplexing.

    Perplexities are normalised by their L2 norm and softmaxed (``scores``); the label is the argmin.
    Returns ``{'label', 'class', 'scores', 'ties'}`` (see :func:`classify`); warns about classes
    the tokenizer encodes to unknown tokens only (they score alike).
    """
    result = tasks.zero_shot(_parts(model, tokenizer, vae, progress), pil_img, classes, template, bs)
    return {k: result[k] for k in ('label', 'class', 'scores', 'ties')}
