"""Batched tasks (rudolph.tasks.batched) and the engine paths under them: rows with different prefixes,
per-input generators, M images x C classes, results independent of the batch."""
import itertools
import json

import pytest
import torch
from conftest import TINY_PARAMS
from fakes import FakeVAE, UnsizedTokenizer, make_image

from rudolph.demo import load_bundle
from rudolph.demo.shapes import render
from rudolph.errors import ConfigError, InputError
from rudolph.generation.engine import Layout, ScorePart, cross_entropy, generate
from rudolph.generation.rows import generate_rows, score_suffixes
from rudolph.generation.sampling import Sampler, make_generator
from rudolph.model import get_rudolph_model, ruDolphModel
from rudolph.tasks import batched
from rudolph.tasks import core as tasks
from rudolph.tasks.batched import row_seed
from rudolph.vae import preprocess_image

CLASSES = ['красный', 'синий', 'зеленый', 'желтый']


@pytest.fixture(scope='module')
def parts():
    bundle = load_bundle()
    return tasks.Parts.of(bundle.model, bundle.tokenizer, bundle.vae, progress=False)


@pytest.fixture(scope='module')
def pictures():
    """12 different pictures (shape x colour x position), keyed like files."""
    combos = itertools.islice(itertools.product(['circle', 'star', 'square'], ['red', 'blue'], ['centre', 'left']), 12)
    return [(f'img/{s}-{c}-{p}.png', render(s, c, 'big', p, 'white')) for s, c, p in combos]


@pytest.fixture
def v1_parts():
    """A tiny random model without task tokens (the reference convention of rudolph.pipelines)."""
    torch.manual_seed(0)
    model = ruDolphModel(device='cpu', **dict(TINY_PARAMS, vocab_size=1000 + 8 - 16, text_special_tokens=0)).eval()
    return tasks.Parts.of(model, UnsizedTokenizer(), FakeVAE().eval(), progress=False)


def _json(results) -> str:
    return json.dumps(results, ensure_ascii=False, sort_keys=True)


# ----------------------------------------------------------------------------- seeds and sampler
def test_row_seed_is_a_stable_63_bit_hash_of_seed_and_key():
    # int.from_bytes(blake2b(b'0\x00a.png', digest_size=8).digest(), 'big') >> 1, computed with hashlib alone
    assert row_seed(0, 'a.png') == row_seed(0, 'a.png') == 9211726159953584320
    values = {row_seed(s, k) for s in (0, 1) for k in ('a.png', 'b.png', '')}
    assert len(values) == 6 and all(0 <= v < 2 ** 63 for v in values)
    with pytest.raises(InputError, match='key must be a str'):
        row_seed(0, 3)
    with pytest.raises(ConfigError, match='seed'):
        row_seed('0', 'a')


def test_sampler_rows_draw_only_from_their_own_generator():
    probs = torch.softmax(torch.randn(3, 50, generator=torch.Generator().manual_seed(1)), dim=-1).log()
    sampler = Sampler(0, 1.0)
    together = sampler.for_rows([make_generator(s) for s in (5, 6, 7)])([probs])
    alone = [int(sampler.for_rows([make_generator(s)])([probs[i:i + 1]])) for i, s in enumerate((5, 6, 7))]
    assert together.tolist() == alone
    g = make_generator(5)  # consecutive rows of one generator draw together: as one batch call
    assert sampler.for_rows([g, g])([probs[:2]]).tolist() == Sampler(0, 1.0, generator=make_generator(5))(
        [probs[:2]]).tolist()
    with pytest.raises(ConfigError, match='3 rows need 3 generators'):
        sampler.for_rows([make_generator(1)])([probs])
    with pytest.raises(ConfigError, match='not both'):
        Sampler(generator=make_generator(1), generators=[make_generator(1)])


# ----------------------------------------------------------------------------- engine
def test_generate_rows_of_one_row_is_generate_with_that_generator(parts):
    lay = Layout.from_model(parts.model)
    prefix = parts.text('красный круг', lay.L, '<LT_T2I>')
    one = generate(parts.model, prefix, lay.L + lay.N2, 1, vocab=lay.image_slice, top_k=64, top_p=0.95,
                   generator=make_generator(3), progress=False)
    rows = generate_rows(parts.model, [prefix], lay.L + lay.N2, vocab=lay.image_slice, top_k=64, top_p=0.95,
                         generators=[make_generator(3)], progress=False)
    assert torch.equal(one, rows)


