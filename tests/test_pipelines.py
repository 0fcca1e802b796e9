"""Engine and reference pipelines against straightforward uncached loops (tiny model, fp32, CPU)."""
import json

import pytest
import torch
import torch.nn.functional as F

from fakes import FakeTokenizer, FakeVAE, make_image
from rudolph import cli, engine, pipelines, utils
from rudolph.engine import Layout, ScorePart, ce_to_ppl, cross_entropy, generate
from rudolph.image_prompts import ImagePrompts
from rudolph.sampling import make_generator, top_k_top_p_filtering
from rudolph.vae.image import preprocess_image


@pytest.fixture
def tok():
    return FakeTokenizer()


@pytest.fixture
def vae():
    return FakeVAE(n_codes=64).eval()


def reference_generate(model, prefix, length, num, bs, vocab, top_k, top_p, temperature, seed,
                       fixed=None, eos_from=None, stop_at_eos=False, prefixes_weights=None, late_softmax=False):
    """The original pipelines' loop: full forward every step, one multinomial per step."""
    g = make_generator(seed)
    fixed = fixed or {}
    branches = prefixes_weights or [(prefix, 1.0)]
    P = len(branches[0][0])
    out = []
    for begin in range(0, num, bs):
        b = min(bs, num - begin)
        gen = torch.zeros(b, 0, dtype=torch.long)
        for t in range(P, length):
            if t in fixed:
                gen = torch.cat((gen, torch.full((b, 1), fixed[t])), 1)
                continue
            mixed = 0
            for pre, w in branches:
                seq = torch.cat((pre.expand(b, -1), gen), 1)
                logits, _ = model(seq, return_loss=False)
                f = top_k_top_p_filtering(logits[:, -1, vocab] / temperature, top_k=top_k, top_p=top_p)
                mixed = mixed + w * (f if late_softmax else torch.softmax(f, -1))
            probs = torch.softmax(mixed, -1) if late_softmax else mixed
            tok = torch.multinomial(probs, 1, generator=g)
            if eos_from is not None:
                tok[tok >= eos_from] = 3
            gen = torch.cat((gen, tok), 1)
            if stop_at_eos and (gen == 3).any(1).all():
                break
        gen = torch.cat((gen, torch.zeros(b, length - P - gen.shape[1], dtype=torch.long)), 1)
        if stop_at_eos:
            for row in gen:
                hits = (row == 3).nonzero()
                if len(hits):
                    row[int(hits[0]) + 1:] = 0
        out.append(torch.cat((branches[0][0].expand(b, -1), gen), 1))
    return torch.cat(out)


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
    fixed = prompts.fixed_positions(lay.L)
    ref = reference_generate(tiny_model, tok.encode_text('кот', lay.L), lay.L + lay.N2, 3, 2, lay.image_slice,
                             20, 0.9, 1.0, 5, fixed=fixed)
    assert torch.equal(got, ref[:, lay.L:])
    uncached = pipelines.generate_codebooks('кот', tok, tiny_model, top_k=20, top_p=0.9, images_num=3, bs=2, seed=5,
                                            image_prompts=prompts, use_cache=False, progress=False)
    assert torch.equal(got, uncached)


def test_image_prompt_errors(vae):
    img = make_image(32)
    with pytest.raises(ValueError, match='unknown border'):
        ImagePrompts(img, {'top': 1}, vae, image_size=32)
    with pytest.raises(ValueError, match='all borders are 0'):
        ImagePrompts(img, {'up': 0}, vae, image_size=32)
    with pytest.raises(ValueError, match='do not fit'):
        ImagePrompts(img, {'up': 3, 'down': 2}, vae, image_size=32)


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


def test_generate_captions_equal_reference(tiny_model, tok, vae):
    lay = Layout.from_model(tiny_model)
    img = make_image()
    got = pipelines.generate_captions(img, tok, tiny_model, vae, template='на ', top_k=0, top_p=1.0, captions_num=5,
                                      temperature=2.0, bs=2, seed=4, progress=False)
    image = vae.get_codebook_indices(preprocess_image(img, 32)[None])[0]
    prefix = torch.cat((torch.zeros(lay.L, dtype=torch.long), image, tok.encode_text('на', lay.R)[:3]))
    ref = reference_generate(tiny_model, prefix, lay.S, 5, 2, lay.text_sample_slice, 0, 1.0, 2.0, 4,
                             eos_from=lay.plain_text_vocab, stop_at_eos=True)
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
def reference_ce(model, ids, start, stop, vocab, ignore_index=-100, mask=None):
    logits, _ = model(ids, attention_mask=mask, return_loss=False)
    return F.cross_entropy(logits[:, start:stop, vocab].transpose(1, 2), ids[:, start + 1:stop + 1],
                           ignore_index=ignore_index, reduction='none')


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


# ----------------------------------------------------------------------------- utils, show, cli
def test_utils_roundtrip_and_show(tmp_path):
    images = torch.rand(3, 3, 16, 16)
    pil = utils.torch_tensors_to_pil_list(images)
    back = utils.pil_list_to_torch_tensors(pil)
    assert back.shape == (3, 3, 16, 16) and back.dtype == torch.uint8
    assert (back.float() / 255 - images).abs().max() <= 1 / 255 + 1e-6
    pipelines.show(pil, nrow=2, save_dir=str(tmp_path), show=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['group_0.png', 'img_0.png', 'img_1.png', 'img_2.png']
    utils.seed_everything(3)
    a = torch.rand(2)
    utils.seed_everything(3)
    assert torch.equal(a, torch.rand(2))


def test_cli_zs_clf_and_registration(tiny_model, tok, vae, tmp_path, monkeypatch, capsys):
    path = tmp_path / 'img.png'
    make_image().save(path)
    monkeypatch.setattr(cli, 'load', lambda args: (tiny_model, tok, vae))
    assert cli.main(['zs-clf', '--image', str(path), '--classes', 'кот', 'дом', '--device', 'cpu']) == 0
    out = json.loads(capsys.readouterr().out)
    assert out['class'] in ('кот', 'дом') and set(out['scores']) == {'кот', 'дом'}

    seen = []
    monkeypatch.setitem(cli.COMMANDS, 'hello', cli.Command('say hi', lambda p: p.add_argument('--name'),
                                                           lambda a: seen.append(a.name) or 0))
    assert cli.main(['hello', '--name', 'x']) == 0 and seen == ['x']
    with pytest.raises(SystemExit):
        cli.main(['no-such-command'])
