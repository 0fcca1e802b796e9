"""Pins of exact outputs on the embedded tiny-shapes model and on a seeded tiny random config.

The values were computed once with the code before the decode-path refactor (KVCache.update,
prefill / decode_one, the engine's Sampler) and are kept as literals: the refactor must not
change a single sampled token, and logits / scores only within float noise.
"""
import numpy as np
import pytest
import torch

from rudolph import pipelines
from rudolph.api import ruDolphApi
from rudolph.demo import load_bundle
from rudolph.demo.shapes import render
from rudolph.generation.engine import Layout, ScorePart, cross_entropy, generate

# Floats are float32 results; their last bits depend on the BLAS kernel (AVX2 or AVX-512, thread count) and on
# the PyTorch release, which change the order of the sums. Relative tolerances, per kind of computation:
TOL = 1e-5  # a few float32 layers of the tiny config (eps 1.2e-7, sums of at most a few hundred terms)
# A full forward of the tiny-shapes model, VQGAN decode and re-encode, then perplexities (exp of a mean
# cross-entropy, which turns an absolute error of the log into a relative one): 5e-6 seen between two machines.
LONG_TOL = 1e-4
# Pixel sums are the VQGAN's float output rounded to uint8: a last-bit difference flips a pixel sitting on a
# rounding boundary by one, so the sum (about 2e6) may move by a few units.
PIXEL_SUM_TOL = 50
LONG = {'shapes_forward_checksum', 'shapes_dream', 'shapes_zs_clf', 'shapes_rerank'}


@pytest.fixture(scope='module')
def bundle():
    return load_bundle()


@pytest.fixture(scope='module')
def api(bundle):
    return ruDolphApi(bundle.model, bundle.tokenizer, bundle.vae, quite=True)


def _picture():
    return render('circle', 'red', 'big', 'centre', 'white')


