"""The one generation and scoring engine behind ``pipelines.py`` and ``api.py``.

Every RuDOLPH task is "fill positions ``P..length`` after a prefix" or "cross-entropy of
parts of a sequence", so two functions do all the work:

* :func:`generate`: batches of ``bs`` samples, in three parts. Shared-prefix prefill: the
  prefix shared by all samples (left text for images, template for texts, image + template
  for captions) is run through the model ONCE with batch 1 and its keys/values are
  broadcast into each batch's cache (:meth:`KVCache.expand_from`). Per-batch decode: one
  token per step (``model.prefill`` of the new positions), computing logits only for the
  last position and only over the vocabulary part being sampled. Sampling: a
  :class:`~rudolph.generation.sampling.Sampler` (filtering, guidance mixing, allowed ids, eos
  mapping). Fixed positions (image prompts) take their token instead of a sample and are
  fed to the model together with the next sampled position. ``use_cache=False`` runs the same loop recomputing the whole
  sequence each step (same tokens for the same seed, up to float rounding).
  Several prefixes with weights mix their next-token distributions (classifier-free
  guidance style, ``api.generate_codebooks_cfg``).
* :func:`cross_entropy`: per-position CE of given parts; the longest prefix common to all
  rows (the image in zero-shot classification, the template in text scoring) is computed
  once and reused, and positions after a batch's last non-ignored label (right-text pads)
  are not computed at all, so zero-shot classification costs the image once plus about the
  class tokens per class.
* :func:`~rudolph.generation.rows.generate_rows` and :func:`~rudolph.generation.rows.score_suffixes`
  (in :mod:`rudolph.generation.rows`): the same for batches whose rows have
  *different* prefixes (different images or prompts), each row drawing from its own generator,
  and zero-shot scoring of every image against the same candidate suffixes (each image
  computed once for all of them). A row's numbers do not depend on its batch neighbours: each
  distinct prefix is prefilled on its own after the structurally shared one (``shared``, e.g.
  the left text), decode batches have at least :data:`MIN_ROWS` rows, and lengths are fixed by
  the row (generation) or by the suffixes (scoring), never by the other rows.
"""
import math
from dataclasses import dataclass
from typing import Callable, List, Mapping, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from rudolph.checks import check_count
from rudolph.errors import ConfigError, InputError
from rudolph.generation.memory import MemoryNeed, available_memory, check_memory, memory_need  # noqa: F401 (re-exported)
from rudolph.generation.sampling import Sampler, check_sampling_args, make_generator
from rudolph.model.config import EOS_ID, PAD_ID, Layout
from rudolph.model.device import model_device

__all__ = ['ScorePart', 'generate', 'cross_entropy',
           'ce_to_ppl', 'common_prefix_length', 'first_eos_cut',
           'MemoryNeed', 'memory_need', 'available_memory', 'check_memory', 'ProgressCallback']

#: ``progress(done, total, desc)``: told after each step (decode step or scoring batch); whatever it
#: raises (e.g. a web app's cancellation) stops the work and propagates
ProgressCallback = Callable[[int, int, str], None]


class _CallbackBar:
    """The part of a tqdm bar the engine uses, reporting to a :data:`ProgressCallback` instead."""

    def __init__(self, callback: ProgressCallback, total: int, desc: str):
        self.callback, self.total, self.desc, self.n = callback, total, desc, 0

    def __enter__(self) -> '_CallbackBar':
        self.callback(0, self.total, self.desc)
        return self

    def __exit__(self, *exc) -> None:
        return None

    def close(self) -> None:
        return None

    def update(self, n: int = 1) -> None:
        self.n += n
        self.callback(self.n, self.total, self.desc)


def _progress_bar(progress: Union[bool, ProgressCallback], total: int, desc: str):
    """A tqdm bar (``progress`` True/False) or a bar feeding the callback ``progress``."""
    if callable(progress):
        return _CallbackBar(progress, total, desc)
    return tqdm(total=total, disable=not progress, desc=desc, leave=False)


