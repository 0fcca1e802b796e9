"""rudolph.pipelines (the original package's functions) against the original's uncached loops (tiny model, fp32, CPU)."""
import re

import numpy as np
import pytest
import torch
from fakes import FakeTokenizer, FakeVAE, UnsizedTokenizer, make_image
from references import reference_ce, reference_generate

from rudolph import pipelines, utils
from rudolph.errors import ConfigError, InputError
from rudolph.generation import engine
from rudolph.generation.engine import Layout, ce_to_ppl, generate
from rudolph.image_prompts import ImagePrompts
from rudolph.tasks import sequences as codec
from rudolph.vae.image import preprocess_image


@pytest.fixture
def tok():
    return FakeTokenizer()


@pytest.fixture
def vae():
    return FakeVAE(n_codes=64).eval()


# ----------------------------------------------------------------------------- image generation
def test_codebooks_equal_uncached_reference(tiny_model, tok):
    lay = Layout.from_model(tiny_model)
    got = pipelines.generate_codebooks('кот', tok, tiny_model, top_k=20, top_p=0.9, images_num=5, bs=2, seed=3,
                                       progress=False)
    prefix = tok.encode_text('кот', lay.L)
    ref = reference_generate(tiny_model, prefix, lay.L + lay.N2, 5, 2, lay.image_slice, 20, 0.9, 1.0, 3)
    assert got.shape == (5, lay.N2)
    assert torch.equal(got, ref[:, lay.L:])
    uncached = pipelines.generate_codebooks('кот', tok, tiny_model, top_k=20, top_p=0.9, images_num=5, bs=2, seed=3,
                                            use_cache=False, progress=False)
    assert torch.equal(got, uncached)
    assert got.max() < lay.image_vocab  # image special tokens are never sampled


def test_codebooks_seeded_and_independent_of_global_rng(tiny_model, tok):
    kw = dict(top_k=30, top_p=0.95, images_num=3, bs=3, progress=False)
    torch.manual_seed(0)
    a = pipelines.generate_codebooks('лес', tok, tiny_model, seed=11, **kw)
    torch.manual_seed(1)
    b = pipelines.generate_codebooks('лес', tok, tiny_model, seed=11, **kw)
    c = pipelines.generate_codebooks('лес', tok, tiny_model, seed=12, **kw)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_image_prompts_positions_and_generation(tiny_model, tok, vae):
    lay = Layout.from_model(tiny_model)
    img = make_image(32)
    prompts = ImagePrompts(img, {'up': 1, 'left': 1}, vae, image_size=32)
    assert prompts.image_prompts_idx == [0, 1, 2, 3, 4, 8, 12]
    # FakeVAE codes each 8x8 patch alone, so encoding the band crops gives the same codes
    cropped = ImagePrompts(img, {'up': 1, 'left': 1}, vae, crop_first=True, image_size=32)
    idx = prompts.image_prompts_idx
    assert torch.equal(cropped.image_prompts[0, idx], prompts.image_prompts[0, idx])
    full = vae.get_codebook_indices(preprocess_image(img, 32)[None])[0]
    assert torch.equal(prompts.image_prompts[0], full)

    got = pipelines.generate_codebooks('кот', tok, tiny_model, top_k=20, top_p=0.9, images_num=3, bs=2, seed=5,
                                       image_prompts=prompts, progress=False)
    assert torch.equal(got[:, idx], prompts.image_prompts[0, idx].expand(3, -1))
    fixed = codec.prompt_positions(prompts, lay)
    ref = reference_generate(tiny_model, tok.encode_text('кот', lay.L), lay.L + lay.N2, 3, 2, lay.image_slice,
                             20, 0.9, 1.0, 5, fixed=fixed)
    assert torch.equal(got, ref[:, lay.L:])
    uncached = pipelines.generate_codebooks('кот', tok, tiny_model, top_k=20, top_p=0.9, images_num=3, bs=2, seed=5,
                                            image_prompts=prompts, use_cache=False, progress=False)
    assert torch.equal(got, uncached)


