"""rudolph.pretrained.sources: where a model's parts come from, as a saved config.json records them."""
import json
import os
from types import MappingProxyType, SimpleNamespace

import pytest

from rudolph import tokenizer as tokenizer_module
from rudolph import vae as vae_module
from rudolph.errors import ConfigError
from rudolph.model.config import RudolphConfig
from rudolph.model.configs import MODELS, TINY_SHAPES_DIR, TINY_SHAPES_VQGAN_CONFIG
from rudolph.pretrained.sources import (
    infer_base_model,
    model_sources,
    published_tokenizer,
    published_vae,
    registry_sources,
    tokenizer_source,
    vae_source,
)

PUBLISHED = [name for name in MODELS if name != 'tiny-shapes']
TINY_VQGAN = {'ch': 64, 'ch_mult': [1, 1, 1, 1], 'num_res_blocks': 0, 'attn_resolutions': [], 'z_channels': 128,
              'embed_dim': 128, 'n_embed': 2048, 'resolution': 64}


def test_the_published_tokenizer_and_vqgan_are_ruDALL_Es_hub_files():
    assert published_tokenizer() == {'repo_id': 'shonenkov/rudalle-utils', 'filename': 'bpe.model'}
    assert published_vae() == {'repo_id': 'sberbank-ai/rudalle-utils', 'filename': 'vqgan.gumbelf8-sber.model.ckpt',
                               'config': None, 'dwt': False}
    assert published_tokenizer()['repo_id'] == tokenizer_module.HF_REPO_ID
    assert published_vae()['filename'] == vae_module.HF_FILENAMES[False]


def test_published_sources_are_fresh_dicts():
    first = published_tokenizer()
    first['filename'] = 'changed'
    published_vae()['dwt'] = True
    assert published_tokenizer()['filename'] == 'bpe.model' and published_vae()['dwt'] is False


def test_tiny_shapes_records_its_packaged_files():
    sources = registry_sources('tiny-shapes')
    assert sources == {'base_model': 'tiny-shapes',
                       'tokenizer': {'path': os.path.join(TINY_SHAPES_DIR, 'bpe.model')},
                       'vae': {'path': os.path.join(TINY_SHAPES_DIR, 'vqgan.safetensors'), 'config': TINY_VQGAN,
                               'dwt': False}}
    assert os.path.isfile(sources['tokenizer']['path']) and os.path.isfile(sources['vae']['path'])


def test_tiny_shapes_vqgan_config_is_plain_json():
    config = registry_sources('tiny-shapes')['vae']['config']
    assert type(config) is dict and type(config['ch_mult']) is list
    assert json.loads(json.dumps(config)) == config
    assert isinstance(MODELS['tiny-shapes']['vae_config'], MappingProxyType)  # the registry's stays frozen
    assert TINY_SHAPES_VQGAN_CONFIG['ch_mult'] == (1, 1, 1, 1)


@pytest.mark.parametrize('name', PUBLISHED)
def test_the_published_models_record_the_hub_files(name):
    assert registry_sources(name) == {'base_model': name, 'tokenizer': published_tokenizer(), 'vae': published_vae()}


def test_every_registry_source_is_json():
    for name in MODELS:
        sources = registry_sources(name)
        assert json.loads(json.dumps(sources)) == sources


# ----------------------------------------------------------------------------- infer_base_model
@pytest.mark.parametrize('name', [name for name in MODELS if name != '2.7B_fbc2'])
def test_each_registered_architecture_and_task_tokens_name_their_model(name):
    spec = MODELS[name]
    assert infer_base_model(spec.config, dict(spec['spc_tokens'] or {})) == name


def test_models_sharing_architecture_and_task_tokens_give_the_first_registered():
    """2.7B_fbc2 is 2.7B fine-tuned: the same architecture and tokens, so the first of MODELS is named."""
    spec = MODELS['2.7B_fbc2']
    assert spec.model_params == MODELS['2.7B'].model_params
    assert list(MODELS).index('2.7B') < list(MODELS).index('2.7B_fbc2')
    assert infer_base_model(spec.config, dict(spec['spc_tokens'])) == '2.7B'


def test_dropout_and_other_training_settings_do_not_count():
    params = MODELS['tiny-shapes'].model_params
    params.update(embedding_dropout_prob=0.3, attention_dropout_prob=0.2, output_dropout_prob=0.1)
    assert infer_base_model(RudolphConfig(**params), dict(MODELS['tiny-shapes']['spc_tokens'])) == 'tiny-shapes'


def test_other_task_tokens_or_architecture_name_no_model():
    spec = MODELS['tiny-shapes']
    assert infer_base_model(spec.config, {}) is None
    params = spec.model_params
    params['num_layers'] += 1
    assert infer_base_model(RudolphConfig(**params), dict(spec['spc_tokens'])) is None


def test_350m_with_and_without_task_tokens_are_told_apart():
    assert infer_base_model(MODELS['350M_v1'].config, {}) == '350M_v1'
    assert infer_base_model(MODELS['350M'].config, dict(MODELS['350M']['spc_tokens'])) == '350M'


# ----------------------------------------------------------------------------- tokenizer_source / vae_source
def test_tokenizer_source_of_a_dict_is_a_copy():
    given = {'repo_id': 'o/r', 'filename': 'bpe.model'}
    source = tokenizer_source(given)
    assert source == given and source is not given
    assert tokenizer_source(MappingProxyType(given)) == given


def test_tokenizer_source_of_a_registered_name_is_its_packaged_file():
    assert tokenizer_source('tiny-shapes') == {'path': os.path.join(TINY_SHAPES_DIR, 'bpe.model')}