def _position_limits(model, length: int) -> torch.Tensor:
    """Per position of a sequence: the number of valid token ids (text vocabulary, or image codes)."""
    lay = Layout.from_model(model)
    limits = torch.full((length,), lay.V, dtype=torch.long)
    limits[lay.L:lay.L + lay.N2] = lay.image_vocab_total
    return limits


def _generation_inputs(model, prefixes, length: int, vocab: slice, weights, allowed_token_ids, fixed, device):
    """Checked ``generate`` inputs: ``(prefixes [K, P], weights, n_vocab, allowed ids or None, fixed)``."""
    try:
        prefixes = torch.as_tensor(prefixes, dtype=torch.long, device=device)
    except (TypeError, ValueError, RuntimeError) as error:
        raise InputError(f'prefixes must be token ids ([P] or [K, P]), got {prefixes!r} ({error})') from None
    if prefixes.dim() == 1:
        prefixes = prefixes.unsqueeze(0)
    if prefixes.dim() != 2 or prefixes.shape[1] < 1:
        raise InputError(f'prefixes must be a non-empty [P] or [K, P] tensor, got shape {tuple(prefixes.shape)}')
    K, P = prefixes.shape
    S = model.get_param('total_seq_length')
    if not P < length <= S:
        raise ConfigError(f'length must be in ({P}, {S}] (prefix length {P}, model sequence {S}), got {length}')
    if weights is None:
        if K != 1:
            raise ConfigError(f'{K} prefixes need {K} weights, got none')
        weights = [1.0]
    weights = [float(w) for w in weights]
    if len(weights) != K or any(not w > 0 or math.isinf(w) for w in weights):
        raise ConfigError(f'weights must be {K} finite positive numbers, got {weights}')
    limits = _position_limits(model, length).to(device)
    bad = ((prefixes < 0) | (prefixes >= limits[:P])).nonzero()
    if bad.numel():
        k, p = (int(i) for i in bad[0])
        raise InputError(f'prefix token {int(prefixes[k, p])} at position {p} is not a valid id there '
                         f'(expected [0, {int(limits[p])}))')
    n_vocab = len(range(*vocab.indices(model.to_logits[1].out_features)))
    if n_vocab < 1:
        raise ConfigError(f'vocab must be a non-empty slice of the {model.to_logits[1].out_features} output '
                          f'classes, got {vocab}')
    allowed = None
    if allowed_token_ids is not None:
        try:
            allowed = torch.as_tensor(list(allowed_token_ids), dtype=torch.long, device=device)
        except (TypeError, ValueError, RuntimeError) as error:
            raise ConfigError(f'allowed_token_ids must be a list of int ids, got {allowed_token_ids!r} '
                              f'({error})') from None
        if allowed.dim() != 1 or allowed.numel() == 0 or allowed.min() < 0 or allowed.max() >= n_vocab:
            raise ConfigError(f'allowed_token_ids must be a non-empty list of ids in [0, {n_vocab}), '
                             f'got {list(allowed_token_ids)[:10]}')
    fixed = {int(p): int(t) for p, t in (fixed or {}).items()}
    bad = [p for p in fixed if not P <= p < length]
    if bad:
        raise ConfigError(f'fixed positions must be in [{P}, {length}), got {sorted(bad)[:10]}')
    wrong = {p: t for p, t in fixed.items() if not 0 <= t < int(limits[p])}
    if wrong:
        p = min(wrong)
        raise InputError(f'fixed token {wrong[p]} at position {p} is not a valid id there (expected '
                         f'[0, {int(limits[p])}))')
    return prefixes, weights, n_vocab, allowed, fixed


