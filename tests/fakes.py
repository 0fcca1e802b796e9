"""Tiny stand-ins for the tokenizer and the VQGAN, so pipeline tests need no downloads."""
import torch
from torch import nn

ALPHABET = ' abcdefghijklmnopqrstuvwxyzабвгдеёжзийклмнопрстуфхцчшщъыьэюя0123456789.,:?!-'


class FakeTokenizer:
    """Character-level: id ``4 + i`` for ``ALPHABET[i]``; ids beyond the alphabet decode to ``'#'``."""

    eos_id, bos_id, unk_id, pad_id = 3, 2, 1, 0

    def vocab_size(self) -> int:
        return 4 + len(ALPHABET)

    def encode_text(self, text: str, text_seq_length: int) -> torch.Tensor:
        ids = [2] + [4 + ALPHABET.index(c) if c in ALPHABET else 1 for c in text] + [3]
        ids = ids[:text_seq_length]
        return torch.tensor(ids + [0] * (text_seq_length - len(ids)), dtype=torch.long)

    def decode_text(self, ids) -> str:
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        return ''.join(ALPHABET[i - 4] if i - 4 < len(ALPHABET) else '#' for i in ids if i > 3)


class UnsizedTokenizer(FakeTokenizer):
    """A tokenizer that does not tell its vocabulary size (every plain text id may be sampled)."""

    vocab_size = None


class FakeVAE(nn.Module):
    """Each 8x8 patch -> one of ``n_codes`` ids (argmax of a strided conv); ids -> 8x8 colour patches."""

    downsample_factor = 8

    def __init__(self, n_codes: int = 64, seed: int = 0):
        super().__init__()
        self.num_tokens = n_codes
        g = torch.Generator().manual_seed(seed)
        self.encoder = nn.Conv2d(3, n_codes, kernel_size=8, stride=8)
        self.codebook = nn.Embedding(n_codes, 3 * 8 * 8)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g))

    @torch.no_grad()
    def get_codebook_indices(self, img: torch.Tensor) -> torch.Tensor:
        assert img.dim() == 4 and img.shape[1] == 3 and img.shape[-1] % 8 == 0 and img.shape[-2] % 8 == 0
        return self.encoder(2 * img - 1).argmax(dim=1).flatten(1)

    @torch.no_grad()
    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        b, n2 = ids.shape
        n = int(n2 ** 0.5)
        patches = torch.sigmoid(self.codebook(ids)).view(b, n, n, 3, 8, 8)
        return patches.permute(0, 3, 1, 4, 2, 5).reshape(b, 3, n * 8, n * 8)


def make_image(size: int = 40, seed: int = 0):
    """A random RGB PIL image (non-square inputs are centre-cropped by the pipelines)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size, size + 6, 3), dtype=np.uint8))


class _CreatesMarker:
    """Unpickling this object opens (creates) the marker file: a stand-in for arbitrary code in a pickle."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, 'w')


def write_malicious_pickle(path, marker, fmt: str = 'torch') -> None:
    """Write ``path`` whose unpickling would create ``marker`` (``fmt``: 'torch' = ``torch.save``, 'pickle')."""
    import pickle

    payload = {'state_dict': {'weight': torch.zeros(2)}, 'evil': _CreatesMarker(marker)}
    if fmt == 'torch':
        torch.save(payload, str(path))
    else:
        with open(path, 'wb') as f:
            pickle.dump(payload, f)


def write_header_only_png(path, width: int, height: int) -> None:
    """A PNG that claims ``width x height`` pixels and holds none: what a decompression bomb's header says."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data) & 0xffffffff)

    ihdr = struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    with open(path, 'wb') as f:
        f.write(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', ihdr) + chunk(b'IDAT', zlib.compress(b'')) + chunk(b'IEND', b''))
