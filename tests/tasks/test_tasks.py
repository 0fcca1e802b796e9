"""The task layer: each task once, over Parts of either convention."""
import warnings

import pytest
import torch
from conftest import TINY_PARAMS
from fakes import FakeVAE, UnsizedTokenizer, make_image

from rudolph import pipelines
from rudolph.api import ruDolphApi
from rudolph.errors import ConfigError, InputError
from rudolph.model import ruDolphModel
from rudolph.model.configs import MODELS, TINY_SHAPES
from rudolph.tasks import core as tasks
from rudolph.tasks.core import Parts, SamplingConfig
from rudolph.tasks.sequences import encode_text, unknown_share
from rudolph.tokenizer import get_tokenizer

TINY_SPC = {'<LT_T2I>': 1000, '<LT_I2T>': 1001, '<RT_I2T>': 1002, '<LT_T2T>': 1003, '<LT_UNK>': 1004}


@pytest.fixture
def v1_model():
    torch.manual_seed(0)
    return ruDolphModel(device='cpu', **dict(TINY_PARAMS, vocab_size=1000 + 8 - 16, text_special_tokens=0)).eval()


def test_sampling_config_is_checked_once_and_frozen():
    config = SamplingConfig(8, 0.9, 0.7)
    assert config.kwargs() == dict(top_k=8, top_p=0.9, temperature=0.7)
    with pytest.raises(ValueError, match='top_p'):
        SamplingConfig(8, 1.5)
    with pytest.raises(AttributeError):
        config.top_k = 3


def test_parts_pick_the_convention_from_the_model(tiny_model, v1_model):
    tok, vae = UnsizedTokenizer(), FakeVAE()
    v2 = Parts.of(tiny_model, tok, vae, TINY_SPC)
    v1 = Parts.of(v1_model, tok, vae, TINY_SPC)
    assert (v2.kind, v2.reference, v2.spc_tokens) == ('ruDolphApi', False, TINY_SPC)
    assert (v1.kind, v1.reference, v1.spc_tokens) == ('pipelines', True, {})
    assert v1.text('ab', 5, '<LT_T2I>').tolist() == [2, 5, 6, 3, 0]  # no task token inserted
    assert v2.text('ab', 5, '<LT_T2I>').tolist() == [2, 1000, 5, 6, 3]
    with pytest.raises(ConfigError, match='outside the model'):
        Parts.of(tiny_model, tok, vae, {'<LT_T2I>': 5})


def test_zero_shot_returns_the_cross_entropies_the_label_comes_from(tiny_model):
    parts = Parts.of(tiny_model, UnsizedTokenizer(), FakeVAE().eval(), TINY_SPC, progress=False)
    result = tasks.zero_shot(parts, make_image(), ['кот', 'пес'], '{}', bs=2)
    assert result['ce'].shape == (2, tiny_model.get_param('r_text_seq_length') - 1)
    assert torch.equal(result['ppl'], tasks.ce_to_ppl(result['ce']))
    api = ruDolphApi(tiny_model, UnsizedTokenizer(), FakeVAE().eval(), spc_tokens=TINY_SPC, quite=True)
    assert result['label'] == api.zs_clf(make_image(), ['кот', 'пес'], r_template='{}')['label']


def test_a_model_without_task_tokens_runs_every_api_task(v1_model):
    """The same api calls work on a 350M_v1-like model: the tasks insert no task token."""
    api = ruDolphApi(v1_model, UnsizedTokenizer(), FakeVAE().eval(), quite=True, bs=4)
    assert api.parts.spc_tokens == {}
    codes = api.generate_codebooks('кот', 2, seed=0)
    assert api.self_reranking_by_text('кот', codes)[2].shape == (2,)
    assert api.encode_text('ab', 5, '<LT_T2I>').tolist() == [2, 5, 6, 3, 0]
    assert api.zs_clf(make_image(), ['кот', 'пес'])['class'] in ('кот', 'пес')


def test_reference_conventions_pad_empty_segments(tiny_model):
    """pipelines (reference) scores ``[pads | image | text]``; the task-token convention encodes the left text."""
    tok, img = UnsizedTokenizer(), make_image()
    ref = pipelines.zs_clf(img, ['кот', 'пес'], tiny_model, tok, FakeVAE().eval(), template='{}')
    parts = Parts(tiny_model, tok, FakeVAE().eval(), {}, reference=True, progress=False)
    ours = tasks.zero_shot(parts, img, ['кот', 'пес'], '{}')
    assert (ours['scores'] == ref['scores']).all()
    api_style = tasks.zero_shot(Parts(tiny_model, tok, FakeVAE().eval(), {}, progress=False), img, ['кот', 'пес'],
                                '{}')
    assert not torch.equal(api_style['ce'], ours['ce'])


