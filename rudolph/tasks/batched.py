"""Batched tasks: many *different* inputs per model call, results that depend only on the input.

Every function takes a :class:`~rudolph.tasks.core.Parts` and a list of inputs (PIL images, or
preprocessed ``FloatTensor[3, px, px]`` images in ``[0, 1]``; prompts; texts) and returns one
plain, JSON-able dict per input (embeddings: a float32 tensor). Result ``i`` depends only on
``(seed, keys[i], inputs[i], settings)``: input ``i`` draws its randomness from its own
generator seeded with :func:`row_seed` ``(seed, keys[i])`` (each of its samples from a generator
seeded by a draw of that one), and no length, padding or shared prefix depends on the other
inputs of the batch. What is left is the last bits of batched matrix products, which a sample
almost never feels; scores are rounded to :data:`SIGNIFICANT` significant digits so that
outputs are byte-identical whatever the batch size (``tests/tasks/test_batched.py`` checks bs=1 and
bs=7).

Two forms of each task: a list form (``caption_batch(parts, images, keys)``) and a streaming
iterator (``caption_images(parts, items)``) that reads any iterable of ``(key, input)`` pairs
``bs`` items at a time (inputs can stream from disk) and yields ``(key, result)`` in input order
as each chunk is done. ``rows`` (generation) is the number of model rows per batch (default:
``bs`` inputs times their samples).
"""
import hashlib
from itertools import islice
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import torch

from rudolph.checks import check_classes, check_count, check_template, check_text
from rudolph.errors import ConfigError, InputError
from rudolph.generation.engine import ScorePart, ce_to_ppl
from rudolph.generation.rows import generate_rows, score_suffixes
from rudolph.generation.sampling import make_generator
from rudolph.model.configs import MODELS
from rudolph.tasks.core import (
    DEFAULT_IMAGE_SAMPLING,
    VQA_TEMPLATE,
    Parts,
    SamplingConfig,
    class_probabilities,
    classify,
    embed_codes,
    rank_images,
    rerank_codes_by_image,
    rerank_scores,
    text_sampling_for,
)
from rudolph.tasks.sequences import PAD_ID, check_vae, model_device, require_vae, template_prefix, warn_unknown_classes

__all__ = ['row_seed', 'recommended_sampling', 'encode_images', 'caption_batch', 'vqa_batch', 'classify_batch',
           'embed_image_batch', 'embed_text_batch', 'POOLINGS', 'text2image_batch', 'SIGNIFICANT',
           'caption_images', 'vqa_images', 'classify_images', 'embed_images', 'embed_texts', 'text2image_prompts']

#: significant digits of every score and probability in the result dicts
SIGNIFICANT = 6
#: text-to-image sampling of a model whose registry entry records none (as the CLI)
SamplingLike = Union[None, SamplingConfig, Mapping[str, Any]]


def row_seed(seed: int, key: str) -> int:
    """The 63-bit seed of input ``key`` under ``seed``: ``blake2b(f'{seed}\\0{key}')``, the same on every machine."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f'seed must be an int, got {seed!r}')
    if not isinstance(key, str):
        raise InputError(f'key must be a str (e.g. the input path), got {type(key).__name__}: {key!r}')
    digest = hashlib.blake2b(f'{seed}\0{key}'.encode('utf-8'), digest_size=8).digest()
    return int.from_bytes(digest, 'big') >> 1


def _round(x: float) -> float:
    return float(f'{float(x):.{SIGNIFICANT}g}')


def _row_generators(seed: int, keys: Sequence[str], num: int, device) -> List[torch.Generator]:
    """``num`` generators per key, in key order: sample ``j`` of input ``i`` draws from the ``j``-th seed that
    input ``i``'s own generator gives, so a sample never depends on how the rows are batched."""
    out = []
    for key in keys:
        seeds = torch.randint(0, 2 ** 62, (num,), generator=make_generator(row_seed(seed, key)))
        out.extend(make_generator(int(s), device) for s in seeds)
    return out


