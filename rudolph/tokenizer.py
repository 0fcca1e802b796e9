"""ruDALL-E / RuDOLPH text tokenizer, compatible with YouTokenToMe (YTTM) 1.0.6 without needing it.

RuDOLPH reads and writes text with ruDALL-E's YTTM BPE model file ``bpe.model``. ``youtokentome``
no longer builds on current Python, so this module reads the YTTM model file itself and encodes
with HF ``tokenizers``' BPE engine, wrapped so that ids, subwords and decoded text are identical to
youtokentome 1.0.6 for the same model file. Words are split in Python and every distinct word is
BPE-encoded once, by one call of HF's BPE model on that word, and then served from a word cache
(up to 2**18 words, then cleared).

Why not a whole HF ``tokenizers.Tokenizer`` (pre-tokenizer + model, ``encode``/``encode_batch``)?
It reproduces YTTM exactly (``Split`` on the separator runs, then ``Metaspace`` with
``prepend_scheme='always'``), but its pipeline costs about 1.5 us per word (normalized-string
alignments, offsets, the ``Encoding`` object): 3-4x slower than youtokentome, warm or cold, single
or batched. ``str.split`` + a dict lookup per known word + ``Model.tokenize`` per new word
(~3 us) is faster than both. (Joining many new words into one HF call, or ``encode_batch_fast`` on
them, was slower per word too.)

YTTM's algorithm, as implemented in ``youtokentome/cpp/bpe.cpp`` (1.0.6) and mirrored here:

* The model file holds whitespace separated integers: ``n_chars n_rules``, then ``n_chars`` lines
  ``code_point id``, then ``n_rules`` lines ``left right merged`` (ids), then ``unk pad bos eos``.
  The priority of a rule is its line index (earlier first), *not* its merged id.
* A sentence is split into words on the characters ``\\t \\n \\v \\f \\r``, space and U+2581
  (``isspace`` of the C/UTF-8 locale for code points < 256, plus the meta symbol ``▁``); runs of
  them collapse, leading and trailing ones vanish. Other Unicode spaces (NBSP, U+3000, ...) are
  ordinary characters. Each word is prefixed with ``▁``.
* Inside a word every maximal run of characters that are not in the model's alphabet becomes one
  token: id ``unk``, subword = the original run of characters. Such a token never merges.
* Merging: a priority queue of (rule index, position); the smallest rule index wins, ties go to the
  leftmost position; after a merge the new neighbour pairs are pushed. HF ``tokenizers``' BPE uses
  the same rule (it was ported from YTTM), so it is used for speed when the model can be expressed
  as an HF vocabulary (no two ids with the same string); otherwise, and for BPE-dropout, a pure
  Python port of YTTM's loop runs.
* BPE-dropout (YTTM's ``DropoutQueue``): every time the queue's best merge is popped, it is put
  aside with probability ``p`` and the next best is tried; the put-aside merges go back into the
  queue once a merge is done, and are dropped for good when the queue runs dry. ``p=1`` thus gives
  characters only. YTTM draws from a global, unseedable C++ ``mt19937``; here the draws come from
  Python's :mod:`random` module (seed it with ``random.seed``; PyTorch's ``DataLoader`` seeds it
  per worker) or from an explicit ``rng=random.Random(seed)`` argument.
* Decoding maps ``<UNK> <PAD> <BOS> <EOS>`` ids to those strings, a token's leading ``▁`` to a
  space, concatenates, and drops one leading space of the first piece.
"""
from __future__ import annotations

import array
import enum
import heapq
import numbers
import os
import random
import re
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

import torch

from .errors import CorruptCheckpointError, WeightsNotFoundError
from .hub import hub_download
from .model.configs import MODELS

__all__ = [
    'BPE', 'NAMED_TOKENIZERS', 'OutputType', 'SPACE_TOKEN', 'SpecialIds', 'YTTMModelData',
    'YTTMTokenizerWrapper', 'get_tokenizer', 'parse_yttm_model', 'read_yttm_model',
    'save_yttm_model', 'train_bpe', 'write_yttm_model',
]

