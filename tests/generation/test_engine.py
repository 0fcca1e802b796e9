"""The engine: generation and scoring, its memory estimate (refused before allocating, with the
largest bs that fits).

For the memory estimate (:mod:`rudolph.generation.memory`) only the memory probe (``memory.available_memory``) is mocked; the estimate, the check and
the generation / scoring paths run for real on the tiny model.
"""
import pytest
import torch
from fakes import UnsizedTokenizer
from references import reference_ce

from rudolph import pipelines
from rudolph.api import DEFAULT_SPC_TOKENS, ruDolphApi
from rudolph.errors import ResourceError, RudolphError
from rudolph.generation import engine, memory
from rudolph.generation.engine import Layout, ScorePart, ce_to_ppl, cross_entropy, generate, memory_need

TINY_SPC = {name: 1000 + i for i, name in enumerate(DEFAULT_SPC_TOKENS)}  # the tiny config's special ids


def _image_prefix(lay):
    return torch.tensor([2, 10, 11, 3] + [0] * (lay.L - 4))


def test_generate_refuses_a_batch_that_does_not_fit_and_names_the_bs_that_does(tiny_model, monkeypatch):
    lay = Layout.from_model(tiny_model)
    length, num = lay.L + lay.N2, 40
    need = memory_need(tiny_model, length, logit_positions=1, n_vocab=lay.image_vocab, held_bytes=2 * num * length * 8,
                       forward_positions=1)  # cached decoding feeds one position per step
    monkeypatch.setattr(memory, 'available_memory', lambda device: need.total(3) + 1)
    kwargs = dict(vocab=lay.image_slice, top_k=0, top_p=1.0, seed=0, progress=False)
    with pytest.raises(ResourceError, match='largest bs that fits is 3') as info:
        generate(tiny_model, _image_prefix(lay), length, num, bs=num, **kwargs)
    assert isinstance(info.value, MemoryError) and 'bs=40' in str(info.value)
    assert generate(tiny_model, _image_prefix(lay), length, num, bs=3, **kwargs).shape == (num, length)


def test_generate_refuses_too_many_results_even_with_bs_1(tiny_model, monkeypatch):
    lay = Layout.from_model(tiny_model)
    monkeypatch.setattr(memory, 'available_memory', lambda device: 10 ** 6)
    with pytest.raises(ResourceError, match=r'even with bs=1 \(num=100000'):
        generate(tiny_model, _image_prefix(lay), lay.L + lay.N2, 100000, bs=100000, vocab=lay.image_slice, top_k=0,
                 top_p=1.0, seed=0, progress=False)


def test_without_cache_the_attention_scores_are_counted(tiny_model):
    need = memory_need(tiny_model, 30, logit_positions=1, n_vocab=64, held_bytes=0)
    full = memory_need(tiny_model, 30, logit_positions=1, n_vocab=64, held_bytes=0, full_attention=True)
    assert full.per_row - need.per_row == tiny_model.num_attention_heads * 30 * 30 * 4


def test_real_probe_lets_a_sane_call_pass_and_refuses_a_billion_images(tiny_model):
    assert engine.available_memory('cpu') > 0
    api = ruDolphApi(tiny_model, UnsizedTokenizer(), None, spc_tokens=TINY_SPC, quite=True, bs=4)
    assert api.generate_codebooks('кот', 3, top_k=10, top_p=0.9, seed=0).shape == (3, api.layout.N2)
    with pytest.raises(ResourceError, match='fewer results'):
        api.generate_codebooks('кот', 10 ** 12, top_k=10, top_p=0.9, seed=0)
    with pytest.raises(MemoryError):
        pipelines.generate_codebooks('кот', UnsizedTokenizer(), tiny_model, top_k=5, top_p=0.9, images_num=10 ** 12,
                                     progress=False)


def test_probe_falls_back_to_sysconf_without_proc_meminfo(monkeypatch):
    def no_file(*args, **kwargs):
        raise OSError('no /proc here')
    monkeypatch.setattr(memory, 'open', no_file, raising=False)
    value = engine.available_memory('cpu')
    assert isinstance(value, int) and value > 0


def test_scoring_checks_its_batches_too(tiny_model, monkeypatch):
    lay = Layout.from_model(tiny_model)
    ids = torch.randint(4, 100, (20, lay.L))
    monkeypatch.setattr(memory, 'available_memory', lambda device: 1)
    with pytest.raises(ResourceError, match='scoring'):
        cross_entropy(tiny_model, ids, [ScorePart(0, lay.L - 1, lay.text_slice)], bs=8)
    monkeypatch.setattr(memory, 'available_memory', lambda device: None)  # unknown: nothing is checked
    assert cross_entropy(tiny_model, ids, [ScorePart(0, lay.L - 1, lay.text_slice)], bs=8)[0].shape == (20, lay.L - 1)


