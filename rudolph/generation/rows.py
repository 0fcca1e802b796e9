"""Generation and scoring for batches whose rows have different prefixes (different images or prompts).

Each row draws from its own generator and its numbers do not depend on its batch neighbours:
each distinct prefix is prefilled on its own after the structurally shared one (``shared``,
e.g. the left text), decode batches have at least :data:`MIN_ROWS` rows, and lengths are fixed
by the row (generation) or by the suffixes (scoring), never by the other rows.
"""
import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from rudolph.checks import check_count
from rudolph.errors import ConfigError, InputError
from rudolph.generation.engine import (
    ScorePart,
    _blank_after_eos,
    _decode,
    _generation_inputs,
    _needed_ends,
    _progress_bar,
    _RowLogits,
)
from rudolph.generation.memory import check_memory, memory_need
from rudolph.generation.sampling import Sampler, check_sampling_args
from rudolph.model.config import EOS_ID
from rudolph.model.device import model_device

__all__ = ['generate_rows', 'score_suffixes', 'pad_rows', 'MIN_ROWS']


def _row_prefixes(model, prefixes, generators, length: int, vocab: slice, allowed_token_ids, shared: int):
    """Checked :func:`generate_rows` inputs: ``(prefixes, rows grouped by prefix length, n_vocab, allowed, shared)``."""
    if isinstance(prefixes, torch.Tensor) and prefixes.dim() == 2:
        prefixes = list(prefixes)
    if isinstance(prefixes, (str, bytes)) or not isinstance(prefixes, Sequence) or len(prefixes) == 0:
        raise InputError(f'prefixes must be a non-empty list of [P] token-id tensors, got {prefixes!r}')
    if isinstance(generators, torch.Generator) or len(generators) != len(prefixes):
        raise ConfigError(f'{len(prefixes)} rows need {len(prefixes)} generators (one per row), got {generators!r}')
    device = model_device(model)
    checked, groups = [], {}
    for i, prefix in enumerate(prefixes):
        ids, _, n_vocab, allowed, _ = _generation_inputs(model, prefix, length, vocab, None, allowed_token_ids,
                                                         None, device)
        checked.append(ids[0])
        groups.setdefault(ids.shape[1], []).append(i)
    shared = max(0, min([shared] + [len(p) - 1 for p in checked]))
    first = checked[0][:shared]
    bad = [i for i, p in enumerate(checked) if not torch.equal(p[:shared], first)]
    if bad:
        raise InputError(f'shared={shared}: row {bad[0]} differs from row 0 in its first {shared} tokens')
    return checked, [groups[k] for k in sorted(groups)], n_vocab, allowed, shared


@torch.no_grad()
def generate_rows(model, prefixes: Sequence[torch.Tensor], length: int, *, vocab: slice, top_k: int, top_p: float,
                  temperature: float = 1.0, generators: Sequence[torch.Generator], shared: int = 0, bs: int = 8,
                  eos_from: Optional[int] = None, allowed_token_ids: Optional[Sequence[int]] = None,
                  stop_at_eos: bool = False, progress: bool = True, desc: str = 'generating') -> torch.Tensor:
    """Sample positions ``len(prefixes[i])..length-1`` of row ``i`` after its own prefix, from ``generators[i]``.

    Rows may have different prefixes (and prefix lengths: rows are batched with rows of the
    same length). The first ``shared`` tokens, the same in every row (e.g. the left text before
    different images), are computed once with batch 1; each distinct prefix is then prefilled
    on its own and its cache copied into its rows. Row ``i``'s tokens depend only on its prefix,
    its generator and the settings, not on ``bs`` or on the other rows (bit for bit in the
    tests on CPU; where a BLAS or GPU kernel's last bits change with the number of decode rows,
    a sample changes only at an exact tie). Other arguments as :func:`generate`. Returns LongTensor ``[n, length]`` in the order of ``prefixes``.
    """
    check_count('bs', bs)
    check_sampling_args(top_k, top_p, temperature)
    device = model_device(model)
    prefixes, groups, n_vocab, allowed, shared = _row_prefixes(model, prefixes, generators, length, vocab,
                                                               allowed_token_ids, shared)
    n = len(prefixes)
    longest = max(len(p) for p in prefixes) - shared
    need = memory_need(model, length, logit_positions=1, n_vocab=n_vocab if allowed is None else allowed.numel(),
                       held_bytes=2 * n * length * 8, forward_positions=max(longest, 1))
    check_memory(need, min(bs, n), device, desc, f'{n} rows')
    sampler = Sampler(top_k, top_p, temperature, allowed=allowed, eos_from=eos_from, eos_id=EOS_ID)
    prefix_cache = None
    if shared:
        prefix_cache = model.new_cache(1, length)
        model.hidden(prefixes[0][None, :shared], 0, prefix_cache)
    out = torch.zeros(n, length, dtype=torch.long, device=device)
    total = sum(math.ceil(len(rows) / bs) * (length - len(prefixes[rows[0]])) for rows in groups)
    with _progress_bar(progress, total, desc) as bar:
        for rows in groups:
            for begin in range(0, len(rows), bs):
                idx = rows[begin:begin + bs]
                out[idx] = _generate_batch(model, torch.stack([prefixes[i] for i in idx]), length, vocab, shared,
                                           prefix_cache, sampler.for_rows([generators[i] for i in idx]),
                                           stop_at_eos, bar)
    return out