def _check_keys(keys: Sequence[str], n: int) -> List[str]:
    keys = list(keys)
    if len(keys) != n:
        raise InputError(f'{n} inputs need {n} keys (one per input), got {len(keys)}')
    for key in keys:
        row_seed(0, key)
    return keys


def _registry_sampling(model, task: str) -> Dict[str, Any]:
    """The registry's recommended sampling of ``task`` for a model of this architecture (``{}``: none or ambiguous)."""

    own = getattr(model, 'sampling', None)
    if isinstance(own, Mapping) and task in own:
        return dict(own[task])
    found = [dict(spec.sampling[task]) for spec in MODELS.values()
             if spec.config == model.config and task in (spec.sampling or {})]
    return found[0] if found and all(f == found[0] for f in found) else {}


def recommended_sampling(parts: Parts, task: str) -> SamplingConfig:
    """The model's recommended sampling of ``task`` (``'caption'``, ``'vqa'``, ``'text2image'``), as the CLI's."""
    if task == 'text2image':
        fallback = DEFAULT_IMAGE_SAMPLING
    else:
        fallback = text_sampling_for(parts.reference, 'captions')
    return SamplingConfig(**{**fallback.kwargs(), **_registry_sampling(parts.model, task)})


def _sampling(parts: Parts, task: str, sampling: SamplingLike) -> SamplingConfig:
    if isinstance(sampling, SamplingConfig):
        return sampling
    if sampling is None:
        return recommended_sampling(parts, task)
    if isinstance(sampling, Mapping):
        return SamplingConfig(**{**recommended_sampling(parts, task).kwargs(), **sampling})
    raise ConfigError(f'sampling must be a SamplingConfig, a dict of top_k/top_p/temperature or None, got {sampling!r}')


def _images_list(images) -> list:
    if isinstance(images, (str, bytes, torch.Tensor)) or not isinstance(images, Sequence) or len(images) == 0:
        raise InputError(f'images must be a non-empty list of PIL images or [3, px, px] tensors, got {images!r}')
    return list(images)


def _sampled_inputs(images, keys: Sequence[str], count_name: str, count: int, generations_num: Optional[int],
                    bs: int) -> Tuple[list, List[str], int]:
    """Checked ``(images, keys, generations_num)`` of a task that keeps ``count`` of ``generations_num`` samples
    (default ``count``) per picture."""
    check_count(count_name, count)
    generations_num = count if generations_num is None else generations_num
    check_count('generations_num', generations_num)
    check_count('bs', bs)
    images = _images_list(images)
    return images, _check_keys(keys, len(images)), generations_num


@torch.no_grad()
def encode_images(parts: Parts, images: Sequence[Any]) -> torch.Tensor:
    """VQGAN codes ``[n, N*N]`` of PIL images or preprocessed ``FloatTensor[3, px, px]`` (``px = 8 N``, in [0, 1]).

    Each picture is encoded on its own, so its codes never depend on its batch neighbours.
    """
    require_vae(parts.vae, 'encoding pictures')
    layout = parts.layout
    check_vae(parts.vae, layout)
    codes = []
    for i, img in enumerate(_images_list(images)):
        if not isinstance(img, torch.Tensor):
            codes.append(parts.image(img))
            continue
        px = layout.N * 8
        if img.dim() != 3 or tuple(img.shape) != (3, px, px) or not img.is_floating_point():
            raise InputError(f'images[{i}]: a preprocessed picture must be a float [3, {px}, {px}] tensor in [0, 1] '
                             f'(rudolph.vae.preprocess_image(img, {px})), got {img.dtype} {tuple(img.shape)}')
        ids = parts.vae.get_codebook_indices(img[None].to(model_device(parts.vae)))
        codes.append(ids[0].to(device=parts.device, dtype=torch.long))
    return torch.stack(codes)


