"""Top-k / nucleus filtering and seeded multinomial sampling (:class:`Sampler`).

``top_k_top_p_filtering`` replaces the function that ``transformers`` removed; it keeps
the semantics the RuDOLPH pipelines were written against: top-k first, then nucleus
(top-p) on what is left, always keeping at least ``min_tokens_to_keep`` tokens.
"""
import secrets
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F

from rudolph.checks import check_sampling_args  # noqa: F401 (re-exported)
from rudolph.errors import ConfigError

__all__ = ['top_k_top_p_filtering', 'filter_logits', 'logits_to_probs', 'Sampler', 'make_generator',
           'check_sampling_args']


def top_k_top_p_filtering(logits: torch.Tensor, top_k: int = 0, top_p: float = 1.0,
                          filter_value: float = -float('inf'), min_tokens_to_keep: int = 1) -> torch.Tensor:
    """Logits ``[b, vocab]`` with everything outside the top-k / nucleus set to ``filter_value``.

    Same result as the removed ``transformers.top_k_top_p_filtering`` of 4.10 (which worked
    in place); this returns a new tensor and leaves ``logits`` untouched. One difference:
    ``top_p=1.0`` keeps every id, where transformers also dropped the ids after the
    cumulative probability's float rounding passed 1.0 (see the README).
    """
    check_sampling_args(top_k, top_p)
    if isinstance(min_tokens_to_keep, bool) or not isinstance(min_tokens_to_keep, int) or min_tokens_to_keep < 1:
        raise ConfigError(f'min_tokens_to_keep must be a positive int, got {min_tokens_to_keep!r}')
    logits = logits.clone()
    if top_k > 0:
        top_k = min(max(top_k, min_tokens_to_keep), logits.size(-1))
        kth = torch.topk(logits, top_k, dim=-1)[0][..., -1, None]
        logits = logits.masked_fill(logits < kth, filter_value)
    if top_p < 1.0:
        sorted_logits, sorted_indices = torch.sort(logits, descending=True, dim=-1)
        cumulative = F.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
        remove = cumulative > top_p
        if min_tokens_to_keep > 1:
            # min_tokens_to_keep - 1: the shift below keeps one more (transformers' rule).
            remove[..., :min_tokens_to_keep - 1] = False
        # Shift right: keep the token that crosses the threshold, so at least one survives.
        remove[..., 1:] = remove[..., :-1].clone()
        remove[..., 0] = False
        remove = remove.scatter(-1, sorted_indices, remove)
        logits = logits.masked_fill(remove, filter_value)
    return logits


def filter_logits(logits: torch.Tensor, top_k: int, top_p: float, temperature: float = 1.0) -> torch.Tensor:
    """``top_k_top_p_filtering(logits / temperature)`` in float32."""
    check_sampling_args(top_k, top_p, temperature)
    return top_k_top_p_filtering(logits.float() / temperature, top_k=top_k, top_p=top_p)


def logits_to_probs(logits: torch.Tensor, top_k: int, top_p: float, temperature: float = 1.0) -> torch.Tensor:
    """Temperature, top-k, top-p, softmax: the sampling distribution of the reference pipelines."""
    return F.softmax(filter_logits(logits, top_k, top_p, temperature), dim=-1)


def make_generator(seed: Optional[int], device: Union[str, torch.device] = 'cpu') -> torch.Generator:
    """A private generator: ``seed`` makes results reproducible; ``None`` draws fresh entropy.

    Never touches the global RNG, so results do not depend on what ran before.
    """
    if seed is None:
        seed = secrets.randbits(63)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f'seed must be an int or None, got {seed!r}')
    generator = torch.Generator(device=torch.device(device))
    generator.manual_seed(seed % (2 ** 63))
    return generator


class Sampler:
    """One token id per row from next-token logits: the sampling half of ``engine.generate``.

    Called with the logits ``[b, classes]`` of each guidance branch (one list item per
    branch, mixed with ``weights``): temperature, top-k and top-p filtering per branch, then
    one softmax (a single branch), the weighted mixture of the branches' softmaxes, or with
    ``late_softmax`` the softmax of the weighted filtered logits. ``allowed`` (ids of the
    classes) restricts sampling to those classes first, and sampled ids ``>= eos_from``
    become ``eos_id``. Draws come from ``generator`` only, never the global RNG.
    """

    def __init__(self, top_k: int = 0, top_p: float = 1.0, temperature: float = 1.0, *,
                 weights: Optional[Sequence[float]] = None, late_softmax: bool = False,
                 allowed: Optional[torch.Tensor] = None, eos_from: Optional[int] = None, eos_id: int = 3,
                 generator: Optional[torch.Generator] = None,
                 generators: Optional[Sequence[torch.Generator]] = None):
        check_sampling_args(top_k, top_p, temperature)
        if generator is not None and generators is not None:
            raise ConfigError('pass generator (one for the batch) or generators (one per row), not both')
        self.top_k, self.top_p, self.temperature = top_k, top_p, temperature
        self.weights = [1.0] if weights is None else [float(w) for w in weights]
        self.late_softmax = late_softmax
        self.allowed, self.eos_from, self.eos_id = allowed, eos_from, eos_id
        self.generator = generator
        self.generators = None if generators is None else list(generators)

    def for_rows(self, generators: Sequence[torch.Generator]) -> 'Sampler':
        """The same sampler drawing row ``r`` of a batch from ``generators[r]``."""
        return Sampler(self.top_k, self.top_p, self.temperature, weights=self.weights, late_softmax=self.late_softmax,
                       allowed=self.allowed, eos_from=self.eos_from, eos_id=self.eos_id, generators=generators)

    def _draw(self, probs: torch.Tensor) -> torch.Tensor:
        if self.generators is None:
            return torch.multinomial(probs, 1, generator=self.generator).squeeze(1)
        if len(self.generators) != probs.shape[0]:
            raise ConfigError(f'{probs.shape[0]} rows need {probs.shape[0]} generators, got {len(self.generators)}')
        tokens, start = [], 0
        while start < probs.shape[0]:
            stop = start + 1
            while stop < probs.shape[0] and self.generators[stop] is self.generators[start]:
                stop += 1
            tokens.append(torch.multinomial(probs[start:stop], 1, generator=self.generators[start]).squeeze(1))
            start = stop
        return torch.cat(tokens)

    def probs(self, logits: Sequence[torch.Tensor]) -> torch.Tensor:
        """The sampling distribution ``[b, classes or len(allowed)]`` of the branches' logits."""
        if len(logits) != len(self.weights):
            raise ConfigError(f'{len(logits)} branches of logits need {len(logits)} weights, got {self.weights}')
        if self.allowed is not None:
            logits = [x[:, self.allowed] for x in logits]
        if len(logits) == 1:
            return logits_to_probs(logits[0], self.top_k, self.top_p, self.temperature)
        filtered = [filter_logits(x, self.top_k, self.top_p, self.temperature) for x in logits]
        if self.late_softmax:  # mix filtered logits, then one softmax
            return F.softmax(sum(w * f for w, f in zip(self.weights, filtered)), dim=-1)
        return sum(w * F.softmax(f, dim=-1) for w, f in zip(self.weights, filtered))

    def __call__(self, logits: Sequence[torch.Tensor]) -> torch.Tensor:
        """One sampled id per row, LongTensor ``[b]`` (an index into the classes of the logits)."""
        token = self._draw(self.probs(logits))
        if self.allowed is not None:
            token = self.allowed[token]
        if self.eos_from is not None:
            token = torch.where(token >= self.eos_from, torch.full_like(token, self.eos_id), token)
        return token
