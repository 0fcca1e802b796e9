"""Parity of rudolph.tokenizer with the real youtokentome 1.0.6 (a test-only dependency).

Install it with: pip install "Cython<3" setuptools wheel && pip install --no-build-isolation youtokentome==1.0.6
Without it the parity tests skip locally but FAIL under CI=true.
"""
from __future__ import annotations

import itertools
import os
import random
import re
import statistics

import pytest
import torch
from corpus import faker_lines, rudalle_encode_text

from rudolph import tokenizer as tk
from rudolph.tokenizer import (
    BPE,
    NAMED_TOKENIZERS,
    OutputType,
    SpecialIds,
    YTTMTokenizerWrapper,
    get_tokenizer,
    parse_yttm_model,
    read_yttm_model,
    save_yttm_model,
    train_bpe,
)
from rudolph.tokenizer import bpe as tk_bpe

VOCABS = (300, 1000, 16000)


def _import_yttm():
    if os.environ.get('CI') == 'true':
        import youtokentome  # noqa: F401  -- in CI a missing youtokentome is a failure

        return youtokentome
    return pytest.importorskip('youtokentome')


EDGE_CASES = [
    '', ' ', '   ', '\t', '\n', '\r\n', '\x0b\x0c', ' \t\n ', '▁', '▁▁', ' ▁ ', '▁▁a▁', 'a▁b',
    'Привет', ' Привет', 'Привет ', '  Привет  мир  ', 'Привет\tмир\nи\r\nвсё', 'ПРИВЕТ МИР',
    'hello World', 'HELLO', '12345 67.89 +7 (999) 123-45-67', '!!!???...,,,', '«ёлка» — «Ёлка»',
    '😀', 'a😀b', '😀😀 😀', 'x😀😀y😀', '漢字 かな', 'ﬁ ß Æ', '\x00', 'a\x00b', 'Ä\u0308', '\u200b',
    'non\xa0breaking\xa0space', 'ideographic\u3000space', 'en\u2002space', 'line\u2028sep',
    '\x1c\x1d\x1e\x1f', '\x85next', 'мама мыла раму' * 50, 'а' * 3000, 'аб' * 1500 + ' ' + 'x' * 2000,
    ' '.join(['слово'] * 500), 'ёЁйЙъЪ', 'Tab\t\t\tTab', '\n\n\nтекст\n\n\n',
]


@pytest.fixture(scope='session')
def yttm():
    return _import_yttm()


@pytest.fixture(scope='session')
def corpus() -> list[str]:
    return faker_lines(12000, seed=0)


@pytest.fixture(scope='session')
def models(tmp_path_factory, corpus, yttm) -> dict[int, str]:
    """YTTM models of several vocab sizes trained by youtokentome itself."""
    root = tmp_path_factory.mktemp('yttm')
    data = root / 'train.txt'
    data.write_text('\n'.join(corpus), encoding='utf-8')
    paths = {}
    for vocab in VOCABS:
        path = root / f'bpe{vocab}.model'
        yttm.BPE.train(data=str(data), model=str(path), vocab_size=vocab, n_threads=1)
        paths[vocab] = str(path)
    return paths


@pytest.fixture(scope='session')
def own_models(tmp_path_factory, corpus) -> dict[int, str]:
    """Models written by our own trainer (for the tests that do not need youtokentome)."""
    root = tmp_path_factory.mktemp('own')
    paths = {}
    for vocab in (300, 1000):
        paths[vocab] = str(root / f'own{vocab}.model')
        assert train_bpe(corpus[:400], vocab_size=vocab, path=paths[vocab]).vocab_size == vocab
    return paths


@pytest.fixture(scope='session')
def strings(corpus) -> list[str]:
    """>= 10,000 test strings: unseen faker text, upper case, char soup and edge cases."""
    rnd = random.Random(1)
    fresh = faker_lines(6000, seed=777)
    alphabet = list('абвгдеёжзийклмнопрстуфхцчшщъыьэюяАБВЁЯabcxyzXYZ0123456789 .,!?-—«»()\t\n\r'
                    '\x0b\x0c\u2581\xa0\u3000😀€\x00漢ﬁ') + ['  ', '   ']
    soup = [''.join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 40))) for _ in range(2500)]
    upper = [s.upper() for s in corpus[:1000]]
    spaced = [s.replace(' ', rnd.choice(['  ', '\t', ' \n ', '▁'])) for s in corpus[1000:1500]]
    out = fresh + soup + upper + spaced + corpus[2000:2500] + EDGE_CASES
    assert len(out) >= 10000
    return out