# ----------------------------------------------------------------------------- captions and answers
def _right_texts(parts: Parts, codes: torch.Tensor, prompts: Sequence[str], keys: Sequence[str], num: int, *,
                 seed: int, sampling: SamplingConfig, bs: int, early_stop: Optional[int], l_token: str,
                 r_token: str, desc: str) -> List[torch.Tensor]:
    """Per picture: ``[num, R']`` right texts sampled after ``[left | codes[i] | prompts[i]]`` (after eos: pads)."""
    layout = parts.layout
    L, N2, R = layout.L, layout.N2, layout.R
    end = L + N2 + min(early_stop or R, R)
    left = parts.context([''], L, l_token)[0]
    prefixes = []
    for i, prompt in enumerate(prompts):
        r_prefix = template_prefix(parts.text(prompt, R, r_token, 'template'))
        if L + N2 + len(r_prefix) >= end:
            raise InputError(f'the template of input {i} takes {len(r_prefix)} tokens, nothing left to generate '
                             f'(early_stop={early_stop}, right text {R})')
        prefixes.append(torch.cat((left, codes[i], r_prefix.to(codes.device))))
    rows = [p for p in prefixes for _ in range(num)]
    seq = generate_rows(parts.model, rows, end, generators=_row_generators(seed, keys, num, parts.device), shared=L,
                        bs=bs, stop_at_eos=True, progress=parts.progress, desc=desc, **sampling.kwargs(),
                        **parts.text_sampling(True))
    return list(seq[:, L + N2:].split(num))


def _ranked_captions(parts: Parts, counts, codes: torch.Tensor, captions_num: int, bs: int, l_token: str,
                     text_weight: float, q: float) -> Dict[str, list]:
    """``tasks.captioning``'s ranking of one picture's captions: ``{'captions', 'scores'}`` best first."""
    found = list(counts)
    if not found:
        return {'captions': [], 'scores': []}
    if len(found) == 1 and not parts.reference:  # the normalised score of a lone candidate is 0: skip the pass
        return {'captions': found, 'scores': [0.0]}
    ppl_text, ppl_image = rerank_codes_by_image(parts, found, codes, bs, token=l_token,
                                                name='texts[{}]' if parts.reference else 'text')
    if parts.reference:
        scores = ppl_image.cpu()
    else:
        count = torch.tensor([counts[t] for t in found], dtype=torch.float64)
        scores = torch.as_tensor(rerank_scores(ppl_text, ppl_image, text_weight, q).cpu().numpy()) / count
    best = sorted(range(len(found)), key=lambda i: (float(scores[i]), i))[:captions_num]
    return {'captions': [found[i] for i in best], 'scores': [_round(scores[i]) for i in best]}


def caption_batch(parts: Parts, images: Sequence[Any], keys: Sequence[str], *, seed: int = 0, captions_num: int = 1,
                  template: str = '', sampling: SamplingLike = None, generations_num: Optional[int] = None,
                  bs: int = 16, early_stop: Optional[int] = None, text_weight: float = 0.05, q: float = 0.5,
                  l_token: str = '<LT_T2I>') -> List[Dict[str, list]]:
    """Per picture ``{'captions': [...], 'scores': [...]}``: the ``captions_num`` best of ``generations_num``
    (default ``captions_num``) sampled captions, best first, ranked as :func:`rudolph.tasks.core.captioning`
    ranks them (lower score is better; a lone distinct caption scores 0). ``bs``: model rows per batch."""
    images, keys, generations_num = _sampled_inputs(images, keys, 'captions_num', captions_num, generations_num, bs)
    template = check_text('template', template, True)
    codes = encode_images(parts, images)
    texts = _right_texts(parts, codes, [template] * len(images), keys, generations_num, seed=seed,
                         sampling=_sampling(parts, 'caption', sampling), bs=bs, early_stop=early_stop,
                         l_token='<LT_I2T>', r_token='<RT_I2T>', desc='captions')
    return [_ranked_captions(parts, parts.decode_counts(rows), codes[i], captions_num, bs, l_token, text_weight, q)
            for i, rows in enumerate(texts)]