PathLike = Union[str, os.PathLike]

SPACE_TOKEN = '\u2581'
UNK_TOKEN, PAD_TOKEN, BOS_TOKEN, EOS_TOKEN = '<UNK>', '<PAD>', '<BOS>', '<EOS>'
HF_REPO_ID = 'shonenkov/rudalle-utils'
HF_FILENAME = 'bpe.model'

# Name -> package-local model file; ``get_tokenizer(name)`` loads the file.
NAMED_TOKENIZERS: dict[str, PathLike] = {name: spec['tokenizer_path'] for name, spec in MODELS.items()
                                         if spec.get('tokenizer_path')}

# Characters YTTM splits words on: C-locale isspace() below 256, plus the meta symbol itself.
_YTTM_SPACES = '\t\n\v\f\r \u2581'
_WORD_RE = re.compile('[^' + re.escape(_YTTM_SPACES) + ']+')
# Name of the unknown-run token inside the HF vocabulary; no YTTM subword can contain two '▁'.
_HF_UNK = SPACE_TOKEN * 2 + '<UNK>'
_CACHE_MAX = 1 << 18


class OutputType(enum.Enum):
    """What :meth:`BPE.encode` returns, as ``youtokentome.OutputType``."""

    ID = 1
    SUBWORD = 2


@dataclass(frozen=True)
class SpecialIds:
    """Ids of the special tokens (``-1`` = absent), in the order of YTTM's file: unk pad bos eos."""

    unk: int = 1
    pad: int = 0
    bos: int = 2
    eos: int = 3

    def as_tuple(self) -> tuple[int, int, int, int]:
        return self.unk, self.pad, self.bos, self.eos

    def present(self) -> list[int]:
        return [i for i in self.as_tuple() if i != -1]


@dataclass
class YTTMModelData:
    """Contents of a YTTM model file: ``char2id`` maps code points to ids, ``rules`` are
    ``(left_id, right_id, merged_id)`` in priority order."""

    char2id: dict[int, int]
    rules: list[tuple[int, int, int]]
    special_ids: SpecialIds = field(default_factory=SpecialIds)

    @property
    def vocab_size(self) -> int:
        return len(self.char2id) + len(self.rules) + len(self.special_ids.present())


def _is_yttm_space(ch: str) -> bool:
    return ch in _YTTM_SPACES


# ----------------------------------------------------------------------------- model file I/O

def parse_yttm_model(text: str, source: str = '<string>') -> YTTMModelData:
    """Parse the text of a YTTM model file; ``source`` names it in error messages.

    Text that is not a YTTM model raises :class:`~rudolph.errors.CorruptCheckpointError` (a ``ValueError``).
    """
    tokens = text.split()
    try:
        values = [int(t) for t in tokens]
    except ValueError as err:
        raise CorruptCheckpointError(f'{source}: not a YTTM BPE model: a YTTM model file holds only integers ({err}); '
                         f'expected {_YTTM_FILE_LAYOUT}') from None
    if len(values) < 2:
        raise CorruptCheckpointError(f'{source}: not a YTTM BPE model: expected a header line "n_chars n_rules", '
                         f'got {text[:80]!r}')
    n_chars, n_rules = values[0], values[1]
    if n_chars < 0 or n_rules < 0:
        raise CorruptCheckpointError(f'{source}: header counts must be >= 0, got n_chars={n_chars}, n_rules={n_rules}')
    need = 2 + 2 * n_chars + 3 * n_rules + 4
    if len(values) < need:
        raise CorruptCheckpointError(
            f'{source}: truncated YTTM model: header announces {n_chars} chars and {n_rules} rules, '
            f'so at least {need} integers were expected, found {len(values)}')
    pos = 2
    char2id: dict[int, int] = {}
    for _ in range(n_chars):
        code, idx = values[pos], values[pos + 1]
        pos += 2
        if not 0 <= code < 0x110000:
            raise CorruptCheckpointError(f'{source}: character code {code} is not a Unicode code point')
        char2id[code] = idx
    rules = []
    for _ in range(n_rules):
        rules.append((values[pos], values[pos + 1], values[pos + 2]))
        pos += 3
    special = SpecialIds(*values[pos:pos + 4])
    return YTTMModelData(char2id, rules, special)