def _checksum(x: torch.Tensor) -> list:
    """A few values of a float tensor: its sum, its absolute sum and four fixed entries."""
    flat = x.detach().double().flatten()
    picks = [0, flat.numel() // 3, flat.numel() // 2, flat.numel() - 1]
    return [float(flat.sum()), float(flat.abs().sum())] + [float(flat[i]) for i in picks]


def _ids(model, seed: int = 0) -> torch.Tensor:
    lay = Layout.from_model(model)
    g = torch.Generator().manual_seed(seed)
    left = torch.randint(4, lay.plain_text_vocab, (2, lay.L), generator=g)
    image = torch.randint(0, lay.image_vocab, (2, lay.N2), generator=g)
    right = torch.randint(4, lay.plain_text_vocab, (2, lay.R), generator=g)
    return torch.cat((left, image, right), dim=1)


def tiny_forward_checksum(model) -> list:
    with torch.no_grad():
        logits, _ = model(_ids(model))
    return _checksum(logits)


def tiny_cached_logits_checksum(model) -> list:
    ids = _ids(model)
    with torch.no_grad():
        _, cache = model(ids[:, :5], use_cache=True)
        steps = [model(ids[:, :t + 1], use_cache=True, cache=cache)[0][:, -1] for t in range(5, ids.shape[1])]
    return _checksum(torch.stack(steps, 1))


def tiny_generate(model) -> list:
    lay = Layout.from_model(model)
    prefix = torch.tensor([2, 10, 11, 3] + [0] * (lay.L - 4))
    seq = generate(model, prefix, lay.L + lay.N2, 3, vocab=lay.image_slice, top_k=8, top_p=0.9, seed=0, bs=2,
                   fixed={lay.L + 5: 7}, progress=False)
    return seq[:, lay.L:].tolist()


def tiny_generate_cfg(model) -> list:
    lay = Layout.from_model(model)
    prefixes = torch.tensor([[2, 10, 11, 3] + [0] * (lay.L - 4), [2, 12, 3] + [0] * (lay.L - 3)])
    seq = generate(model, prefixes, lay.L + lay.N2, 2, vocab=lay.image_slice, top_k=0, top_p=0.95, seed=0,
                   weights=[1.5, 0.5], late_softmax=True, progress=False)
    return seq[:, lay.L:].tolist()


def tiny_generate_text(model) -> list:
    lay = Layout.from_model(model)
    ids = _ids(model)[0, :lay.L + lay.N2 + 1]
    seq = generate(model, ids, lay.S, 3, vocab=lay.text_sample_slice, top_k=16, top_p=1.0, temperature=0.7, seed=0,
                   eos_from=900, allowed_token_ids=list(range(0, 950)), stop_at_eos=True, progress=False)
    return seq[:, lay.L + lay.N2:].tolist()


def tiny_cross_entropy(model) -> list:
    lay = Layout.from_model(model)
    ids = _ids(model)
    ids = torch.cat((ids[:1], ids[:1], ids[1:]))
    ids[1, -2:] = 0
    ce = cross_entropy(model, ids, [ScorePart(lay.L + lay.N2, lay.S - 1, lay.text_slice, ignore_index=0),
                                    ScorePart(lay.L, lay.L + lay.N2 - 1, lay.image_slice)], bs=2)
    return [_checksum(c) for c in ce]


def shapes_forward_checksum(bundle) -> list:
    return tiny_forward_checksum(bundle.model)


def shapes_codebooks(api) -> list:
    return api.generate_codebooks('красный круг', 2, seed=0, bs=2).tolist()


def shapes_dream(api) -> list:
    images, results = api.dream('синий квадрат', 2, 3, seed=0, bs=3)
    pixels = [int(np.asarray(image, dtype=np.int64).sum()) for image in images]
    return [pixels, [[float(r[k]) for k in ('ppl_txt', 'ppl_img', 'score')] for r in results]]


def shapes_caption(api) -> list:
    texts, counts = api.generate_captions(_picture(), captions_num=3, seed=0, bs=3)
    return [texts, [int(c) for c in counts]]


def shapes_zs_clf(api) -> list:
    out = api.zs_clf(_picture(), ['красный', 'синий', 'зеленый'], seed=0)
    return [out['class'], [float(s) for s in out['scores']]]


def shapes_rerank(bundle) -> list:
    codes = bundle.model.get_param('image_seq_length')
    g = torch.Generator().manual_seed(0)
    codebooks = torch.randint(0, 64, (3, codes), generator=g)
    ppl_text, ppl_image = pipelines.self_reranking_by_text('красный круг', codebooks, bundle.tokenizer, bundle.model,
                                                           bs=2)
    return [[float(x) for x in ppl_text], [float(x) for x in ppl_image]]


PINS = {
    'tiny_forward_checksum': [-325.61087088174685, 5960.195493949957, 0.20021122694015503, 0.036880914121866226,
                              0.24828629195690155, 0.11215365678071976],
    'tiny_cached_logits_checksum': [-274.1844751090515, 4945.6925957019075, 0.02876223623752594, 0.05130697041749954,
                                    -0.05516031011939049, 0.11215367168188095],
    'tiny_generate': [[62, 52, 52, 52, 36, 7, 46, 37, 12, 48, 42, 11, 58, 45, 26, 45],
                      [4, 52, 15, 16, 52, 7, 37, 48, 44, 44, 12, 44, 52, 44, 26, 7],
                      [4, 26, 15, 48, 36, 7, 26, 62, 52, 37, 62, 22, 7, 7, 42, 45]],
    'tiny_generate_cfg': [[58, 40, 1, 52, 57, 59, 42, 11, 52, 3, 55, 56, 56, 26, 45, 4],
                          [10, 59, 56, 35, 51, 24, 48, 35, 29, 52, 41, 43, 44, 34, 7, 12]],
    'tiny_generate_text': [[882, 651, 53, 852, 764, 632], [882, 651, 632, 405, 52, 59], [882, 278, 583, 176, 59, 651]],
    'tiny_cross_entropy': [[91.29383182525635, 91.29383182525635, 7.036653995513916, 7.036653995513916,
                            7.148135662078857, 7.004379749298096],
                           [189.26359748840332, 189.26359748840332, 4.120974063873291, 4.120974063873291,
                            4.223468780517578, 4.19820499420166]],
    'shapes_forward_checksum': [-739570.9192068332, 1811574.0328627366, -5.207961559295654, -2.3191797733306885,
                                -0.5558255314826965, -4.909398555755615],
    'shapes_codebooks': [[2, 311, 1979, 1979, 2015, 2, 0, 0, 0, 37, 115, 115, 144, 0, 0, 0, 129, 161, 651, 151, 151,
                          141, 129, 1627, 1676, 661, 669, 1963, 1322, 1345, 1763, 0, 1766, 1609, 1963, 1824, 0, 0, 0,
                          0, 1766, 0, 1630, 1963, 1670, 1673, 0, 0, 1660, 1652, 1656, 1665, 1679, 1668, 0, 0, 1664, 0,
                          0, 1630, 1868, 0, 0, 0],
                         [2, 107, 1872, 1885, 0, 2, 0, 0, 0, 556, 1883, 1885, 0, 0, 0, 0, 0, 0, 50, 1962, 202, 0, 0, 0,
                          45, 1707, 1963, 2012, 2005, 2, 0, 0, 307, 2006, 1795, 1980, 1996, 0, 0, 0, 0, 0, 1804, 0, 0,
                          0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]],
    'shapes_dream': [[2062605, 2282503],
                     [[60.06291961669922, 15355505.0, 0.2074705809354782], [336.7069396972656, 7063086.0, 1.0]]],
    'shapes_caption': [['вопрос: какого цвета фигура? ответ: красный', 'большой красный круг',
                        'на картинке большой красный круг в центре'],
                       [1, 1, 1]],
    'shapes_zs_clf': ['красный', [0.2960841953754425, 0.35100704431533813, 0.35290879011154175]],
    'shapes_rerank': [[604181184.0, 62909748.0, 47812428.0], [512718635008.0, 20871028736.0, 601247252480.0]],
}


def _flat(value) -> list:
    return [x for v in value for x in _flat(v)] if isinstance(value, (list, tuple)) else [value]


def _assert_pinned(name: str, value) -> None:
    """Ints (tokens, counts) and strings exactly; floats to ``TOL`` or ``LONG_TOL`` (relative and absolute)."""
    got, expected = _flat(value), _flat(PINS[name])
    assert len(got) == len(expected), name
    tol = LONG_TOL if name in LONG else TOL
    for g, e in zip(got, expected):
        assert g == (pytest.approx(e, rel=tol, abs=tol) if isinstance(e, float) else e), name


@pytest.mark.parametrize('name', ['tiny_forward_checksum', 'tiny_cached_logits_checksum', 'tiny_generate',
                                  'tiny_generate_cfg', 'tiny_generate_text', 'tiny_cross_entropy'])
def test_tiny_random_config_pins(tiny_model, name):
    _assert_pinned(name, globals()[name](tiny_model))


def test_shapes_forward_pin(bundle):
    _assert_pinned('shapes_forward_checksum', shapes_forward_checksum(bundle))


@pytest.mark.parametrize('name', ['shapes_codebooks', 'shapes_caption', 'shapes_zs_clf'])
def test_shapes_task_pins(api, name):
    _assert_pinned(name, globals()[name](api))


def test_shapes_dream_pin(api):
    pixels, scores = shapes_dream(api)
    expected_pixels, expected_scores = PINS['shapes_dream']
    assert all(abs(g - e) <= PIXEL_SUM_TOL for g, e in zip(pixels, expected_pixels, strict=True)), pixels
    assert _flat(scores) == pytest.approx(_flat(expected_scores), rel=LONG_TOL, abs=LONG_TOL)


def test_shapes_rerank_pin(bundle):
    _assert_pinned('shapes_rerank', shapes_rerank(bundle))
