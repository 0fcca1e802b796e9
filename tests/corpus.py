"""Shared by the tokenizer tests and benchmark: generated Russian (and some English) text, and
ruDALL-E's youtokentome-based ``encode_text`` as the reference."""
from typing import List

import numpy as np
import torch


def faker_lines(n: int, seed: int) -> List[str]:
    """``n`` deterministic lines: sentences, addresses, names with phones and e-mails, paragraphs."""
    from faker import Faker

    ru, en = Faker('ru_RU'), Faker('en_US')
    ru.seed_instance(seed)
    en.seed_instance(seed + 1)
    lines = []
    for i in range(n):
        r = i % 10
        if r < 6:
            lines.append(ru.sentence(nb_words=12))
        elif r == 6:
            lines.append(en.sentence(nb_words=10))
        elif r == 7:
            lines.append(ru.address())
        elif r == 8:
            lines.append(f'{ru.name()} {ru.phone_number()} {ru.email()}')
        else:
            lines.append(ru.text(max_nb_chars=200))
    return lines


def rudalle_encode_text(ref, yttm, text: str, length: int, dropout: float = 0.0) -> torch.Tensor:
    """ruDALL-E's ``YTTMTokenizerWrapper.encode_text`` on a youtokentome model ``ref``."""
    tokens = [2] + ref.encode([text], output_type=yttm.OutputType.ID, dropout_prob=dropout)[0] + [3]
    empty = length - len(tokens)
    if empty > 0:
        tokens = np.hstack((tokens, np.zeros(empty)))
    if len(tokens) > length:
        tokens = tokens[:length]
    return torch.tensor(tokens).long()
