"""ruDolphApi on the shared engine (tiny model, fake tokenizer and VAE)."""
import warnings

import numpy as np
import pytest
import torch
from fakes import ALPHABET, FakeTokenizer, FakeVAE, UnsizedTokenizer, make_image

from rudolph.api import DEFAULT_SPC_TOKENS, ruDolphApi
from rudolph.errors import ConfigError, InputError
from rudolph.generation.engine import Layout, ce_to_ppl
from rudolph.generation.sampling import make_generator, top_k_top_p_filtering

# the tiny config has 16 text special tokens at ids 1000..1015
TINY_SPC = {name: 1000 + i for i, name in enumerate(DEFAULT_SPC_TOKENS)}


@pytest.fixture
def api(tiny_model):
    # unsized: every plain id may be sampled (the random tiny model rarely picks one of the ~80 known ids)
    return ruDolphApi(tiny_model, UnsizedTokenizer(), FakeVAE().eval(), spc_tokens=TINY_SPC, quite=True, bs=4)


def test_default_special_tokens():
    assert DEFAULT_SPC_TOKENS['<LT_UNK>'] == 16384 and DEFAULT_SPC_TOKENS['<RT_I2T>'] == 16389
    assert DEFAULT_SPC_TOKENS['<LT_TQA>'] == 16390 and DEFAULT_SPC_TOKENS['<RT_TQA>'] == 16391


def test_encode_decode_with_task_token(api):
    ids = api.encode_text('кот', 8, '<LT_T2I>')
    assert ids.tolist()[:6] == [2, TINY_SPC['<LT_T2I>']] + FakeTokenizer().encode_text('кот', 8)[1:5].tolist()
    assert len(ids) == 8 and api.decode_text(ids) == 'кот'
    cut = api.encode_text('абвгдежз', 6, '<LT_T2I>')
    assert cut.tolist() == [2, TINY_SPC['<LT_T2I>']] + FakeTokenizer().encode_text('абвгдежз', 10)[1:5].tolist()
    with pytest.raises(ValueError, match='unknown special token'):
        api.encode_text('кот', 8, '<NOPE>')


def test_cfg_with_zero_weight_is_plain_generation(api):
    plain = api.generate_codebooks('кот', 3, top_k=10, top_p=0.9, bs=2, seed=1)
    cfg = api.generate_codebooks_cfg('кот', 3, template='{text}', top_k=10, top_p=0.9, bs=2, seed=1, weight_cfg=0.0)
    assert torch.equal(plain, cfg)
    with pytest.raises(ValueError, match='weight_cfg'):
        api.generate_codebooks_cfg('кот', 1, weight_cfg=1.5)


@pytest.mark.parametrize('late_softmax', [False, True])
def test_cfg_equals_reference_mix(api, tiny_model, late_softmax):
    lay = Layout.from_model(tiny_model)
    got = api.generate_codebooks_cfg('кот', 2, template='рисунок {text}', top_k=10, top_p=0.9, bs=4, seed=2,
                                     weight_cfg=0.3, late_softmax=late_softmax)
    main = api.encode_text('кот', lay.L, '<LT_T2I>')
    guide = api.encode_text('рисунок кот', lay.L, '<LT_UNK>')
    g = make_generator(2)
    gen = torch.zeros(2, 0, dtype=torch.long)
    for _ in range(lay.N2):
        mixed = 0
        for pre, w in ((main, 0.7), (guide, 0.3)):
            logits, _ = tiny_model(torch.cat((pre.expand(2, -1), gen), 1))
            f = top_k_top_p_filtering(logits[:, -1, lay.image_slice], top_k=10, top_p=0.9)
            mixed = mixed + w * (f if late_softmax else f.softmax(-1))
        probs = mixed.softmax(-1) if late_softmax else mixed
        gen = torch.cat((gen, torch.multinomial(probs, 1, generator=g)), 1)
    assert torch.equal(got, gen)