@pytest.mark.parametrize('pooling', ['mean', 'max'])
def test_image_embedding_pools_the_image_positions(tiny_model, pooling):
    parts = Parts.of(tiny_model, UnsizedTokenizer(), FakeVAE().eval(), TINY_SPC)
    images = [make_image(seed=0), make_image(seed=1)]
    emb = tasks.image_embedding(parts, images, pooling=pooling)
    assert emb.shape == (2, TINY_PARAMS['hidden_size']) and torch.isfinite(emb).all()
    assert not torch.allclose(emb[0], emb[1])
    # the same picture alone gives the same row (rows do not see each other)
    assert torch.allclose(tasks.image_embedding(parts, images[:1], pooling=pooling)[0], emb[0], atol=1e-5)
    # by hand: the hidden states of layer 1 at the image positions
    L, N2 = tiny_model.get_param('l_text_seq_length'), 16
    ids = torch.cat((parts.context([''], L, '<LT_I2T>'), parts.image(images[0])[None]), dim=1)
    states = tiny_model(ids, return_hidden_states=True)[-1][1][0, L:L + N2]
    want = states.mean(0) if pooling == 'mean' else states.amax(0)
    assert torch.allclose(tasks.image_embedding(parts, images[:1], layer=1, pooling=pooling)[0], want, atol=1e-5)


def test_image_embedding_checks_its_arguments(tiny_model):
    parts = Parts.of(tiny_model, UnsizedTokenizer(), FakeVAE().eval(), TINY_SPC)
    with pytest.raises(ConfigError, match="pooling must be 'mean' or 'max', got 'sum'"):
        tasks.image_embedding(parts, [make_image()], pooling='sum')
    with pytest.raises(InputError, match='images must be a non-empty list'):
        tasks.image_embedding(parts, [])
    with pytest.raises(ConfigError, match='layer must be in'):
        tasks.image_embedding(parts, [make_image()], layer=99)


def test_reencode_needs_task_tokens(v1_model):
    parts = Parts.of(v1_model, UnsizedTokenizer(), FakeVAE().eval())
    with pytest.raises(ConfigError, match='reencode needs a model with task tokens'):
        tasks.best_images(parts, 'кот', 2, 1, SamplingConfig(8, 0.9), reencode_codes=True)


def test_classify_reports_every_tied_class():
    result = pipelines.classify(torch.tensor([2.0, 1.0, 3.0, 1.0]), ['a', 'b', 'c', 'd'])
    assert result['label'] == 1 and result['class'] == 'b' and result['ties'] == ['b', 'd']
    assert pipelines.classify(torch.tensor([2.0, 1.0, 3.0]), ['a', 'b', 'c'])['ties'] == ['b']


def test_a_tie_is_said_to_be_one_and_not_shown_as_one_class():
    tied = pipelines.classify(torch.tensor([1.0, 1.0, 1.0]), ['a', 'b', 'c'])
    assert tied['tie'] is True and tasks.prediction_text(tied).startswith('tie: 3 classes score alike (a, b, c)')
    clear = pipelines.classify(torch.tensor([2.0, 1.0, 3.0]), ['a', 'b', 'c'])
    assert clear['tie'] is False and tasks.prediction_text(clear) == 'b'


def test_a_text_that_is_mostly_unknown_tokens_is_warned_about():
    tok = get_tokenizer(MODELS[TINY_SHAPES]['tokenizer_path'])  # knows the Russian of the shapes only
    assert unknown_share(tok, 'красный круг') == 0.0 and unknown_share(tok, 'hello world 😀') == 1.0
    assert unknown_share(tok, 'red круг') == 0.5 and unknown_share(tok, '') == 0.0
    for text in ('a red circle on white', '😀😀 🎈', 'big red круг'):
        with pytest.warns(UserWarning, match='mostly unknown tokens'):
            encode_text(tok, text, 16, 'prompt')
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        encode_text(tok, 'красный круг', 16, 'prompt')
        encode_text(tok, 'red круг', 16, 'prompt')  # half: still mostly readable
        encode_text(tok, 'hello', 16, 'prompt', warn_unknown=False)


# ----------------------------------------------------------------------------- sampling rules, probabilities
def test_image_sampling_for_fills_from_the_recommended_then_the_default():
    from rudolph.model.configs import MODELS, TINY_SHAPES

    assert tasks.DEFAULT_IMAGE_SAMPLING == SamplingConfig(768, 0.99, 1.0)
    assert tasks.image_sampling_for({}) == tasks.DEFAULT_IMAGE_SAMPLING
    tiny = MODELS[TINY_SHAPES].sampling['text2image']
    assert tasks.image_sampling_for(tiny) == SamplingConfig(**tiny)
    assert tasks.image_sampling_for(tiny, top_k=5) == SamplingConfig(5, tiny['top_p'], tiny['temperature'])
    assert tasks.image_sampling_for({'top_k': 7}, temperature=0.5) == SamplingConfig(7, 0.99, 0.5)
    with pytest.raises(ConfigError):
        tasks.image_sampling_for({}, top_p=1.5)  # validated once, by SamplingConfig


def test_class_probabilities_are_one_over_ppl_normalised():
    ppl = torch.tensor([2.0, 4.0, 4.0])
    probs = tasks.class_probabilities(ppl)
    assert torch.allclose(probs, torch.tensor([0.5, 0.25, 0.25])) and int(probs.argmax()) == 0
