"""Every RuDOLPH task, written once over a model's :class:`Parts` (model, tokenizer, VAE, task tokens).

``rudolph.pipelines``, ``rudolph.api`` and the CLI translate their own signatures into these
functions. Two conventions exist (``Parts.reference``): the original ``rudolph.pipelines`` one
(models without task tokens, 350M v1: empty segments are pads, scores over the whole
vocabularies) and the task-token one of ``ruDolphApi`` (every segment encoded with its task
token; scores over the sampled vocabularies). :meth:`Parts.of` picks it from the model.
"""
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image

from rudolph.checks import (
    check_classes,
    check_count,
    check_fraction,
    check_template,
    check_text,
    check_texts,
)
from rudolph.errors import ConfigError, InputError
from rudolph.generation.engine import ScorePart, ce_to_ppl, cross_entropy, first_eos_cut, generate
from rudolph.model.config import Layout
from rudolph.model.configs import (  # noqa: F401
    DEFAULT_IMAGE_SAMPLING,
    DEFAULT_SPC_TOKENS,
    DEFAULT_TEXT_SAMPLING,
    VQA_TEMPLATE,
    SamplingConfig,
    image_sampling_for,
    text_sampling_for,
)
from rudolph.model.fp16 import unwrap_model
from rudolph.tasks.sequences import (
    PAD_ID,
    check_tokenizer,
    check_vae,
    encode_image,
    encode_text,
    model_device,
    prompt_positions,
    require_vae,
    stack_codebooks,
    task_token,
    template_prefix,
    tokenizer_vocab_limit,
    warn_unknown_classes,
)
from rudolph.vae.image import torch_tensors_to_pil_list

__all__ = ['Parts', 'SamplingConfig', 'DEFAULT_TEXT_SAMPLING', 'generate_images', 'text_to_image', 'rerank_by_text',
           'rerank_by_image', 'rerank_scores', 'rank_images', 'best_images', 'text_sampling_for', 'zero_shot',
           'DEFAULT_IMAGE_SAMPLING', 'image_sampling_for', 'classify', 'prediction_text', 'class_probabilities',
           'caption_counts', 'captioning', 'decode_images', 'vqa', 'texts', 'text_perplexity', 'image_embedding',
           'embed_codes', 'rerank_codes_by_image',
           'template_prefix', 'prompt_positions', 'stack_codebooks']