def _shared_ids(prefixes: torch.Tensor, fixed: Mapping[int, int], length: int):
    """``(shared ids [K, shared], positions to sample)``: fixed tokens right after the prefix are
    the same for every sample, so they join the shared prefix."""
    K, shared = prefixes.shape
    while shared < length and shared in fixed:
        shared += 1
    tail = torch.tensor([fixed[p] for p in range(prefixes.shape[1], shared)], dtype=torch.long,
                        device=prefixes.device)
    return torch.cat((prefixes, tail.expand(K, -1)), dim=1), [t for t in range(shared, length) if t not in fixed]


def _prefill_prefixes(model, shared_ids: torch.Tensor, length: int) -> list:
    """Per branch: the batch-1 cache of its shared prefix and the prefix's last hidden state.

    The hidden state, not logits: each batch computes the first logits from it on its own
    ``b`` broadcast rows (a 1-row and a b-row matrix product differ in the last bits).
    """
    states = []
    for k in range(shared_ids.shape[0]):
        cache = model.new_cache(1, length)
        h, _ = model.hidden(shared_ids[k:k + 1], 0, cache)
        states.append((cache, h[:, -1]))
    return states


class _CachedLogits:
    """Next-token logits of one batch from its caches (one per branch, the shared prefix broadcast in)."""

    def __init__(self, model, prefix_states: list, b: int, length: int, vocab: slice):
        self.model, self.vocab = model, vocab
        self.caches = [model.new_cache(b, length).expand_from(cache) for cache, _ in prefix_states]
        self.fed = self.caches[0].length
        self.next = [model.logits(h.expand(b, -1), vocab) for _, h in prefix_states]

    def __call__(self, seq: torch.Tensor, t: int) -> List[torch.Tensor]:
        """Logits for position ``t``; everything since the last call (fixed tokens too) is fed at once."""
        if self.fed < t:
            start, self.fed = self.fed, t
            self.next = [self.model.prefill(seq[:, start:t], cache, self.vocab) for cache in self.caches]
        return self.next


class _RowLogits(_CachedLogits):
    """Next-token logits of a batch whose rows were prefilled with their own prefixes (one branch)."""

    def __init__(self, model, cache, first_logits: torch.Tensor, vocab: slice):
        self.model, self.vocab = model, vocab
        self.caches, self.fed, self.next = [cache], cache.length, [first_logits]


class _FullLogits:
    """Next-token logits of one batch recomputing the whole sequence (``use_cache=False``)."""

    def __init__(self, model, shared_ids: torch.Tensor, b: int, vocab: slice):
        self.model, self.shared_ids, self.b, self.vocab = model, shared_ids, b, vocab

    def __call__(self, seq: torch.Tensor, t: int) -> List[torch.Tensor]:
        shared = self.shared_ids.shape[1]
        hs = [self.model.hidden(torch.cat((ids.expand(self.b, -1), seq[:, shared:t]), dim=1))[0][:, -1]
              for ids in self.shared_ids]
        return [self.model.logits(h, self.vocab) for h in hs]


def _check_generation_memory(model, length: int, num: int, bs: int, branches: int, n_vocab: int,
                             steps: Sequence[int], use_cache: bool, desc: str) -> None:
    """``ResourceError`` if ``generate``'s batches and its ``num`` results would not fit."""
    # A cached step feeds the positions since the previous step (fixed tokens included) at once.
    fed_at_once = max((t - prev for prev, t in zip(steps, steps[1:])), default=1) if use_cache else length
    need = memory_need(model, length, logit_positions=1, n_vocab=n_vocab, held_bytes=2 * num * length * 8,
                       branches=branches, full_attention=not use_cache, forward_positions=fed_at_once)
    check_memory(need, min(bs, num), model_device(model), desc, f'num={num}')


def _blank_after_eos(tokens: torch.Tensor) -> torch.Tensor:
    """Pads after the first eos of each row, so stopping early gives the same tensor."""
    is_eos = tokens == EOS_ID
    after = (is_eos.long().cumsum(dim=1) - is_eos.long()) > 0
    return tokens.masked_fill(after, PAD_ID)


