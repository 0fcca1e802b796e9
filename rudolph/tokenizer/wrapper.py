"""ruDALL-E's tokenizer API: :class:`YTTMTokenizerWrapper` around a :class:`~.bpe.BPE`, and :func:`get_tokenizer`."""
from __future__ import annotations

import array
import numbers
import os
import random
from collections.abc import Sequence
from typing import Union

import torch

from rudolph.errors import WeightsNotFoundError
from rudolph.io.hub import hub_download
from rudolph.model.configs import MODELS
from rudolph.tokenizer.bpe import BPE, OutputType
from rudolph.tokenizer.yttm_format import PAD_TOKEN, PathLike

HF_REPO_ID = 'shonenkov/rudalle-utils'
HF_FILENAME = 'bpe.model'

# Name -> package-local model file; ``get_tokenizer(name)`` loads the file.
NAMED_TOKENIZERS: dict[str, PathLike] = {name: spec['tokenizer_path'] for name, spec in MODELS.items()
                                         if spec.get('tokenizer_path')}


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
    Hugging Face cache or, if the hub answers at once, is downloaded (:func:`rudolph.io.hub.hub_download`;
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