@pytest.fixture(scope='session')
def pairs(models, yttm):
    return {v: (yttm.BPE(p), BPE(p)) for v, p in models.items()}


def _ids_subwords(bpe, texts, ot):
    return bpe.encode(texts, output_type=ot.ID), bpe.encode(texts, output_type=ot.SUBWORD)


# ----------------------------------------------------------------------------- parity

@pytest.mark.parametrize('vocab', VOCABS)
def test_vocab_parity(pairs, vocab):
    ref, ours = pairs[vocab]
    assert ours._hf is not None  # trained models go through the HF engine
    assert ours.vocab_size() == ref.vocab_size() == vocab
    assert ours.vocab() == ref.vocab()
    for i in range(vocab):
        assert ours.id_to_subword(i) == ref.id_to_subword(i)
    probes = ref.vocab() + ['', 'zzzz', '<PAD>', '<UNK>', '<BOS>', '<EOS>', '▁', ' ', 'Привет', '<pad>']
    assert [ours.subword_to_id(s) for s in probes] == [ref.subword_to_id(s) for s in probes]
    for bad in (-1, vocab, vocab + 100):
        with pytest.raises(ValueError, match='id must be in the range'):
            ref.id_to_subword(bad)
        with pytest.raises(ValueError, match=f'id={bad}'):
            ours.id_to_subword(bad)


@pytest.mark.parametrize('vocab', VOCABS)
def test_encode_parity(pairs, strings, vocab, yttm):
    ref, ours = pairs[vocab]
    ref_ids, ref_sub = _ids_subwords(ref, strings, yttm.OutputType)
    assert ours.encode(strings, output_type=OutputType.ID) == ref_ids
    assert ours.encode(strings, output_type=OutputType.SUBWORD) == ref_sub
    # one string per call (cache already warm) and a cold instance, string by string
    cold = BPE(ours.model_path)
    sample = strings[::7]
    assert [cold.encode([s])[0] for s in sample] == [ref.encode([s])[0] for s in sample]
    assert [ours.encode(s) for s in sample[:300]] == [ref.encode(s) for s in sample[:300]]
    # youtokentome's own OutputType enum is accepted too
    assert ours.encode(sample[:50], output_type=yttm.OutputType.SUBWORD) == ref_sub[::7][:50]
    for bos, eos, reverse in itertools.product((False, True), repeat=3):
        for ot in (yttm.OutputType.ID, yttm.OutputType.SUBWORD):
            got = ours.encode(sample[:200], output_type=ot, bos=bos, eos=eos, reverse=reverse)
            assert got == ref.encode(sample[:200], output_type=ot, bos=bos, eos=eos, reverse=reverse)


@pytest.mark.parametrize('vocab', VOCABS)
def test_decode_parity(pairs, strings, vocab):
    ref, ours = pairs[vocab]
    ids = ref.encode(strings)
    assert ours.decode(ids) == ref.decode(ids)
    special = [0, 1, 2, 3]
    assert ours.decode(ids, ignore_ids=special) == ref.decode(ids, ignore_ids=special)
    rnd = random.Random(vocab)
    noise = [[rnd.randrange(vocab) for _ in range(rnd.randint(0, 25))] for _ in range(2000)]
    assert ours.decode(noise) == ref.decode(noise)
    assert ours.decode(noise, ignore_ids={0, 4, 7}) == ref.decode(noise, ignore_ids={0, 4, 7})
    assert ours.decode(noise[5]) == ref.decode(noise[5])  # a single id list
    assert ours.decode([]) == ref.decode([]) == []
    assert ours.decode([[]]) == ref.decode([[]]) == ['']
    with pytest.raises(ValueError, match=f'vocab_size = {vocab}; id={vocab}'):
        ours.decode([[5, vocab]])
    with pytest.raises(ValueError, match='id=-1'):
        ours.decode([[5, -1]])
    with pytest.raises(TypeError):
        ours.decode('not a list')


