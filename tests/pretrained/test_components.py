"""``rudolph.pretrained.components.Components``: one loader of model, tokenizer, VAE, task tokens and sampling."""
import copy
import json
import os

import pytest
import torch

from rudolph.cli import commands as cli
from rudolph.errors import ConfigError, WeightsNotFoundError
from rudolph.model.configs import MODELS, TINY_SHAPES_SPC_TOKENS, TINY_SHAPES_T2I_SAMPLING
from rudolph.model.device import check_device
from rudolph.pretrained.components import Components


def test_tiny_shapes_brings_its_own_parts():
    before = copy.deepcopy(MODELS)
    c = Components.from_pretrained('tiny-shapes')
    assert c.name == 'tiny-shapes' and c.spc_tokens == TINY_SHAPES_SPC_TOKENS
    assert c.sampling_for('text2image') == TINY_SHAPES_T2I_SAMPLING and c.sampling_for('no-such-task') == {}
    assert c.tokenizer.vocab_size() < 1000  # its own 214-id BPE, not ruDALL-E's
    codes = c.vae.get_codebook_indices(torch.zeros(1, 3, 64, 64))
    assert codes.shape == (1, 64)  # 8x8 codes of the 64 px tiny VQGAN
    assert MODELS == before


def test_config_for_an_unregistered_architecture_leaves_models_alone(tmp_path):
    from rudolph.model import ruDolphModel

    params = dict(MODELS['tiny-shapes']['model_params'])
    torch.manual_seed(0)
    torch.save(ruDolphModel(device='cpu', **params).state_dict(), tmp_path / 'pytorch_model.bin')
    before = copy.deepcopy(MODELS)
    c = Components.from_pretrained('my-arch', config=params, checkpoint=str(tmp_path), tokenizer='tiny-shapes',
                                   vae='tiny-shapes')
    assert c.name == 'my-arch' and c.spc_tokens == {} and c.model.get_param('hidden_size') == params['hidden_size']
    assert MODELS == before and 'my-arch' not in MODELS
    with pytest.raises(ConfigError, match='checkpoint'):
        Components.from_pretrained('my-arch', config=params)
    with pytest.raises(ConfigError, match='unknown model'):
        Components.from_pretrained('my-arch')


def test_every_missing_file_is_reported_at_once(monkeypatch, tmp_path):
    import huggingface_hub.constants as constants

    monkeypatch.setenv('HF_HUB_CACHE', str(tmp_path / 'empty'))
    monkeypatch.setattr(constants, 'HF_HUB_CACHE', str(tmp_path / 'empty'))
    monkeypatch.setattr(constants, 'HF_HUB_OFFLINE', True)
    with pytest.raises(WeightsNotFoundError) as info:
        Components.from_pretrained('350M')
    message = str(info.value)
    for needle in ('hf download shonenkov-AI/RuDOLPH-350M-v2 pytorch_model.bin',
                   'hf download shonenkov/rudalle-utils bpe.model',
                   'hf download sberbank-ai/rudalle-utils vqgan.gumbelf8-sber.model.ckpt',
                   'checkpoint=PATH', 'tokenizer=PATH', 'vae=PATH'):
        assert needle in message
    assert 'huggingface-cli' not in message
    assert set(info.value.problems) == {'model', 'tokenizer', 'vae'}


def test_device_strings_are_checked_up_front():
    assert check_device('cpu') == 'cpu' and check_device(None) in ('cpu', 'cuda')
    for bad in ('tpu', 'cuda:x', 'gpu', ''):
        with pytest.raises(ConfigError, match='cpu, cuda, cuda:N'):
            check_device(bad)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match='CUDA is not available'):
            check_device('cuda:0')


# ----------------------------------------------------------------------------- fine-tune tiny-shapes, then caption
def _write_rows(root):
    from rudolph.demo import shapes as S

    rows = []
    for i, sample in enumerate(S.make_samples(4, seed=7)):
        name = f'img_{i}.png'
        sample.image.save(root / name)
        rows.append({'image': name, 'right_text': S.caption(sample)})
    with open(root / 'rows.jsonl', 'w', encoding='utf-8') as f:
        f.write(''.join(json.dumps(r, ensure_ascii=False) + '\n' for r in rows))
    return str(root / 'rows.jsonl'), str(root / 'img_0.png')


def test_finetune_tiny_shapes_on_images_then_caption(tmp_path, capsys):
    data, image = _write_rows(tmp_path)
    out = tmp_path / 'run'
    code = cli.main(['finetune', '--model', 'tiny-shapes', '--data', data, '--out', str(out), '--max-steps', '2',
                     '--bs', '2', '--lr', '1e-4', '--cpu', '--quiet', '--save-every', '1'])
    assert code == 0, capsys.readouterr().err
    folder = out / 'step-000002'
    assert (folder / 'model.safetensors').is_file()
    # the images were encoded by tiny-shapes' own VQGAN (8x8 = 64 codes each), not ruDALL-E's
    assert os.listdir(out / 'cache')
    tuned = Components.from_pretrained('tiny-shapes', checkpoint=str(folder))
    shipped = Components.from_pretrained('tiny-shapes')
    assert any(not torch.equal(a, b) for a, b in zip(tuned.model.state_dict().values(),
                                                      shipped.model.state_dict().values()))
    capsys.readouterr()
    code = cli.main(['caption', image, '--model', 'tiny-shapes', '--checkpoint', str(folder), '--device', 'cpu',
                     '--quiet', '--json', '--seed', '0', '--generations-num', '4', '-n', '2'])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    result = json.loads(captured.out)
    assert result['model'] == 'tiny-shapes' and result['backend'] == 'ruDolphApi' and result['captions']
