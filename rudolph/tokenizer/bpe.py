"""The BPE engine: youtokentome 1.0.6's ``BPE`` API on HF ``tokenizers``' BPE model, with a word cache.

Ids, subwords and decoded text are identical to youtokentome 1.0.6 for the same model file. Words
are split in Python (:mod:`.yttm_format` says how) and every distinct word is BPE-encoded once, by
one call of HF's BPE model on that word, and then served from a word cache (up to 2**18 words,
then cleared). Models HF cannot hold (two ids with the same string) and BPE-dropout go through the
pure Python merge loop of :mod:`.yttm_merge`.

Why not a whole HF ``tokenizers.Tokenizer`` (pre-tokenizer + model, ``encode``/``encode_batch``)?
It reproduces YTTM exactly (``Split`` on the separator runs, then ``Metaspace`` with
``prepend_scheme='always'``), but its per-word pipeline (normalized-string alignments, offsets,
the ``Encoding`` object) makes it slower than youtokentome, warm or cold, single or batched.
``str.split`` + a dict lookup per known word + ``Model.tokenize`` per new word is faster than both.
(Joining many new words into one HF call, or ``encode_batch_fast`` on them, was slower per word too.)

BPE-dropout draws come from Python's :mod:`random` module (seed it with ``random.seed``; PyTorch's
``DataLoader`` seeds it per worker) or from an explicit ``rng=random.Random(seed)`` argument.

Decoding maps ``<UNK> <PAD> <BOS> <EOS>`` ids to those strings, a token's leading ``▁`` to a
space, concatenates, and drops one leading space of the first piece.
"""
from __future__ import annotations

import enum
import numbers
import os
import random
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Union

import torch

from rudolph.tokenizer.yttm_format import (
    _WORD_RE,
    BOS_TOKEN,
    EOS_TOKEN,
    PAD_TOKEN,
    SPACE_TOKEN,
    UNK_TOKEN,
    PathLike,
    YTTMModelData,
    read_yttm_model,
)
from rudolph.tokenizer.yttm_merge import Draw, MergeTables, bpe_word

# Name of the unknown-run token inside the HF vocabulary; no YTTM subword can contain two '▁'.
_HF_UNK = SPACE_TOKEN * 2 + '<UNK>'
_CACHE_MAX = 1 << 18


class OutputType(enum.Enum):
    """What :meth:`BPE.encode` returns, as ``youtokentome.OutputType``."""

    ID = 1
    SUBWORD = 2


def _output_kind(output_type: object) -> OutputType:
    """Accept our OutputType, youtokentome's OutputType (same member names) or 'id'/'subword'."""
    if isinstance(output_type, OutputType):
        return output_type
    name = getattr(output_type, 'name', output_type)
    if isinstance(name, str) and name.upper() in ('ID', 'SUBWORD'):
        return OutputType[name.upper()]
    raise TypeError(f'output_type must be OutputType.ID or OutputType.SUBWORD, got {output_type!r}')


def _sentence_batch(sentences: object) -> Sequence[str]:
    """``sentences`` as a sequence of str (a single str is a batch of one); TypeError otherwise."""
    if isinstance(sentences, str):
        batch: Sequence[str] = [sentences]
    elif isinstance(sentences, (list, tuple)):
        batch = sentences
    else:
        raise TypeError(f'sentences must be a str or a list/tuple of str, got {type(sentences).__name__}')
    for s in batch:
        if not isinstance(s, str):
            raise TypeError(f'every sentence must be a str, got {type(s).__name__}: {s!r}')
    return batch