_YTTM_FILE_LAYOUT = ('ASCII text of integers: a header "n_chars n_rules", n_chars lines "code_point id", '
                     'n_rules lines "left_id right_id merged_id", then the 4 special ids "unk pad bos eos"')


def read_yttm_model(path: PathLike) -> YTTMModelData:
    """Read a YTTM ``bpe.model`` file; a file that is not one raises ``ValueError`` naming the path."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'YTTM model file not found: {str(path)!r}')
    raw = path.read_bytes()
    if not raw.strip():
        raise CorruptCheckpointError(f'{path}: empty file ({len(raw)} bytes), not a YTTM BPE model; '
                         f'expected {_YTTM_FILE_LAYOUT}')
    try:
        text = raw.decode('ascii')
    except UnicodeDecodeError as err:
        raise CorruptCheckpointError(f'{path}: not a YTTM BPE model: binary or non-ASCII data (byte '
                                     f'{raw[err.start]:#04x} at offset {err.start}); expected {_YTTM_FILE_LAYOUT}') from None
    return parse_yttm_model(text, source=str(path))


def _validate_for_writing(data: YTTMModelData) -> None:
    special = data.special_ids.present()
    if len(set(special)) != len(special) or any(i < 0 for i in special):
        raise ValueError(f'special ids must be distinct and >= 0 (or -1 = absent), got {data.special_ids}')
    if ord(SPACE_TOKEN) not in data.char2id:
        raise ValueError(f'the alphabet must contain the word-start symbol {SPACE_TOKEN!r} (U+2581)')
    seen: set[int] = set(special)
    for code, idx in data.char2id.items():
        ch = chr(code)
        if ch != SPACE_TOKEN and _is_yttm_space(ch):
            raise ValueError(f'whitespace character {ch!r} cannot be in the alphabet (YTTM splits words on it)')
        if idx in seen:
            raise ValueError(f'id {idx} of character {ch!r} is already used')
        seen.add(idx)
    for i, (x, y, z) in enumerate(data.rules):
        if x not in seen or y not in seen or x in special or y in special:
            raise ValueError(f'rule #{i} {(x, y, z)}: left and right must be ids of earlier tokens')
        if z in seen:
            raise ValueError(f'rule #{i} {(x, y, z)}: merged id {z} is already used')
        seen.add(z)
    if seen != set(range(len(seen))):
        missing = sorted(set(range(max(seen) + 1)) - seen)[:5]
        raise ValueError(f'ids must be exactly 0..vocab_size-1; missing for example {missing}')


def write_yttm_model(path: PathLike, data: YTTMModelData) -> Path:
    """Write ``data`` as a YTTM model file (loadable by youtokentome and by :class:`BPE`)."""
    _validate_for_writing(data)
    lines = [f'{len(data.char2id)} {len(data.rules)}']
    lines += [f'{code} {idx}' for code, idx in sorted(data.char2id.items(), key=lambda kv: kv[1])]
    lines += [f'{x} {y} {z}' for x, y, z in data.rules]
    lines.append(' '.join(str(i) for i in data.special_ids.as_tuple()))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('\n'.join(lines) + '\n', encoding='ascii')
    return path


def save_yttm_model(path: PathLike, chars: Mapping[Union[str, int], int],
                    merges: Iterable[Sequence[int]],
                    special_ids: Union[SpecialIds, Sequence[int]] = SpecialIds()) -> Path:
    """Write a YTTM model file from an alphabet, merge rules and special ids.

    ``chars`` maps characters (or code points) to ids and must contain ``'▁'``; ``merges`` are
    ``(left_id, right_id, merged_id)`` in priority order; ``special_ids`` is a :class:`SpecialIds`
    or ``(unk, pad, bos, eos)``. All ids together must be exactly ``0..vocab_size-1``.
    """
    char2id = {}
    for ch, idx in chars.items():
        if isinstance(ch, str):
            if len(ch) != 1:
                raise ValueError(f'alphabet keys must be single characters or code points, got {ch!r}')
            ch = ord(ch)
        char2id[int(ch)] = int(idx)
    rules = []
    for rule in merges:
        if len(rule) != 3:
            raise ValueError(f'a merge must be (left_id, right_id, merged_id), got {rule!r}')
        rules.append(tuple(int(v) for v in rule))
    if not isinstance(special_ids, SpecialIds):
        if len(special_ids) != 4:
            raise ValueError(f'special_ids must be (unk, pad, bos, eos), got {special_ids!r}')
        special_ids = SpecialIds(*(int(v) for v in special_ids))
    return write_yttm_model(path, YTTMModelData(char2id, rules, special_ids))


# ----------------------------------------------------------------------------- the BPE engine

def _output_kind(output_type: object) -> OutputType:
    """Accept our OutputType, youtokentome's OutputType (same member names) or 'id'/'subword'."""
    if isinstance(output_type, OutputType):
        return output_type
    name = getattr(output_type, 'name', output_type)
    if isinstance(name, str) and name.upper() in ('ID', 'SUBWORD'):
        return OutputType[name.upper()]
    raise TypeError(f'output_type must be OutputType.ID or OutputType.SUBWORD, got {output_type!r}')