def test_shared_prefix_is_prefilled_once(tiny_model, tok, monkeypatch):
    calls = []
    hidden = tiny_model.hidden

    def spy(input_ids, start=0, cache=None, *args, **kwargs):
        calls.append((input_ids.shape[0], start, input_ids.shape[1]))
        return hidden(input_ids, start, cache, *args, **kwargs)

    monkeypatch.setattr(tiny_model, 'hidden', spy)
    lay = Layout.from_model(tiny_model)
    pipelines.generate_codebooks('кот', tok, tiny_model, top_k=10, top_p=0.9, images_num=7, bs=3, seed=0,
                                 progress=False)
    prefills = [c for c in calls if c[1] == 0]
    assert prefills == [(1, 0, lay.L)]  # once, batch 1, for three batches
    assert all(c[2] == 1 for c in calls if c[1] > 0)  # then one new token per step
    assert len(calls) == 1 + 3 * (lay.N2 - 1)


# ----------------------------------------------------------------------------- text generation
@pytest.mark.parametrize('template', ['', 'кот '])
def test_text_engine_equals_reference(tiny_model, tok, template):
    lay = Layout.from_model(tiny_model)
    prefix = pipelines.template_prefix(tok.encode_text(template, lay.L))
    kw = dict(vocab=lay.text_sample_slice, top_k=0, top_p=1.0, temperature=1.5, seed=2, bs=3,
              eos_from=lay.plain_text_vocab, stop_at_eos=True)
    got = generate(tiny_model, prefix, lay.L, 7, progress=False, **kw)
    ref = reference_generate(tiny_model, prefix, lay.L, 7, 3, kw['vocab'], 0, 1.0, 1.5, 2,
                             eos_from=lay.plain_text_vocab, stop_at_eos=True)
    assert torch.equal(got, ref)
    assert got.max() < lay.plain_text_vocab
    assert torch.equal(got, generate(tiny_model, prefix, lay.L, 7, progress=False, use_cache=False, **kw))


def test_text_stops_when_all_rows_ended(tiny_model, tok):
    lay = Layout.from_model(tiny_model)
    with torch.no_grad():  # make eos (3) overwhelmingly likely
        tiny_model.to_logits[1].bias[3] = 50.0
    steps = []
    hidden = tiny_model.hidden
    tiny_model.hidden = lambda ids, start=0, cache=None, *a, **k: steps.append(start) or hidden(ids, start, cache, *a, **k)
    try:
        out = generate(tiny_model, torch.tensor([2]), lay.L, 4, vocab=lay.text_sample_slice, top_k=0, top_p=1.0,
                       seed=0, bs=4, eos_from=lay.plain_text_vocab, stop_at_eos=True, progress=False)
    finally:
        del tiny_model.hidden
    assert (out[:, 1] == 3).all() and (out[:, 2:] == 0).all()
    assert steps == [0]  # the first step ended every row: no decode step ran


def test_generate_texts_sorted_by_ppl(tiny_model, tok):
    res = pipelines.generate_texts(tok, tiny_model, template='кот', top_k=0, top_p=1.0, texts_num=6, bs=4, seed=1,
                                   progress=False)
    assert res and all(set(r) == {'text', 'ppl'} for r in res)
    assert [r['ppl'] for r in res] == sorted(r['ppl'] for r in res)
    assert len({r['text'] for r in res}) == len(res)
    assert all(r['text'].startswith('кот') for r in res)
    ppl = pipelines.left_text_ppl([r['text'] for r in res], tok, tiny_model)
    assert [round(p, 2) for p in ppl.tolist()] == [r['ppl'] for r in res]
    again = pipelines.generate_texts(tok, tiny_model, template='кот', top_k=0, top_p=1.0, texts_num=6, bs=5, seed=1,
                                     use_cache=False, progress=False)
    assert again == res


