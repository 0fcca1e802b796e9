"""Generated Russian (and some English) text for tokenizer tests and the tokenizer benchmark."""
from typing import List


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