class BPE:
    """A YTTM BPE model with youtokentome 1.0.6's Python API (``youtokentome.BPE``).

    ``model`` is a path to a YTTM model file or a :class:`YTTMModelData`. ``n_threads`` is accepted
    for compatibility and ignored.
    """

    def __init__(self, model: Union[PathLike, YTTMModelData], n_threads: int = -1) -> None:
        data = model if isinstance(model, YTTMModelData) else read_yttm_model(model)
        self.model_path = None if isinstance(model, YTTMModelData) else os.fspath(model)
        self.data = data
        self.special_ids = sp = data.special_ids
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
        self._vocab_size = len(data.char2id) + len(data.rules) + len(sp.present())
        specials = {sp.unk: UNK_TOKEN, sp.pad: PAD_TOKEN, sp.bos: BOS_TOKEN, sp.eos: EOS_TOKEN}
        # id_to_subword: special names are checked first (unk, pad, bos, eos order as in YTTM)
        self._subword: dict[int, str] = dict(recipe)
        for i, name in ((sp.eos, EOS_TOKEN), (sp.bos, BOS_TOKEN), (sp.pad, PAD_TOKEN), (sp.unk, UNK_TOKEN)):
            if i != -1:
                self._subword[i] = name
        n = self._vocab_size
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
        # It skips only bookkeeping (~1 us of a ~5 us call); the checks are the ones below.
        if output_type is OutputType.ID and type(sentences) is list and not dropout_prob \
                and not (bos or eos or reverse):
            for s in sentences:
                if not isinstance(s, str):
                    break  # the general path raises the TypeError
            else:
                return self._encode_ids_batch(sentences)
        kind = _output_kind(output_type)
        dropout_prob = float(dropout_prob)
        if not 0.0 <= dropout_prob <= 1.0:
            raise ValueError('dropout_prob value must be in the range [0, 1]. '
                             f'Current value of dropout_prob = {dropout_prob}')
        sp = self.special_ids
        if bos and sp.bos == -1:
            raise ValueError("Can't add <BOS> token. Model was trained without it.")
        if eos and sp.eos == -1:
            raise ValueError("Can't add <EOS> token. Model was trained without it.")
        single = isinstance(sentences, str)
        if single:
            batch: Sequence[str] = [sentences]
        elif isinstance(sentences, (list, tuple)):
            batch = sentences
        else:
            raise TypeError(f'sentences must be a str or a list/tuple of str, got {type(sentences).__name__}')
        for s in batch:
            if not isinstance(s, str):
                raise TypeError(f'every sentence must be a str, got {type(s).__name__}: {s!r}')
        if kind is OutputType.ID:
            if dropout_prob > 0:
                draw = random.random if rng is None else rng.random
                out = [self._encode_ids_dropout(s, dropout_prob, draw) for s in batch]
            else:
                out = self._encode_ids_batch(batch)
        else:
            if dropout_prob > 0:
                draw = random.random if rng is None else rng.random
                out = [self._encode_pieces_dropout(s, dropout_prob, draw) for s in batch]
            else:
                out = self._encode_pieces_batch(batch)
        if bos or eos:
            if kind is OutputType.ID:
                head, tail = [sp.bos] if bos else [], [sp.eos] if eos else []
            else:
                head, tail = [BOS_TOKEN] if bos else [], [EOS_TOKEN] if eos else []
            out = [head + o + tail for o in out]
        if reverse:
            for o in out:
                o.reverse()
        return out[0] if single else out

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
        # per-call overhead (~1.5 us) is lower than any way found of batching words into one call
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

    def _encode_ids_dropout(self, sentence: str, p: float, draw: Callable[[], float]) -> list[int]:
        out: list[int] = []
        for w in self._words(sentence):
            w.encode('utf-8')
            out += self._bpe(w, p, draw)[0]
        return out

    def _encode_pieces_dropout(self, sentence: str, p: float, draw: Callable[[], float]) -> list[str]:
        out: list[str] = []
        for w in self._words(sentence):
            w.encode('utf-8')
            out += self._bpe(w, p, draw)[1]
        return out

    def _bpe_word(self, word: str, p: float,
                  draw: Union[Callable[[], float], None]) -> tuple[list[int], list[str]]:
        """Port of YTTM's ``encode_sentence`` loop for one word (ids and pieces)."""
        chars = self._char2id
        tok: list[int] = [self._space_id]
        unknown: dict[int, str] = {}  # placeholder id (< -1) -> run of unknown characters
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
        size = len(tok)
        prev = list(range(-1, size - 1))
        nxt = list(range(1, size + 1))
        nxt[-1] = -1
        rule_of_pair, rules = self._rule_of_pair, self._rules
        heap = []
        for pos in range(size - 1):
            r = rule_of_pair.get((tok[pos], tok[pos + 1]))
            if r is not None:
                heap.append((r[0], pos))
        heapq.heapify(heap)
        skipped: list[tuple[int, int]] = []
        while True:
            if p > 0.0:
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
                continue
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
        ids: list[int] = []
        pieces: list[str] = []
        pos = 0
        unk = self.special_ids.unk
        while pos != -1:
            t = tok[pos]
            if t < -1:
                ids.append(unk)
                pieces.append(unknown[t])
            else:
                ids.append(t)
                pieces.append(self._recipe[t])
            pos = nxt[pos]
        return ids, pieces

    def _bpe(self, word: str, p: float, draw: Union[Callable[[], float], None]) -> tuple[list[int], list[str]]:
        """:meth:`_bpe_word` without a bare '▁' of id 0, which YTTM leaves out (see ``_drop_bare_space``)."""
        ids, pieces = self._bpe_word(word, p, draw)
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