@pytest.mark.parametrize('sized', [False, True])
def test_generate_captions_equal_reference(tiny_model, vae, sized):
    # a tokenizer that tells its size makes sampled ids it cannot decode eos, like ids past the plain vocabulary
    tok = FakeTokenizer() if sized else UnsizedTokenizer()
    lay = Layout.from_model(tiny_model)
    img = make_image()
    got = pipelines.generate_captions(img, tok, tiny_model, vae, template='на ', top_k=0, top_p=1.0, captions_num=5,
                                      temperature=2.0, bs=2, seed=4, progress=False)
    image = vae.get_codebook_indices(preprocess_image(img, 32)[None])[0]
    prefix = torch.cat((torch.zeros(lay.L, dtype=torch.long), image, tok.encode_text('на', lay.R)[:3]))
    ref = reference_generate(tiny_model, prefix, lay.S, 5, 2, lay.text_sample_slice, 0, 1.0, 2.0, 4,
                             eos_from=FakeTokenizer().vocab_size() if sized else lay.plain_text_vocab,
                             stop_at_eos=True)
    texts = []
    for row in ref[:, lay.L + lay.N2:]:
        text = tok.decode_text(engine.first_eos_cut(row)).strip()
        if text and text not in texts:
            texts.append(text)
    assert got == texts and all(t.startswith('на') for t in got)
    strict = pipelines.generate_captions(img, tok, tiny_model, vae, template='на ', captions_num=3, bs=3, seed=4,
                                         limit_eos=False, progress=False)
    assert all(isinstance(t, str) for t in strict)


# ----------------------------------------------------------------------------- scoring


def original_attention_mask(right_masks, L, N, R):
    """The original get_attention_mask: rows after the first right-text pad are blocked."""
    S = L + N * N + R
    mask = torch.tril(torch.ones(len(right_masks), 1, S, S))
    for i, index in enumerate(torch.argmin(right_masks, 1)):
        if index:
            mask[i, 0, L + N * N + index:, :] = 0
    return mask