def test_tokenizer_source_of_a_path(tmp_path):
    assert tokenizer_source(str(tmp_path / 'bpe.model')) == {'path': str(tmp_path / 'bpe.model')}
    assert tokenizer_source(tmp_path / 'bpe.model') == {'path': str(tmp_path / 'bpe.model')}


def test_tokenizer_source_of_a_loaded_tokenizer():
    from rudolph.tokenizer import get_tokenizer

    assert tokenizer_source(get_tokenizer('tiny-shapes')) == {'path': os.path.join(TINY_SHAPES_DIR, 'bpe.model')}
    bpe = SimpleNamespace(model_path='/m/bpe.model', data=None)
    assert tokenizer_source(bpe) == {'path': '/m/bpe.model'}
    assert tokenizer_source(SimpleNamespace(tokenizer=bpe)) == {'path': '/m/bpe.model'}


def test_tokenizer_source_of_a_tokenizer_trained_in_memory_keeps_its_data():
    data = object()
    assert tokenizer_source(SimpleNamespace(tokenizer=SimpleNamespace(model_path=None, data=data))) == {'data': data}


@pytest.mark.parametrize('bad', [42, None, SimpleNamespace(model_path=None, data=None)])
def test_tokenizer_source_of_anything_else_names_its_type(bad):
    with pytest.raises(ConfigError, match=f'tokenizer={type(bad).__name__}: expected'):
        tokenizer_source(bad)


def test_vae_source_of_a_dict_is_a_copy():
    given = {'path': 'v.ckpt', 'config': None, 'dwt': True}
    source = vae_source(given)
    assert source == given and source is not given


def test_vae_source_of_a_registered_name_is_its_packaged_file_and_config():
    assert vae_source('tiny-shapes') == {'path': os.path.join(TINY_SHAPES_DIR, 'vqgan.safetensors'),
                                         'config': TINY_VQGAN, 'dwt': False}


def test_vae_source_of_a_path_has_no_config(tmp_path):
    assert vae_source(tmp_path / 'v.ckpt') == {'path': str(tmp_path / 'v.ckpt'), 'config': None, 'dwt': False}


def test_vae_source_of_a_loaded_vqgan():
    vae = SimpleNamespace(config=MappingProxyType({'ch_mult': (1, 2)}), model=object(), dwt=1)
    assert vae_source(vae) == {'object': vae, 'config': {'ch_mult': [1, 2]}, 'dwt': True}
    no_dwt = SimpleNamespace(config={'n_embed': 8}, model=object())
    assert vae_source(no_dwt)['dwt'] is False


@pytest.mark.parametrize('bad', [3.5, SimpleNamespace(config={})])
def test_vae_source_of_anything_else_names_its_type(bad):
    with pytest.raises(ConfigError, match=f'vae={type(bad).__name__}: expected'):
        vae_source(bad)


# ----------------------------------------------------------------------------- model_sources
def _model(name='tiny-shapes', **extra):
    spec = MODELS[name]
    return SimpleNamespace(config=spec.config, spc_tokens=dict(spec['spc_tokens'] or {}), **extra)


def test_a_model_of_the_registry_gets_its_registry_sources():
    assert model_sources(_model()) == registry_sources('tiny-shapes')
    assert model_sources(_model('2.7B')) == registry_sources('2.7B')


def test_an_unknown_model_has_no_sources():
    model = SimpleNamespace(config=MODELS['tiny-shapes'].config, spc_tokens={'<LT_T2I>': 1})
    assert model_sources(model) == {'base_model': None, 'tokenizer': None, 'vae': None}


def test_the_sources_a_model_was_loaded_with_come_first():
    loaded = {'base_model': 'tiny-shapes', 'tokenizer': {'path': '/x/bpe.model'}, 'vae': None}
    assert model_sources(_model(pretrained_sources=loaded)) == loaded


def test_given_sources_come_before_the_models_and_are_not_changed():
    given = {'base_model': None, 'tokenizer': {'path': '/given/bpe.model'}, 'vae': None}
    model = _model(pretrained_sources={'base_model': 'tiny-shapes', 'tokenizer': {'path': '/loaded'}, 'vae': None})
    found = model_sources(model, base_model='350M', sources=given)
    assert found == {'base_model': '350M', 'tokenizer': {'path': '/given/bpe.model'}, 'vae': None}
    assert given['base_model'] is None


def test_base_model_names_the_registry_entry_for_a_model_it_cannot_infer():
    model = SimpleNamespace(config=MODELS['tiny-shapes'].config, spc_tokens={})
    assert model_sources(model, base_model='tiny-shapes') == registry_sources('tiny-shapes')


def test_a_given_tokenizer_and_vae_replace_the_recorded_ones(tmp_path):
    found = model_sources(_model('2.7B'), tokenizer=tmp_path / 'bpe.model', vae={'path': 'v.ckpt', 'config': None})
    assert found['base_model'] == '2.7B'
    assert found['tokenizer'] == {'path': str(tmp_path / 'bpe.model')}
    assert found['vae'] == {'path': 'v.ckpt', 'config': None}


@pytest.mark.parametrize('name', PUBLISHED)
def test_a_published_model_name_gives_its_hub_tokenizer_and_vqgan(name):
    # get_tokenizer(name) / get_vae(name) read these: the source must say so, not name a file called like the model
    assert tokenizer_source(name) == published_tokenizer()
    assert vae_source(name) == published_vae()


def test_the_packaged_model_name_gives_its_packaged_files():
    assert tokenizer_source('tiny-shapes') == registry_sources('tiny-shapes')['tokenizer']
    assert vae_source('tiny-shapes')['path'] == registry_sources('tiny-shapes')['vae']['path']