def test_generate_rows_with_different_prefixes_and_lengths_equals_each_row_alone(parts):
    lay = Layout.from_model(parts.model)
    codes = batched.encode_images(parts, [render('star', 'blue', 'big', 'left', 'white'),
                                          render('circle', 'red', 'small', 'centre', 'black')])
    left = parts.context([''], lay.L, '<LT_I2T>')[0]
    heads = [torch.tensor([2, 12]), torch.tensor([2]), torch.tensor([2, 12, 13])]
    prefixes = [torch.cat((left, codes[i % 2], h)) for i, h in enumerate(heads)]
    kwargs = dict(vocab=lay.text_sample_slice, top_k=8, top_p=1.0, shared=lay.L, stop_at_eos=True, progress=False)
    together = generate_rows(parts.model, prefixes, lay.S, generators=[make_generator(s) for s in (1, 2, 3)], bs=7,
                             **kwargs)
    for i, (p, s) in enumerate(zip(prefixes, (1, 2, 3))):
        alone = generate_rows(parts.model, [p], lay.S, generators=[make_generator(s)], bs=1, **kwargs)
        assert torch.equal(together[i], alone[0]) and torch.equal(together[i, :len(p)], p)
    with pytest.raises(InputError, match='row 1 differs'):
        generate_rows(parts.model, [prefixes[0], torch.flip(prefixes[1], [0])], lay.S,
                      generators=[make_generator(1), make_generator(2)], **kwargs)
    with pytest.raises(ConfigError, match='one per row'):
        generate_rows(parts.model, prefixes, lay.S, generators=[make_generator(1)], **kwargs)


def test_score_suffixes_equals_cross_entropy_of_every_prefix_suffix_pair(tiny_model):
    lay = Layout.from_model(tiny_model)
    g = torch.Generator().manual_seed(0)
    left = torch.randint(4, 900, (1, lay.L), generator=g).expand(3, -1)
    prefixes = torch.cat((left, torch.randint(0, lay.image_vocab, (3, lay.N2), generator=g)), dim=1)
    suffixes = torch.tensor([[2, 1000, 7, 8, 3, 0], [2, 1000, 9, 3, 0, 0]])
    part = ScorePart(lay.S - lay.R, lay.S - 1, lay.text_slice, ignore_index=0)
    got = score_suffixes(tiny_model, prefixes, suffixes, part, shared=lay.L, bs=2)  # a batch of 2, then of 1
    pairs = torch.cat((prefixes.repeat_interleave(2, 0), suffixes.repeat(3, 1)), dim=1)
    want = cross_entropy(tiny_model, pairs, [part], reuse_prefix=False)[0].view(3, 2, -1)
    assert got.shape == (3, 2, lay.R - 1)
    assert torch.allclose(got, want, atol=1e-5) and bool((got[:, 1, 3:] == 0).all())
    with pytest.raises(ConfigError, match='must lie in the suffixes'):
        score_suffixes(tiny_model, prefixes, suffixes, ScorePart(0, 3, lay.text_slice))


# ----------------------------------------------------------------------------- tasks on tiny-shapes
@pytest.fixture(scope='module', params=['fp32', 'bf16', 'int8-dynamic', 'fp16'])
def format_parts(request, parts):
    """``parts`` with the model in each format whose kernels promise row-independent results."""
    if request.param == 'fp32':
        return parts
    kw = {'bf16': dict(dtype='bf16')}.get(request.param, dict(quantize=request.param))
    bundle = load_bundle()
    model = get_rudolph_model('tiny-shapes', **kw)
    return tasks.Parts.of(model, bundle.tokenizer, bundle.vae, progress=False)


