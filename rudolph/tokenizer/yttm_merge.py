"""A pure Python port of YTTM's merge loop for one word (``encode_sentence`` of ``bpe.cpp``, 1.0.6).

* Inside a word every maximal run of characters that are not in the model's alphabet becomes one
  token: id ``unk``, subword = the original run of characters. Such a token never merges.
* Merging: a priority queue of (rule index, position); the smallest rule index wins, ties go to the
  leftmost position; after a merge the new neighbour pairs are pushed. HF ``tokenizers``' BPE uses
  the same rule (it was ported from YTTM), so :class:`~rudolph.tokenizer.BPE` uses HF for speed
  when the model can be expressed as an HF vocabulary (no two ids with the same string); otherwise,
  and for BPE-dropout, this loop runs.
* BPE-dropout (YTTM's ``DropoutQueue``): every time the queue's best merge is popped, it is put
  aside with probability ``p`` and the next best is tried; the put-aside merges go back into the
  queue once a merge is done, and are dropped for good when the queue runs dry. ``p=1`` thus gives
  characters only. YTTM draws from a global, unseedable C++ ``mt19937``; here the draws come from
  the ``draw`` callable (``random.random`` or ``rng.random`` of the caller).
"""
from __future__ import annotations

import heapq
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Union

from rudolph.tokenizer.yttm_format import SPACE_TOKEN

Draw = Union[Callable[[], float], None]


@dataclass(frozen=True)
class MergeTables:
    """What the merge loop needs of a model: alphabet, rules by priority and by pair, subwords."""

    char2id: Mapping[str, int]
    rules: Sequence[tuple[int, int, int]]
    rule_of_pair: Mapping[tuple[int, int], tuple[int, int]]  # (left, right) -> (rank, merged id)
    recipe: Mapping[int, str]  # id -> subword
    unk: int

    @property
    def space_id(self) -> int:
        return self.char2id[SPACE_TOKEN]


def _initial_tokens(word: str, chars: Mapping[str, int], space_id: int) -> tuple[list[int], dict[int, str]]:
    """``'▁'`` and the character ids of ``word``; each run of unknown characters is one placeholder
    id (< -1), returned with the run it stands for."""
    tok: list[int] = [space_id]
    unknown: dict[int, str] = {}
    i, n = 0, len(word)
    while i < n:
        c = chars.get(word[i])
        if c is None:
            j = i + 1
            while j < n and word[j] not in chars:
                j += 1
            placeholder = -2 - len(unknown)
            unknown[placeholder] = word[i:j]
            tok.append(placeholder)
            i = j
        else:
            tok.append(c)
            i += 1
    return tok, unknown


def _initial_heap(tok: list[int], rule_of_pair: Mapping[tuple[int, int], tuple[int, int]]) -> list[tuple[int, int]]:
    """The queue of (rule rank, left position) of every adjacent pair that has a rule."""
    heap = []
    for pos in range(len(tok) - 1):
        r = rule_of_pair.get((tok[pos], tok[pos + 1]))
        if r is not None:
            heap.append((r[0], pos))
    heapq.heapify(heap)
    return heap


def _merge(tok: list[int], tables: MergeTables, p: float, draw: Draw) -> list[int]:
    """Apply the rules to ``tok`` in place (a linked list over its positions); returns ``nxt``,
    the next live position of each position (``-1`` at the end)."""
    size = len(tok)
    prev = list(range(-1, size - 1))
    nxt = list(range(1, size + 1))
    nxt[-1] = -1
    rule_of_pair, rules = tables.rule_of_pair, tables.rules
    heap = _initial_heap(tok, rule_of_pair)
    skipped: list[tuple[int, int]] = []
    while True:
        if p > 0.0:  # dropout: each popped merge is put aside with probability p, then put back
            event = None
            while heap:
                cand = heapq.heappop(heap)
                if draw() < p:
                    skipped.append(cand)
                else:
                    event = cand
                    break
            for s in skipped:
                heapq.heappush(heap, s)
            skipped.clear()
            if event is None:
                break
        else:
            if not heap:
                break
            event = heapq.heappop(heap)
        rank, p1 = event
        x, y, z = rules[rank]
        p2 = nxt[p1]
        if tok[p1] != x or p2 == -1 or tok[p2] != y:
            continue  # a stale entry: one of its tokens was merged since it was pushed
        p0, p3 = prev[p1], nxt[p2]
        tok[p2], prev[p2], nxt[p2] = -1, -1, -1
        tok[p1], nxt[p1] = z, p3
        if p3 != -1:
            prev[p3] = p1
        if p0 != -1:
            r = rule_of_pair.get((tok[p0], z))
            if r is not None:
                heapq.heappush(heap, (r[0], p0))
        if p3 != -1:
            r = rule_of_pair.get((z, tok[p3]))
            if r is not None:
                heapq.heappush(heap, (r[0], p1))
    return nxt


def bpe_word(word: str, tables: MergeTables, p: float, draw: Draw) -> tuple[list[int], list[str]]:
    """Ids and subwords of one word (``'▁'`` is prepended here), with BPE-dropout ``p`` drawn from
    ``draw`` (``p=0``: no dropout, ``draw`` unused)."""
    tok, unknown = _initial_tokens(word, tables.char2id, tables.space_id)
    nxt = _merge(tok, tables, p, draw)
    ids: list[int] = []
    pieces: list[str] = []
    pos = 0
    recipe, unk = tables.recipe, tables.unk
    while pos != -1:
        t = tok[pos]
        if t < -1:
            ids.append(unk)
            pieces.append(unknown[t])
        else:
            ids.append(t)
            pieces.append(recipe[t])
        pos = nxt[pos]
    return ids, pieces