def _rudalle_decode_text(ref, encoded):
    return ref.decode(encoded.cpu().numpy().tolist(), ignore_ids=[3, 2, 1, 0])[0]


@pytest.mark.parametrize('vocab', (1000, 16000))
def test_wrapper_parity(pairs, strings, vocab, yttm):
    ref, ours = pairs[vocab]
    wrapper = YTTMTokenizerWrapper(ours)
    assert len(wrapper) == wrapper.vocab_size() == vocab
    assert wrapper.get_pad_token_id() == 0
    for text in strings[::10]:
        for length in (1, 8, 64, 128):
            got = wrapper.encode_text(text, length)
            want = rudalle_encode_text(ref, yttm, text, length)
            assert got.dtype == torch.long and got.shape == (length,)
            assert torch.equal(got, want), (text, length)
            if want.numel() and set(want.tolist()) - {0, 1, 2, 3}:
                assert wrapper.decode_text(got) == _rudalle_decode_text(ref, want)
    assert wrapper.decode_text(torch.tensor([2, 3, 0, 0])) == ''
    assert wrapper.decode_text([2, 3]) == ''


def test_python_engine_parity(pairs, strings, models, yttm):
    """The pure-Python engine (used for BPE-dropout and HF-incompatible models) matches too."""
    for vocab in (300, 16000):
        ref, _ = pairs[vocab]
        py = BPE(models[vocab])
        py._hf = None
        sample = strings[::4]
        assert py.encode(sample) == ref.encode(sample)
        assert py.encode(sample, output_type=OutputType.SUBWORD) == ref.encode(
            sample, output_type=yttm.OutputType.SUBWORD)


def test_hf_engine_spare_unk_id(models, strings):
    """Without a usable unk id (absent, or equal to a token's id) HF gets a spare id for its unknown
    token and it is mapped back afterwards: same result as the Python engine."""
    data = read_yttm_model(models[300])
    sample = strings[::5]
    for unk in (-1, data.char2id[ord('a')]):
        odd = tk.YTTMModelData(data.char2id, data.rules, SpecialIds(unk=unk, pad=0, bos=2, eos=3))
        hf, py = BPE(odd), BPE(odd)
        py._hf = None
        assert hf._hf is not None and hf._hf_unk_id != unk
        assert hf.encode(sample) == py.encode(sample)
        assert any(unk in ids for ids in hf.encode(sample))
        assert hf.encode(sample, output_type=OutputType.SUBWORD) == py.encode(sample, output_type=OutputType.SUBWORD)


def test_word_cache_overflow(pairs, strings, monkeypatch, yttm):
    """The word caches are cleared when full; results stay identical."""
    ref, _ = pairs[1000]
    monkeypatch.setattr(tk_bpe, '_CACHE_MAX', 20)  # the engine's module reads it
    ours = BPE(pairs[1000][1].model_path)
    sample = strings[::9]
    sub = OutputType.SUBWORD
    assert [ours.encode([s])[0] for s in sample] == ref.encode(sample)
    # checked (and cleared) at the start of each call: at most one sentence's words beyond the limit
    assert len(ours._cache) <= 21 + max(len(s.split()) for s in sample)
    assert ours.encode(sample, output_type=sub) == ref.encode(sample, output_type=yttm.OutputType.SUBWORD)
    assert [ours.encode([s], output_type=sub)[0] for s in sample[:300]] == \
        ref.encode(sample[:300], output_type=yttm.OutputType.SUBWORD)


def test_duplicate_subwords_model(tmp_path, yttm):
    """Two ids with the same string (possible in YTTM files) cannot be an HF vocab: Python engine."""
    path = save_yttm_model(
        tmp_path / 'dup.model', {'▁': 4, 'a': 5, 'b': 6, 'c': 7},
        [(6, 7, 8), (5, 8, 9), (5, 6, 10), (10, 7, 11), (4, 11, 12), (4, 9, 13), (4, 5, 14), (14, 6, 15)])
    ref, ours = yttm.BPE(str(path)), BPE(path)
    assert ours._hf is None
    assert ours.vocab() == ref.vocab()
    texts = [''.join(p) for n in range(1, 7) for p in itertools.product('abc d', repeat=n)]
    assert ours.encode(texts) == ref.encode(texts)
    assert ours.encode(texts, output_type=OutputType.SUBWORD) == ref.encode(
        texts, output_type=yttm.OutputType.SUBWORD)
    ids = ref.encode(texts)
    assert ours.decode(ids) == ref.decode(ids)