@dataclass(frozen=True)
class Parts:
    """What a task runs on; ``reference``: the original pipelines' conventions (see the module)."""
    model: Any
    tokenizer: Any
    vae: Any
    spc_tokens: Mapping[str, int] = field(default_factory=dict)
    reference: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        # The original's FP16Module (get_rudolph_model(fp16=True)): the tasks run the model inside it.
        object.__setattr__(self, 'model', unwrap_model(self.model))  # a frozen dataclass

    @classmethod
    def of(cls, model, tokenizer, vae, spc_tokens: Optional[Mapping[str, int]] = None,
           reference: Optional[bool] = None, progress: bool = True) -> 'Parts':
        """Parts of a model: task tokens (``spc_tokens``, else the model's, else the published) if it has any."""

        has_tokens = bool(model.get_param('text_special_tokens'))
        spc = dict(spc_tokens or getattr(model, 'spc_tokens', None) or DEFAULT_SPC_TOKENS) if has_tokens else {}
        return cls(model, tokenizer, vae, spc, not has_tokens if reference is None else reference, progress).check()

    @classmethod
    def of_components(cls, components, progress: Any = True) -> 'Parts':
        """Parts of a loaded :class:`~rudolph.pretrained.components.Components` (its task tokens, if any)."""
        return cls.of(components.model, components.tokenizer, components.vae, components.spc_tokens or None,
                      progress=progress)

    def check(self) -> 'Parts':
        """Tokenizer, VAE and task tokens checked against the model (``ConfigError`` naming the mismatch)."""
        layout = self.layout
        check_tokenizer(self.tokenizer, layout)
        check_vae(self.vae, layout)
        low = layout.plain_text_vocab
        high = low + self.model.get_param('text_special_tokens')
        bad = {k: v for k, v in self.spc_tokens.items()
               if isinstance(v, bool) or not isinstance(v, int) or not low <= v < high}
        if bad:
            raise ConfigError(f'task tokens {bad} are outside the model\'s special-token ids [{low}, {high}) '
                              f'(text vocabulary {layout.V}); pass spc_tokens= with the ids this model was '
                              'trained with (e.g. MODELS[name][\'spc_tokens\'])')
        return self

    @property
    def layout(self) -> Layout:
        return Layout.from_model(self.model)

    @property
    def kind(self) -> str:
        return 'pipelines' if self.reference else 'ruDolphApi'

    @property
    def device(self) -> torch.device:
        return model_device(self.model)

    @property
    def text_vocab(self) -> slice:
        """Logits a text segment is scored over."""
        return self.layout.text_slice if self.reference else self.layout.text_sample_slice

    @property
    def image_vocab(self) -> slice:
        return self.layout.image_full_slice if self.reference else self.layout.image_slice

    def text(self, text: str, length: int, token: Optional[str] = None, name: str = 'text', *,
             warn_unknown: bool = True) -> torch.Tensor:
        """One text segment (with the task token ``token`` when the parts have task tokens); see :func:`encode_text`."""
        check_tokenizer(self.tokenizer, self.layout)
        return encode_text(self.tokenizer, text, length, name, task_token(self.spc_tokens, token),
                           warn_unknown=warn_unknown).to(self.device)

    def context(self, texts: Sequence[str], length: int, token: Optional[str]) -> torch.Tensor:
        """``[n, length]`` context segments: pads by the reference convention, else encoded ``texts``."""
        if self.reference:
            return torch.zeros(len(texts), length, dtype=torch.long, device=self.device)
        return torch.stack([self.text(t, length, token) for t in texts])

    def image(self, pil_img) -> torch.Tensor:
        return encode_image(pil_img, self.vae, self.model)

    def decode(self, tokens: torch.Tensor) -> str:
        """Text of ids, dropping pad/unk/bos/eos and the task tokens."""
        special = torch.tensor(sorted(self.spc_tokens.values()), dtype=torch.long, device=tokens.device)
        return self.tokenizer.decode_text(tokens[~torch.isin(tokens, special)])

    def decode_counts(self, tokens: torch.Tensor) -> Counter:
        """Each row's text up to its first eos, stripped and non-empty, counted in order of appearance."""
        counts: Counter = Counter()
        for row in tokens:
            text = self.decode(first_eos_cut(row)).strip()
            if text:
                counts.update([text])
        return counts

    def text_sampling(self, limit_eos: bool = True) -> Dict[str, Any]:
        limit = tokenizer_vocab_limit(self.tokenizer, self.layout)
        if limit_eos:  # ids beyond the plain BPE ids end the text, as in the reference
            return dict(vocab=self.layout.text_sample_slice, eos_from=limit)
        return dict(vocab=slice(0, limit))


# ----------------------------------------------------------------------------- images
def generate_images(parts: Parts, prefixes: torch.Tensor, images_num: int, sampling: SamplingConfig, bs: int = 8,
                    seed: Optional[int] = None, use_cache: bool = True, image_prompts=None,
                    weights: Optional[Sequence[float]] = None, late_softmax: bool = False) -> torch.Tensor:
    """``[images_num, N*N]`` codes sampled after left text ``prefixes`` (several: mixed by ``weights``)."""
    check_count('images_num', images_num)
    check_count('bs', bs)
    layout = parts.layout
    fixed = prompt_positions(image_prompts, layout) if image_prompts is not None else None
    seq = generate(parts.model, prefixes, layout.L + layout.N2, images_num, vocab=layout.image_slice, seed=seed,
                   bs=bs, use_cache=use_cache, fixed=fixed, weights=weights, late_softmax=late_softmax,
                   progress=parts.progress, desc='images', **sampling.kwargs())
    return seq[:, layout.L:]