def test_generate_texts_allowed_ids_and_early_stop(api, tiny_model):
    allowed = [3] + [4 + ALPHABET.index(c) for c in 'аб ']
    res = api.generate_texts(template='', texts_num=8, early_stop=6, top_k=0, top_p=1.0, seed=0,
                             allowed_token_ids=allowed)
    assert res and all(set(r) == {'text', 'ppl_txt', 'count'} for r in res)
    assert all(set(r['text']) <= set('аб ') for r in res)
    assert all(len(r['text']) <= 6 - 2 for r in res)  # bos + task token, then at most 4 tokens
    assert sum(r['count'] for r in res) <= 8
    assert [r['ppl_txt'] for r in res] == sorted(r['ppl_txt'] for r in res)
    with pytest.raises(ValueError, match='allowed_token_ids'):
        api.generate_texts(texts_num=1, allowed_token_ids=[5000])


def test_generate_texts_repeatable(api):
    a = api.generate_texts(template='кот', texts_num=5, seed=3)
    b = api.generate_texts(template='кот', texts_num=5, seed=3, use_cache=False)
    assert a == b and a


def test_captions_and_reranking(api, tiny_model):
    img = make_image()
    texts, counts = api.generate_captions(img, captions_num=6, r_template='на', top_k=0, top_p=1.0, seed=5,
                                          temperature=2.0)
    assert len(texts) == len(counts) and counts.sum() <= 6 and all(t.startswith('на') for t in texts)
    ppl_txt, ppl_img, scores = api.self_reranking_by_image(texts, img, bs=2)
    assert ppl_txt.shape == ppl_img.shape == scores.shape == (len(texts),)
    # scores: (ppl - min) / (quantile_q - min), mixed 0.05 / 0.95
    def norm(x):
        x = torch.from_numpy(x)
        return (x - x.min()) / (x.quantile(api.q) - x.min())
    if len(texts) > 2:
        expected = norm(ppl_txt) * 0.05 + norm(ppl_img) * 0.95
        np.testing.assert_allclose(scores, expected.numpy(), rtol=1e-5)
    result = api.image_captioning(img, r_template='на', captions_num=2, generations_num=4, seed=1)
    assert len(result) <= 2 and all({'text', 'score', 'count'} <= set(r) for r in result)


def test_self_reranking_by_text_equals_reference(api, tiny_model):
    lay = Layout.from_model(tiny_model)
    codes = torch.randint(0, lay.image_vocab, (3, lay.N2), generator=torch.Generator().manual_seed(0))
    ppl_txt, ppl_img, scores = api.self_reranking_by_text('кот', codes, bs=2)
    ids = torch.cat((api.encode_text('', lay.L, '<LT_I2T>').expand(3, -1), codes,
                     api.encode_text('кот', lay.R, '<RT_I2T>').expand(3, -1)), 1)
    with torch.no_grad():
        logits, _ = tiny_model(ids)
    ce_txt = torch.nn.functional.cross_entropy(logits[:, lay.S - lay.R:lay.S - 1, lay.text_sample_slice].transpose(1, 2),
                                               ids[:, lay.S - lay.R + 1:], ignore_index=0, reduction='none')
    np.testing.assert_allclose(ppl_txt, ce_to_ppl(ce_txt).numpy(), rtol=1e-4)
    assert np.isfinite(scores).all() and scores.min() == 0