def _questions(questions, n: int) -> List[str]:
    if isinstance(questions, str):
        questions = [questions] * n
    questions = list(questions)
    if len(questions) != n:
        raise InputError(f'{n} pictures need one question or {n} questions, got {len(questions)}')
    for i, question in enumerate(questions):
        if not isinstance(question, str) or not question.strip():
            raise InputError(f'questions[{i}] must be a non-empty string, got {question!r}')
    return [q.strip() for q in questions]


def vqa_batch(parts: Parts, images: Sequence[Any], questions: Union[str, Sequence[str]], keys: Sequence[str], *,
              seed: int = 0, answers_num: int = 1, sampling: SamplingLike = None,
              generations_num: Optional[int] = None, template: str = VQA_TEMPLATE, bs: int = 16,
              early_stop: Optional[int] = None) -> List[Dict[str, list]]:
    """Per picture ``{'answers', 'scores', 'counts'}``: its question's distinct answers, most frequent first
    (:func:`rudolph.tasks.core.vqa`'s rule); ``scores`` are the answers' shares of the ``generations_num``
    (default ``answers_num``) samples. ``questions``: one for all pictures or one per picture."""
    images, keys, generations_num = _sampled_inputs(images, keys, 'answers_num', answers_num, generations_num, bs)
    template = check_template('template', template, slot='question', what='question')
    prompts = [template.format(question=q).lower().strip() for q in _questions(questions, len(images))]
    codes = encode_images(parts, images)
    texts = _right_texts(parts, codes, prompts, keys, generations_num, seed=seed,
                         sampling=_sampling(parts, 'vqa', sampling), bs=bs, early_stop=early_stop,
                         l_token='<LT_I2T>', r_token='<RT_I2T>', desc='answers')
    return [_answers(parts, prompt, parts.decode_counts(rows), answers_num, generations_num)
            for prompt, rows in zip(prompts, texts)]


def _answers(parts: Parts, prompt: str, counts, answers_num: int, generations_num: int) -> Dict[str, list]:
    """The answers of one picture from its decoded right texts (``tasks.vqa``'s rule)."""
    head = parts.decode(template_prefix(parts.text(prompt, parts.layout.R, '<RT_I2T>'))).strip()
    answers: Dict[str, int] = {}
    for text, count in counts.items():
        answer = text[len(head):].strip() if text.startswith(head) else text
        if answer:  # the reference pipelines count each distinct caption once
            answers[answer] = answers.get(answer, 0) + (1 if parts.reference else int(count))
    ranked = sorted(answers.items(), key=lambda kv: -kv[1])[:answers_num]  # stable: ties keep generation order
    return {'answers': [a for a, _ in ranked], 'scores': [_round(c / generations_num) for _, c in ranked],
            'counts': [c for _, c in ranked]}