def test_every_task_gives_byte_identical_results_at_bs_1_and_bs_7(format_parts, pictures):
    """12 different pictures (or prompts): whatever the batch, each input's result is the same (in every
    format: per-row activation scales, packed kernels whose rows do not interact)."""
    parts = format_parts

    def run(bs):
        return {
            'caption': list(batched.caption_images(parts, pictures, bs=bs, captions_num=2, generations_num=3)),
            'vqa': list(batched.vqa_images(parts, pictures, 'какого цвета фигура?', bs=bs)),
            'classify': list(batched.classify_images(parts, pictures, CLASSES, template='цвет фигуры: {}', bs=bs)),
            't2i': [(k, r['codebooks'].tolist(), r['scores']) for k, r in batched.text2image_prompts(
                parts, [(f'p{i}', f'большой красный {s}') for i, s in enumerate(['круг', 'квадрат'] * 6)],
                bs=bs, images_num=1, codebooks_num=2)],
            'embed': [(k, r['embedding'].tolist()) for k, r in batched.embed_images(parts, pictures, bs=bs)],
        }
    one, seven = run(1), run(7)
    for task in one:
        assert _json(one[task]) == _json(seven[task]), task
    assert len(one['caption']) == 12 and [k for k, _ in one['caption']] == [k for k, _ in pictures]
    assert len({_json(r) for _, r in one['caption']}) > 1  # different pictures, different captions


def test_results_depend_on_seed_and_key_not_on_the_neighbours(parts, pictures):
    images = [img for _, img in pictures[:4]]
    base = batched.text2image_batch(parts, ['красный круг'] * 4, ['a', 'b', 'c', 'd'], seed=0)
    same_key = batched.text2image_batch(parts, ['красный круг'] * 2, ['a', 'a'], seed=0)
    assert torch.equal(same_key[0]['codebooks'], same_key[1]['codebooks'])
    assert torch.equal(same_key[0]['codebooks'], base[0]['codebooks'])
    assert len({tuple(r['codebooks'][0].tolist()) for r in base}) > 1  # other keys, other samples
    other_seed = batched.text2image_batch(parts, ['красный круг'], ['a'], seed=1)
    assert not torch.equal(other_seed[0]['codebooks'], base[0]['codebooks'])
    reversed_ = batched.caption_batch(parts, images[::-1], ['3', '2', '1', '0'], generations_num=2)
    assert reversed_[::-1] == batched.caption_batch(parts, images, ['0', '1', '2', '3'], generations_num=2)


def test_captions_and_answers_are_the_tasks_decoded_texts(parts):
    img = render('circle', 'red', 'big', 'centre', 'white')
    [caption] = batched.caption_batch(parts, [img], ['k'], captions_num=3, generations_num=6,
                                      template='на картинке')
    assert caption['captions'] and all(c.startswith('на картинке') for c in caption['captions'])
    assert caption['scores'] == sorted(caption['scores']) and len(caption['scores']) == len(caption['captions'])
    [answer] = batched.vqa_batch(parts, [img], ['какого цвета фигура?'], ['k'], answers_num=2, generations_num=6)
    assert answer['answers'][0] == 'красный' and sum(answer['counts']) <= 6
    assert answer['scores'][0] == round(answer['counts'][0] / 6, 6)
    json.dumps([caption, answer])


def test_classify_batch_equals_zero_shot_per_picture(parts, pictures):
    images = [img for _, img in pictures]
    results = batched.classify_batch(parts, images, CLASSES, template='цвет фигуры: {}', bs=5)
    for img, result in zip(images, results):
        want = tasks.zero_shot(parts, img, CLASSES, 'цвет фигуры: {}')
        assert result['label'] == want['class'] and result['ties'] == want['ties']
        assert torch.allclose(torch.tensor(list(result['ppl'].values())), want['ppl'], rtol=1e-4)
        assert abs(sum(result['probs'].values()) - 1) < 1e-5
    assert [r['label'] for r in results] == [k.split('-')[1].replace('red', 'красный').replace('blue', 'синий')
                                             for k, _ in pictures]


def test_image_embeddings_equal_tasks_image_embedding(parts, pictures):
    images = [img for _, img in pictures[:5]]
    for layer, pooling in ((-1, 'mean'), (1, 'max')):
        got = batched.embed_image_batch(parts, images, layer=layer, pooling=pooling)
        want = tasks.image_embedding(parts, images, layer=layer, pooling=pooling)
        assert got.dtype == torch.float32 and got.shape == (5, parts.model.hidden_size)
        assert torch.allclose(got, want.cpu(), atol=1e-5)
    with pytest.raises(ConfigError, match='layer must be'):
        batched.embed_image_batch(parts, images, layer=99)
    with pytest.raises(ConfigError, match='pooling'):
        batched.embed_image_batch(parts, images, pooling='sum')