def text_to_image(parts: Parts, text: str, images_num: int, sampling: SamplingConfig, *, bs: int = 8,
                  seed: Optional[int] = None, use_cache: bool = True, image_prompts=None, token: str = '<LT_T2I>',
                  guide: Optional[str] = None, guide_token: str = '<LT_UNK>', weight_cfg: float = 0.0,
                  late_softmax: bool = False) -> torch.Tensor:
    """Codes for ``text``; with ``guide`` (a ``{text}`` template) mixed ``(1-w) p(text) + w p(guide)``."""
    check_fraction('weight_cfg', weight_cfg)
    text = check_text('text', text)
    main = parts.text(text, parts.layout.L, token)
    if guide is None:
        return generate_images(parts, main, images_num, sampling, bs, seed, use_cache, image_prompts)
    # The guide may omit {text} (an unconditional branch: the default is the empty text).
    guide = check_template('template', guide, slot='text', what='prompt', required=False)
    guided = parts.text(guide.format(text=text), parts.layout.L, guide_token)
    # A zero-weight branch changes nothing (and 0 * -inf would be nan with late_softmax).
    branches = [(w, e) for w, e in ((1 - weight_cfg, main), (weight_cfg, guided)) if w > 0]
    check_count('images_num', images_num)
    check_count('bs', bs)
    # The original halves bs (two model rows per sample); keep the memory footprint comparable.
    return generate_images(parts, torch.stack([e for _, e in branches]), images_num, sampling,
                           max(1, bs // len(branches)), seed, use_cache, image_prompts,
                           weights=[w for w, _ in branches], late_softmax=late_softmax)


@torch.no_grad()
def reencode(parts: Parts, codes: torch.Tensor, bs: int) -> torch.Tensor:
    """Codes of the VAE's own decoding of ``codes`` (in chunks of ``bs``)."""
    require_vae(parts.vae, 'reencode=True')
    return torch.cat([parts.vae.get_codebook_indices(parts.vae.decode(chunk)).to(codes) for chunk in codes.split(bs)])


# ----------------------------------------------------------------------------- scoring
def rerank_by_text(parts: Parts, text: str, codebooks, bs: int = 64, *, l_template: str = '',
                   l_token: str = '<LT_I2T>', r_token: str = '<RT_I2T>',
                   reencode_codes: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(ppl_text, ppl_image)`` of each codebook with ``text`` as the right text; lower is better."""
    check_count('bs', bs)
    layout = parts.layout
    L, N2, R, S = layout.L, layout.N2, layout.R, layout.S
    codes = stack_codebooks(codebooks, layout).to(parts.device)
    if reencode_codes:
        codes = reencode(parts, codes, bs)
    right = parts.text(check_text('text', text), R, r_token)
    n = codes.shape[0]
    ids = torch.cat((parts.context([l_template], L, l_token).expand(n, -1), codes, right.expand(n, -1)), dim=1)
    ce_image, ce_text = cross_entropy(parts.model, ids, [
        ScorePart(L, L + N2 - 1, parts.image_vocab),
        ScorePart(S - R, S - 1, parts.text_vocab, ignore_index=PAD_ID),
    ], bs=bs, progress=parts.progress)
    return ce_to_ppl(ce_text), ce_to_ppl(ce_image)


def rerank_by_image(parts: Parts, texts_: Sequence[str], pil_img, bs: int = 64, *, token: str = '<LT_T2I>',
                    name: str = 'texts[{}]') -> Tuple[torch.Tensor, torch.Tensor]:
    """``(ppl_text, ppl_image)`` of each text as the left text before ``pil_img``; lower is better."""
    texts_ = check_texts('texts', texts_)
    check_count('bs', bs)
    require_vae(parts.vae, 'self_reranking_by_image')
    return rerank_codes_by_image(parts, texts_, parts.image(pil_img), bs, token=token, name=name)


def rerank_codes_by_image(parts: Parts, texts_: Sequence[str], image: torch.Tensor, bs: int = 64, *,
                          token: str = '<LT_T2I>', name: str = 'texts[{}]') -> Tuple[torch.Tensor, torch.Tensor]:
    """:func:`rerank_by_image` of a picture already encoded to its codes ``image`` ``[N*N]``."""
    L, N2 = parts.layout.L, parts.layout.N2
    left = torch.stack([parts.text(t, L, token, name.format(i)) for i, t in enumerate(texts_)])
    ids = torch.cat((left.to(image.device), image.expand(len(texts_), -1)), dim=1)
    ce_text, ce_image = cross_entropy(parts.model, ids, [
        ScorePart(0, L - 1, parts.text_vocab, ignore_index=PAD_ID),
        ScorePart(L, L + N2 - 1, parts.image_vocab),
    ], bs=bs, progress=parts.progress)
    return ce_to_ppl(ce_text), ce_to_ppl(ce_image)


def rerank_scores(ppl_text: torch.Tensor, ppl_image: torch.Tensor, text_weight: float, q: float) -> torch.Tensor:
    """``(ppl - min) / (quantile_q(ppl) - min)`` of both, mixed with ``text_weight``."""
    def norm(x):
        x = x.float()
        low = x.min()
        # A constant ppl (e.g. a single candidate) would give 0/0: it then contributes 0.
        return (x - low) / (x.quantile(q=q) - low).clamp(min=torch.finfo(x.dtype).tiny)
    return norm(ppl_text) * text_weight + norm(ppl_image) * (1 - text_weight)


def best_images(parts: Parts, text: str, images_num: int, keep: int, sampling: SamplingConfig, bs: int = 8, *,
                seed: Optional[int] = None, reencode_codes: bool = False, text_weight: float = 0.95,
                q: float = 0.5, rerank: bool = True, prompt: Optional[str] = None, image_prompts=None,
                token: str = '<LT_T2I>', use_cache: bool = True) -> Tuple[torch.Tensor, List[Dict[str, float]]]:
    """The text-to-image flow of every interface: ``images_num`` codebooks sampled for ``prompt``
    (default ``text``), the ``keep`` best by self-reranking with ``text`` (best first) and their rows
    ``ppl_text``/``ppl_image`` (and ``score``, the reranking score; the reference convention ranks by
    ``ppl_text``). ``rerank=False`` samples ``keep`` codebooks and keeps them in order, with empty rows.
    Nothing is decoded but what ``reencode_codes`` rescores: :func:`decode_images` draws the pictures."""
    if reencode_codes and parts.reference:  # before sampling anything
        raise ConfigError('--reencode needs a model with task tokens (ruDolphApi); this model has none')
    codebooks = text_to_image(parts, text if prompt is None else prompt, images_num if rerank else keep, sampling,
                              bs=bs, seed=seed, image_prompts=image_prompts, token=token, use_cache=use_cache)
    if not rerank:
        return codebooks, [{} for _ in range(keep)]
    best, rows = rank_images(parts, text, codebooks, keep, bs, reencode_codes=reencode_codes,
                             text_weight=text_weight, q=q)
    return codebooks[torch.as_tensor(best, device=codebooks.device)], rows


def decode_images(vae, codebooks: torch.Tensor, bs: int = 8, upscaler=None) -> Iterator[List[Image.Image]]:
    """The pictures of ``codebooks``, ``bs`` at a time (one batch in memory): the VAE's decoding, then
    ``upscaler`` (a :class:`~rudolph.superres.RealESRGAN`, or any callable on ``[b, 3, H, W]``) if given."""
    require_vae(vae, 'decoding pictures')
    check_count('bs', bs)
    for chunk in codebooks.split(bs):
        with torch.no_grad():
            pictures = vae.decode(chunk)
            yield torch_tensors_to_pil_list(pictures if upscaler is None else upscaler(pictures))


def rank_images(parts: Parts, text: str, codebooks: torch.Tensor, keep: int, bs: int = 8, *,
                reencode_codes: bool = False, text_weight: float = 0.95,
                q: float = 0.5) -> Tuple[List[int], List[Dict[str, float]]]:
    """The ``keep`` best codebooks for ``text`` (indexes, best first) and their rows (see :func:`best_images`)."""
    ppl_text, ppl_image = rerank_by_text(parts, text, codebooks, bs, reencode_codes=reencode_codes)
    rows = [dict(ppl_text=float(t), ppl_image=float(i)) for t, i in zip(ppl_text.tolist(), ppl_image.tolist())]
    if parts.reference:
        best = ppl_text.argsort()[:keep].tolist()
    else:
        scores = rerank_scores(ppl_text, ppl_image, text_weight, q).cpu().numpy()
        best = scores.argsort()[:keep].tolist()
        for row, score in zip(rows, scores):
            row['score'] = float(score)
    return best, [rows[i] for i in best]


def text_perplexity(parts: Parts, texts_: Sequence[str], bs: int = 64, *, token: Optional[str] = None,
                    vocab: Optional[slice] = None, name: str = 'texts[{}]',
                    progress: bool = False) -> torch.Tensor:
    """Perplexity of each text placed alone in the left text."""
    L = parts.layout.L
    ids = torch.stack([parts.text(t, L, token, name.format(i)) for i, t in enumerate(texts_)])
    part = ScorePart(0, L - 1, vocab or parts.text_vocab, ignore_index=PAD_ID)
    return ce_to_ppl(cross_entropy(parts.model, ids, [part], bs=bs, progress=progress)[0])


def zero_shot(parts: Parts, pil_img, classes: Sequence[str], template: Optional[str] = None, bs: int = 8, *,
              l_template: str = '', r_token: str = '<RT_I2T>', l_token: str = '<LT_I2T>',
              r_name: str = 'template') -> Dict[str, Any]:
    """Zero-shot classification by the right-text perplexity of ``template.format(class)``.

    :func:`classify`'s ``{'label', 'class', 'scores', 'ties', 'tie'}`` plus ``'ppl'`` and ``'ce'``
    (``[n, R]`` per-position cross-entropies) of each class.
    """
    names = check_classes(classes)
    template = check_template(r_name, template or None)
    l_template = check_text('l_template', check_template('l_template', l_template or '', required=False), True)
    check_count('bs', bs)
    require_vae(parts.vae, 'zs_clf')
    layout = parts.layout
    check_tokenizer(parts.tokenizer, layout)
    unknown = warn_unknown_classes(parts.tokenizer, names)  # said once for them, not again per text
    right = torch.stack([parts.text(check_text('text', template.format(c)), layout.R, r_token,
                                    f'{r_name}.format(classes[{i}])', warn_unknown=c not in unknown)
                         for i, c in enumerate(names)])
    left = parts.context([check_text('text', l_template.format(c), True) for c in names], layout.L, l_token)
    image = parts.image(pil_img)
    ids = torch.cat((left.to(image.device), image.expand(len(names), -1), right.to(image.device)), dim=1)
    ce = cross_entropy(parts.model, ids, [ScorePart(layout.S - layout.R, layout.S - 1, parts.text_vocab,
                                                    ignore_index=PAD_ID)], bs=bs, progress=parts.progress)[0]
    ppl = ce_to_ppl(ce)
    return {**classify(ppl, classes), 'ppl': ppl, 'ce': ce}


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
    return {'label': pred, 'class': classes[pred], 'scores': scores.cpu().numpy(), 'ties': [classes[i] for i in tied],
            'tie': len(tied) > 1}


def prediction_text(result: Mapping[str, Any]) -> str:
    """The answer of a classification as shown to people: its class, or the classes that tie.

    A tie (e.g. classes the tokenizer cannot spell) shown as one class would look like an answer
    the model gave; ``result`` is :func:`classify`'s (or ``classify_batch``'s) dict.
    """
    ties = list(result.get('ties') or [])
    if len(ties) > 1:
        return f'tie: {len(ties)} classes score alike ({", ".join(ties)}); the model prefers none of them'
    return str(result.get('class', result.get('label')))


def class_probabilities(ppl: torch.Tensor) -> torch.Tensor:
    """Each class's probability (higher is better): softmax of minus its log-perplexity, i.e. ``1/ppl`` normalised."""
    return (-ppl.log()).softmax(0)


# ----------------------------------------------------------------------------- texts
def caption_counts(parts: Parts, pil_img, captions_num: int, sampling: SamplingConfig, bs: int = 64, *,
                   seed: Optional[int] = None, use_cache: bool = True, r_template: str = '', l_template: str = '',
                   l_token: str = '<LT_I2T>', r_token: str = '<RT_I2T>', early_stop: Optional[int] = None,
                   limit_eos: bool = True, r_name: str = 'r_template') -> Counter:
    """Captions of ``pil_img`` (right text after the image, starting with ``r_template``) and their counts."""
    check_count('captions_num', captions_num)
    check_count('bs', bs)
    if early_stop is not None:
        check_count('early_stop', early_stop)
    require_vae(parts.vae, 'generate_captions')
    L, N2, R = parts.layout.L, parts.layout.N2, parts.layout.R
    r_prefix = template_prefix(parts.text(check_text(r_name, r_template, True), R, r_token, r_name))
    left = parts.context([check_text('l_template', l_template, True)], L, l_token)[0]
    image = parts.image(pil_img)
    prefix = torch.cat((left.to(image.device), image, r_prefix.to(image.device)))
    end = L + N2 + min(early_stop or R, R)
    if len(prefix) >= end and not parts.reference:
        raise InputError(f'the right template takes {len(r_prefix)} tokens, nothing left to generate '
                         f'(early_stop={early_stop}, right text {R})')
    seq = generate(parts.model, prefix, end, captions_num, seed=seed, bs=bs, use_cache=use_cache,
                   progress=parts.progress, desc='captions', stop_at_eos=True, **sampling.kwargs(),
                   **parts.text_sampling(limit_eos))
    return parts.decode_counts(seq[:, L + N2:])


def captioning(parts: Parts, pil_img, captions_num: int, generations_num: int, sampling: SamplingConfig,
               bs: int = 16, *, seed: Optional[int] = None, r_template: str = 'на картинке', early_stop: int = 64,
               text_weight: float = 0.05, q: float = 0.5, l_token: str = '<LT_T2I>',
               r_token: str = '<RT_I2T>') -> List[Dict[str, Any]]:
    """The ``captions_num`` best of ``generations_num`` captions, reranked by the image (``l_token``).

    Rows ``{'text', 'score', 'count', 'ppl_text', 'ppl_image'}``, best first: ``score`` is the
    reranking score divided by the count (the reference convention: the image perplexity, no count).
    """
    check_count('captions_num', captions_num)
    check_count('generations_num', generations_num)
    require_vae(parts.vae, 'image_captioning')
    counts = caption_counts(parts, pil_img, generations_num, sampling, bs, seed=seed, r_template=r_template,
                            early_stop=None if parts.reference else early_stop, r_token=r_token,
                            r_name='template' if parts.reference else 'r_template')
    if not counts:
        return []
    found = list(counts)
    ppl_text, ppl_image = rerank_by_image(parts, found, pil_img, bs, token=l_token,
                                          name='texts[{}]' if parts.reference else 'text')
    if parts.reference:
        return [{'text': found[i], 'score': float(ppl_image[i]), 'ppl_text': float(ppl_text[i]),
                 'ppl_image': float(ppl_image[i])} for i in ppl_image.argsort()[:captions_num].tolist()]
    count = np.array(list(counts.values()), dtype=np.int64)
    scores = rerank_scores(ppl_text, ppl_image, text_weight, q).cpu().numpy() / count
    ppl_text, ppl_image = ppl_text.cpu().numpy(), ppl_image.cpu().numpy()
    return [{'text': found[i], 'score': scores[i], 'count': count[i], 'ppl_text': ppl_text[i],
             'ppl_image': ppl_image[i]} for i in scores.argsort()[:captions_num]]


#: right-text template of :func:`vqa`; the answer is generated after it.


def vqa(parts: Parts, pil_img, question: str, answers_num: int, generations_num: int, sampling: SamplingConfig,
        bs: int = 16, *, template: str = VQA_TEMPLATE, seed: Optional[int] = None, early_stop: Optional[int] = None,
        l_token: str = '<LT_I2T>', r_token: str = '<RT_I2T>') -> List[Dict[str, Any]]:
    """Up to ``answers_num`` ``{'answer', 'count'}``: the model continues ``template`` after the image."""
    if not isinstance(question, str) or not question.strip():
        raise InputError(f'question must be a non-empty string, got {question!r}')
    check_count('answers_num', answers_num)
    check_count('generations_num', generations_num)
    template = check_template('template', template, slot='question', what='question')
    require_vae(parts.vae, 'vqa')
    prompt = template.format(question=question.strip()).lower().strip()
    counts = caption_counts(parts, pil_img, generations_num, sampling, bs, seed=seed, r_template=prompt,
                            early_stop=early_stop, l_token=l_token, r_token=r_token)
    # The decoded text repeats the prompt; the answer is what follows it.
    head = parts.decode(template_prefix(parts.text(prompt, parts.layout.R, r_token))).strip()
    answers: Counter = Counter()
    for text, count in counts.items():
        answer = text[len(head):].strip() if text.startswith(head) else text
        if answer:  # the reference pipelines return unique captions: each counts once
            answers[answer] += 1 if parts.reference else int(count)
    ranked = sorted(answers.items(), key=lambda kv: -kv[1])  # stable: ties keep generation order
    return [{'answer': a, 'count': c} for a, c in ranked[:answers_num]]


def texts(parts: Parts, template: str, texts_num: int, sampling: SamplingConfig, bs: int = 64, *,
          seed: Optional[int] = None, use_cache: bool = True, token: str = '<LT_T2T>',
          early_stop: Optional[int] = None, allowed_token_ids: Optional[Sequence[int]] = None,
          progress: bool = False) -> List[Dict[str, Any]]:
    """Texts continuing ``template`` (left text) as ``{'text', 'ppl', 'count'}`` (the reference convention:
    unique texts, no count), least perplexing first."""
    check_count('texts_num', texts_num)
    check_count('bs', bs)
    if early_stop is not None:
        check_count('early_stop', early_stop)
    L = parts.layout.L
    end = min(early_stop or L, L)
    prefix = template_prefix(parts.text(check_text('template', template, True), L, token, 'template'))
    if len(prefix) >= end and parts.reference:
        raise InputError(f'the template fills the whole left text ({len(prefix)} >= {L} tokens); '
                         'nothing is left to generate')
    if len(prefix) >= end:
        raise InputError(f'the template takes {len(prefix)} tokens, nothing left to generate before '
                         f'position {end} (early_stop={early_stop}, left text {L})')
    seq = generate(parts.model, prefix, end, texts_num, seed=seed, bs=bs, use_cache=use_cache,
                   allowed_token_ids=allowed_token_ids, stop_at_eos=True, progress=parts.progress, desc='texts',
                   **sampling.kwargs(), **parts.text_sampling())
    counts = parts.decode_counts(seq)
    if not counts:
        return []
    found = list(counts)
    ppl = text_perplexity(parts, [t.lower().strip() for t in found], bs, token=token, progress=progress,
                          name='texts[{}]' if parts.reference else 'text')
    rows = [{'text': found[i], 'ppl': round(ppl[i].item(), 2), 'count': counts[found[i]]}
            for i in ppl.argsort().tolist()]
    return [{'text': r['text'], 'ppl': r['ppl']} for r in rows] if parts.reference else rows


# ----------------------------------------------------------------------------- embeddings
@torch.no_grad()
def image_embedding(parts: Parts, images: Sequence[Any], layer: int = -1, pooling: str = 'mean') -> torch.Tensor:
    """``[n, hidden]`` pooled hidden states of the image positions of each picture (after an empty left text).

    ``layer`` indexes the hidden states the model returns (``-1``: the last layer); ``pooling``
    is ``'mean'`` or ``'max'`` over the ``N*N`` image positions.
    """
    if pooling not in ('mean', 'max'):
        raise ConfigError(f"pooling must be 'mean' or 'max', got {pooling!r}")
    if isinstance(images, (str, bytes)) or not isinstance(images, Sequence) or len(images) == 0:
        raise InputError(f'images must be a non-empty list of pictures, got {images!r}')
    return embed_codes(parts, torch.stack([parts.image(img) for img in images]), layer, pooling)


@torch.no_grad()
def embed_codes(parts: Parts, codes: torch.Tensor, layer: int = -1, pooling: str = 'mean') -> torch.Tensor:
    """:func:`image_embedding` of pictures already encoded to their codes ``[n, N*N]``."""
    if pooling not in ('mean', 'max'):
        raise ConfigError(f"pooling must be 'mean' or 'max', got {pooling!r}")
    layout = parts.layout
    left = parts.context([''] * len(codes), layout.L, '<LT_I2T>')
    out = parts.model(torch.cat((left, codes), dim=1), return_hidden_states=True)
    hidden = out[-1] if isinstance(out, tuple) else out.hidden_states
    if not -len(hidden) <= layer < len(hidden):
        raise ConfigError(f'layer must be in [{-len(hidden)}, {len(hidden)}), got {layer}')
    states = hidden[layer][:, layout.L:layout.L + layout.N2].float()
    return states.mean(dim=1) if pooling == 'mean' else states.amax(dim=1)
