"""The segment codec: one text encoder for the tasks and the fine-tuning data."""
import warnings

import pytest
import torch
from fakes import FakeTokenizer

from rudolph.errors import ConfigError
from rudolph.tasks import sequences as codec
from rudolph.tokenizer import get_tokenizer


@pytest.fixture(scope='module')
def bpe():
    return get_tokenizer('tiny-shapes')


def test_text_segment_layout_and_task_token():
    ids, count = codec.text_segment(FakeTokenizer(), 'ab', 6, special=9)
    assert ids.tolist() == [2, 9, 5, 6, 3, 0] and count == 5
    ids, count = codec.text_segment(FakeTokenizer(), 'abcdef', 4)
    assert ids.tolist() == [2, 5, 6, 7] and count == 8


def _reference_encode_text(tokenizer, text, length, name='text', special=None):
    """The engine's encoder before the codec replaced it (the behaviour the codec keeps)."""
    extra = 0 if special is None else 1
    full = tokenizer.encode_text(text, text_seq_length=max(length, 2 * len(text) + 3))
    count = int((full != 0).sum()) + extra
    if special is not None:
        full = torch.cat((full[:1], full.new_tensor([special]), full[1:]))
    if count > length:
        warnings.warn(f'{name} takes {count} tokens but its segment holds {length}: it is cut to {length} '
                      f'tokens (the end of the text and its eos are dropped): {text[:60]!r}', stacklevel=3)
    return full[:length]


@pytest.mark.parametrize('special', [None, 7])
@pytest.mark.parametrize('text', ['', 'красный круг', 'большой красный круг слева на белом фоне'])
def test_encode_text_matches_the_former_engine_encoder(bpe, text, special):
    with warnings.catch_warnings(record=True) as ours:
        warnings.simplefilter('always')
        got = codec.encode_text(bpe, text, 8, special=special)
    with warnings.catch_warnings(record=True) as theirs:
        warnings.simplefilter('always')
        want = _reference_encode_text(bpe, text, 8, special=special)
    assert torch.equal(got, want)
    assert [str(w.message) for w in ours] == [str(w.message) for w in theirs]
    assert len(ours) == (len(bpe.encode_text(text, 64).nonzero()) + (special is not None) > 8)


def test_bpe_ids_of_a_bare_wrapper_and_of_the_public_tokenizer_agree(bpe):
    class Bare:
        tokenizer = bpe.tokenizer

    assert codec.bpe_ids(Bare(), 'синяя звезда') == codec.bpe_ids(bpe, 'синяя звезда')


def test_task_token_names():
    assert codec.task_token({}, '<LT_T2I>') is None
    assert codec.task_token({'<LT_T2I>': 5}, None) is None
    assert codec.task_token({'<LT_T2I>': 5}, '<LT_T2I>') == 5
    with pytest.raises(ConfigError, match='<LT_X>'):
        codec.task_token({'<LT_T2I>': 5}, '<LT_X>')


def test_encode_text_rejects_a_non_string():
    with pytest.raises(TypeError, match='name'):
        codec.encode_text(FakeTokenizer(), 3, 8, name='name')
