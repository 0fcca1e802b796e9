"""Streaming iterators of the batched tasks (:mod:`rudolph.tasks.batched`): ``(key, input)`` in, ``(key, result)`` out.

Each takes any iterable of ``(key, input)`` pairs (a generator is read ``bs`` items at a time,
so inputs can stream from disk) and yields ``(key, result)`` in input order as each chunk is
done. Results are those of the batch functions, so they depend only on ``(seed, key, input,
settings)``, not on ``bs``. ``rows`` (generation) is the number of model rows per batch
(default: ``bs`` inputs times their samples).
"""
from itertools import islice
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from rudolph.checks import check_count
from rudolph.errors import InputError
from rudolph.tasks.core import Parts

__all__ = ['caption_images', 'vqa_images', 'classify_images', 'embed_images', 'embed_texts', 'text2image_prompts']

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
    """``(key, {'captions', 'scores'})`` per picture (:func:`rudolph.tasks.batched.caption_batch`'s keywords)."""
    from rudolph.tasks.batched import caption_batch

    samples = kwargs.get('generations_num') or kwargs.get('captions_num', 1)
    for keys, images in _chunks(items, bs):
        yield from zip(keys, caption_batch(parts, images, keys, seed=seed, bs=rows or bs * samples, **kwargs))


def vqa_images(parts: Parts, items: Items, question: Optional[str] = None, *, bs: int = 16, seed: int = 0,
               rows: Optional[int] = None, **kwargs) -> Results:
    """``(key, {'answers', 'scores', 'counts'})`` per picture: items ``(key, image)`` with one ``question`` for all,
    or ``(key, (image, question))`` (a column of questions)."""
    from rudolph.tasks.batched import vqa_batch

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
    """``(key, {'label', 'probs', 'ties', 'ppl'})`` per picture (:func:`rudolph.tasks.batched.classify_batch`)."""
    from rudolph.tasks.batched import classify_batch

    for keys, images in _chunks(items, bs):
        yield from zip(keys, classify_batch(parts, images, classes, bs=bs, **kwargs))


def embed_images(parts: Parts, items: Items, *, bs: int = 16, layer: int = -1, pooling: str = 'mean') -> Results:
    """``(key, {'embedding': FloatTensor [hidden]})`` per picture (:func:`rudolph.tasks.batched.embed_image_batch`)."""
    from rudolph.tasks.batched import embed_image_batch

    for keys, images in _chunks(items, bs):
        vectors = embed_image_batch(parts, images, layer=layer, pooling=pooling)
        yield from ((key, {'embedding': v}) for key, v in zip(keys, vectors))


def embed_texts(parts: Parts, items: Items, *, bs: int = 64, layer: int = -1, pooling: str = 'mean',
                **kwargs) -> Results:
    """``(key, {'embedding': FloatTensor [hidden]})`` per text (:func:`rudolph.tasks.batched.embed_text_batch`)."""
    from rudolph.tasks.batched import embed_text_batch

    for keys, texts in _chunks(items, bs):
        vectors = embed_text_batch(parts, texts, layer=layer, pooling=pooling, **kwargs)
        yield from ((key, {'embedding': v}) for key, v in zip(keys, vectors))


def text2image_prompts(parts: Parts, items: Items, *, bs: int = 16, seed: int = 0, rows: Optional[int] = None,
                       **kwargs) -> Results:
    """``(key, {'codebooks', 'scores'})`` per prompt (:func:`rudolph.tasks.batched.text2image_batch`)."""
    from rudolph.tasks.batched import text2image_batch

    samples = kwargs.get('codebooks_num') or kwargs.get('images_num', 1)
    for keys, prompts in _chunks(items, bs):
        yield from zip(keys, text2image_batch(parts, prompts, keys, seed=seed, bs=rows or bs * samples, **kwargs))
