"""A tiny pure Python BPE trainer that writes YTTM model files (for small corpora such as the demo's)."""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Union

from rudolph.tokenizer.yttm_format import _WORD_RE, SPACE_TOKEN, PathLike, SpecialIds, YTTMModelData, write_yttm_model

Pair = tuple[int, int]


class _IdAllocator:
    """Hands out the smallest ids not taken yet (the special ids are taken from the start)."""

    def __init__(self, taken: Iterable[int]) -> None:
        self._taken = set(taken)
        self._next = 0

    def new(self) -> int:
        while self._next in self._taken:
            self._next += 1
        self._taken.add(self._next)
        return self._next


def _count_words(texts: Iterable[str]) -> Counter[str]:
    """Frequency of every word (split as YTTM splits, without the ``'▁'`` prefix)."""
    words: Counter[str] = Counter()
    for text in texts:
        if not isinstance(text, str):
            raise TypeError(f'texts must be strings, got {type(text).__name__}')
        words.update(_WORD_RE.findall(text))
    return words


def _alphabet(words: Counter[str], vocab_size: int, n_special: int, ids: _IdAllocator) -> dict[int, int]:
    """Code point -> id of every character seen plus ``'▁'`` (first), most frequent first."""
    char_counts: Counter[str] = Counter()
    for w, c in words.items():
        for ch in w:
            char_counts[ch] += c
    char_counts[SPACE_TOKEN] += sum(words.values())
    if vocab_size < n_special + len(char_counts):
        raise ValueError(f'vocab_size={vocab_size} is too small: the {n_special} special ids and the '
                         f'{len(char_counts)} characters of the corpus need at least '
                         f'{n_special + len(char_counts)}')
    char2id = {ord(SPACE_TOKEN): ids.new()}
    for ch, _ in sorted(char_counts.items(), key=lambda kv: -kv[1]):
        if ch != SPACE_TOKEN:
            char2id[ord(ch)] = ids.new()
    return char2id


class _PairStats:
    """The words as id sequences with their frequencies, and the weighted count of every adjacent
    pair with the words that hold it (so a merge only revisits those words)."""

    def __init__(self, seqs: list[list[int]], freq: list[int]) -> None:
        self.seqs, self.freq = seqs, freq
        self.pairs: Counter[Pair] = Counter()
        self.where: dict[Pair, set[int]] = {}  # pair -> indices of the words holding it
        for k, seq in enumerate(seqs):
            self._add(k, seq)

    def _add(self, k: int, seq: list[int]) -> None:
        for pair in zip(seq, seq[1:]):
            self.pairs[pair] += self.freq[k]
            self.where.setdefault(pair, set()).add(k)

    def best(self) -> tuple[Pair, int]:
        """The most frequent pair and its count; ties: smaller ids (= more frequent characters) first."""
        return max(self.pairs.items(), key=lambda kv: (kv[1], -kv[0][0], -kv[0][1]))

    def merge(self, best: Pair, z: int) -> None:
        """Replace every occurrence of ``best`` by ``z`` and update the counts."""
        for k in self.where.pop(best, ()):
            seq, c = self.seqs[k], self.freq[k]
            for pair in zip(seq, seq[1:]):
                self.pairs[pair] -= c
                if self.pairs[pair] <= 0:
                    del self.pairs[pair]
            merged, j = [], 0
            while j < len(seq):
                if j + 1 < len(seq) and seq[j] == best[0] and seq[j + 1] == best[1]:
                    merged.append(z)
                    j += 2
                else:
                    merged.append(seq[j])
                    j += 1
            self.seqs[k] = merged
            self._add(k, merged)


def _learn_rules(stats: _PairStats, n_rules: int, ids: _IdAllocator) -> list[tuple[int, int, int]]:
    """Up to ``n_rules`` merges of the most frequent pair, while some pair occurs twice."""
    rules: list[tuple[int, int, int]] = []
    while len(rules) < n_rules and stats.pairs:
        best, count = stats.best()
        if count < 2:
            break
        z = ids.new()
        rules.append((best[0], best[1], z))
        stats.merge(best, z)
    return rules


def train_bpe(texts: Iterable[str], vocab_size: int, path: Union[PathLike, None] = None,
              special_ids: SpecialIds = SpecialIds()) -> YTTMModelData:
    """Train a small YTTM-format BPE model on ``texts`` (pure Python; meant for tiny corpora).

    Words are split and prefixed with ``'▁'`` as YTTM does; the alphabet is every character seen
    (most frequent first, ids after the special ids), then the most frequent adjacent pair is merged
    (ties: smaller ids first) until ``vocab_size`` ids exist or no pair occurs twice. Written to
    ``path`` when given. Not byte-identical to YTTM's trainer, but the file is a valid YTTM model.
    """
    n_special = len(special_ids.present())
    words = _count_words(texts)
    ids = _IdAllocator(special_ids.present())
    char2id = _alphabet(words, vocab_size, n_special, ids)
    seqs = [[char2id[ord(SPACE_TOKEN)]] + [char2id[ord(ch)] for ch in w] for w in words]
    stats = _PairStats(seqs, list(words.values()))
    rules = _learn_rules(stats, vocab_size - n_special - len(char2id), ids)
    data = YTTMModelData(char2id, rules, special_ids)
    if path is not None:
        write_yttm_model(path, data)
    return data