#: batches of the row-wise paths have at least this many rows: a 1-row batch takes other kernels
#: (BLAS matrix-vector products, attention over differently strided views) whose last bits differ
MIN_ROWS = 2


def pad_rows(x: torch.Tensor, rows: int = MIN_ROWS) -> torch.Tensor:
    """``x`` with its last row repeated up to ``rows`` rows (callers drop the copies): same kernels for every batch."""
    return x if x.shape[0] >= rows else torch.cat((x, x[-1:].expand(rows - x.shape[0], *x.shape[1:])))


def _prefill_row(model, ids: torch.Tensor, length: int, shared: int, prefix_cache):
    """``(batch-1 cache, last hidden state [1, h])`` of one row's prefix ``ids`` ``[P]`` after the shared prefix."""
    cache = model.new_cache(1, length)
    if prefix_cache is not None:
        cache.expand_from(prefix_cache)
    h, _ = model.hidden(ids[None, shared:], shared, cache)
    return cache, h[:, -1]


def _generate_batch(model, ids: torch.Tensor, length: int, vocab: slice, shared: int, prefix_cache, sampler: Sampler,
                    stop_at_eos: bool, bar) -> torch.Tensor:
    """One batch of :func:`generate_rows`: each distinct prefix of ``ids`` ``[b, P]`` prefilled on its own (its
    numbers cannot depend on the batch), its cache copied into its rows, then all rows decoded together."""
    n = ids.shape[0]
    if n < MIN_ROWS:  # the padding rows sample from a throw-away generator
        spare = torch.Generator(device=ids.device).manual_seed(0)
        sampler = sampler.for_rows(list(sampler.generators) + [spare] * (MIN_ROWS - n))
        ids = pad_rows(ids)
    b, P = ids.shape
    cache, last = model.new_cache(b, length), []
    start = 0
    while start < b:
        stop = start + 1
        while stop < b and torch.equal(ids[stop], ids[start]):  # rows of one input share its prefill
            stop += 1
        own, h = _prefill_row(model, ids[start], length, shared, prefix_cache)
        cache.k[:, start:stop, :, :P] = own.k[:, :, :, :P]
        cache.v[:, start:stop, :, :P] = own.v[:, :, :, :P]
        last.append(h.expand(stop - start, -1))
        start = stop
    cache.length = P
    seq = torch.zeros(b, length, dtype=torch.long, device=ids.device)
    seq[:, :P] = ids
    _decode(seq, range(P, length), _RowLogits(model, cache, model.logits(torch.cat(last), vocab), vocab), sampler,
            stop_at_eos, bar)
    if stop_at_eos:
        seq[:, P:] = _blank_after_eos(seq[:, P:])
    return seq[:n]