# ----------------------------------------------------------------------------- input errors (issue 11, item 7)
@pytest.mark.parametrize('case,match', [
    (dict(prefixes=[2, 10 ** 6]), 'prefix token 1000000 at position 1'),
    (dict(prefixes=[2, -5]), 'prefix token -5 at position 1'),
    (dict(fixed={9: 10 ** 6}), 'fixed token 1000000 at position 9'),
    (dict(vocab=slice(5, 5)), 'vocab must be a non-empty slice'),
    (dict(allowed_token_ids=['a'], vocab=slice(0, 10)), 'allowed_token_ids must be a list of int ids'),
])
def test_generate_names_bad_ids_instead_of_an_index_error(tiny_model, case, match):
    lay = Layout.from_model(tiny_model)
    args = dict(prefixes=_image_prefix(lay), vocab=lay.image_slice)
    args.update(case)
    with pytest.raises(ValueError, match=match) as info:
        generate(tiny_model, args.pop('prefixes'), lay.L + lay.N2, 1, top_k=0, top_p=1.0, seed=0, progress=False,
                 **args)
    assert isinstance(info.value, RudolphError)


def test_prefix_reuse_matches_full_computation(tiny_model):
    lay = Layout.from_model(tiny_model)
    g = torch.Generator().manual_seed(0)
    shared = torch.randint(4, 900, (lay.L + 5,), generator=g)
    ids = torch.cat((shared.expand(6, -1), torch.randint(4, 60, (6, lay.S - lay.L - 5), generator=g)), 1)
    ids[:, lay.L:lay.L + lay.N2] %= lay.image_vocab
    parts = [ScorePart(0, lay.L - 1, lay.text_slice), ScorePart(lay.L, lay.L + lay.N2 - 1, lay.image_slice),
             ScorePart(lay.S - lay.R, lay.S - 1, lay.text_slice, 0)]
    reused = cross_entropy(tiny_model, ids, parts, bs=4)
    full = cross_entropy(tiny_model, ids, parts, bs=4, reuse_prefix=False)
    for a, b in zip(reused, full):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert engine.common_prefix_length(ids) == lay.L + 5


def test_ce_to_ppl():
    ce = torch.tensor([[0.0, 1.0, 2.0], [0.5, 0.0, 0.0], [0.0, 0.0, 0.0]])
    before = ce.clone()
    ppl = ce_to_ppl(ce)
    torch.testing.assert_close(ppl, torch.tensor([(2.718281828 + 7.389056099) / 2, 1.6487212707, 1.0]))
    assert torch.equal(ce, before)


def _pad_right_texts(ids, lay, lengths):
    """Right text of row i: bos, lengths[i] ids, eos, then pads."""
    ids = ids.clone()
    for i, n in enumerate(lengths):
        ids[i, lay.S - lay.R:] = 0
        ids[i, lay.S - lay.R] = 2
        ids[i, lay.S - lay.R + 1:lay.S - lay.R + 1 + n] = torch.arange(10, 10 + n)
        ids[i, lay.S - lay.R + 1 + n] = 3
    return ids


@pytest.mark.parametrize('bs', [1, 3, 8])
def test_truncated_cross_entropy_equals_full(tiny_model, bs):
    lay = Layout.from_model(tiny_model)
    g = torch.Generator().manual_seed(1)
    ids = torch.cat((torch.zeros(7, lay.L, dtype=torch.long), torch.randint(0, lay.image_vocab, (7, lay.N2), generator=g),
                     torch.zeros(7, lay.R, dtype=torch.long)), 1)
    ids = _pad_right_texts(ids, lay, [0, 3, 1, 4, 2, 0, 1])
    parts = [ScorePart(lay.S - lay.R, lay.S - 1, lay.text_slice, ignore_index=0)]
    fast = cross_entropy(tiny_model, ids, parts, bs=bs)[0]
    slow = cross_entropy(tiny_model, ids, parts, bs=bs, reuse_prefix=False, truncate=False)[0]
    full = reference_ce(tiny_model, ids, lay.S - lay.R, lay.S - 1, lay.text_slice, 0)
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fast, full, rtol=1e-5, atol=1e-5)
    assert (fast[:, 6:] == 0).all() and (fast[0, 1:] == 0).all()  # pads give exactly 0
    # with an image part too (reranking by text): nothing is truncated before the image ends
    parts.append(ScorePart(lay.L, lay.L + lay.N2 - 1, lay.image_full_slice))
    for a, b in zip(cross_entropy(tiny_model, ids, parts, bs=bs),
                    cross_entropy(tiny_model, ids, parts, bs=bs, reuse_prefix=False, truncate=False)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