@torch.no_grad()
def generate(model, prefixes: Union[torch.Tensor, Sequence[int]], length: int, num: int, *,
             vocab: slice, top_k: int, top_p: float, temperature: float = 1.0,
             seed: Optional[int] = None, generator: Optional[torch.Generator] = None, bs: int = 8,
             use_cache: bool = True, fixed: Optional[Mapping[int, int]] = None,
             weights: Optional[Sequence[float]] = None, late_softmax: bool = False,
             eos_from: Optional[int] = None, allowed_token_ids: Optional[Sequence[int]] = None,
             stop_at_eos: bool = False, progress: Union[bool, ProgressCallback] = True,
             desc: str = 'generating') -> torch.Tensor:
    """Sample positions ``P..length-1`` of ``num`` sequences after a shared prefix.

    Args:
        prefixes: the prefix ``[P]`` shared by all samples, or ``[K, P]`` for ``K`` guidance
            branches whose next-token distributions are mixed with ``weights``.
        length: absolute end position (exclusive), at most the model's total length.
        vocab: slice of the output classes sampled (``Layout.image_slice``, ``text_sample_slice``);
            a sampled index ``i`` becomes token ``i`` (ids are relative to the slice start).
        seed: randomness: seeds a private generator (never the global RNG); ``None``: fresh entropy.
        generator: a private generator to draw from instead of ``seed``'s.
        fixed: ``{absolute position: token}`` taken instead of a sample (image prompts).
        eos_from: text only: sampled ids ``>= eos_from`` become eos (3).
        allowed_token_ids: text only: sample only among these ids (of ``vocab``).
        stop_at_eos: stop when every row of a batch has produced eos; tokens after each
            row's first eos are pads (0), so the result does not depend on where it stopped.
        progress: a tqdm bar (True), none (False), or a :data:`ProgressCallback`.

    Returns:
        LongTensor ``[num, length]``: the (first) prefix, then fixed and sampled tokens.
    """
    check_count('num', num)
    check_count('bs', bs)
    check_sampling_args(top_k, top_p, temperature)
    device = model_device(model)
    prefixes, weights, n_vocab, allowed, fixed = _generation_inputs(model, prefixes, length, vocab, weights,
                                                                    allowed_token_ids, fixed, device)
    if generator is None:
        generator = make_generator(seed, device)
    sampler = Sampler(top_k, top_p, temperature, weights=weights, late_softmax=late_softmax, allowed=allowed,
                      eos_from=eos_from, eos_id=EOS_ID, generator=generator)
    shared_ids, steps = _shared_ids(prefixes, fixed, length)
    _check_generation_memory(model, length, num, bs, len(weights), n_vocab if allowed is None else allowed.numel(),
                             steps, use_cache, desc)
    prefix_states = _prefill_prefixes(model, shared_ids, length) if use_cache and steps else []
    outputs = []
    with _progress_bar(progress, math.ceil(num / bs) * len(steps), desc) as bar:
        for begin in range(0, num, bs):
            b = min(bs, num - begin)
            seq = torch.zeros(b, length, dtype=torch.long, device=device)
            seq[:, :shared_ids.shape[1]] = shared_ids[0]
            for p, token in fixed.items():
                seq[:, p] = token
            next_logits = (_CachedLogits(model, prefix_states, b, length, vocab) if use_cache
                           else _FullLogits(model, shared_ids, b, vocab))
            _decode(seq, steps, next_logits, sampler, stop_at_eos, bar)
            if stop_at_eos:
                seq[:, prefixes.shape[1]:] = _blank_after_eos(seq[:, prefixes.shape[1]:])
            outputs.append(seq)
    return torch.cat(outputs)