def test_text_embeddings_pool_the_texts_own_tokens(parts):
    texts = ['красный круг', 'маленькая синяя звезда слева на черном фоне']
    both = batched.embed_text_batch(parts, texts)
    alone = batched.embed_text_batch(parts, texts[:1])
    assert both.shape == (2, parts.model.hidden_size) and torch.allclose(both[0], alone[0], atol=1e-5)
    L = parts.layout.L
    ids = parts.text(texts[0], L, '<LT_T2T>')[None]
    _, hidden = parts.model.hidden(ids, 0, None, return_hidden_states=True)
    n = int((ids != 0).sum())
    assert torch.allclose(alone[0], hidden[-1][0, :n].mean(0), atol=1e-6)
    maxed = batched.embed_text_batch(parts, texts[:1], pooling='max', layer=0)
    assert torch.allclose(maxed[0], hidden[0][0, :n].amax(0), atol=1e-6)


def test_preprocessed_tensors_give_the_results_of_their_pictures(parts):
    img = render('star', 'blue', 'small', 'right', 'black')
    tensor = preprocess_image(img, parts.layout.N * 8)
    assert torch.equal(batched.encode_images(parts, [img]), batched.encode_images(parts, [tensor]))
    assert batched.caption_batch(parts, [img], ['k']) == batched.caption_batch(parts, [tensor], ['k'])
    with pytest.raises(InputError, match=r'images\[0\]: a preprocessed picture must be a float \[3, 64, 64\]'):
        batched.encode_images(parts, [tensor[:, :32]])


def test_bad_arguments_are_named(parts):
    img = render('star', 'blue', 'small', 'right', 'black')
    with pytest.raises(InputError, match='2 inputs need 2 keys'):
        batched.caption_batch(parts, [img, img], ['a'])
    with pytest.raises(InputError, match='images must be a non-empty list'):
        batched.caption_batch(parts, [], [])
    with pytest.raises(InputError, match='2 pictures need one question or 2 questions'):
        batched.vqa_batch(parts, [img, img], ['a?', 'b?', 'c?'], ['a', 'b'])
    with pytest.raises(ConfigError, match='codebooks_num'):
        batched.text2image_batch(parts, ['круг'], ['a'], images_num=3, codebooks_num=2)
    with pytest.raises(InputError, match=r'\(key, input\) pairs'):
        list(batched.caption_images(parts, [img]))
    with pytest.raises(ConfigError, match='sampling must be'):
        batched.caption_batch(parts, [img], ['a'], sampling=(1, 2))


def test_sampling_defaults_to_the_models_recommended(parts, v1_parts):
    assert batched.recommended_sampling(parts, 'text2image').kwargs() == dict(top_k=64, top_p=0.95, temperature=0.7)
    assert batched.recommended_sampling(parts, 'caption') == tasks.text_sampling_for(False, 'captions')
    assert batched.recommended_sampling(v1_parts, 'text2image') == batched.DEFAULT_IMAGE_SAMPLING
    prompts, keys = ['красный круг'], ['a']
    explicit = batched.text2image_batch(parts, prompts, keys, sampling=dict(top_k=64, top_p=0.95, temperature=0.7))
    assert torch.equal(explicit[0]['codebooks'], batched.text2image_batch(parts, prompts, keys)[0]['codebooks'])
    hotter = batched.text2image_batch(parts, prompts, keys, sampling={'temperature': 5.0})
    assert not torch.equal(hotter[0]['codebooks'], explicit[0]['codebooks'])


def test_the_reference_convention_ranks_by_perplexity(v1_parts):
    """A model without task tokens: captions ranked by the image perplexity, images by ppl_text (as the tasks)."""
    img = make_image()
    [caption] = batched.caption_batch(v1_parts, [img], ['k'], captions_num=2, generations_num=4)
    assert caption['scores'] == sorted(caption['scores']) and all(s > 1 for s in caption['scores'])
    [images] = batched.text2image_batch(v1_parts, ['кот'], ['k'], images_num=2, codebooks_num=3)
    codes = images['codebooks']
    ppl_text, _ = tasks.rerank_by_text(v1_parts, 'кот', codes)
    assert images['scores'] == [float(f'{float(p):.6g}') for p in ppl_text]  # best first: codebooks in rank order
    assert images['scores'] == sorted(images['scores'])
    [label] = batched.classify_batch(v1_parts, [img], ['кот', 'пес'])
    assert label['label'] == tasks.zero_shot(v1_parts, img, ['кот', 'пес'])['class']