# ----------------------------------------------------------------------------- classes and embeddings
def classify_batch(parts: Parts, images: Sequence[Any], classes: Sequence[str], *, template: Optional[str] = None,
                   bs: int = 16, l_template: str = '', l_token: str = '<LT_I2T>',
                   r_token: str = '<RT_I2T>') -> List[Dict[str, Any]]:
    """Per picture ``{'label', 'probs', 'ties', 'tie', 'ppl'}``: zero-shot classification as
    :func:`rudolph.tasks.core.zero_shot`.

    ``label`` is the class of lowest perplexity (``ties``: every class scoring as well), ``probs``
    each class's softmax of minus its cross-entropy (the CLI's probabilities, higher is better),
    ``ppl`` its perplexity. Each picture is computed once for all classes, ``bs`` pictures at a time.
    """
    names = check_classes(classes)
    template = check_template('template', template or None)
    l_template = check_text('l_template', check_template('l_template', l_template or '', required=False), True)
    check_count('bs', bs)
    images = _images_list(images)
    require_vae(parts.vae, 'zero-shot classification')
    layout = parts.layout
    unknown = warn_unknown_classes(parts.tokenizer, names)  # said once for them, not again per text
    if len({l_template.format(c) for c in names}) > 1:
        raise InputError(f'classify_batch needs a left template without the class slot, got {l_template!r} '
                         '(use rudolph.tasks.core.zero_shot for per-class left texts)')
    right = torch.stack([parts.text(check_text('text', template.format(c)), layout.R, r_token,
                                    f'template.format(classes[{i}])', warn_unknown=c not in unknown)
                         for i, c in enumerate(names)])
    codes = encode_images(parts, images)
    left = parts.context([l_template.format(names[0])], layout.L, l_token).expand(len(images), -1)
    part = ScorePart(layout.S - layout.R, layout.S - 1, parts.text_vocab, ignore_index=PAD_ID)
    ce = score_suffixes(parts.model, torch.cat((left.to(codes.device), codes), dim=1), right.to(codes.device), part,
                        shared=layout.L, bs=bs, progress=parts.progress, desc='classes')
    results = []
    for image_ce in ce:
        ppl = ce_to_ppl(image_ce).cpu()
        probs = class_probabilities(ppl).tolist()
        found = classify(ppl, names)
        results.append({'label': found['class'], 'probs': {c: _round(p) for c, p in zip(names, probs)},
                        'ties': found['ties'], 'tie': found['tie'],
                        'ppl': {c: _round(p) for c, p in zip(names, ppl.tolist())}})
    return results


#: poolings of the embeddings: over the positions, ``'meanmax'`` the mean and the max side by side (``2 x hidden``)
POOLINGS = ('mean', 'max', 'meanmax')


def _check_pooling(pooling: str) -> None:
    if pooling not in POOLINGS:
        raise ConfigError(f"pooling must be one of {', '.join(repr(p) for p in POOLINGS)}, got {pooling!r}")


def _check_layer(parts: Parts, layer: int) -> None:
    n = parts.model.num_layers
    if isinstance(layer, bool) or not isinstance(layer, int) or not -n <= layer < n:
        raise ConfigError(f'layer must be an int in [{-n}, {n}) (the model has {n} layers), got {layer!r}')


def _pool(states: torch.Tensor, pooling: str) -> torch.Tensor:
    """``[positions, hidden]`` -> ``[hidden]`` (``[2 hidden]`` for ``'meanmax'``)."""
    if pooling == 'mean':
        return states.mean(0)
    if pooling == 'max':
        return states.amax(0)
    return torch.cat((states.mean(0), states.amax(0)))


@torch.no_grad()
def embed_image_batch(parts: Parts, images: Sequence[Any], *, layer: int = -1, pooling: str = 'mean') -> torch.Tensor:
    """``[n, hidden]`` float32 (CPU): :func:`rudolph.tasks.core.image_embedding` of each picture.

    ``pooling='meanmax'``: ``[n, 2 hidden]``, the mean and the max over the image positions of one pass.
    """
    _check_pooling(pooling)
    _check_layer(parts, layer)
    codes = encode_images(parts, images)
    # One picture per pass: its numbers then never depend on the other pictures (see the module).
    if pooling != 'meanmax':
        return torch.cat([embed_codes(parts, row[None], layer, pooling).cpu() for row in codes])
    layout = parts.layout
    left = parts.context([''], layout.L, '<LT_I2T>')
    out = []
    for row in codes:
        _, hidden = parts.model.hidden(torch.cat((left, row[None].to(left.device)), dim=1), 0, None,
                                       return_hidden_states=True)
        out.append(_pool(hidden[layer][0, layout.L:layout.L + layout.N2].float(), pooling).cpu())
    return torch.stack(out)