def _decode(seq: torch.Tensor, steps: Sequence[int], next_logits, sampler: Sampler, stop_at_eos: bool,
            bar) -> None:
    """Sample ``seq[:, t]`` for every position ``t`` of ``steps`` in place (stopping once all rows hit eos)."""
    done = torch.zeros(seq.shape[0], dtype=torch.bool, device=seq.device)
    for i, t in enumerate(steps):
        token = sampler(next_logits(seq, t))
        seq[:, t] = token
        bar.update(1)
        if stop_at_eos:
            done |= token == EOS_ID
            if bool(done.all()):
                bar.update(len(steps) - i - 1)
                return


@dataclass(frozen=True)
class ScorePart:
    """Cross-entropy of the logits at positions ``start..stop-1`` against the ids one step later.

    ``vocab`` is the slice of output classes; labels are relative to its start (text ids
    for ``slice(0, ...)``, image ids for ``slice(V, ...)``).
    """

    start: int
    stop: int
    vocab: slice
    ignore_index: int = -100


def common_prefix_length(ids: torch.Tensor) -> int:
    """Number of leading columns on which all rows of ``ids`` ``[n, s]`` agree."""
    same = (ids == ids[:1]).all(dim=0)
    if bool(same.all()):
        return ids.shape[1]
    return int((~same).nonzero()[0])


def _needed_ends(ids: torch.Tensor, parts: Sequence[ScorePart]) -> torch.Tensor:
    """Per row: 1 + the last position whose logits have a non-ignored label in some part (0: none).

    Hidden states at or after that position cannot change the row's cross-entropy (the model
    is causal and every later label is ignored, giving exactly 0), so they are not computed.
    """
    need = torch.zeros(ids.shape[0], dtype=torch.long, device=ids.device)
    for part in parts:
        counted = ids[:, part.start + 1:part.stop + 1] != part.ignore_index
        positions = torch.arange(part.start + 1, part.stop + 1, device=ids.device)
        last = torch.where(counted, positions, torch.zeros_like(positions)).amax(dim=1)
        need = torch.maximum(need, last)  # logits at `last - 1` are needed: end (exclusive) = last
    return need


def _scoring_order(input_ids: torch.Tensor, parts: Sequence[ScorePart], truncate: bool):
    """``(per-row end of the needed positions, row order of the batches)`` of ``cross_entropy``."""
    n = input_ids.shape[0]
    if truncate:
        row_need = _needed_ends(input_ids, parts)
        return row_need, torch.argsort(row_need, stable=True)
    row_need = torch.full((n,), max(part.stop for part in parts), dtype=torch.long, device=input_ids.device)
    return row_need, torch.arange(n, device=input_ids.device)


def _part_ce(model, ids: torch.Tensor, part: ScorePart, need: int, P: int, prefix_h: Optional[torch.Tensor],
             rest: Optional[torch.Tensor]) -> torch.Tensor:
    """One batch's cross-entropy ``[b, stop-start]`` of ``part`` (0 at and after ``need``).

    Hidden states of positions ``< P`` come from the batch-1 prefix ``prefix_h``, the others
    from ``rest`` (positions ``P..need-1`` of this batch).
    """
    b = ids.shape[0]
    stop = min(part.stop, need)
    ce = torch.zeros(b, part.stop - part.start, dtype=torch.float32, device=ids.device)
    if stop <= part.start:
        return ce
    pieces = []
    if part.start < P:
        pieces.append(prefix_h[:, part.start:min(stop, P)].expand(b, -1, -1))
    if stop > P:
        pieces.append(rest[:, max(part.start, P) - P:stop - P])
    h = pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=1)
    logits = model.logits(h, part.vocab).float()
    labels = ids[:, part.start + 1:stop + 1]
    ce[:, :stop - part.start] = F.cross_entropy(logits.transpose(1, 2), labels, ignore_index=part.ignore_index,
                                                reduction='none')
    return ce


