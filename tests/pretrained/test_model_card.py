"""rudolph.pretrained.model_card: the README.md of a saved model states its metadata, parts, training, how to load."""
import json
import os
import re

import pytest

from rudolph.model.configs import DEFAULT_SPC_TOKENS, MODELS, TINY_SHAPES_DIR
from rudolph.pretrained.folder import pretrained_config
from rudolph.pretrained.model_card import model_card
from rudolph.pretrained.sources import registry_sources


def _packaged_config():
    with open(os.path.join(TINY_SHAPES_DIR, 'config.json'), encoding='utf-8') as f:
        return json.load(f)


def _registry_config(name, **extra):
    spec = MODELS[name]
    return pretrained_config(spec.config, dict(spec['spc_tokens'] or {}), registry_sources(name), **extra)


def _front_matter(card):
    assert card.startswith('---\n')
    head, _, body = card[4:].partition('\n---\n')
    return head.splitlines(), body


def _line(card, prefix):
    found = [line for line in card.splitlines() if line.startswith(prefix)]
    assert len(found) == 1, (prefix, found)
    return found[0]


def test_the_card_of_the_packaged_model_states_what_its_readme_states():
    card = model_card(_packaged_config(), 'tiny-shapes')
    with open(os.path.join(TINY_SHAPES_DIR, 'README.md'), encoding='utf-8') as f:
        packaged = f.read()
    assert card.split('## How to load')[0] == packaged.split('## How to load')[0]


def test_the_front_matter_is_hub_metadata():
    meta, _ = _front_matter(model_card(_registry_config('2.7B'), 'my-model'))
    assert meta[:3] == ['library_name: rudolph', 'language:', '- ru']
    assert meta[3] == 'tags:'
    assert {'- rudolph', '- text-to-image', '- image-to-text', '- safetensors'} <= set(meta)
    assert meta[-1] == 'base_model: sberbank-ai/RUDOLPH-2.7B'


@pytest.mark.parametrize('name', ['tiny-shapes', None])
def test_without_a_hub_repo_there_is_no_base_model_metadata(name):
    config = dict(_packaged_config(), base_model=name, base_model_repo=None)
    meta, _ = _front_matter(model_card(config, 'x'))
    assert not any(line.startswith('base_model') for line in meta)


def test_the_title_and_the_saving_library_version_and_format():
    config = dict(_packaged_config(), library_version='9.8.7', format_version=3)
    _, body = _front_matter(model_card(config, 'Shapes v2'))
    assert body.lstrip('\n').startswith('# Shapes v2\n')
    assert 'saved by `rudolph` 9.8.7 (format version 3).' in body


def test_the_base_model_is_a_hub_link_the_package_or_unknown():
    assert _line(model_card(_registry_config('350M'), 'x'), '- base model:') == (
        '- base model: `350M` ([shonenkov-AI/RuDOLPH-350M-v2](https://huggingface.co/shonenkov-AI/RuDOLPH-350M-v2))')
    assert _line(model_card(_packaged_config(), 'x'), '- base model:') == (
        '- base model: `tiny-shapes` (embedded in the rudolph package)')
    unknown = dict(_packaged_config(), base_model=None, base_model_repo=None)
    assert _line(model_card(unknown, 'x'), '- base model:') == '- base model: unknown'


@pytest.mark.parametrize('name, px', [('350M', 128), ('1.3B', 256), ('2.7B', 192), ('tiny-shapes', 64)])
def test_the_architecture_line_states_the_geometry_and_the_picture_size(name, px):
    c = MODELS[name].model_params
    line = _line(model_card(_registry_config(name), 'x'), '- architecture:')
    assert line == (f'- architecture: {c["num_layers"]} layers, hidden {c["hidden_size"]}, left text '
                    f'{c["l_text_seq_length"]}, image {c["image_tokens_per_dim"]}x{c["image_tokens_per_dim"]} codes '
                    f'({px} px), right text {c["r_text_seq_length"]}')
    assert f'{px} px' in MODELS[name].description or name == 'tiny-shapes'