# ----------------------------------------------------------------------------- ruDALL-E wrapper

class YTTMTokenizerWrapper:
    """ruDALL-E's tokenizer wrapper: ``[bos] + bpe(text) + [eos]``, padded/cut to a fixed length."""

    eos_id = 3
    bos_id = 2
    unk_id = 1
    pad_id = 0

    def __init__(self, bpe: BPE) -> None:
        self.tokenizer = bpe

    def __len__(self) -> int:
        return self.vocab_size()

    def get_pad_token_id(self) -> int:
        return self.tokenizer.subword_to_id(PAD_TOKEN)

    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size()

    def encode_text(self, text: str, text_seq_length: int, bpe_dropout: float = 0.0,
                    rng: Union[random.Random, None] = None) -> torch.Tensor:
        """``[bos] + bpe(text) + [eos]`` as a 1-D ``torch.long`` tensor of ``text_seq_length``."""
        if not isinstance(text, str):
            raise TypeError(f'text must be a str, got {type(text).__name__}')
        if not bpe_dropout and isinstance(self.tokenizer, BPE):
            tokens = self.tokenizer._encode_ids_batch([text])[0]  # what encode([text]) returns
        else:
            extra = {} if rng is None else {'rng': rng}
            tokens = self.tokenizer.encode([text], output_type=OutputType.ID, dropout_prob=bpe_dropout, **extra)[0]
        return self.prepare_tokens([self.bos_id, *tokens, self.eos_id], text_seq_length)

    def prepare_tokens(self, tokens: Sequence[int], text_seq_length: int) -> torch.Tensor:
        """Right-pad ``tokens`` with ``pad_id`` (0) or cut them to ``text_seq_length`` (the cut may
        drop eos); returns a 1-D ``torch.long`` tensor."""
        if isinstance(text_seq_length, bool) or not isinstance(text_seq_length, numbers.Integral) \
                or text_seq_length < 0:
            raise ValueError(f'text_seq_length must be an integer >= 0, got {text_seq_length!r}')
        if isinstance(tokens, torch.Tensor):
            tokens = tokens.tolist()
        elif not isinstance(tokens, list):
            tokens = list(tokens)
        if text_seq_length == 0:
            return torch.zeros(0, dtype=torch.long)  # frombuffer rejects an empty buffer
        buf = array.array('q', tokens[:text_seq_length])
        n_pad = text_seq_length - len(buf)
        if n_pad:
            if self.pad_id == 0:  # zero bytes: ~4x faster than converting n_pad Python ints
                buf.frombytes(bytes(n_pad * buf.itemsize))
            else:
                buf.extend([self.pad_id] * n_pad)
        # ~3x faster than torch.tensor(list); the tensor owns (keeps alive) the private array
        return torch.frombuffer(buf, dtype=torch.long)

    def decode_text(self, encoded) -> str:
        """Text of a 1-D id tensor or list, dropping pad, unk, bos and eos ids."""
        if isinstance(encoded, torch.Tensor):
            if encoded.dim() != 1:
                raise ValueError(f'decode_text expects a 1-D tensor of ids, got shape {tuple(encoded.shape)}')
            encoded = encoded.cpu().tolist()
        return self.tokenizer._decode_one(
            encoded, frozenset((self.eos_id, self.bos_id, self.unk_id, self.pad_id)))