def test_self_reranking_reencode_scores_the_decoded_pictures(api, tiny_model):
    """``reencode=True`` = scoring the codes the VAE gives back for its own decoding."""
    lay = Layout.from_model(tiny_model)
    codes = torch.randint(0, lay.image_vocab, (3, lay.N2), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        seen = api.vae.get_codebook_indices(api.vae.decode(codes))
    assert not torch.equal(seen, codes)  # the fake VAE does not round-trip random codes
    reencoded = api.self_reranking_by_text('кот', codes, bs=2, reencode=True)
    direct = api.self_reranking_by_text('кот', seen, bs=2)
    for a, b in zip(reencoded, direct):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    plain = api.self_reranking_by_text('кот', codes, bs=2)
    assert not np.allclose(plain[0], reencoded[0])
    images, scores = api.dream('кот', images_num=1, codebooks_num=2, seed=0, bs=2, reencode=True)
    assert len(images) == 1 and len(scores) == 1


def test_api_zs_clf_with_left_template(api, tiny_model):
    classes = ['ббб', 'ккк', 'ддд']
    with torch.no_grad():
        tiny_model.to_logits[1].bias[4 + ALPHABET.index('д')] = 8.0
    pred = api.zs_clf(make_image(), classes, bs=2, r_template='{}')
    assert pred['class'] == 'ддд'
    pred_l = api.zs_clf(make_image(), classes, bs=2, r_template='{}', l_template='фото {}')
    assert pred_l['class'] == 'ддд' and pred_l['scores'].shape == (3,)
    with pytest.raises(ValueError, match='classes'):
        api.zs_clf(make_image(), [])


def test_vqa_returns_answers_without_the_prompt(api):
    # the tiny right text holds 6 tokens: a short template leaves room for an answer
    answers = api.vqa(make_image(), 'к', template='{question}:', answers_num=3, generations_num=6, top_k=0,
                      top_p=1.0, temperature=2.0, seed=0)
    assert 1 <= len(answers) <= 3
    assert all(set(a) == {'answer', 'count'} and not a['answer'].startswith('к:') for a in answers)
    assert [a['count'] for a in answers] == sorted((a['count'] for a in answers), reverse=True)
    with pytest.raises(ValueError, match='question'):
        api.vqa(make_image(), '  ')


def test_dream_returns_best_images(api):
    images, result = api.dream('кот', images_num=2, codebooks_num=3, top_k=10, top_p=0.9, seed=0)
    assert len(images) == len(result) == 2 and images[0].size == (32, 32)
    assert result[0]['score'] <= result[1]['score']
    with pytest.raises(ValueError, match='images_num'):
        api.dream('кот', images_num=4, codebooks_num=3)


# ----------------------------------------------------------------------------- task tokens, checks
def test_task_tokens_at_position_1_of_generated_sequences(api, tiny_model, monkeypatch):
    import rudolph.tasks.core as tasks_module  # the api's tasks sample through rudolph.tasks.core

    seen = []
    real = tasks_module.generate
    monkeypatch.setattr(tasks_module, 'generate', lambda *a, **k: seen.append(real(*a, **k)) or seen[-1])
    lay = Layout.from_model(tiny_model)
    api.generate_codebooks('кот', 2, top_k=8, top_p=0.9, seed=0)
    api.generate_texts(template='кот', texts_num=2, seed=0)
    api.generate_captions(make_image(), captions_num=2, r_template='на', seed=0)
    api.generate_codebooks('кот', 1, seed=0, special_token='<LT_UNK>')
    first, texts, captions, unk = seen
    assert (first[:, 0] == 2).all() and (first[:, 1] == TINY_SPC['<LT_T2I>']).all()
    assert (texts[:, 1] == TINY_SPC['<LT_T2T>']).all()
    assert (captions[:, 1] == TINY_SPC['<LT_I2T>']).all()  # the left text
    r0 = lay.L + lay.N2
    assert (captions[:, r0] == 2).all() and (captions[:, r0 + 1] == TINY_SPC['<RT_I2T>']).all()  # the right text
    assert (unk[:, 1] == TINY_SPC['<LT_UNK>']).all()
    assert api.encode_text('', 5, '<RT_I2T>').tolist() == [2, TINY_SPC['<RT_I2T>'], 3, 0, 0]
    with pytest.warns(UserWarning, match='takes 7 tokens but its segment holds 6'):
        api.encode_text('абвг', 6, '<LT_T2I>')


def test_api_rejects_components_that_do_not_fit(tiny_model):
    with pytest.raises(ValueError, match=r"task tokens .*'<LT_UNK>': 16384.* outside .* \[1000, 1016\)"):
        ruDolphApi(tiny_model, FakeTokenizer(), FakeVAE())  # the default ids 16384+ do not fit a 1000-id text vocab
    with pytest.raises(ValueError, match='VAE has 8192 codes'):
        ruDolphApi(tiny_model, FakeTokenizer(), FakeVAE(n_codes=8192), spc_tokens=TINY_SPC)
    big = FakeTokenizer()
    big.vocab_size = lambda: 16384
    with pytest.raises(ValueError, match='tokenizer has 16384 ids'):
        ruDolphApi(tiny_model, big, FakeVAE(), spc_tokens=TINY_SPC)
    with pytest.raises(ValueError, match='bs'):
        ruDolphApi(tiny_model, FakeTokenizer(), FakeVAE(), spc_tokens=TINY_SPC, bs=0)
    with pytest.raises(ValueError, match='top_p'):
        ruDolphApi(tiny_model, FakeTokenizer(), FakeVAE(), spc_tokens=TINY_SPC, txt_top_p=0)


def test_api_bad_input_messages(api):
    img = make_image()
    cases = [
        (ValueError, 'images_num', lambda: api.generate_codebooks('кот', 0)),
        (ValueError, 'text', lambda: api.generate_codebooks(' ', 1)),
        (TypeError, 'text', lambda: api.generate_codebooks(None, 1)),
        (ValueError, 'bs', lambda: api.generate_codebooks('кот', 1, bs=0)),
        (ValueError, 'top_k', lambda: api.generate_codebooks('кот', 1, top_k=-3)),
        (ValueError, 'top_p', lambda: api.generate_texts(top_p=1.5)),
        (ValueError, 'temperature', lambda: api.generate_captions(img, temperature=0.0)),
        (ValueError, 'texts_num', lambda: api.generate_texts(texts_num=0)),
        (ValueError, 'captions_num', lambda: api.generate_captions(img, captions_num=0)),
        (ValueError, 'codebooks_num', lambda: api.dream('кот', 1, 0)),
        (ValueError, 'generations_num', lambda: api.image_captioning(img, generations_num=0)),
        (ValueError, 'answers_num', lambda: api.vqa(img, 'что?', answers_num=0)),
        (ValueError, 'question', lambda: api.vqa(img, 'что?', template='без вопроса')),
        (ValueError, 'distinct', lambda: api.zs_clf(img, ['кот', 'кот'])),
        (ValueError, 'classes', lambda: api.zs_clf(img, 'кот')),
        (ValueError, r"r_template must contain '\{\}'", lambda: api.zs_clf(img, ['a', 'b'], r_template='фото')),
        (ValueError, 'texts', lambda: api.self_reranking_by_image([], img)),
        (ValueError, 'codebooks', lambda: api.self_reranking_by_text('кот', torch.zeros(2, 5, dtype=torch.long))),
        (ValueError, 'text', lambda: api.self_reranking_by_text('', torch.zeros(2, 16, dtype=torch.long))),
    ]
    for error, match, call in cases:
        with pytest.raises(error, match=match):
            call()


@pytest.mark.parametrize('n_classes,bs', [(1, 3), (4, 3), (7, 2), (5, 5)])
def test_api_zs_clf_scores_sum_to_one(api, n_classes, bs):
    classes = ['кот', 'дом', 'лес', 'река', 'небо', 'сад', 'мост'][:n_classes]
    pred = api.zs_clf(make_image(), classes, bs=bs, r_template='это {}')
    assert pred['scores'].shape == (n_classes,) and abs(float(pred['scores'].sum()) - 1) < 1e-5
    assert pred['label'] == int(np.argmin(pred['scores'])) and pred['class'] == classes[pred['label']]
    whole = api.zs_clf(make_image(), classes, bs=len(classes), r_template='это {}')
    np.testing.assert_allclose(pred['scores'], whole['scores'], rtol=1e-5)


def test_api_return_types(api, tiny_model):
    lay = Layout.from_model(tiny_model)
    img = make_image()
    codes = api.generate_codebooks('кот', 2, top_k=8, top_p=0.9, seed=0)
    assert codes.dtype == torch.long and codes.shape == (2, lay.N2)
    for arr in api.self_reranking_by_text('кот', codes):
        assert isinstance(arr, np.ndarray) and arr.shape == (2,) and np.isfinite(arr).all()
    texts, counts = api.generate_captions(img, captions_num=3, r_template='на', seed=0)
    assert all(isinstance(t, str) for t in texts) and counts.dtype == np.int64 and counts.shape == (len(texts),)
    images, result = api.dream('кот', 1, 2, top_k=8, seed=0)
    assert images[0].size == (lay.N * 8, lay.N * 8) and set(result[0]) == {'ppl_txt', 'ppl_img', 'score'}


# ----------------------------------------------------------------------------- issue 11
def test_zs_clf_warns_about_unknown_classes_and_reports_ties(api):
    with pytest.warns(UserWarning, match=r"classes \['猫', '犬'\] encode to unknown tokens only"):
        result = api.zs_clf(make_image(), ['猫', '犬'])
    assert result['ties'] == ['猫', '犬'] and result['scores'][0] == pytest.approx(result['scores'][1])
    assert {'label', 'class', 'scores'} <= set(result)
    with pytest.warns(UserWarning, match=r"\['猫'\] encode"):
        mixed = api.zs_clf(make_image(), ['кот', '猫', 'дом'])
    assert mixed['class'] in mixed['ties']


def test_zs_clf_of_known_classes_has_one_winner(api, recwarn):
    result = api.zs_clf(make_image(), ['кот', 'дом', 'лес'])
    assert result['ties'] == [result['class']]
    assert not [w for w in recwarn if 'unknown tokens' in str(w.message)]


def test_dream_template_without_text_slot_is_refused(api):
    with pytest.raises(InputError, match=r"template must contain '\{text\}'"):
        api.dream('кот', images_num=1, codebooks_num=2, template='рисунок')
    with pytest.raises(InputError, match=r'exactly one \{text\} slot'):
        api.dream('кот', images_num=1, codebooks_num=2, template='рисунок {}')
    images, _ = api.dream('кот', images_num=1, codebooks_num=2, template='рисунок {text}', top_k=10, seed=0)
    assert len(images) == 1


def test_cfg_template_must_use_the_text_slot(api):
    with pytest.raises(InputError, match=r"template must have exactly one \{text\} slot .*'рисунок \{\}'"):
        api.generate_codebooks_cfg('кот', 1, template='рисунок {}')
    with pytest.raises(ValueError, match='weight_cfg'):
        api.generate_codebooks_cfg('кот', 1, weight_cfg='0.5')
    # no slot: an unconditional guide, as the default empty template
    assert api.generate_codebooks_cfg('кот', 2, template='рисунок', top_k=10, seed=0).shape == (2, api.layout.N2)


def test_vqa_template_uses_the_shared_check(api):
    with pytest.raises(InputError, match=r"must contain '\{question\}'"):
        api.vqa(make_image(), 'что?', template='ответ:')
    with pytest.raises(InputError, match=r'exactly one \{question\} slot'):
        api.vqa(make_image(), 'что?', template='{question} {x}')


def test_zs_clf_bad_left_template_is_an_input_error(api):
    with pytest.raises(InputError, match='l_template'):
        api.zs_clf(make_image(), ['кот', 'дом'], l_template='{name}')


def test_tasks_without_a_vae_say_they_need_one(tiny_model):
    api = ruDolphApi(tiny_model, UnsizedTokenizer(), None, spc_tokens=TINY_SPC, quite=True, bs=4)
    assert api.generate_codebooks('кот', 1, top_k=10, seed=0).shape == (1, api.layout.N2)  # text-only use works
    img = make_image()
    calls = [lambda: api.image_captioning(img, generations_num=2), lambda: api.zs_clf(img, ['кот', 'дом']),
             lambda: api.vqa(img, 'что?'), lambda: api.generate_captions(img, captions_num=2),
             lambda: api.self_reranking_by_image(['кот'], img), lambda: api.dream('кот', 1, 2),
             lambda: api.self_reranking_by_text('кот', torch.zeros(1, api.layout.N2, dtype=torch.long),
                                                reencode=True)]
    for call in calls:
        with pytest.raises(ConfigError, match=r'needs a VAE .*get_vae'):
            call()


def test_scoring_seeds_have_no_effect_and_warn(api, tiny_model):
    """The original accepted ``seed`` on its scoring methods and ignored it: it still runs, warns, changes nothing."""
    img, texts = make_image(), ['кот', 'дом']
    codebooks = torch.randint(0, tiny_model.config.image_vocab_size, (2, tiny_model.config.image_tokens_per_dim ** 2))
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # no warning when seed is not passed
        plain = [api.self_reranking_by_image(texts, img), api.self_reranking_by_text('кот', codebooks),
                 api.zs_clf(img, ['кот', 'дом'])['scores']]
    with pytest.warns(FutureWarning, match=r'self_reranking_by_image\(seed=42\).*no effect'):
        seeded_image = api.self_reranking_by_image(texts, img, seed=42)
    with pytest.warns(FutureWarning, match=r'self_reranking_by_text\(seed=3\)'):
        seeded_text = api.self_reranking_by_text('кот', codebooks, seed=3)
    with pytest.warns(FutureWarning, match=r'zs_clf\(seed=0\)'):
        seeded_zs = api.zs_clf(img, ['кот', 'дом'], seed=0)['scores']
    for a, b in zip(plain, [seeded_image, seeded_text, seeded_zs]):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