def test_reranking_by_text_equals_reference(tiny_model, tok):
    lay = Layout.from_model(tiny_model)
    codes = torch.randint(0, lay.image_vocab, (5, lay.N2), generator=torch.Generator().manual_seed(0))
    ppl_text, ppl_image = pipelines.self_reranking_by_text('кот', codes, tok, tiny_model, bs=2)
    right = tok.encode_text('кот', lay.R)
    ids = torch.cat((torch.zeros(5, lay.L, dtype=torch.long), codes, right.expand(5, -1)), 1)
    mask = original_attention_mask((right != 0).long().expand(5, -1), lay.L, lay.N, lay.R)
    ref_text = ce_to_ppl(reference_ce(tiny_model, ids, lay.S - lay.R, lay.S - 1, lay.text_slice, 0, mask))
    ref_image = ce_to_ppl(reference_ce(tiny_model, ids, lay.L, lay.L + lay.N2 - 1, lay.image_full_slice))
    torch.testing.assert_close(ppl_text, ref_text, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(ppl_image, ref_image, rtol=1e-4, atol=1e-4)


def test_reranking_by_image_equals_reference(tiny_model, tok, vae):
    lay = Layout.from_model(tiny_model)
    img = make_image()
    texts = ['кот', 'собака на траве', 'кот спит']
    ppl_text, ppl_image = pipelines.self_reranking_by_image(texts, img, tok, tiny_model, vae, bs=2)
    image = vae.get_codebook_indices(preprocess_image(img, 32)[None])
    ids = torch.cat((torch.stack([tok.encode_text(t, lay.L) for t in texts]), image.expand(3, -1)), 1)
    torch.testing.assert_close(ppl_text, ce_to_ppl(reference_ce(tiny_model, ids, 0, lay.L - 1, lay.text_slice, 0)),
                               rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(ppl_image, ce_to_ppl(reference_ce(tiny_model, ids, lay.L, lay.L + lay.N2 - 1,
                                                                 lay.image_full_slice)), rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------- zero-shot classification
@pytest.mark.parametrize('preferred', [1, 2])
def test_zs_clf_picks_the_preferred_class(tiny_model, tok, vae, preferred):
    classes = ['ббб', 'ккк', 'ддд']
    token = tok.encode_text(classes[preferred][0], 3)[1]
    with torch.no_grad():
        tiny_model.to_logits[1].bias[token] = 8.0
    calls = []
    hidden = tiny_model.hidden
    tiny_model.hidden = lambda ids, start=0, cache=None, *a, **k: calls.append((ids.shape, start)) or hidden(
        ids, start, cache, *a, **k)
    try:
        pred = pipelines.zs_clf(make_image(), classes, tiny_model, tok, vae, bs=2, template='{}')
    finally:
        del tiny_model.hidden
    assert pred['label'] == preferred and pred['class'] == classes[preferred]
    assert pred['scores'].shape == (3,) and abs(pred['scores'].sum() - 1) < 1e-5
    lay = Layout.from_model(tiny_model)
    # the image prefix (and the bos of the right text) is computed once, with batch 1
    assert calls[0] == (torch.Size([1, lay.L + lay.N2 + 1]), 0)
    assert all(start == lay.L + lay.N2 + 1 for _, start in calls[1:]) and len(calls) == 3


def test_zs_clf_matches_reference_normalisation(tiny_model, tok, vae):
    lay = Layout.from_model(tiny_model)
    img, classes = make_image(), ['кот', 'собака', 'дом']
    pred = pipelines.zs_clf(img, classes, tiny_model, tok, vae, template='это {}')
    image = vae.get_codebook_indices(preprocess_image(img, 32)[None])
    right = torch.stack([tok.encode_text(f'это {c}', lay.R) for c in classes])
    ids = torch.cat((torch.zeros(3, lay.L, dtype=torch.long), image.expand(3, -1), right), 1)
    ppl = ce_to_ppl(reference_ce(tiny_model, ids, lay.S - lay.R, lay.S - 1, lay.text_slice, 0))
    scores = (ppl / ppl.norm()).softmax(0)
    torch.testing.assert_close(torch.from_numpy(pred['scores']), scores, rtol=1e-4, atol=1e-5)
    assert pred['label'] == int(scores.argmin())


# ----------------------------------------------------------------------------- errors and edges
def test_bad_arguments(tiny_model, tok, vae):
    with pytest.raises(ValueError, match='top_p'):
        pipelines.generate_codebooks('x', tok, tiny_model, top_k=5, top_p=0.0, images_num=1, progress=False)
    with pytest.raises(ValueError, match='top_p'):
        pipelines.generate_texts(tok, tiny_model, top_p=1.2, texts_num=1, progress=False)
    with pytest.raises(ValueError, match='images_num'):
        pipelines.generate_codebooks('x', tok, tiny_model, top_k=5, top_p=0.9, images_num=0)
    with pytest.raises(ValueError, match='bs'):
        pipelines.generate_codebooks('x', tok, tiny_model, top_k=5, top_p=0.9, images_num=1, bs=0)
    with pytest.raises(ValueError, match='classes'):
        pipelines.zs_clf(make_image(), [], tiny_model, tok, vae)
    with pytest.raises(ValueError, match='codebooks'):
        pipelines.self_reranking_by_text('x', torch.zeros(2, 3, dtype=torch.long), tok, tiny_model)
    with pytest.raises(ValueError, match='texts'):
        pipelines.self_reranking_by_image([], make_image(), tok, tiny_model, vae)
    with pytest.raises(ValueError, match='fixed positions'):
        generate(tiny_model, torch.tensor([2]), 5, 1, vocab=slice(0, 10), top_k=0, top_p=1.0, fixed={0: 1})


def test_single_image_and_long_template(tiny_model, tok):
    one = pipelines.generate_codebooks('x', tok, tiny_model, top_k=5, top_p=0.9, images_num=1, seed=0, progress=False)
    assert one.shape == (1, 16)
    with pytest.raises(ValueError, match='template'):
        pipelines.generate_texts(tok, tiny_model, template='очень длинный шаблон', texts_num=1, progress=False)


# ----------------------------------------------------------------------------- return types
def test_return_shapes_and_types(tiny_model, tok, vae):
    lay = Layout.from_model(tiny_model)
    img = make_image()
    codes = pipelines.generate_codebooks('кот', tok, tiny_model, top_k=8, top_p=0.9, images_num=3, bs=2, seed=0,
                                         progress=False)
    assert isinstance(codes, torch.Tensor) and codes.dtype == torch.long and codes.shape == (3, lay.N2)
    caps = pipelines.generate_captions(img, tok, tiny_model, vae, captions_num=3, seed=0, progress=False)
    assert isinstance(caps, list) and all(isinstance(c, str) and c for c in caps)
    texts = pipelines.generate_texts(UnsizedTokenizer(), tiny_model, texts_num=3, seed=0, progress=False)
    assert isinstance(texts, list) and all(isinstance(t['text'], str) and isinstance(t['ppl'], float) for t in texts)
    for ppl in pipelines.self_reranking_by_text('кот', codes, tok, tiny_model, bs=2):
        assert isinstance(ppl, torch.Tensor) and ppl.shape == (3,) and ppl.dtype == torch.float32
        assert torch.isfinite(ppl).all() and (ppl >= 1).all()
    for ppl in pipelines.self_reranking_by_image(['кот', 'дом'], img, tok, tiny_model, vae, bs=1):
        assert isinstance(ppl, torch.Tensor) and ppl.shape == (2,) and torch.isfinite(ppl).all()
    pred = pipelines.zs_clf(img, ['кот', 'дом'], tiny_model, tok, vae)
    assert set(pred) == {'label', 'class', 'scores', 'ties'} and isinstance(pred['label'], int)
    assert isinstance(pred['class'], str) and isinstance(pred['scores'], np.ndarray)
    assert pred['scores'].shape == (2,) and pred['scores'].dtype == np.float32


def test_zs_clf_runs_the_image_once_then_only_class_tokens(tiny_model, tok, vae):
    classes = ['а', 'бб', 'в', 'гггг', 'дд', 'е', 'жжж', 'з', 'ии', 'к']  # 10 classes, 1-4 tokens each
    calls = []
    hidden = tiny_model.hidden
    tiny_model.hidden = lambda ids, start=0, cache=None, *a, **k: calls.append(tuple(ids.shape) + (start,)) or hidden(
        ids, start, cache, *a, **k)
    try:
        pred = pipelines.zs_clf(make_image(), classes, tiny_model, tok, vae, bs=4, template='{}')
    finally:
        del tiny_model.hidden
    lay = Layout.from_model(tiny_model)
    P = lay.L + lay.N2 + 1  # pads, image and the bos of the right text: shared by every class
    assert calls[0] == (1, P, 0)
    rest = calls[1:]
    assert all(start == P for _, _, start in rest) and sum(b for b, _, _ in rest) == len(classes)
    # each class needs its own tokens only (the logits at the last one predict eos); batches of similar lengths
    lengths = sorted(len(c) for c in classes)
    expected = [max(lengths[i:i + 4]) for i in range(0, len(classes), 4)]
    assert [width for _, width, _ in rest] == expected
    assert sum(b * w for b, w, _ in rest) <= sum(lengths) + 4
    ref = pipelines.zs_clf(make_image(), classes, tiny_model, tok, vae, bs=len(classes), template='{}')
    np.testing.assert_allclose(pred['scores'], ref['scores'], rtol=1e-5)


@pytest.mark.parametrize('n_classes,bs', [(1, 4), (3, 1), (5, 2), (9, 4), (4, 4), (6, 16)])
def test_zs_clf_scores_for_any_number_of_classes(tiny_model, tok, vae, n_classes, bs):
    classes = ['кот', 'дом', 'лес', 'река', 'небо', 'сад', 'мост', 'луг', 'дуб'][:n_classes]
    img = make_image()
    pred = pipelines.zs_clf(img, classes, tiny_model, tok, vae, bs=bs, template='это {}')
    assert pred['scores'].shape == (n_classes,) and abs(float(pred['scores'].sum()) - 1) < 1e-5
    assert pred['label'] == int(np.argmin(pred['scores'])) and pred['class'] == classes[pred['label']]
    lay = Layout.from_model(tiny_model)
    image = vae.get_codebook_indices(preprocess_image(img, 32)[None])
    right = torch.stack([tok.encode_text(f'это {c}', lay.R) for c in classes])
    ids = torch.cat((torch.zeros(n_classes, lay.L, dtype=torch.long), image.expand(n_classes, -1), right), 1)
    ppl = ce_to_ppl(reference_ce(tiny_model, ids, lay.S - lay.R, lay.S - 1, lay.text_slice, 0))
    np.testing.assert_allclose(pred['scores'], (ppl / ppl.norm()).softmax(0).detach().numpy(), rtol=1e-4, atol=1e-6)


# ----------------------------------------------------------------------------- bad input
def test_bad_input_messages(tiny_model, tok, vae):
    img = make_image()
    codes = torch.zeros(2, 16, dtype=torch.long)
    gen = dict(top_k=5, top_p=0.9, images_num=1, progress=False)
    cases = [
        (TypeError, 'text', lambda: pipelines.generate_codebooks(None, tok, tiny_model, **gen)),
        (ValueError, 'text', lambda: pipelines.generate_codebooks('  ', tok, tiny_model, **gen)),
        (ValueError, 'images_num', lambda: pipelines.generate_codebooks('x', tok, tiny_model, top_k=5, top_p=0.9,
                                                                        images_num=-1)),
        (ValueError, 'top_k', lambda: pipelines.generate_codebooks('x', tok, tiny_model, top_k=-1, top_p=0.9,
                                                                   images_num=1)),
        (ValueError, 'temperature', lambda: pipelines.generate_codebooks('x', tok, tiny_model, temperature=0, **gen)),
        (ValueError, 'bs', lambda: pipelines.generate_captions(img, tok, tiny_model, vae, bs=0)),
        (ValueError, 'top_p', lambda: pipelines.generate_captions(img, tok, tiny_model, vae, top_p=-0.5)),
        (ValueError, 'texts_num', lambda: pipelines.generate_texts(tok, tiny_model, texts_num=0)),
        (TypeError, 'template', lambda: pipelines.generate_texts(tok, tiny_model, template=5, texts_num=1)),
        (ValueError, 'classes', lambda: pipelines.zs_clf(img, [], tiny_model, tok, vae)),
        (ValueError, 'classes', lambda: pipelines.zs_clf(img, 'кот', tiny_model, tok, vae)),
        (ValueError, 'distinct', lambda: pipelines.zs_clf(img, ['кот', 'Кот'], tiny_model, tok, vae)),
        (ValueError, r'classes\[1\]', lambda: pipelines.zs_clf(img, ['кот', ' '], tiny_model, tok, vae)),
        (TypeError, r'classes\[0\]', lambda: pipelines.zs_clf(img, [3, 'кот'], tiny_model, tok, vae)),
        (ValueError, r"template must contain '\{\}'", lambda: pipelines.zs_clf(img, ['a', 'b'], tiny_model, tok, vae,
                                                                               template='без слота')),
        (ValueError, 'template', lambda: pipelines.zs_clf(img, ['a', 'b'], tiny_model, tok, vae, template='{name}')),
        (ValueError, 'bs', lambda: pipelines.zs_clf(img, ['a', 'b'], tiny_model, tok, vae, bs=0)),
        (ValueError, 'texts', lambda: pipelines.self_reranking_by_image(['кот', ''], img, tok, tiny_model, vae)),
        (ValueError, 'codebooks', lambda: pipelines.self_reranking_by_text('x', codes[:, :15], tok, tiny_model)),
        (ValueError, 'codebooks', lambda: pipelines.self_reranking_by_text('x', [codes[0], codes[0, :3]], tok,
                                                                           tiny_model)),
        (ValueError, 'codebooks', lambda: pipelines.self_reranking_by_text('x', codes + 500, tok, tiny_model)),
        (TypeError, 'codebooks', lambda: pipelines.self_reranking_by_text('x', codes.float(), tok, tiny_model)),
        (ValueError, 'text', lambda: pipelines.self_reranking_by_text('', codes, tok, tiny_model)),
        (TypeError, 'pil_img', lambda: pipelines.zs_clf('img.png', ['a', 'b'], tiny_model, tok, vae)),
    ]
    for error, match, call in cases:
        with pytest.raises(error, match=match):
            call()


def test_components_that_do_not_fit_the_model(tiny_model, tok):
    img = make_image()
    big = FakeTokenizer()
    big.vocab_size = lambda: 5000  # more ids than the tiny model's 1000 plain text ids
    with pytest.raises(ValueError, match='tokenizer has 5000 ids .* 1000 plain text'):
        pipelines.generate_codebooks('кот', big, tiny_model, top_k=5, top_p=0.9, images_num=1)
    with pytest.raises(ValueError, match='VAE has 32 codes but the model draws 64'):
        pipelines.zs_clf(img, ['a', 'b'], tiny_model, tok, FakeVAE(n_codes=32))
    coarse = FakeVAE()
    coarse.downsample_factor = 16
    with pytest.raises(ValueError, match='downsamples images by 16.* 2x2 code grid; the model draws 4x4'):
        pipelines.generate_captions(img, tok, tiny_model, coarse, captions_num=1)


def test_long_text_is_cut_with_a_warning(tiny_model, tok):
    lay = Layout.from_model(tiny_model)
    with pytest.warns(UserWarning, match=rf'text takes 22 tokens but its segment holds {lay.L}'):
        codes = pipelines.generate_codebooks('очень длинный текст!', tok, tiny_model, top_k=5, top_p=0.9,
                                             images_num=1, seed=0, progress=False)
    assert codes.shape == (1, lay.N2)
    with pytest.warns(UserWarning, match=rf'template.format\(classes\[1\]\) takes 16 tokens .* holds {lay.R}'):
        pipelines.zs_clf(make_image(), ['кот', 'большая собака'], tiny_model, tok, FakeVAE(), template='{}')


@pytest.mark.parametrize('mode,size', [('L', (40, 40)), ('RGBA', (32, 50)), ('P', (70, 33)), ('RGB', (8, 13)),
                                       ('1', (16, 16)), ('I;16', (20, 24)), ('CMYK', (33, 33))])
def test_images_of_any_mode_and_size(tiny_model, tok, vae, mode, size):
    from PIL import Image

    rgb = make_image(64).resize(size)
    img = rgb.convert(mode) if mode != 'I;16' else Image.new('I;16', size, 300)
    ids = codec.encode_image(img, vae, tiny_model)
    assert ids.shape == (16,) and ids.dtype == torch.long
    pred = pipelines.zs_clf(img, ['кот', 'дом'], tiny_model, tok, vae)
    assert np.isfinite(pred['scores']).all()


def test_images_smaller_than_a_token_are_errors(tiny_model, tok, vae):
    from PIL import Image

    with pytest.raises(ValueError, match='smaller than one token'):
        pipelines.zs_clf(Image.new('RGB', (3, 5)), ['кот', 'дом'], tiny_model, tok, vae)


# ----------------------------------------------------------------------------- image prompts


def test_image_prompt_tokens_in_pipeline_and_api_outputs(tiny_model, tok, vae):
    from rudolph import ImagePrompts as exported
    from rudolph.api import DEFAULT_SPC_TOKENS, ruDolphApi

    assert exported is ImagePrompts
    prompts = ImagePrompts(make_image(32), {'down': 1, 'right': 1}, vae, image_size=32)
    idx = prompts.image_prompts_idx
    got = pipelines.generate_codebooks('кот', tok, tiny_model, top_k=8, top_p=0.9, images_num=3, bs=2, seed=0,
                                       image_prompts=prompts, progress=False)
    assert torch.equal(got[:, idx], prompts.image_prompts[0, idx].expand(3, -1))
    api = ruDolphApi(tiny_model, tok, vae, spc_tokens={k: 1000 + i for i, k in enumerate(DEFAULT_SPC_TOKENS)},
                     quite=True)
    got = api.generate_codebooks('кот', 3, image_prompts=prompts, bs=2, seed=0)
    assert torch.equal(got[:, idx], prompts.image_prompts[0, idx].expand(3, -1))
    cfg = api.generate_codebooks_cfg('кот', 2, template='рисунок {text}', image_prompts=prompts, seed=0)
    assert torch.equal(cfg[:, idx], prompts.image_prompts[0, idx].expand(2, -1))


# ----------------------------------------------------------------------------- issue 11
class CyrillicTokenizer(FakeTokenizer):
    """Knows no Latin letters (as the published tokenizer knows few): they encode to unk (1)."""

    def encode_text(self, text: str, text_seq_length: int) -> torch.Tensor:
        ids = super().encode_text(text, text_seq_length)
        latin = torch.tensor([c.isascii() and c.isalpha() for c in text[:text_seq_length - 1]])
        ids[1:1 + len(latin)][latin] = 1
        return ids


def test_zs_clf_unknown_classes_warn_and_tie(tiny_model, vae):
    with pytest.warns(UserWarning, match=r"classes \['cat', 'dog'\] encode to unknown tokens only") as record:
        pred = pipelines.zs_clf(make_image(), ['cat', 'кот', 'dog'], tiny_model, CyrillicTokenizer(), vae)
    assert len(record) == 1 and 'кот' not in str(record[0].message)
    assert pred['class'] in pred['ties'] and len(pred['scores']) == 3
    with pytest.warns(UserWarning, match='unknown tokens only'):
        tied = pipelines.zs_clf(make_image(), ['cat', 'dog'], tiny_model, CyrillicTokenizer(), vae)
    assert tied['ties'] == ['cat', 'dog'] and tied['class'] == 'cat'


def test_zs_clf_known_classes_do_not_warn(tiny_model, tok, vae, recwarn):
    pred = pipelines.zs_clf(make_image(), ['cat', 'кот', 'dog'], tiny_model, tok, vae)  # tok knows Latin
    assert pred['ties'] == [pred['class']]
    assert not [w for w in recwarn if 'unknown tokens' in str(w.message)]


def test_pipelines_without_a_vae_say_they_need_one(tiny_model, tok):
    img = make_image()
    calls = [lambda: pipelines.generate_captions(img, tok, tiny_model, None, captions_num=2, progress=False),
             lambda: pipelines.zs_clf(img, ['кот', 'дом'], tiny_model, tok, None),
             lambda: pipelines.self_reranking_by_image(['кот'], img, tok, tiny_model, None)]
    for call in calls:
        with pytest.raises(ConfigError, match=r'needs a VAE .*get_vae'):
            call()


def test_image_prompt_positions_out_of_the_grid_are_input_errors(tiny_model):
    lay = Layout.from_model(tiny_model)

    class Prompts:
        image_prompts = torch.zeros(lay.N2, dtype=torch.long)
        image_prompts_idx = [0, lay.N2]

    with pytest.raises(InputError, match=rf'positions must be in \[0, {lay.N2}\), got 0..{lay.N2}'):
        pipelines.prompt_positions(Prompts(), lay)


@pytest.mark.parametrize('template,error', [('{0} {1}', 'exactly one'), ('{name}', 'exactly one'),
                                            ('{.real}', 'exactly one'), ('на картинке', "must contain '{}'")])
def test_class_templates_are_input_errors(tiny_model, tok, vae, template, error):
    with pytest.raises(InputError, match=re.escape(error)):
        pipelines.zs_clf(make_image(), ['кот', 'дом'], tiny_model, tok, vae, template=template)


def test_show_classify_and_pil_conversion_name_bad_inputs():
    with pytest.raises(ConfigError, match='nrow must be a positive int, got 0'):
        pipelines.show([make_image()], nrow=0, show=False)
    with pytest.raises(InputError, match='one perplexity per class'):
        pipelines.classify(torch.tensor([]), [])
    with pytest.raises(InputError, match=r'\[b, 3, H, W\] tensor .* got \(3, 8, 8\)'):
        utils.torch_tensors_to_pil_list(torch.rand(3, 8, 8))




def test_self_reranking_by_image_seed_warns_and_changes_nothing(tiny_model, tok, vae):
    img = make_image()
    plain = pipelines.self_reranking_by_image(['кот', 'дом'], img, tok, tiny_model, vae, bs=2)
    with pytest.warns(FutureWarning, match=r'self_reranking_by_image\(seed=42\): .*no effect'):
        seeded = pipelines.self_reranking_by_image(['кот', 'дом'], img, tok, tiny_model, vae, bs=2, seed=42)
    for a, b in zip(plain, seeded):
        assert torch.equal(a, b)