def get_tokenizer(path: Union[PathLike, None] = None, cache_dir: Union[PathLike, None] = None) -> YTTMTokenizerWrapper:
    """Load ruDALL-E's tokenizer, a model's tokenizer or a local YTTM model file.

    ``path`` may be a model file, a name in :data:`NAMED_TOKENIZERS` (the embedded models' packaged
    files) or any other key of ``MODELS`` (the published models use ruDALL-E's tokenizer). Without
    ``path`` (or for a published model), ``bpe.model`` of ``shonenkov/rudalle-utils`` comes from the
    Hugging Face cache or, if the hub answers at once, is downloaded (:func:`rudolph.hub.hub_download`;
    ``HF_HUB_OFFLINE`` and ``cache_dir`` are honoured); when neither works a
    :class:`~rudolph.errors.WeightsNotFoundError` says how to pre-download it.
    """
    if isinstance(path, str) and path in NAMED_TOKENIZERS:
        path = NAMED_TOKENIZERS[path]
    elif path is None or (isinstance(path, str) and path in MODELS):
        path = hub_download(HF_REPO_ID, HF_FILENAME, cache_dir=cache_dir, what="ruDALL-E's tokenizer",
                            local_arg="get_tokenizer('path/to/bpe.model')")
    if not os.path.isfile(path):
        names = ', '.join(sorted(MODELS)) or 'none registered'
        raise WeightsNotFoundError(
            f'tokenizer model file not found: {os.fspath(path)!r} (expected a YTTM bpe.model file '
            f'or a model name: {names})')
    return YTTMTokenizerWrapper(BPE(path))