@torch.no_grad()
def cross_entropy(model, input_ids: torch.Tensor, parts: Sequence[ScorePart], bs: int = 64,
                  reuse_prefix: bool = True, truncate: bool = True,
                  progress: Union[bool, ProgressCallback] = False, desc: str = 'scoring') -> List[torch.Tensor]:
    """Per-position cross-entropy ``[n, stop-start]`` (float32) of each part, batched by ``bs``.

    With ``reuse_prefix`` the prefix common to all rows is run once with batch 1 and its
    keys/values are reused by every batch. With ``truncate`` the positions after the last
    non-ignored label of a batch are not run through the model at all (their cross-entropy
    is exactly 0 anyway: right-text pads in zero-shot classification and reranking), and
    rows are batched in order of that length (results come back in the input order). Both
    give the full computation's result up to float rounding. ``progress`` as in :func:`generate`
    (one step per batch).
    """
    check_count('bs', bs)
    device = model_device(model)
    input_ids = torch.as_tensor(input_ids, dtype=torch.long).to(device)
    if input_ids.dim() != 2 or input_ids.shape[0] == 0:
        raise InputError(f'input_ids must be a non-empty [n, s] tensor, got shape {tuple(input_ids.shape)}')
    if not parts:
        raise ConfigError('parts must name at least one ScorePart')
    n, s = input_ids.shape
    for part in parts:
        if not 0 <= part.start < part.stop <= s - 1:
            raise ConfigError(f'{part} does not fit a sequence of {s} tokens (needs 0 <= start < stop <= {s - 1})')
    row_need, order = _scoring_order(input_ids, parts, truncate)
    end = int(row_need.max())  # no hidden state at or after `end` is needed (causal)
    widths = [part.stop - part.start for part in parts]
    n_vocab = max(len(range(*part.vocab.indices(model.to_logits[1].out_features))) for part in parts)
    need = memory_need(model, max(end, 1), logit_positions=max(widths), n_vocab=n_vocab,
                       held_bytes=2 * n * sum(widths) * 4 + n * s * 8)
    check_memory(need, min(bs, n), device, desc, f'{n} rows')
    P = min(common_prefix_length(input_ids), end) if reuse_prefix and n > 1 else 0
    prefix_h = None
    if P > 0:
        prefix_cache = model.new_cache(1, P)
        prefix_h, _ = model.hidden(input_ids[:1, :P], 0, prefix_cache)
    results: List[List[torch.Tensor]] = [[] for _ in parts]
    bar = _progress_bar(progress, math.ceil(n / bs), desc).__enter__()
    for begin in range(0, n, bs):
        rows = order[begin:begin + bs]
        ids = input_ids[rows]
        need = int(row_need[rows].max())  # this batch's end
        rest = None
        if P < need:
            if P > 0:
                cache = model.new_cache(ids.shape[0], need).expand_from(prefix_cache)
                rest, _ = model.hidden(ids[:, P:need], P, cache)
            else:
                rest, _ = model.hidden(ids[:, :need])
        for out, part in zip(results, parts):
            out.append(_part_ce(model, ids, part, need, P, prefix_h, rest))
        bar.update(1)
    bar.close()
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(n, device=device)
    return [torch.cat(out)[inverse] for out in results]


def ce_to_ppl(ce: torch.Tensor) -> torch.Tensor:
    """Per row: ``exp(CE)`` averaged over the positions whose CE is non-zero (ignored pads are 0).

    A row without any non-zero position has perplexity 1. ``ce`` is not modified.
    """
    if ce.dim() != 2:
        raise InputError(f'ce must be [n, positions], got shape {tuple(ce.shape)}')
    counted = ce != 0
    total = torch.where(counted, ce.exp(), torch.zeros_like(ce)).sum(dim=1)
    count = counted.sum(dim=1)
    return torch.where(count > 0, total / count.clamp(min=1), torch.ones_like(total))


def first_eos_cut(tokens: torch.Tensor) -> torch.Tensor:
    """``tokens`` up to (excluding) the first eos, or all of them."""
    where = (tokens == EOS_ID).nonzero()
    return tokens[:int(where[0])] if where.numel() else tokens