@torch.no_grad()
def embed_text_batch(parts: Parts, texts: Sequence[str], *, layer: int = -1, pooling: str = 'mean',
                     token: str = '<LT_T2T>') -> torch.Tensor:
    """``[n, hidden]`` float32 (CPU): hidden states of each text alone in the left text, pooled over its tokens.

    The tokens are the text's own (bos, task token, BPE ids, eos; not the pads after them). Each
    text runs alone, so its embedding never depends on the other texts.
    """
    _check_pooling(pooling)
    _check_layer(parts, layer)
    if isinstance(texts, str) or not isinstance(texts, Sequence) or len(texts) == 0:
        raise InputError(f'texts must be a non-empty list of strings, got {texts!r}')
    L = parts.layout.L
    ids = torch.stack([parts.text(check_text(f'texts[{i}]', t), L, token, f'texts[{i}]') for i, t in enumerate(texts)])
    out = []
    for row in ids:  # one text per pass, as the pictures of embed_image_batch
        _, hidden = parts.model.hidden(row[None], 0, None, return_hidden_states=True)
        out.append(_pool(hidden[layer][0, :int((row != PAD_ID).sum())].float(), pooling).cpu())
    return torch.stack(out)


# ----------------------------------------------------------------------------- images
def text2image_batch(parts: Parts, prompts: Sequence[str], keys: Sequence[str], *, seed: int = 0, images_num: int = 1,
                     sampling: SamplingLike = None, rerank: bool = True, codebooks_num: Optional[int] = None,
                     bs: int = 16, reencode: bool = False, token: str = '<LT_T2I>') -> List[Dict[str, Any]]:
    """Per prompt ``{'codebooks': LongTensor [images_num, N*N], 'scores': [...]}``, best first.

    ``codebooks_num`` (default ``images_num``) codebooks are sampled per prompt; with ``rerank``
    the ``images_num`` best by :func:`rudolph.tasks.core.rank_images` are kept (``scores``: its score,
    lower is better; the reference convention: ``ppl_text``; a lone task-token candidate scores 0),
    without it the first ``images_num`` in sampling order (``scores`` empty). Nothing is decoded.
    """
    check_count('images_num', images_num)
    codebooks_num = images_num if codebooks_num is None else codebooks_num
    check_count('codebooks_num', codebooks_num)
    if codebooks_num < images_num:
        raise ConfigError(f'codebooks_num ({codebooks_num}) must be >= images_num ({images_num})')
    check_count('bs', bs)
    if isinstance(prompts, str) or not isinstance(prompts, Sequence) or len(prompts) == 0:
        raise InputError(f'prompts must be a non-empty list of strings, got {prompts!r}')
    if reencode and parts.reference:
        raise ConfigError('reencode=True needs a model with task tokens (ruDolphApi); this model has none')
    keys = _check_keys(keys, len(prompts))
    prompts = [check_text(f'prompts[{i}]', p) for i, p in enumerate(prompts)]
    layout = parts.layout
    left = [parts.text(p, layout.L, token, f'prompts[{i}]') for i, p in enumerate(prompts)]
    seq = generate_rows(parts.model, [p for p in left for _ in range(codebooks_num)], layout.L + layout.N2,
                        generators=_row_generators(seed, keys, codebooks_num, parts.device), vocab=layout.image_slice,
                        bs=bs, progress=parts.progress, desc='images',
                        **_sampling(parts, 'text2image', sampling).kwargs())
    return [_ranked_images(parts, prompt, codes, images_num, rerank, bs, reencode)
            for prompt, codes in zip(prompts, seq[:, layout.L:].split(codebooks_num))]


def _ranked_images(parts: Parts, prompt: str, codes: torch.Tensor, keep: int, rerank: bool, bs: int,
                   reencode: bool) -> Dict[str, Any]:
    if not rerank:
        return {'codebooks': codes[:keep].cpu(), 'scores': []}
    if len(codes) == 1 and not parts.reference:  # the normalised score of a lone candidate is 0: skip the pass
        return {'codebooks': codes.cpu(), 'scores': [0.0]}
    best, rows = rank_images(parts, prompt, codes, keep, bs, reencode_codes=reencode)
    key = 'ppl_text' if parts.reference else 'score'
    return {'codebooks': codes[best].cpu(), 'scores': [_round(row[key]) for row in rows]}


