"""The ``rudolph`` command line end to end: tiny local weights (model, BPE, VQGAN) written by the test."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from fakes import write_header_only_png
from PIL import Image

from rudolph.cli import commands as cli
from rudolph.model import MODELS, ruDolphModel
from rudolph.tokenizer import train_bpe
from rudolph.vae import VQGanGumbelVAE

L, N, R = 8, 4, 12
# plain BPE ids [0, 16384) as in the published models, so the default task-token ids 16384+ fit
CLI_PARAMS = dict(
    num_layers=2, hidden_size=32, num_attention_heads=4,
    embedding_dropout_prob=0.0, attention_dropout_prob=0.0, output_dropout_prob=0.0,
    l_text_seq_length=L, image_tokens_per_dim=N, r_text_seq_length=R,
    kernel_size=3, last_kernel_size=3, vocab_size=16384 + L,
    text_special_tokens=16, image_special_tokens=4, image_vocab_size=64,
    cogview_sandwich_layernorm=True, cogview_pb_relax=True, mlp_activation='gelu_jit',
)
V1_PARAMS = dict(CLI_PARAMS, text_special_tokens=0, image_special_tokens=0)  # 350M_v1-like: no task tokens
SMALL_VOCAB_PARAMS = dict(CLI_PARAMS, vocab_size=1000 + L)  # task-token ids 16384+ do not fit
VAE_CONFIG = dict(ch=32, ch_mult=(1, 1, 1, 1), num_res_blocks=0, attn_resolutions=(), z_channels=32, embed_dim=32,
                  n_embed=64, resolution=N * 8)
SENTENCES = ['рисунок кота на траве', 'на картинке кот', 'на картинке собака', 'вопрос: что на картинке? ответ: кот',
             'вопрос: какого цвета кот? ответ: черный', 'красивый пейзаж с горами', 'кошка спит на диване',
             'собака бежит по полю', 'это кошка', 'это собака'] * 3


def _save_model(params, path, seed=0):
    torch.manual_seed(seed)
    torch.save(ruDolphModel(device='cpu', **params).state_dict(), path)
    return str(path)


@pytest.fixture(scope='module')
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp('cli_assets')
    train_bpe(SENTENCES, 160, str(root / 'bpe.model'))
    torch.manual_seed(0)
    torch.save({'state_dict': VQGanGumbelVAE(config=VAE_CONFIG).model.state_dict()}, root / 'vqgan.ckpt')
    (root / 'vqgan.json').write_text(json.dumps(VAE_CONFIG))
    (root / 'config.json').write_text(json.dumps(CLI_PARAMS))
    os.makedirs(root / 'v1')
    img = Image.fromarray((torch.rand(45, 60, 3) * 255).byte().numpy())
    img.save(root / 'img.png')
    return dict(root=root, model=_save_model(CLI_PARAMS, root / 'pytorch_model.bin'),
                v1=_save_model(V1_PARAMS, root / 'v1' / 'pytorch_model.bin'),
                small=_save_model(SMALL_VOCAB_PARAMS, root / 'small.bin'),
                tokenizer=str(root / 'bpe.model'), vae=str(root / 'vqgan.ckpt'),
                vae_config=str(root / 'vqgan.json'), config=str(root / 'config.json'), image=str(root / 'img.png'))


@pytest.fixture
def registered(monkeypatch):
    """Hub-style entries for the tiny configs (weights only ever come from --checkpoint here)."""
    for name, params in (('tiny-cli', CLI_PARAMS), ('tiny-cli-v1', V1_PARAMS), ('tiny-cli-small', SMALL_VOCAB_PARAMS)):
        monkeypatch.setitem(MODELS, name, dict(hf_version='v3', description='cli test', repo_id=f'rudolph-tests/{name}',
                                               filename='pytorch_model.bin', model_params=dict(params)))


_DEFAULT = object()


def weights(assets, model='tiny-cli', checkpoint=_DEFAULT, vae=_DEFAULT, vae_config=_DEFAULT, **extra):
    """Common options for the tiny weights; an option given as ``None`` is left out."""
    options = {'--model': model, '--checkpoint': assets['model'] if checkpoint is _DEFAULT else checkpoint,
               '--tokenizer': assets['tokenizer'], '--vae': assets['vae'] if vae is _DEFAULT else vae,
               '--vae-config': assets['vae_config'] if vae_config is _DEFAULT else vae_config, '--device': 'cpu',
               **{f'--{k.replace("_", "-")}': v for k, v in extra.items()}}
    return [x for k, v in options.items() if v is not None for x in (k, v)] + ['--quiet']


def run_json(capsys, argv):
    code = cli.main(argv + ['--json'])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


# ----------------------------------------------------------------------------- help and registration
def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(['--help'])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for name in ('text2image', 'caption', 'vqa', 'classify', 'text', 'demo', 'finetune'):
        assert name in out
    for name in ('text2image', 'caption', 'vqa', 'classify', 'text'):
        with pytest.raises(SystemExit) as exit_info:
            cli.main([name, '--help'])
        assert exit_info.value.code == 0
        out = capsys.readouterr().out
        for option in ('--model', '--device', '--fp16', '--bf16', '--seed', '--bs', '--checkpoint', '--vae',
                       '--tokenizer', '--json'):
            assert option in out
    assert cli.build_parser().parse_args(['caption', 'x.png']).model == '350M'


def test_plugins_and_custom_commands_register(monkeypatch, capsys):
    import rudolph.finetune  # noqa: F401  registers itself

    assert {'demo', 'finetune'} <= set(cli.COMMANDS)
    seen = []
    monkeypatch.setitem(cli.COMMANDS, 'hello', cli.Command('say hi', lambda p: p.add_argument('--name'),
                                                           lambda a: seen.append(a.name) or 0))
    assert cli.main(['hello', '--name', 'x']) == 0 and seen == ['x']
    with pytest.raises(SystemExit) as exit_info:
        cli.main(['no-such-command'])
    assert exit_info.value.code == 2


# ----------------------------------------------------------------------------- every command, in process
def test_text2image_writes_pngs_and_grid(assets, registered, tmp_path, capsys):
    out_dir = tmp_path / 'out'
    res = run_json(capsys, ['text2image', 'рисунок кота', '-n', '3', '-o', str(out_dir), '--seed', '0',
                            '--top-k', '16', '--bs', '2'] + weights(assets))
    assert set(res) >= {'text', 'model', 'backend', 'seed', 'images', 'grid'}
    assert res['backend'] == 'ruDolphApi' and res['seed'] == 0 and len(res['images']) == 3
    for item in res['images']:
        assert set(item) >= {'path', 'ppl_text', 'ppl_image', 'score'}
        with Image.open(item['path']) as img:
            assert img.size == (N * 8, N * 8) and img.mode == 'RGB'
    assert sorted(os.listdir(out_dir)) == ['grid.png', 'img_0.png', 'img_1.png', 'img_2.png']
    scores = [item['score'] for item in res['images']]
    assert scores == sorted(scores)
    again = run_json(capsys, ['text2image', 'рисунок кота', '-n', '3', '-o', str(tmp_path / 'again'), '--seed', '0',
                              '--top-k', '16', '--bs', '2'] + weights(assets))
    assert [i['score'] for i in again['images']] == scores  # seeded
    # plain-text output: one line per image, then the grid
    assert cli.main(['text2image', 'кот', '-n', '1', '-o', str(tmp_path / 'plain'), '--seed', '1']
                    + weights(assets)) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[-1].startswith('grid: ')


def test_caption_vqa_classify_text(assets, registered, capsys):
    w = weights(assets)
    res = run_json(capsys, ['caption', assets['image'], '--template', 'на', '-n', '2', '--generations-num', '6',
                            '--seed', '1', '--temperature', '2'] + w)
    assert set(res) >= {'image', 'captions', 'seed'} and len(res['captions']) <= 2
    assert all(set(c) >= {'text', 'score', 'count'} and isinstance(c['text'], str) for c in res['captions'])

    res = run_json(capsys, ['vqa', assets['image'], 'что на картинке?', '-n', '2', '--generations-num', '6',
                            '--seed', '2', '--temperature', '2', '--top-k', '0'] + w)
    assert res['question'] == 'что на картинке?' and len(res['answers']) <= 2
    assert all(set(a) == {'answer', 'count'} and a['count'] >= 1 for a in res['answers'])

    res = run_json(capsys, ['classify', assets['image'], '--classes', 'кошка', 'собака', 'кот',
                            '--template', 'это {}', '--bs', '2'] + w)
    assert set(res) >= {'class', 'label', 'scores'} and list(res['scores']) == ['кошка', 'собака', 'кот']
    assert abs(sum(res['scores'].values()) - 1) < 1e-5
    assert res['class'] == min(res['scores'], key=res['scores'].get) == ['кошка', 'собака', 'кот'][res['label']]

    res = run_json(capsys, ['text', 'красивый', '-n', '3', '--generations-num', '6', '--seed', '3'] + w)
    assert res['prompt'] == 'красивый' and len(res['texts']) <= 3
    ppl = [t['ppl'] for t in res['texts']]
    assert ppl == sorted(ppl) and all(t['text'].startswith('красивый') for t in res['texts'])


def test_model_without_task_tokens_uses_pipelines(assets, registered, tmp_path, capsys):
    w = weights(assets, 'tiny-cli-v1', checkpoint=assets['v1'])
    res = run_json(capsys, ['text2image', 'кот', '-n', '2', '--codebooks-num', '3', '-o', str(tmp_path),
                            '--seed', '0'] + w)
    assert res['backend'] == 'pipelines' and len(res['images']) == 2
    assert res['images'][0]['ppl_text'] <= res['images'][1]['ppl_text']
    res = run_json(capsys, ['classify', assets['image'], '--classes', 'кот', 'собака'] + w)
    assert res['backend'] == 'pipelines' and res['class'] in ('кот', 'собака')
    res = run_json(capsys, ['caption', assets['image'], '--template', 'на', '--generations-num', '4', '--seed', '0']
                   + w)
    assert isinstance(res['captions'], list)
    res = run_json(capsys, ['vqa', assets['image'], 'что?', '--generations-num', '4', '--seed', '0'] + w)
    assert isinstance(res['answers'], list)
    res = run_json(capsys, ['text', '--generations-num', '4', '--seed', '0'] + w)
    assert isinstance(res['texts'], list)
    # a checkpoint folder works as well as the file
    folder = os.path.dirname(assets['v1'])
    assert run_json(capsys, ['classify', assets['image'], '--classes', 'кот', 'пес']
                    + weights(assets, 'tiny-cli-v1', checkpoint=folder))['backend'] == 'pipelines'


# ----------------------------------------------------------------------------- errors: message, exit code, no traceback
def test_user_errors_are_messages(assets, registered, tmp_path, capsys):
    w = weights(assets)
    cases = [
        (['caption', str(tmp_path / 'missing.png')] + w, 'image not found'),
        (['classify', assets['image'], '--classes', 'кот', 'Кот '] + w, 'distinct'),
        (['classify', assets['image'], '--classes', 'кот', '--template', 'без слота'] + w, '{}'),
        (['caption', assets['image']] + weights(assets, checkpoint=str(tmp_path / 'nope.bin')), 'nope.bin'),
        (['caption', assets['image']] + weights(assets, checkpoint=None, config=assets['config']), '--checkpoint'),
        (['caption', assets['image']] + weights(assets, model='no-such-model'), 'unknown --model'),
        (['caption', assets['image']] + weights(assets, vae_config='{"ch": '), '--vae-config'),
        # the default task-token ids (16384+) are outside this model's 1000-id text vocabulary
        (['caption', assets['image']] + weights(assets, 'tiny-cli-small', assets['small']), 'task tokens'),
        # the published VQGAN architecture does not fit the tiny checkpoint
        (['caption', assets['image']] + weights(assets, vae_config=None), 'cannot load the VQGAN'),
        (['caption', assets['image']] + weights(assets, vae=str(tmp_path / 'no.ckpt')), 'no.ckpt'),
        (['vqa', assets['image'], '  '] + w, 'question'),
    ]
    bad_image = tmp_path / 'bad.png'
    bad_image.write_bytes(b'not an image')
    cases.append((['caption', str(bad_image)] + w, 'cannot read the image'))
    for argv, expected in cases:
        assert cli.main(argv) == 1, argv
        err = capsys.readouterr().err
        assert expected in err and 'Traceback' not in err, (argv, err)
    for argv in (['text2image', 'кот', '-n', '0'], ['caption', 'x.png', '--top-p', '1.5'],
                 ['text', '--temperature', '0'], ['caption', 'x.png', '--bs', '0'], ['caption', 'x.png', '--top-k', '-1'],
                 ['caption', 'x.png', '--fp16', '--bf16']):
        with pytest.raises(SystemExit) as exit_info:
            cli.main(argv)
        assert exit_info.value.code == 2
        assert 'error' in capsys.readouterr().err


def test_missing_hub_weights_offline(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    monkeypatch.setenv('HF_HUB_CACHE', str(tmp_path / 'empty-cache'))
    import huggingface_hub.constants as constants
    monkeypatch.setattr(constants, 'HF_HUB_CACHE', str(tmp_path / 'empty-cache'))
    monkeypatch.setattr(constants, 'HF_HUB_OFFLINE', True)
    img = tmp_path / 'img.png'
    Image.new('RGB', (20, 30)).save(img)
    assert cli.main(['caption', str(img), '--device', 'cpu']) == 1
    err = capsys.readouterr().err
    for needle in ('shonenkov-AI/RuDOLPH-350M-v2', 'pytorch_model.bin', 'hf download',
                   'shonenkov/rudalle-utils', 'bpe.model', 'sberbank-ai/rudalle-utils', '--checkpoint', '--vae',
                   '--tokenizer'):
        assert needle in err
    assert 'Traceback' not in err


# ----------------------------------------------------------------------------- as a program
def _python_m(args, tmp_path, **env):
    environ = dict(os.environ, HF_HUB_OFFLINE='1', HF_HOME=str(tmp_path / 'hf-home'), PYTHONWARNINGS='ignore', **env)
    environ.pop('HF_HUB_CACHE', None)
    return subprocess.run([sys.executable, '-m', 'rudolph'] + args, capture_output=True, text=True, env=environ,
                          timeout=300, cwd=str(tmp_path))


def test_python_m_rudolph(assets, tmp_path):
    # an unregistered architecture: --config next to --checkpoint (no MODELS entry in the child process)
    w = weights(assets, model='my-tiny', config=assets['config'])
    done = _python_m(['text2image', 'кот', '-n', '2', '-o', 'pics', '--seed', '0', '--json'] + w, tmp_path)
    assert done.returncode == 0, done.stderr
    res = json.loads(done.stdout)
    assert res['model'] == 'my-tiny' and res['backend'] == 'ruDolphApi' and len(res['images']) == 2
    for name in ('img_0.png', 'img_1.png', 'grid.png'):
        with Image.open(tmp_path / 'pics' / name) as img:
            assert img.size[1] == N * 8 + (4 if name == 'grid.png' else 0)

    # the published weights are not in the (empty) cache and the hub is off
    done = _python_m(['vqa', assets['image'], 'что на картинке?', '--device', 'cpu'], tmp_path)
    assert done.returncode == 1
    assert 'Traceback' not in done.stderr
    assert 'hf download shonenkov-AI/RuDOLPH-350M-v2 pytorch_model.bin' in done.stderr
    assert 'hf download shonenkov/rudalle-utils bpe.model' in done.stderr


# ----------------------------------------------------------------------------- issue 11
TINY = ['--model', 'tiny-shapes', '--device', 'cpu', '--quiet']


def test_device_is_checked_before_anything_else(assets, registered, capsys):
    assert cli.main(['caption', assets['image']] + weights(assets, device='tpu')) == 1
    err = capsys.readouterr().err
    assert "--device 'tpu'" in err and 'cpu, cuda, cuda:N' in err and 'mps' in err
    assert 'VQGAN' not in err and 'Traceback' not in err


def test_text2image_checks_the_output_folder_first(assets, registered, tmp_path, capsys):
    blocker = tmp_path / 'a-file'
    blocker.write_text('x')
    # the checkpoint is missing too: the folder is checked before any weights are looked at
    argv = ['text2image', 'кот', '-o', str(blocker / 'sub')] + weights(assets, checkpoint=str(tmp_path / 'none.bin'))
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert '-o/--out' in err and 'none.bin' not in err


def test_text2image_keeps_existing_pictures_unless_overwrite(tmp_path, capsys):
    out = tmp_path / 'out'
    out.mkdir()
    (out / 'img_1.png').write_bytes(b'mine')
    argv = ['text2image', 'кот', '-n', '2', '--codebooks-num', '2', '-o', str(out), '--seed', '0'] + TINY
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert str(out / 'img_1.png') in err and '--overwrite' in err
    assert os.listdir(out) == ['img_1.png'] and (out / 'img_1.png').read_bytes() == b'mine'
    assert cli.main(argv + ['--overwrite']) == 0
    assert sorted(os.listdir(out)) == ['grid.png', 'img_0.png', 'img_1.png']
    with Image.open(out / 'img_1.png') as img:
        assert img.size == (64, 64)


def test_text2image_uses_the_model_sampling_and_decodes_per_batch(tmp_path, capsys, monkeypatch):
    from rudolph.api import ruDolphApi
    from rudolph.pretrained.components import Components
    from rudolph.vae import VQGanGumbelVAE

    decoded = []
    original = VQGanGumbelVAE.decode

    def recording_decode(self, codes):  # records the batch sizes, decodes as before
        decoded.append(len(codes))
        return original(self, codes)

    monkeypatch.setattr(VQGanGumbelVAE, 'decode', recording_decode)
    text = 'маленькая синяя звезда в центре на черном фоне'
    res = run_json(capsys, ['text2image', text, '-n', '3', '--codebooks-num', '6', '--bs', '2', '--reencode',
                            '-o', str(tmp_path / 'out'), '--seed', '5'] + TINY)
    assert res['sampling'] == MODELS['tiny-shapes']['sampling']['text2image'] and res['reencode']
    assert len(res['images']) == 3 and max(decoded[-2:]) <= 2  # the 3 kept images: batches of 2 and 1
    # the same pictures and ranking as ruDolphApi.dream with the same options
    c = Components.from_pretrained('tiny-shapes')
    api = ruDolphApi(c.model, c.tokenizer, c.vae, quite=True)
    images, scores = api.dream(text, images_num=3, codebooks_num=6, bs=2, seed=5, reencode=True,
                               **c.sampling_for('text2image'))
    assert [r['score'] for r in res['images']] == pytest.approx([float(s['score']) for s in scores])
    for item, img in zip(res['images'], images):
        with Image.open(item['path']) as saved:
            diff = torch.from_numpy(np.asarray(saved.convert('RGB'), dtype=np.float32) - np.asarray(img, np.float32))
            assert diff.abs().mean() < 1.0
    # an explicit option wins over the model's recommendation
    res = run_json(capsys, ['text2image', text, '-n', '1', '-o', str(tmp_path / 'k'), '--top-k', '5'] + TINY)
    assert res['sampling']['top_k'] == 5 and res['sampling']['top_p'] == 0.95


def test_help_examples_say_that_tiny_shapes_works_offline(capsys):
    for argv in (['--help'], ['text2image', '--help'], ['caption', '--help'], ['vqa', '--help'],
                 ['classify', '--help'], ['text', '--help'], ['finetune', '--help']):
        with pytest.raises(SystemExit):
            cli.main(argv)
        shown = ' '.join(capsys.readouterr().out.split()).replace('- ', '-')  # argparse wraps at hyphens
        assert 'tiny-shapes works offline' in shown, argv


def test_caption_of_a_decompression_bomb_is_one_clear_error(capsys, tmp_path):
    write_header_only_png(tmp_path / 'bomb.png', 20_000, 20_000)
    assert cli.main(['caption', str(tmp_path / 'bomb.png')] + TINY) == 1
    err = capsys.readouterr().err
    assert 'bomb.png' in err and 'megapixels are refused' in err and 'Traceback' not in err


def test_classify_says_when_every_class_ties(capsys, tmp_path):
    from rudolph.demo import shapes as S

    path = tmp_path / 'red.png'
    S.make_sample(0, seed=3).image.save(path)
    argv = ['classify', str(path), '--classes', 'abc', 'xyz'] + TINY  # unspellable: the same text for both
    res = run_json(capsys, argv)
    assert res['tie'] is True and res['ties'] == ['abc', 'xyz']
    assert cli.main(argv) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith('tie: 2 classes score alike (abc, xyz)')


def test_classify_prints_probabilities(capsys, tmp_path):
    from rudolph.demo import shapes as S

    path = tmp_path / 'red.png'
    S.make_sample(0, seed=3).image.save(path)
    argv = ['classify', str(path), '--classes', *S.colour_classes(), '--template', S.ZS_COLOUR_TEMPLATE] + TINY
    res = run_json(capsys, argv)
    probs, ppl = res['probabilities'], res['perplexities']
    assert abs(sum(probs.values()) - 1) < 1e-5 and max(probs, key=probs.get) == res['class']
    assert min(ppl, key=ppl.get) == res['class']
    assert cli.main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert 'higher is better' in out[1]
    shown = [float(line.split()[0]) for line in out[2:]]
    assert shown == sorted(shown, reverse=True) and abs(sum(shown) - 1) < 1e-3


def test_text_warnings_are_summarised(capsys):
    import warnings

    argv = ['text', '--json', '--seed', '0', '--generations-num', '16'] + TINY
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        for run in (argv, [a for a in argv if a != '--quiet']):  # --quiet hides progress, never warnings
            assert cli.main(run) == 0
            err = capsys.readouterr().err
            assert not caught and err.count('rudolph: warning') == 1 and 'UserWarning' not in err


def test_a_prompt_the_tokenizer_cannot_read_is_warned_about_even_under_quiet(capsys, tmp_path):
    for i, prompt in enumerate(('a red circle on white', '😀😀 🎈')):
        assert cli.main(['text2image', prompt, '-n', '1', '-o', str(tmp_path / f'out{i}')] + TINY) == 0
        err = capsys.readouterr().err
        assert 'rudolph: warning' in err and 'mostly unknown tokens' in err and repr(prompt)[:40] in err


def _python(code, tmp_path):
    environ = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(os.path.dirname(os.path.dirname(cli.__file__)))]))
    return subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=environ, timeout=120,
                          cwd=str(tmp_path))


def test_imports_are_lazy(tmp_path):
    done = _python("import rudolph.cli.commands, sys; assert 'torch' not in sys.modules, 'torch'", tmp_path)
    assert done.returncode == 0, done.stderr
    done = _python("import rudolph, sys; bad = [m for m in ('rudolph.demo', 'rudolph.cli.commands', 'rudolph.finetune', "
                   "'accelerate', 'torch') if m in sys.modules]; assert not bad, bad", tmp_path)
    assert done.returncode == 0, done.stderr
    done = _python("from rudolph import get_tokenizer, get_vae, ImagePrompts, get_rudolph_model, ruDolphApi, MODELS; "
                   "assert 'tiny-shapes' in MODELS", tmp_path)
    assert done.returncode == 0, done.stderr
    for argv in (['--help'], ['caption', '--help'], ['demo', '--help'], ['finetune', '--help'],
                 ['caption']):  # help and a usage error: no torch
        done = _python('import runpy, sys; sys.argv = ["rudolph"] + %r\ntry:\n    runpy.run_module("rudolph", '
                       'run_name="__main__")\nexcept SystemExit as e:\n    assert "torch" not in sys.modules, "torch"\n'
                       '    raise' % argv, tmp_path)
        assert done.returncode == (2 if argv == ['caption'] else 0), done.stderr
    done = _python_m(['--help'], tmp_path)
    assert done.returncode == 0 and 'text2image' in done.stdout


def test_each_sampling_option_names_its_own_default(capsys):
    with pytest.raises(SystemExit):
        cli.main(['text2image', '--help'])
    text = ' '.join(capsys.readouterr().out.split())
    assert "(0: all; default the model's recommended, else 768)" in text
    assert "(default the model's recommended, else 0.99)" in text
    assert "> 0 (default the model's recommended, else 1.0)" in text
    assert '768 / 0.99' not in text