class BPE:
    """A YTTM BPE model with youtokentome 1.0.6's Python API (``youtokentome.BPE``).

    ``model`` is a path to a YTTM model file or a :class:`YTTMModelData`. ``n_threads`` is accepted
    for compatibility and ignored.
    """

    def __init__(self, model: Union[PathLike, YTTMModelData], n_threads: int = -1) -> None:
        data = model if isinstance(model, YTTMModelData) else read_yttm_model(model)
        self.model_path = None if isinstance(model, YTTMModelData) else os.fspath(model)
        self.data = data
        self.special_ids = data.special_ids
        self._init_rules(data)
        self._init_vocab()
        recipe = self._recipe
        self._has_duplicates = len(set(recipe.values())) != len(recipe) or _HF_UNK in recipe.values()
        self._hf = None if self._has_duplicates else self._build_hf()
        self._cache: dict[str, tuple[int, ...]] = {}
        self._piece_cache: dict[str, tuple[str, ...]] = {}

    def __getstate__(self) -> dict:
        # pickle the model contents only (e.g. DataLoader workers under 'spawn'); rebuilt on load
        return {'data': self.data, 'model_path': self.model_path}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state['data'])
        self.model_path = state['model_path']

    def __repr__(self) -> str:
        return f'{type(self).__name__}({self.model_path or "<in memory>"!r}, vocab_size={self._vocab_size})'

    # -- construction helpers
    def _init_rules(self, data: YTTMModelData) -> None:
        """Alphabet, subword of every id (``_recipe``) and the rules by priority and by pair."""
        if ord(SPACE_TOKEN) not in data.char2id:
            raise ValueError(f'{self.model_path or "model"}: the alphabet lacks the word-start symbol '
                             f'{SPACE_TOKEN!r} (U+2581), which every YTTM model has')
        self._space_id = data.char2id[ord(SPACE_TOKEN)]
        # YTTM never emits id 0 from BPE: with pad_id=-1 the bare '▁' of a word gets id 0, and YTTM
        # leaves it out (the word's first piece then has no '▁'). Drop it too, to match.
        self._drop_bare_space = self._space_id == 0
        self._char2id = {chr(c): i for c, i in data.char2id.items()}
        recipe: dict[int, str] = {i: chr(c) for c, i in data.char2id.items()}
        for x, y, z in data.rules:
            if x not in recipe or y not in recipe:
                raise ValueError(f'{self.model_path or "model"}: rule {(x, y, z)} uses an unknown id')
            recipe[z] = recipe[x] + recipe[y]
        self._recipe = recipe
        self._rules = data.rules
        # A pair may appear in several rules: like YTTM (rule2id[...] = i in order) the last wins.
        self._rule_of_pair = {(x, y): (rank, z) for rank, (x, y, z) in enumerate(data.rules)}
        self._vocab_size = len(data.char2id) + len(data.rules) + len(data.special_ids.present())
        self._tables = MergeTables(self._char2id, self._rules, self._rule_of_pair, recipe, data.special_ids.unk)

    def _init_vocab(self) -> None:
        """The id -> subword / decode-piece tables and the subword -> id table."""
        sp, recipe, n = self.special_ids, self._recipe, self._vocab_size
        specials = {sp.unk: UNK_TOKEN, sp.pad: PAD_TOKEN, sp.bos: BOS_TOKEN, sp.eos: EOS_TOKEN}
        # id_to_subword: special names are checked first (unk, pad, bos, eos order as in YTTM)
        self._subword: dict[int, str] = dict(recipe)
        for i, name in ((sp.eos, EOS_TOKEN), (sp.bos, BOS_TOKEN), (sp.pad, PAD_TOKEN), (sp.unk, UNK_TOKEN)):
            if i != -1:
                self._subword[i] = name
        self._vocab = [self._subword.get(i) for i in range(n)]
        # decode pieces: a leading '▁' becomes a space
        self._pieces: list = []
        for i in range(n):
            s = self._subword.get(i)
            if s is not None and i in recipe and i not in specials and s.startswith(SPACE_TOKEN):
                s = ' ' + s[1:]
            self._pieces.append(s)
        # subword_to_id: YTTM's reversed_recipe; on duplicate strings the smallest id is kept.
        self._reversed: dict[str, int] = {}
        for i in sorted(recipe, reverse=True):
            self._reversed[recipe[i]] = i
        for name, i in ((BOS_TOKEN, sp.bos), (EOS_TOKEN, sp.eos)):
            self._reversed[name] = i

    def _build_hf(self):
        from tokenizers.models import BPE as HFBPE

        unk = self.special_ids.unk
        if unk >= 0 and unk not in self._recipe:
            self._hf_unk_id = unk  # HF then returns the final ids as they are
        else:  # no usable unk id (absent, or clashing with a token): a spare id, mapped afterwards
            self._hf_unk_id = max(max(self._recipe), *self.special_ids.present(), 0) + 1
        vocab = {s: i for i, s in self._recipe.items()}
        vocab[_HF_UNK] = self._hf_unk_id
        merges = [(self._recipe[x], self._recipe[y]) for x, y, _ in self._rules]
        # cache_capacity=0: HF's own word cache would only duplicate ours (each word goes to HF once)
        return HFBPE(vocab, merges, unk_token=_HF_UNK, fuse_unk=True, cache_capacity=0)

    # -- YTTM API
    def vocab_size(self) -> int:
        """Number of ids: characters + rules + special tokens (as YTTM counts)."""
        return self._vocab_size

    def vocab(self) -> list[str]:
        """Subword strings indexed by id (``'▁'`` marks a word start, specials as ``<UNK>``...)."""
        if None in self._vocab:
            raise ValueError(f'ids of this model are not contiguous 0..{self._vocab_size - 1}; '
                             f'missing id {self._vocab.index(None)}')
        return list(self._vocab)

    def id_to_subword(self, id: int) -> str:
        """The subword of ``id`` (with ``'▁'``); ValueError when out of range."""
        if not 0 <= id < self._vocab_size or self._vocab[id] is None:
            raise ValueError(f'id must be in the range [0, vocab_size - 1]. Current value: '
                             f'vocab_size = {self._vocab_size}; id={id};')
        return self._vocab[id]

    def subword_to_id(self, subword: str) -> int:
        """The id of ``subword`` (``'<PAD>'`` etc. included); unknown strings give the unk id."""
        sp = self.special_ids
        if subword == UNK_TOKEN:
            return sp.unk
        if subword == PAD_TOKEN:
            return sp.pad
        if subword == BOS_TOKEN:
            return sp.bos
        if subword == EOS_TOKEN:
            return sp.eos
        return self._reversed.get(subword, sp.unk)

    def encode(self, sentences: Union[str, Sequence[str]], output_type: object = OutputType.ID,
               bos: bool = False, eos: bool = False, reverse: bool = False,
               dropout_prob: float = 0.0, *, rng: Union[random.Random, None] = None):
        """Encode a list of sentences into lists of ids or subwords, like ``youtokentome.BPE.encode``.

        A single ``str`` gives a single (flat) list, as in youtokentome. ``dropout_prob`` > 0 is
        BPE-dropout drawn from ``rng`` (default: the global :mod:`random` generator).
        """
        # Hot path, ``encode([text])`` per caption or ``encode(texts)``: ids with default options.
        # It skips only bookkeeping; the checks are the ones below.
        if output_type is OutputType.ID and type(sentences) is list and not dropout_prob \
                and not (bos or eos or reverse):
            for s in sentences:
                if not isinstance(s, str):
                    break  # the general path raises the TypeError
            else:
                return self._encode_ids_batch(sentences)
        kind = _output_kind(output_type)
        dropout_prob = self._check_encode_options(dropout_prob, bos, eos)
        batch = _sentence_batch(sentences)
        out = self._encode_batch(batch, kind, dropout_prob, rng)
        if bos or eos:
            out = self._add_bos_eos(out, kind, bos, eos)
        if reverse:
            for o in out:
                o.reverse()
        return out[0] if isinstance(sentences, str) else out

    def decode(self, ids, ignore_ids: Union[Collection[int], None] = None) -> list[str]:
        """Decode a list of id lists (or one id list) into a list of strings, like youtokentome.

        Ids in ``ignore_ids`` are skipped; special ids decode to ``<UNK>``, ``<PAD>``... .
        """
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        if not isinstance(ids, (list, tuple)):
            raise TypeError(f'{type(ids)} is not a list instance')
        if ignore_ids is not None and not isinstance(ignore_ids, Collection):
            raise TypeError(f'{type(ignore_ids)} is not a Collection instance')
        if len(ids) > 0 and isinstance(ids[0], numbers.Integral):
            ids = [ids]
        ignore = frozenset(ignore_ids) if ignore_ids else frozenset()
        return [self._decode_one(seq, ignore) for seq in ids]

    # -- encoding internals
    def _check_encode_options(self, dropout_prob: float, bos: bool, eos: bool) -> float:
        """``dropout_prob`` as a float in [0, 1]; ValueError for it or for bos/eos the model lacks."""
        dropout_prob = float(dropout_prob)
        if not 0.0 <= dropout_prob <= 1.0:
            raise ValueError('dropout_prob value must be in the range [0, 1]. '
                             f'Current value of dropout_prob = {dropout_prob}')
        sp = self.special_ids
        if bos and sp.bos == -1:
            raise ValueError("Can't add <BOS> token. Model was trained without it.")
        if eos and sp.eos == -1:
            raise ValueError("Can't add <EOS> token. Model was trained without it.")
        return dropout_prob

    def _encode_batch(self, batch: Sequence[str], kind: OutputType, dropout_prob: float,
                      rng: Union[random.Random, None]) -> list[list]:
        """Ids or subwords of every sentence, with dropout when ``dropout_prob`` > 0."""
        if dropout_prob > 0:
            draw = random.random if rng is None else rng.random
            part = 0 if kind is OutputType.ID else 1
            return [self._encode_dropout(s, dropout_prob, draw, part) for s in batch]
        if kind is OutputType.ID:
            return self._encode_ids_batch(batch)
        return self._encode_pieces_batch(batch)

    def _add_bos_eos(self, out: list[list], kind: OutputType, bos: bool, eos: bool) -> list[list]:
        sp = self.special_ids
        if kind is OutputType.ID:
            head, tail = [sp.bos] if bos else [], [sp.eos] if eos else []
        else:
            head, tail = [BOS_TOKEN] if bos else [], [EOS_TOKEN] if eos else []
        return [head + o + tail for o in out]

    def _words(self, sentence: str) -> list[str]:
        # Fast path: printable text without U+2581 has ' ' as its only whitespace of any kind.
        if sentence.isprintable() and SPACE_TOKEN not in sentence:
            return sentence.split()
        return _WORD_RE.findall(sentence)

    def _encode_ids_batch(self, batch: Sequence[str]) -> list[list[int]]:
        cache = self._cache
        if len(cache) > _CACHE_MAX:
            cache.clear()
        words_of = self._words
        out: list[list[int]] = []
        for s in batch:
            ws = words_of(s)
            ids: list[int] = []
            try:  # the common case, every word known: no per-word check (try costs nothing)
                for w in ws:
                    ids += cache[w]
            except KeyError:  # some new word: start the sentence again, encoding new words
                encode_word = self._encode_word
                ids = []
                for w in ws:
                    word_ids = cache.get(w)
                    if word_ids is None:
                        word_ids = cache[w] = encode_word(w)
                    ids += word_ids
            out.append(ids)
        return out

    def _encode_pieces_batch(self, batch: Sequence[str]) -> list[list[str]]:
        cache, piece_cache = self._cache, self._piece_cache
        if len(piece_cache) > _CACHE_MAX:
            piece_cache.clear()
        split = [self._words(s) for s in batch]
        missing = {w for ws in split for w in ws if w not in piece_cache}
        if missing:
            self._fill_cache(missing)
            for w in missing:
                piece_cache[w] = self._pieces_of(w, cache[w])
        out: list[list[str]] = []
        for ws in split:
            pieces: list[str] = []
            for w in ws:
                pieces += piece_cache[w]
            out.append(pieces)
        return out

    def _fill_cache(self, words: Iterable[str]) -> None:
        """Encode the words not yet in the id cache (without dropout) and cache them."""
        cache = self._cache
        if len(cache) > _CACHE_MAX:
            cache.clear()
        for w in words:
            if w not in cache:
                cache[w] = self._encode_word(w)

    def _encode_word(self, word: str) -> tuple[int, ...]:
        """Ids of one word (without dropout; ``'▁'`` is prepended here)."""
        if self._hf is None:
            word.encode('utf-8')  # YTTM (and HF) reject lone surrogates with UnicodeEncodeError
            return tuple(self._bpe(word, 0.0, None)[0])
        # one HF call per word: a word is the unit of BPE (merges never cross words), and
        # per-call overhead is lower than any way found of batching words into one call
        ids = [t.id for t in self._hf.tokenize(SPACE_TOKEN + word)]
        hf_unk, unk = self._hf_unk_id, self.special_ids.unk
        if hf_unk != unk and hf_unk in ids:
            ids = [unk if i == hf_unk else i for i in ids]
        if self._drop_bare_space and ids[0] == 0:
            del ids[0]
        return tuple(ids)

    def _pieces_of(self, word: str, ids: Sequence[int]) -> tuple[str, ...]:
        """Subword strings of an encoded word; an unk covers the maximal run of unknown chars."""
        text = SPACE_TOKEN + word
        unk, recipe, chars = self.special_ids.unk, self._recipe, self._char2id
        pieces = []
        # a dropped bare '▁' (see _drop_bare_space): the first piece then lacks it
        dropped = self._drop_bare_space and (not ids or ids[0] == unk or not recipe[ids[0]].startswith(SPACE_TOKEN))
        pos = len(SPACE_TOKEN) if dropped else 0
        for i in ids:
            if i == unk:
                end = pos
                while end < len(text) and text[end] not in chars:
                    end += 1
                piece = text[pos:end]
            else:
                piece = recipe[i]
            pieces.append(piece)
            pos += len(piece)
        return tuple(pieces)

    def _encode_dropout(self, sentence: str, p: float, draw: Callable[[], float], part: int) -> list:
        """Ids (``part=0``) or subwords (``part=1``) of a sentence with BPE-dropout ``p``."""
        out: list = []
        for w in self._words(sentence):
            w.encode('utf-8')
            out += self._bpe(w, p, draw)[part]
        return out

    def _bpe(self, word: str, p: float, draw: Draw) -> tuple[list[int], list[str]]:
        """The pure Python engine on one word, without a bare '▁' of id 0, which YTTM leaves out
        (see ``_drop_bare_space``)."""
        ids, pieces = bpe_word(word, self._tables, p, draw)
        if self._drop_bare_space and ids[0] == 0:
            del ids[0], pieces[0]
        return ids, pieces

    # -- decoding internals
    def _decode_one(self, seq: Iterable[int], ignore: frozenset) -> str:
        if isinstance(seq, torch.Tensor):
            seq = seq.tolist()
        sel = [i for i in seq if i not in ignore] if ignore else list(seq)
        if not sel:
            return ''
        pieces = self._pieces
        try:
            if min(sel) < 0:
                raise IndexError
            text = ''.join([pieces[i] for i in sel])
        except (IndexError, TypeError):
            for i in sel:
                if not isinstance(i, numbers.Integral):
                    raise TypeError(f'ids must be integers, got {i!r}') from None
                if not 0 <= i < len(pieces) or pieces[i] is None:
                    raise ValueError(f'id must be in the range [0, vocab_size - 1]. Current value: '
                                     f'vocab_size = {self._vocab_size}; id={i};') from None
            raise
        if text[0] == ' ':
            text = text[1:]
        return text