# ----------------------------------------------------------------------------- streams of (key, input)
Items = Iterable[Tuple[str, Any]]
Results = Iterator[Tuple[str, Dict[str, Any]]]


def _chunks(items: Items, bs: int) -> Iterator[Tuple[List[str], List[Any]]]:
    """``(keys, inputs)`` of ``bs`` items at a time."""
    check_count('bs', bs)
    iterator = iter(items)
    while True:
        chunk = list(islice(iterator, bs))
        if not chunk:
            return
        for i, item in enumerate(chunk):
            if not isinstance(item, tuple) or len(item) != 2:
                raise InputError(f'items must be (key, input) pairs, got {item!r}')
        yield [k for k, _ in chunk], [x for _, x in chunk]


def caption_images(parts: Parts, items: Items, *, bs: int = 16, seed: int = 0, rows: Optional[int] = None,
                   **kwargs) -> Results:
    """``(key, {'captions', 'scores'})`` per picture (`caption_batch`'s keywords)."""
    samples = kwargs.get('generations_num') or kwargs.get('captions_num', 1)
    for keys, images in _chunks(items, bs):
        yield from zip(keys, caption_batch(parts, images, keys, seed=seed, bs=rows or bs * samples, **kwargs))


def vqa_images(parts: Parts, items: Items, question: Optional[str] = None, *, bs: int = 16, seed: int = 0,
               rows: Optional[int] = None, **kwargs) -> Results:
    """``(key, {'answers', 'scores', 'counts'})`` per picture: items ``(key, image)`` with one ``question`` for all,
    or ``(key, (image, question))`` (a column of questions)."""
    samples = kwargs.get('generations_num') or kwargs.get('answers_num', 1)
    for keys, inputs in _chunks(items, bs):
        if question is None:
            if not all(isinstance(x, tuple) and len(x) == 2 for x in inputs):
                raise InputError('without question=, every item must be (key, (image, question))')
            images, questions = [x[0] for x in inputs], [x[1] for x in inputs]
        else:
            images, questions = inputs, question
        yield from zip(keys, vqa_batch(parts, images, questions, keys, seed=seed, bs=rows or bs * samples, **kwargs))


def classify_images(parts: Parts, items: Items, classes: Sequence[str], *, bs: int = 16, **kwargs) -> Results:
    """``(key, {'label', 'probs', 'ties', 'ppl'})`` per picture (`classify_batch`)."""
    for keys, images in _chunks(items, bs):
        yield from zip(keys, classify_batch(parts, images, classes, bs=bs, **kwargs))


def embed_images(parts: Parts, items: Items, *, bs: int = 16, layer: int = -1, pooling: str = 'mean') -> Results:
    """``(key, {'embedding': FloatTensor [hidden]})`` per picture (`embed_image_batch`)."""
    for keys, images in _chunks(items, bs):
        vectors = embed_image_batch(parts, images, layer=layer, pooling=pooling)
        yield from ((key, {'embedding': v}) for key, v in zip(keys, vectors))


def embed_texts(parts: Parts, items: Items, *, bs: int = 64, layer: int = -1, pooling: str = 'mean',
                **kwargs) -> Results:
    """``(key, {'embedding': FloatTensor [hidden]})`` per text (`embed_text_batch`)."""
    for keys, texts in _chunks(items, bs):
        vectors = embed_text_batch(parts, texts, layer=layer, pooling=pooling, **kwargs)
        yield from ((key, {'embedding': v}) for key, v in zip(keys, vectors))


def text2image_prompts(parts: Parts, items: Items, *, bs: int = 16, seed: int = 0, rows: Optional[int] = None,
                       **kwargs) -> Results:
    """``(key, {'codebooks', 'scores'})`` per prompt (`text2image_batch`)."""
    samples = kwargs.get('codebooks_num') or kwargs.get('images_num', 1)
    for keys, prompts in _chunks(items, bs):
        yield from zip(keys, text2image_batch(parts, prompts, keys, seed=seed, bs=rows or bs * samples, **kwargs))
