"""The YouTokenToMe (YTTM) 1.0.6 BPE model file: its contents, reader, writer, and YTTM's word split.

* The model file holds whitespace separated integers: ``n_chars n_rules``, then ``n_chars`` lines
  ``code_point id``, then ``n_rules`` lines ``left right merged`` (ids), then ``unk pad bos eos``.
  The priority of a rule is its line index (earlier first), *not* its merged id.
* A sentence is split into words on the characters ``\\t \\n \\v \\f \\r``, space and U+2581
  (``isspace`` of the C/UTF-8 locale for code points < 256, plus the meta symbol ``▁``); runs of
  them collapse, leading and trailing ones vanish. Other Unicode spaces (NBSP, U+3000, ...) are
  ordinary characters. Each word is prefixed with ``▁``.
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

from rudolph.errors import CorruptCheckpointError

PathLike = Union[str, os.PathLike]

SPACE_TOKEN = '\u2581'
UNK_TOKEN, PAD_TOKEN, BOS_TOKEN, EOS_TOKEN = '<UNK>', '<PAD>', '<BOS>', '<EOS>'

# Characters YTTM splits words on: C-locale isspace() below 256, plus the meta symbol itself.
_YTTM_SPACES = '\t\n\v\f\r \u2581'
_WORD_RE = re.compile('[^' + re.escape(_YTTM_SPACES) + ']+')

_YTTM_FILE_LAYOUT = ('ASCII text of integers: a header "n_chars n_rules", n_chars lines "code_point id", '
                     'n_rules lines "left_id right_id merged_id", then the 4 special ids "unk pad bos eos"')


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


# ----------------------------------------------------------------------------- reading

def _parse_integers(text: str, source: str) -> list[int]:
    """The integers of a model file, checked against the counts its header announces."""
    try:
        values = [int(t) for t in text.split()]
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
    return values


def parse_yttm_model(text: str, source: str = '<string>') -> YTTMModelData:
    """Parse the text of a YTTM model file; ``source`` names it in error messages.

    Text that is not a YTTM model raises :class:`~rudolph.errors.CorruptCheckpointError` (a ``ValueError``).
    """
    values = _parse_integers(text, source)
    n_chars, n_rules = values[0], values[1]
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


# ----------------------------------------------------------------------------- writing

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