# ----------------------------------------------------------------------------- BPE-dropout

def test_dropout(pairs, strings, yttm):
    ref, ours = pairs[16000]
    sample = [s for s in strings[:3000] if s.strip()][:1500]
    # p = 1 skips every merge: deterministic, characters only, identical to YTTM
    assert ours.encode(sample, dropout_prob=1.0) == ref.encode(sample, dropout_prob=1.0)
    base_text = ours.decode(ours.encode(sample))
    rng = random.Random(0)
    drop = ours.encode(sample, dropout_prob=0.1, rng=rng)
    assert ours.decode(drop) == base_text  # valid segmentations of the same text
    assert all(0 <= i < 16000 for ids in drop for i in ids)
    sub = ours.encode(sample, output_type=OutputType.SUBWORD, dropout_prob=0.1, rng=random.Random(1))
    assert [''.join(p) for p in sub] == [''.join(p) for p in ours.encode(sample, output_type=OutputType.SUBWORD)]
    # it varies, and a seeded generator reproduces it
    assert drop != ours.encode(sample, dropout_prob=0.1, rng=random.Random(5))
    assert drop == ours.encode(sample, dropout_prob=0.1, rng=random.Random(0))
    random.seed(3)
    a = ours.encode(sample[:100], dropout_prob=0.3)
    random.seed(3)
    assert a == ours.encode(sample[:100], dropout_prob=0.3)
    # same statistics as YTTM's DropoutQueue (same algorithm, different random stream)
    for p in (0.1, 0.5):
        ours_len = statistics.mean(len(x) for x in ours.encode(sample, dropout_prob=p, rng=random.Random(2)))
        ref_len = statistics.mean(len(x) for x in ref.encode(sample, dropout_prob=p))
        assert abs(ours_len - ref_len) / ref_len < 0.03, (p, ours_len, ref_len)
    assert ours.encode(sample[:50], dropout_prob=0.0) == ref.encode(sample[:50])
    wrapper = YTTMTokenizerWrapper(ours)
    t = wrapper.encode_text(sample[0], 256, bpe_dropout=0.2, rng=random.Random(0))
    assert wrapper.decode_text(t) == ours.decode([ref.encode(sample[0])])[0]
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match='dropout_prob'):
            ours.encode(['x'], dropout_prob=bad)


# ----------------------------------------------------------------------------- loading

def test_get_tokenizer_from_path_and_names(own_models, tmp_path, monkeypatch):
    wrapper = get_tokenizer(own_models[1000])
    assert isinstance(wrapper, YTTMTokenizerWrapper) and wrapper.vocab_size() == 1000
    assert (wrapper.eos_id, wrapper.bos_id, wrapper.unk_id, wrapper.pad_id) == (3, 2, 1, 0)
    monkeypatch.setitem(NAMED_TOKENIZERS, 'tiny-test', own_models[300])
    assert get_tokenizer('tiny-test').vocab_size() == 300
    missing = tmp_path / 'nope' / 'bpe.model'
    with pytest.raises(FileNotFoundError, match='nope'):
        get_tokenizer(missing)
    with pytest.raises(FileNotFoundError, match='no-such-tokenizer'):
        get_tokenizer('no-such-tokenizer')
    with pytest.raises(FileNotFoundError, match='nope'):
        BPE(missing)