def test_the_tasks_of_a_model_with_task_tokens():
    config = dict(_packaged_config(), spc_tokens=dict(DEFAULT_SPC_TOKENS))
    assert _line(model_card(config, 'x'), '- tasks:') == (
        '- tasks: image captioning, text, text QA, text-to-image, VQA, zero-shot classification '
        '(task tokens: `ruDolphApi`)')


def test_only_the_tasks_of_the_tokens_present_are_named():
    config = dict(_packaged_config(), spc_tokens={'<LT_T2I>': 1, '<LT_UNK>': 2})
    assert _line(model_card(config, 'x'), '- tasks:').startswith('- tasks: text-to-image, VQA')


@pytest.mark.parametrize('spc', [{}, None])
def test_the_tasks_of_a_model_without_task_tokens(spc):
    config = dict(_packaged_config(), spc_tokens=spc)
    line = _line(model_card(config, 'x'), '- tasks:')
    assert 'no task tokens' in line and '`rudolph.pipelines`' in line
    assert _line(model_card(_registry_config('350M_v1'), 'x'), '- tasks:') == line


def test_published_parts_are_hub_links():
    card = model_card(_registry_config('1.3B'), 'x')
    assert _line(card, '- tokenizer:') == (
        '- tokenizer: `bpe.model` of [shonenkov/rudalle-utils](https://huggingface.co/shonenkov/rudalle-utils)')
    assert _line(card, '- VQGAN:') == ('- VQGAN: `vqgan.gumbelf8-sber.model.ckpt` of '
                                       '[sberbank-ai/rudalle-utils](https://huggingface.co/sberbank-ai/rudalle-utils)')


def test_parts_in_the_folder_and_parts_not_recorded():
    card = model_card(_packaged_config(), 'x')
    assert _line(card, '- tokenizer:') == '- tokenizer: `bpe.model` (in this folder)'
    assert _line(card, '- VQGAN:') == '- VQGAN: `vqgan.safetensors` (in this folder)'
    unknown = model_card(dict(_packaged_config(), tokenizer=None, vae={}), 'x')
    assert _line(unknown, '- tokenizer:') == '- tokenizer: not recorded (pass it when loading)'
    assert _line(unknown, '- VQGAN:') == '- VQGAN: not recorded (pass it when loading)'


@pytest.mark.parametrize('training', [None, {}])
def test_no_training_section_without_training(training):
    assert '## Training' not in model_card(dict(_packaged_config(), training=training), 'x')


def test_the_training_section_lists_the_recorded_values_in_order():
    training = {'eval': 'loss 1.5', 'lr': 1e-4, 'steps': 200, 'data': 'captions.jsonl', 'rows': None,
                'precision': 'bf16', 'batch_size': 0}
    card = model_card(_registry_config('tiny-shapes', training=training), 'x')
    section = card.split('## Training\n\n')[1].split('\n\n')[0].splitlines()
    assert section == ['- data: captions.jsonl', '- optimizer steps: 200', '- batch size: 0', '- learning rate: 0.0001',
                       '- precision: bf16', '- last evaluation: loss 1.5']


def test_how_to_load_names_the_model_in_python_and_on_the_command_line():
    card = model_card(_registry_config('2.7B'), 'me/my-rudolph')
    assert "Components.from_pretrained('me/my-rudolph')" in card
    assert 'rudolph caption img.png --model me/my-rudolph' in card
    assert card.endswith('```\n')


def test_the_python_of_how_to_load_runs():
    card = model_card(_packaged_config(), TINY_SHAPES_DIR)
    code = re.search(r'```python\n(.*?)```', card, re.S).group(1)
    scope = {}
    exec(compile(code, 'README.md', 'exec'), scope)
    from rudolph.api import ruDolphApi

    assert isinstance(scope['api'], ruDolphApi)
    assert scope['c'].model.config.to_params() == MODELS['tiny-shapes'].model_params


def test_a_model_whose_task_tokens_name_no_known_task_lists_the_rest_cleanly():
    config = dict(_packaged_config(), spc_tokens={'<LT_UNK>': 1, '<RT_UNK>': 2})
    assert _line(model_card(config, 'x'), '- tasks:').startswith('- tasks: VQA, zero-shot classification')