@torch.no_grad()
def score_suffixes(model, prefixes: torch.Tensor, suffixes: torch.Tensor, part: ScorePart, *, shared: int = 0,
                   bs: int = 16, progress: bool = False, desc: str = 'scoring') -> torch.Tensor:
    """Cross-entropy ``[m, c, stop-start]`` of ``part`` for every prefix ``[m, P]`` followed by every suffix ``[c, T]``.

    Zero-shot classification of ``m`` images against ``c`` class texts: each prefix (image) is
    computed once and its keys/values serve all ``c`` suffixes, which run as one batch; ``part``
    must lie in the suffixes (``start >= P``). Positions after the suffixes' last non-ignored
    label are not computed (a length fixed by the suffixes alone). The shared first ``shared``
    tokens (the left text) are computed once for all. ``bs`` is the number of prefixes per
    progress step; each prefix runs on its own, so its numbers never depend on the others.
    """
    check_count('bs', bs)
    device = model_device(model)
    prefixes = torch.as_tensor(prefixes, dtype=torch.long).to(device)
    suffixes = torch.as_tensor(suffixes, dtype=torch.long).to(device)
    if prefixes.dim() != 2 or suffixes.dim() != 2 or not len(prefixes) or not len(suffixes):
        raise InputError(f'prefixes [m, P] and suffixes [c, T] must be non-empty 2-d tensors, got shapes '
                         f'{tuple(prefixes.shape)} and {tuple(suffixes.shape)}')
    (m, P), (c, T) = prefixes.shape, suffixes.shape
    if not P <= part.start < part.stop <= P + T - 1:
        raise ConfigError(f'{part} must lie in the suffixes (positions {P}..{P + T - 1})')
    probe = torch.cat((torch.zeros(c, P, dtype=torch.long, device=device), suffixes), dim=1)
    end = max(int(_needed_ends(probe, [part]).max()), P + 1)
    width = part.stop - part.start
    n_vocab = len(range(*part.vocab.indices(model.to_logits[1].out_features)))
    need = memory_need(model, end, logit_positions=width, n_vocab=n_vocab, held_bytes=m * c * width * 4)
    check_memory(need, 1 + c, device, desc, f'{m} x {c} rows', batch_chosen=False)  # one prefix and its suffixes
    shared = max(0, min(shared, P - 1))
    if shared and not bool((prefixes[:, :shared] == prefixes[:1, :shared]).all()):
        raise InputError(f'shared={shared}: the prefixes differ in their first {shared} tokens')
    prefix_cache = None
    if shared:
        prefix_cache = model.new_cache(1, shared)
        model.hidden(prefixes[:1, :shared], 0, prefix_cache)
    out = torch.zeros(m, c, width, dtype=torch.float32, device=device)
    with _progress_bar(progress, math.ceil(m / bs), desc) as bar:
        for begin in range(0, m, bs):
            out[begin:begin + bs] = _score_batch(model, prefixes[begin:begin + bs], suffixes, part, end, shared,
                                                 prefix_cache)
            bar.update(1)
    return out


def _score_batch(model, prefixes: torch.Tensor, suffixes: torch.Tensor, part: ScorePart, end: int, shared: int,
                 prefix_cache) -> torch.Tensor:
    """One batch of :func:`score_suffixes`: each prefix run once, its cache broadcast into the ``c`` suffix rows.

    Both passes run per prefix on shapes fixed by the prefix and the suffixes alone, so an
    image's numbers cannot depend on how many images share the batch.
    """
    n, c = prefixes.shape[0], suffixes.shape[0]
    P = prefixes.shape[1]
    stop = min(part.stop, end)
    ce = torch.zeros(n, c, part.stop - part.start, dtype=torch.float32, device=prefixes.device)
    if stop <= part.start:  # no label left to score in this part
        return ce
    labels = suffixes[:, part.start + 1 - P:stop + 1 - P]
    for i in range(n):
        own, _ = _prefill_row(model, prefixes[i], P, shared, prefix_cache)
        cache = model.new_cache(c, end).expand_from(own)
        h, _ = model.hidden(suffixes[:, :end - P], P, cache)
        logits = model.logits(h[:, part.start - P:stop - P], part.vocab).float()
        ce[i, :, :stop - part.start] = F.cross_entropy(logits.transpose(1, 2), labels,
                                                       ignore_index=part.ignore_index, reduction='none')
    return ce