# ----------------------------------------------------------------------------- a tiny trainer

def train_bpe(texts: Iterable[str], vocab_size: int, path: Union[PathLike, None] = None,
              special_ids: SpecialIds = SpecialIds()) -> YTTMModelData:
    """Train a small YTTM-format BPE model on ``texts`` (pure Python; meant for tiny corpora).

    Words are split and prefixed with ``'▁'`` as YTTM does; the alphabet is every character seen
    (most frequent first, ids after the special ids), then the most frequent adjacent pair is merged
    (ties: smaller ids first) until ``vocab_size`` ids exist or no pair occurs twice. Written to
    ``path`` when given. Not byte-identical to YTTM's trainer, but the file is a valid YTTM model.
    """
    n_special = len(special_ids.present())
    words: Counter[str] = Counter()
    for text in texts:
        if not isinstance(text, str):
            raise TypeError(f'texts must be strings, got {type(text).__name__}')
        words.update(_WORD_RE.findall(text))
    char_counts: Counter[str] = Counter()
    for w, c in words.items():
        for ch in w:
            char_counts[ch] += c
    char_counts[SPACE_TOKEN] += sum(words.values())
    if vocab_size < n_special + len(char_counts):
        raise ValueError(f'vocab_size={vocab_size} is too small: the {n_special} special ids and the '
                         f'{len(char_counts)} characters of the corpus need at least '
                         f'{n_special + len(char_counts)}')
    taken = set(special_ids.present())
    next_id = 0

    def new_id() -> int:
        nonlocal next_id
        while next_id in taken:
            next_id += 1
        taken.add(next_id)
        return next_id

    char2id = {ord(SPACE_TOKEN): new_id()}
    for ch, _ in sorted(char_counts.items(), key=lambda kv: -kv[1]):
        if ch != SPACE_TOKEN:
            char2id[ord(ch)] = new_id()
    seqs = [[char2id[ord(SPACE_TOKEN)]] + [char2id[ord(ch)] for ch in w] for w in words]
    freq = list(words.values())
    pairs: Counter[tuple[int, int]] = Counter()
    where: dict[tuple[int, int], set[int]] = {}  # pair -> indices of the words holding it
    for k, seq in enumerate(seqs):
        for pair in zip(seq, seq[1:]):
            pairs[pair] += freq[k]
            where.setdefault(pair, set()).add(k)
    rules: list[tuple[int, int, int]] = []
    total = n_special + len(char2id)
    while total < vocab_size and pairs:
        # most frequent pair; ties: smaller ids (= more frequent characters) first
        best, count = max(pairs.items(), key=lambda kv: (kv[1], -kv[0][0], -kv[0][1]))
        if count < 2:
            break
        z = new_id()
        rules.append((best[0], best[1], z))
        total += 1
        for k in where.pop(best, ()):
            seq, c = seqs[k], freq[k]
            for pair in zip(seq, seq[1:]):
                pairs[pair] -= c
                if pairs[pair] <= 0:
                    del pairs[pair]
            merged, j = [], 0
            while j < len(seq):
                if j + 1 < len(seq) and seq[j] == best[0] and seq[j + 1] == best[1]:
                    merged.append(z)
                    j += 2
                else:
                    merged.append(seq[j])
                    j += 1
            seqs[k] = merged
            for pair in zip(merged, merged[1:]):
                pairs[pair] += c
                where.setdefault(pair, set()).add(k)
    data = YTTMModelData(char2id, rules, special_ids)
    if path is not None:
        write_yttm_model(path, data)
    return data