def test_get_tokenizer_from_hf_cache_offline(own_models, tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    monkeypatch.setattr(huggingface_hub.constants, 'HF_HUB_OFFLINE', True)
    commit = 'a' * 40
    repo = tmp_path / 'models--shonenkov--rudalle-utils'
    snap = repo / 'snapshots' / commit
    snap.mkdir(parents=True)
    (snap / 'bpe.model').write_bytes(open(own_models[1000], 'rb').read())
    (repo / 'refs').mkdir()
    (repo / 'refs' / 'main').write_text(commit)
    wrapper = get_tokenizer(cache_dir=tmp_path)
    assert wrapper.tokenizer.vocab() == BPE(own_models[1000]).vocab()
    assert wrapper.tokenizer.model_path == str(snap / 'bpe.model')
    empty = tmp_path / 'empty'
    empty.mkdir()
    with pytest.raises(Exception, match='(?i)offline|cache|local'):
        get_tokenizer(cache_dir=empty)


def test_model_file_errors(tmp_path):
    bad = tmp_path / 'bad.model'
    bad.write_text('2 1\n9601 4\n')
    with pytest.raises(ValueError, match='truncated'):
        read_yttm_model(bad)
    bad.write_text('x y\n')
    with pytest.raises(ValueError, match='only integers'):
        read_yttm_model(bad)
    with pytest.raises(ValueError, match='U\\+2581'):
        BPE(parse_yttm_model('1 0\n97 4\n1 0 2 3\n'))


def test_not_a_yttm_model_file(tmp_path):
    """Files that are not YTTM models: ValueError naming the path and the expected format."""
    good = train_bpe(['ab abc abd', 'ab ab bc'], vocab_size=12, path=tmp_path / 'good.model')
    text = (tmp_path / 'good.model').read_text(encoding='ascii')
    assert read_yttm_model(tmp_path / 'good.model') == good
    cases = {
        'random.model': (bytes(range(256)) * 4, 'binary or non-ASCII data'),
        'utf8.model': ('привет мир\n'.encode(), 'binary or non-ASCII data'),
        'garbage.txt': (b'hello, this is not a model\n', 'only integers'),
        'empty.model': (b'', 'empty file'),
        'blank.model': (b'\n  \n', 'empty file'),
        'header.model': (b'7\n', 'header line'),
        'truncated.model': (text[:len(text) // 2].encode('ascii'), 'truncated YTTM model'),
        'no_specials.model': (text.rsplit('\n', 2)[0].encode('ascii') + b'\n', 'truncated YTTM model'),
    }
    for name, (blob, what) in cases.items():
        path = tmp_path / name
        path.write_bytes(blob)
        for load in (read_yttm_model, BPE, get_tokenizer):
            with pytest.raises(ValueError, match=re.escape(str(path)) + '.*' + what) as info:
                load(path)
            message = str(info.value)
            assert 'expected' in message and ('YTTM' in message), (name, message)


# ----------------------------------------------------------------------------- writer / trainer

def test_writer_roundtrip(models, tmp_path, yttm, strings):
    data = read_yttm_model(models[1000])
    out = tk.write_yttm_model(tmp_path / 'copy' / 'bpe.model', data)
    assert read_yttm_model(out) == data
    ref, ours = yttm.BPE(str(out)), BPE(out)
    assert ours.vocab() == ref.vocab() == yttm.BPE(models[1000]).vocab()
    assert ours.encode(strings[:500]) == ref.encode(strings[:500])
    # save_yttm_model with characters as keys
    path = save_yttm_model(tmp_path / 'tiny.model', {'▁': 4, 'a': 5, 'b': 6}, [(5, 6, 7), (4, 7, 8)],
                           SpecialIds(unk=1, pad=0, bos=2, eos=3))
    ref, ours = yttm.BPE(str(path)), BPE(path)
    assert ours.vocab() == ref.vocab() == ['<PAD>', '<UNK>', '<BOS>', '<EOS>', '▁', 'a', 'b', 'ab', '▁ab']
    texts = ['ab', 'abab ba', 'b a  c', '', 'abc']
    assert ours.encode(texts) == ref.encode(texts)
    with pytest.raises(ValueError, match='U\\+2581'):
        save_yttm_model(tmp_path / 'x.model', {'a': 4}, [])
    with pytest.raises(ValueError, match='already used'):
        save_yttm_model(tmp_path / 'x.model', {'▁': 4, 'a': 4}, [])
    with pytest.raises(ValueError, match='rule #0'):
        save_yttm_model(tmp_path / 'x.model', {'▁': 4, 'a': 5}, [(5, 9, 6)])
    with pytest.raises(ValueError, match='0..vocab_size-1'):
        save_yttm_model(tmp_path / 'x.model', {'▁': 4, 'a': 6}, [])
    with pytest.raises(ValueError, match='whitespace'):
        save_yttm_model(tmp_path / 'x.model', {'▁': 4, ' ': 5}, [])


def test_train_bpe(tmp_path, yttm, corpus):
    path = tmp_path / 'trained.model'
    data = train_bpe(corpus[:300], vocab_size=400, path=path)
    assert data.vocab_size == 400
    ref, ours = yttm.BPE(str(path)), BPE(path)
    assert ours.vocab() == ref.vocab()
    sample = corpus[300:600] + EDGE_CASES
    assert ours.encode(sample) == ref.encode(sample)
    assert ours.decode(ours.encode(corpus[:100])) == [' '.join(s.split()) for s in corpus[:100]]
    with pytest.raises(ValueError, match='too small'):
        train_bpe(['abc'], vocab_size=5)


# ----------------------------------------------------------------------------- wrapper details

def test_prepare_tokens_and_errors(own_models):
    wrapper = get_tokenizer(own_models[300])
    t = wrapper.prepare_tokens([2, 10, 11, 3], 6)
    assert t.dtype == torch.long and t.tolist() == [2, 10, 11, 3, 0, 0]
    assert wrapper.prepare_tokens([2, 10, 11, 3], 3).tolist() == [2, 10, 11]  # the cut drops eos
    assert wrapper.prepare_tokens(torch.tensor([2, 3]), 2).tolist() == [2, 3]
    assert wrapper.prepare_tokens([2, 3], 0).shape == (0,)
    with pytest.raises(ValueError, match='text_seq_length'):
        wrapper.prepare_tokens([2, 3], -1)
    with pytest.raises(ValueError, match='1-D'):
        wrapper.decode_text(torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(TypeError, match='output_type'):
        wrapper.tokenizer.encode(['x'], output_type='bytes')
    with pytest.raises(UnicodeEncodeError):
        wrapper.tokenizer.encode(['bad \ud800 surrogate'])
    for bad in ([1], ['ok', None], ('ok', b'x')):
        with pytest.raises(TypeError, match='every sentence must be a str'):
            wrapper.tokenizer.encode(bad)
    with pytest.raises(TypeError, match='list/tuple'):
        wrapper.tokenizer.encode(iter(['x']))
    # any sequence of ids; a pad id other than 0 is used as well
    assert wrapper.prepare_tokens((2, 10, 3), 5).tolist() == [2, 10, 3, 0, 0]
    wrapper.pad_id = 7
    assert wrapper.prepare_tokens(iter([2, 10, 3]), 5).tolist() == [2, 10, 3, 7, 7]


def test_pickle(own_models):
    import pickle

    wrapper = get_tokenizer(own_models[1000])
    text = 'Привет, мир! Hello 😀'
    wrapper.encode_text(text, 32)  # fill the cache; it is not pickled
    clone = pickle.loads(pickle.dumps(wrapper))
    assert clone.tokenizer._cache == {}
    assert torch.equal(clone.encode_text(text, 32), wrapper.encode_text(text, 32))
    assert clone.tokenizer.model_path == own_models[1000]


# ----------------------------------------------------------------------------- issue 11

def test_pad_id_minus_one_parity(tmp_path, corpus, strings, yttm):
    """With pad_id=-1, '▁' gets id 0, which youtokentome never emits bare at a word start."""
    data = tmp_path / 'train.txt'
    data.write_text('\n'.join(corpus[:3000]), encoding='utf-8')
    path = tmp_path / 'nopad.model'
    yttm.BPE.train(data=str(data), model=str(path), vocab_size=500, n_threads=1, pad_id=-1)
    ref, ours = yttm.BPE(str(path)), BPE(path)
    assert ref.subword_to_id('▁') == ours.subword_to_id('▁') == 0
    sample = strings[::4] + ['S S S', 'State', '▁', ' x ', '😀 x']
    assert ours.encode(sample, output_type=OutputType.ID) == ref.encode(sample, output_type=yttm.OutputType.ID)
    assert ours.encode(sample, output_type=OutputType.SUBWORD) == ref.encode(sample,
                                                                           output_type=yttm.OutputType.SUBWORD)
    assert ours.encode(['State'], bos=True, eos=True) == ref.encode(['State'], bos=True, eos=True)
    slow = BPE(path)
    slow._hf = None  # the pure-Python engine (used for models with duplicate subwords) agrees too
    assert slow.encode(sample[:500], output_type=OutputType.ID) == ref.encode(sample[:500])
    assert slow.encode(sample[:500], output_type=OutputType.SUBWORD) == ref.encode(
        sample[:500], output_type=yttm.OutputType.SUBWORD)


def _fill_tokenizer_cache(cache, model_file):
    commit = 'b' * 40
    repo = cache / 'models--shonenkov--rudalle-utils'
    (repo / 'snapshots' / commit).mkdir(parents=True)
    (repo / 'snapshots' / commit / 'bpe.model').write_bytes(open(model_file, 'rb').read())
    (repo / 'refs').mkdir()
    (repo / 'refs' / 'main').write_text(commit)


def test_get_tokenizer_takes_every_model_name(own_models, tmp_path, monkeypatch):
    import huggingface_hub.constants

    from rudolph.model import MODELS

    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    monkeypatch.setattr(huggingface_hub.constants, 'HF_HUB_OFFLINE', True)
    _fill_tokenizer_cache(tmp_path, own_models[300])
    for name, spec in MODELS.items():
        wrapper = get_tokenizer(name, cache_dir=tmp_path)
        expected = spec.get('tokenizer_path') or own_models[300]  # published models: ruDALL-E's (hub) tokenizer
        assert wrapper.tokenizer.vocab() == BPE(expected).vocab(), name
    assert get_tokenizer('tiny-shapes').vocab_size() == BPE(MODELS['tiny-shapes']['tokenizer_path']).vocab_size()


def test_offline_empty_cache_says_how_to_get_the_tokenizer(tmp_path, monkeypatch):
    import huggingface_hub.constants

    from rudolph.errors import WeightsNotFoundError

    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    monkeypatch.setattr(huggingface_hub.constants, 'HF_HUB_OFFLINE', True)
    with pytest.raises(WeightsNotFoundError) as info:
        get_tokenizer(cache_dir=tmp_path)
    message = str(info.value)
    assert 'shonenkov/rudalle-utils/bpe.model' in message and 'HF_HUB_OFFLINE' in message
    assert f'hf download shonenkov/rudalle-utils bpe.model --cache-dir {tmp_path}' in message
    assert "get_tokenizer('path/to/bpe.model')" in message


# ----------------------------------------------------------------------------- package layout

def test_package_exports_the_former_module_names():
    """rudolph.tokenizer is a package now; every public name of the former single module is still
    importable from it, as the very object its submodule defines (monkeypatching the package's
    get_tokenizer is what the CLI and the components see)."""
    from rudolph.tokenizer import bpe, train, wrapper, yttm_format

    assert tk.__all__ == [
        'BPE', 'NAMED_TOKENIZERS', 'OutputType', 'SPACE_TOKEN', 'SpecialIds', 'YTTMModelData',
        'YTTMTokenizerWrapper', 'get_tokenizer', 'parse_yttm_model', 'read_yttm_model',
        'save_yttm_model', 'train_bpe', 'write_yttm_model',
    ]
    homes = {'BPE': bpe, 'OutputType': bpe, 'train_bpe': train, 'NAMED_TOKENIZERS': wrapper,
             'YTTMTokenizerWrapper': wrapper, 'get_tokenizer': wrapper, 'HF_REPO_ID': wrapper,
             'HF_FILENAME': wrapper}
    for name in tk.__all__ + ['HF_REPO_ID', 'HF_FILENAME', 'UNK_TOKEN', 'PAD_TOKEN', 'BOS_TOKEN', 'EOS_TOKEN']:
        assert getattr(tk, name) is getattr(homes.get(name, yttm_format), name), name
    assert (tk.HF_REPO_ID, tk.HF_FILENAME) == ('shonenkov/rudalle-utils', 'bpe.model')


def test_components_call_the_package_get_tokenizer(monkeypatch):
    """Components (and so the CLI) load the tokenizer through rudolph.tokenizer.get_tokenizer at
    call time, so patching the package attribute reaches them."""
    from rudolph.pretrained.components import Components

    patched, calls = object(), []
    monkeypatch.setattr(tk, 'get_tokenizer', lambda *a, **k: calls.append(a) or patched)
    c = Components.from_pretrained('tiny-shapes', with_vae=False)
    assert c.tokenizer is patched and len(calls) == 1
