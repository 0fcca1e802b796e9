"""Saved models describe themselves: save_pretrained / from_pretrained, safetensors, the trainer's folders,
``rudolph convert`` and ``rudolph push`` (issue 15). Everything offline; the upload goes through
huggingface_hub's own API with only its HTTP transport replaced."""
import hashlib
import json
import os
import shutil

import pytest
import torch
from conftest import fill_hub_cache

from rudolph.cli import commands as cli
from rudolph.errors import CheckpointError, ConfigError, CorruptCheckpointError, WeightsNotFoundError
from rudolph.io.safetensors import is_safetensors, read_safetensors, write_safetensors
from rudolph.model import MODELS, get_rudolph_model
from rudolph.model.configs import TINY_SHAPES_DIR
from rudolph.pretrained.components import Components
from rudolph.pretrained.folder import CARD_NAME, CONFIG_NAME, FORMAT_VERSION, read_config, save_pretrained
from rudolph.pretrained.publish import convert, push_to_hub

TINY = 'tiny-shapes'
PUBLISHED = ['README.md', 'bpe.model', 'config.json', 'model.safetensors', 'vqgan.safetensors']


def logits_of(model, seed: int = 0) -> torch.Tensor:
    c = model.config
    g = torch.Generator().manual_seed(seed)
    ids = torch.cat([torch.randint(4, 200, (2, c.L), generator=g),
                     torch.randint(0, c.image_vocab, (2, c.N2), generator=g),
                     torch.randint(4, 200, (2, c.R), generator=g)], dim=1)
    with torch.no_grad():
        return model(ids)[0]


def assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert sa[key].dtype == sb[key].dtype and torch.equal(sa[key], sb[key]), key


# ----------------------------------------------------------------------------- save / load
def test_components_save_pretrained_round_trip(tmp_path):
    shipped = Components.from_pretrained(TINY)
    folder = shipped.save_pretrained(tmp_path / 'saved')
    assert sorted(os.listdir(folder)) == PUBLISHED and not [f for f in os.listdir(tmp_path) if f.startswith('.')]
    config = read_config(os.path.join(folder, CONFIG_NAME))
    assert config['format'] == 'rudolph' and config['format_version'] == FORMAT_VERSION
    assert config['config'] == MODELS[TINY].config.to_params() and config['base_model'] == TINY
    assert config['spc_tokens'] == dict(MODELS[TINY]['spc_tokens'])
    assert config['sampling'] == {'text2image': {'top_k': 64, 'top_p': 0.95, 'temperature': 0.7}}
    assert config['tokenizer'] == {'file': 'bpe.model'} and config['vae']['file'] == 'vqgan.safetensors'
    assert config['vae']['config']['n_embed'] == 2048
    card = open(os.path.join(folder, CARD_NAME), encoding='utf-8').read()
    assert card.startswith('---\nlibrary_name: rudolph\n') and "from_pretrained('saved')" in card
    assert 'base model: `tiny-shapes`' in card and 'text-to-image' in card
    loaded = Components.from_pretrained(folder)  # nothing else given
    assert_same_weights(loaded.model, shipped.model)
    assert_same_weights(loaded.vae, shipped.vae)
    assert loaded.spc_tokens == shipped.spc_tokens and loaded.sampling == shipped.sampling
    assert loaded.tokenizer.encode_text('большой красный круг', 12).tolist() == \
        shipped.tokenizer.encode_text('большой красный круг', 12).tolist()
    assert torch.equal(logits_of(loaded.model), logits_of(shipped.model))
    # saved again over itself: replaced whole, still loads
    loaded.save_pretrained(folder)
    assert_same_weights(Components.from_pretrained(folder).model, shipped.model)


def test_model_save_pretrained_of_a_published_architecture_points_at_the_hub_parts(tmp_path, tiny_registered):
    """A model of a published architecture keeps ruDALL-E's tokenizer and VQGAN as hub references."""
    from rudolph.tokenizer.wrapper import HF_FILENAME, HF_REPO_ID
    from rudolph.vae import HF_FILENAMES
    from rudolph.vae import HF_REPO_ID as VAE_REPO

    model = get_rudolph_model(tiny_registered, pretrained=False)
    folder = save_pretrained(model, str(tmp_path / 'plain'))
    assert sorted(os.listdir(folder)) == ['README.md', 'config.json', 'model.safetensors']
    config = read_config(os.path.join(folder, CONFIG_NAME))
    assert config['base_model'] == tiny_registered
    assert config['tokenizer'] == {'repo_id': HF_REPO_ID, 'filename': HF_FILENAME}
    assert config['vae']['repo_id'] == VAE_REPO and config['vae']['filename'] == HF_FILENAMES[False]
    # the model's own save_pretrained: config.json + weights; the same hub parts follow from its architecture
    alone = model.save_pretrained(str(tmp_path / 'alone'))
    assert sorted(os.listdir(alone)) == ['config.json', 'model.safetensors']
    for where in (folder, alone):
        loaded = Components.from_pretrained(where, with_vae=False)  # the model loads without the tokenizer
        assert_same_weights(loaded.model, model)
        with pytest.raises(WeightsNotFoundError, match=f'{HF_REPO_ID}/{HF_FILENAME}'):
            loaded.tokenizer  # offline and not cached: named, not guessed
    cache = tmp_path / 'hub'
    fill_hub_cache(cache, HF_REPO_ID, HF_FILENAME, lambda p: shutil.copy(MODELS[TINY]['tokenizer_path'], p))
    for where in (folder, alone):
        loaded = Components.from_pretrained(where, with_vae=False, cache_dir=str(cache))
        assert loaded.tokenizer.encode_text('круг', 8).shape == (8,) and loaded.vae is None


def test_safetensors_files_load_through_get_rudolph_model_and_get_vae(tmp_path):
    from rudolph.vae import get_vae

    spec = MODELS[TINY]
    assert is_safetensors(spec['local_path']) and is_safetensors(spec['vae_path'])
    model = get_rudolph_model(TINY, checkpoint_path=spec['local_path'])
    assert_same_weights(get_rudolph_model(TINY, checkpoint_path=os.path.dirname(spec['local_path'])), model)
    vae = get_vae(path=spec['vae_path'])  # the architecture comes from the file's header
    assert vae.num_tokens == 2048 and vae.image_size == 64
    assert_same_weights(vae, get_vae(TINY))
    broken = tmp_path / 'model.safetensors'
    broken.write_bytes(open(spec['local_path'], 'rb').read()[:4096])
    with pytest.raises(CorruptCheckpointError, match='model.safetensors.*truncated or corrupt'):
        get_rudolph_model(TINY, checkpoint_path=broken)
    state = read_safetensors(spec['local_path'])
    state['text_embeddings.weight'][0, 0] = float('nan')
    write_safetensors(state, str(tmp_path / 'nan.safetensors'))
    with pytest.raises(CheckpointError, match="nan.safetensors: tensor 'text_embeddings.weight' holds non-finite"):
        get_rudolph_model(TINY, checkpoint_path=tmp_path / 'nan.safetensors')


def test_tiny_shapes_ships_as_a_saved_model_folder():
    folder = os.path.dirname(MODELS[TINY]['local_path'])
    assert sorted(os.listdir(folder)) == PUBLISHED
    assert MODELS[TINY]['tokenizer_path'] == os.path.join(folder, 'bpe.model')
    config = read_config(os.path.join(folder, CONFIG_NAME))
    assert config['config'] == MODELS[TINY].config.to_params() and config['torch_dtype'] == 'float16'
    assert config['training']['steps'] == 3000
    by_folder = Components.from_pretrained(folder)
    assert_same_weights(by_folder.model, Components.from_pretrained(TINY).model)
    assert by_folder.sampling == {'text2image': dict(MODELS[TINY]['sampling']['text2image'])}


# ----------------------------------------------------------------------------- fine-tunes
def _finetune(tmp_path, capsys):
    from rudolph.demo import shapes as S

    rows = []
    for i, sample in enumerate(S.make_samples(4, seed=7)):
        sample.image.save(tmp_path / f'img_{i}.png')
        rows.append({'image': f'img_{i}.png', 'right_text': S.caption(sample)})
    (tmp_path / 'rows.jsonl').write_text(''.join(json.dumps(r, ensure_ascii=False) + '\n' for r in rows), 'utf-8')
    out = tmp_path / 'runs' / 'caps'
    code = cli.main(['finetune', '--model', TINY, '--data', str(tmp_path / 'rows.jsonl'), '--out', str(out),
                     '--max-steps', '2', '--bs', '2', '--lr', '1e-3', '--cpu', '--quiet', '--task', 'i2t'])
    assert code == 0, capsys.readouterr().err
    return out


def test_finetune_loads_by_folder_and_by_hub_id_with_the_same_logits(tmp_path, capsys, monkeypatch):
    out = _finetune(tmp_path, capsys)
    step = out / 'step-000002'
    assert sorted(os.listdir(step)) == sorted(PUBLISHED + ['rng_state_0.pt', 'training_state.pt'])
    reference = Components.from_pretrained(TINY, checkpoint=str(step))  # the old way: name + checkpoint
    assert any(not torch.equal(a, b) for a, b in zip(reference.model.state_dict().values(),
                                                      Components.from_pretrained(TINY).model.state_dict().values()))
    expected = logits_of(reference.model)
    for where in (out / 'latest', out, step):  # the `latest` file, the run folder, the step folder
        loaded = Components.from_pretrained(str(where))
        assert torch.equal(logits_of(loaded.model), expected), where
        assert loaded.spc_tokens == reference.spc_tokens and loaded.sampling == reference.sampling
        assert_same_weights(loaded.vae, reference.vae)
    config = read_config(str(step / CONFIG_NAME))
    assert config['base_model'] == TINY
    assert config['training']['steps'] == 2 and config['training']['rows'] == 4
    assert config['training']['tasks'] == {'i2t': 4} and config['training']['data'] == 'rows.jsonl'
    card = (step / CARD_NAME).read_text('utf-8')
    assert '## Training' in card and 'optimizer steps: 2' in card and "from_pretrained('caps/latest')" in card
    # the same files in a hub cache (as a download of the pushed repo leaves them), HF_HUB_OFFLINE=1
    import huggingface_hub.constants

    cache = tmp_path / 'hub'
    for name in PUBLISHED:
        fill_hub_cache(cache, 'me/tiny-caps', name, lambda p, n=name: shutil.copy(step / n, p))
    monkeypatch.setattr(huggingface_hub.constants, 'HF_HUB_CACHE', str(cache))  # as HF_HUB_CACHE=... would
    by_id = Components.from_pretrained('me/tiny-caps')
    assert torch.equal(logits_of(by_id.model), expected) and by_id.spc_tokens == reference.spc_tokens
    capsys.readouterr()
    for model in (str(out / 'latest'), 'me/tiny-caps'):
        code = cli.main(['caption', str(tmp_path / 'img_0.png'), '--model', model, '--device', 'cpu', '--quiet',
                         '--json', '--seed', '0', '--generations-num', '2', '-n', '1'])
        captured = capsys.readouterr()
        assert code == 0, captured.err
        assert json.loads(captured.out)['captions']


def test_a_missing_hub_repo_is_one_clear_error(tmp_path, capsys):
    with pytest.raises(WeightsNotFoundError, match='config.json of the model me/nothing-here.*HF_HUB_OFFLINE'):
        Components.from_pretrained('me/nothing-here', cache_dir=str(tmp_path))
    from PIL import Image

    Image.new('RGB', (64, 64)).save(tmp_path / 'x.png')
    assert cli.main(['caption', str(tmp_path / 'x.png'), '--model', 'not/a/model/at/all']) == 1
    assert "unknown --model 'not/a/model/at/all'" in capsys.readouterr().err
    bare = tmp_path / 'bare'
    bare.mkdir()
    shutil.copy(MODELS[TINY]['local_path'], bare / 'model.safetensors')
    with pytest.raises(ConfigError, match="bare' has no config.json and is no fine-tuning run.*checkpoint="):
        Components.from_pretrained(str(bare))
    assert_same_weights(Components.from_pretrained(TINY, checkpoint=str(bare)).model, get_rudolph_model(TINY))


def test_resume_reads_checkpoints_of_the_old_format(tmp_path, tiny_params):
    """A run saved with pytorch_model.bin (before this format) resumes exactly and then saves the new format."""
    from rudolph.finetune import EncodedDataset, TrainConfig, train
    from rudolph.model import ruDolphModel

    g = torch.Generator().manual_seed(0)
    s = tiny_params['l_text_seq_length'] + tiny_params['image_tokens_per_dim'] ** 2 + tiny_params['r_text_seq_length']
    data = EncodedDataset(torch.randint(4, 60, (6, s), generator=g), ['t2t'] * 6,
                          {'t2t': dict(lt_loss_weight=1, img_loss_weight=0, rt_loss_weight=1)})

    def run(name, **kwargs):
        torch.manual_seed(0)
        model = ruDolphModel(device='cpu', **tiny_params)
        return train(model, data, TrainConfig(out_dir=str(tmp_path / name), batch_size=2, lr=1e-3, max_steps=4,
                                              schedule='constant', show_progress=False, cpu=True, **kwargs))

    straight = run('a', save_every=2)
    old = tmp_path / 'a' / 'step-000002'
    weights = read_safetensors(str(old / 'model.safetensors'))
    for name in ('model.safetensors', 'config.json', 'README.md'):
        os.remove(old / name)
    torch.save(weights, old / 'pytorch_model.bin')
    state = torch.load(old / 'training_state.pt', weights_only=True)
    state['files'] = {n: os.path.getsize(old / n) for n in os.listdir(old) if n != 'training_state.pt'}
    torch.save(state, old / 'training_state.pt')
    shutil.rmtree(tmp_path / 'a' / 'step-000004')
    (tmp_path / 'a' / 'latest').write_text('step-000002')
    resumed = run('b', resume=str(old))
    assert [h['loss'] for h in resumed.history] == [h['loss'] for h in straight.history]
    assert os.path.isfile(tmp_path / 'b' / 'step-000004' / 'model.safetensors')


# ----------------------------------------------------------------------------- convert
def _random_fp16(shape, seed: int) -> torch.Tensor:
    """Random finite float16 values, every sign and mantissa bit random (numpy's generator: torch's is slow
    for 350M values); bit 14 cleared keeps the exponent below inf/NaN."""
    import numpy as np

    n = int(np.prod(shape))
    bits = np.frombuffer(np.random.default_rng(seed).bytes(2 * n), dtype=np.uint16) & np.uint16(0xBFFF)
    return torch.from_numpy(bits.copy()).view(torch.float16).reshape(shape)


def test_convert_350m_config_round_trips_bit_exactly(tmp_path):
    """The real 350M config with random weights in the published layout (fp16, mask buffers included);
    the only test on the full-size config (a few seconds)."""
    from rudolph.model.model import ruDolphModel, skip_init
    from rudolph.tokenizer.wrapper import HF_FILENAME, HF_REPO_ID

    with torch.device('meta'), skip_init():
        layout = ruDolphModel(device='cpu', **MODELS['350M']['model_params']).state_dict()
    state = {k: torch.ones(v.shape, dtype=torch.bool).tril() if 'mask' in k else _random_fp16(v.shape, i)
             for i, (k, v) in enumerate(layout.items())}
    source = tmp_path / 'published' / 'pytorch_model.bin'
    source.parent.mkdir()
    torch.save(state, source)
    folder = convert(str(source.parent), str(tmp_path / 'converted'))  # the architecture found from the shapes
    assert sorted(os.listdir(folder)) == ['README.md', 'config.json', 'model.safetensors']
    back = read_safetensors(os.path.join(folder, 'model.safetensors'))
    kept = [k for k in state if 'mask' not in k]
    assert sorted(back) == sorted(kept)
    for key in kept:
        assert back[key].dtype == torch.float16 and torch.equal(back[key].view(torch.int16),
                                                                state[key].view(torch.int16)), key
    config = read_config(os.path.join(folder, CONFIG_NAME))
    assert config['base_model'] == '350M' and config['config'] == MODELS['350M']['model_params']
    assert config['spc_tokens'] == dict(MODELS['350M']['spc_tokens']) and config['torch_dtype'] == 'float16'
    assert config['tokenizer'] == {'repo_id': HF_REPO_ID, 'filename': HF_FILENAME}
    # the converted folder loads with neither the tokenizer nor the VQGAN at hand (offline, empty cache)
    loaded = Components.from_pretrained(folder, dtype='bf16', cache_dir=str(tmp_path / 'empty-cache'))
    weight = loaded.model.text_embeddings.weight
    assert weight.dtype == torch.bfloat16 and torch.equal(weight, back['text_embeddings.weight'].to(torch.bfloat16))
    with pytest.raises(WeightsNotFoundError, match=f'{HF_REPO_ID}/{HF_FILENAME}'):
        loaded.tokenizer
    del back, state, loaded, weight


def test_convert_command_and_its_errors(tmp_path, capsys):
    code = cli.main(['convert', TINY, str(tmp_path / 'tiny')])
    assert code == 0 and sorted(os.listdir(tmp_path / 'tiny')) == PUBLISHED
    assert 'model.safetensors' in capsys.readouterr().out
    for name in ('model.safetensors', 'vqgan.safetensors'):  # the shipped files, bit for bit
        a, b = read_safetensors(str(tmp_path / 'tiny' / name)), read_safetensors(
            os.path.join(os.path.dirname(MODELS[TINY]['local_path']), name))
        assert sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)
    torch.save({'nothing': torch.zeros(3)}, tmp_path / 'odd.bin')
    assert cli.main(['convert', str(tmp_path / 'odd.bin'), str(tmp_path / 'x')]) == 1
    assert 'cannot tell which model' in capsys.readouterr().err and not (tmp_path / 'x').exists()


def test_convert_never_deletes_what_it_did_not_write(tmp_path, capsys, monkeypatch):
    """A folder of other files is refused (kept as it was); an earlier model folder is replaced only with
    --overwrite; the current folder and a folder holding the input are refused."""
    other = tmp_path / 'mine'
    other.mkdir()
    (other / 'thesis.txt').write_text('years of work', encoding='utf-8')
    assert cli.main(['convert', TINY, str(other)]) == 1
    assert 'not empty' in capsys.readouterr().err and os.listdir(other) == ['thesis.txt']
    with pytest.raises(ConfigError, match='not empty'):
        convert(TINY, str(other), overwrite=True)
    assert (other / 'thesis.txt').read_text(encoding='utf-8') == 'years of work'
    out = tmp_path / 'tiny'
    assert cli.main(['convert', TINY, str(out)]) == 0
    capsys.readouterr()
    assert cli.main(['convert', TINY, str(out)]) == 1
    assert '--overwrite' in capsys.readouterr().err
    (out / 'notes.txt').write_text('mine', encoding='utf-8')  # a file added to a model folder: not ours any more
    assert cli.main(['convert', TINY, str(out), '--overwrite']) == 1
    assert (out / 'notes.txt').exists()
    (out / 'notes.txt').unlink()
    assert cli.main(['convert', TINY, str(out), '--overwrite']) == 0
    assert sorted(os.listdir(out)) == PUBLISHED and not [n for n in os.listdir(tmp_path) if n.startswith('.')]
    (tmp_path / 'in').mkdir()
    torch.save({'x': torch.zeros(1)}, tmp_path / 'in' / 'w.bin')
    for target in (tmp_path / 'in', tmp_path, tmp_path / 'in' / 'w.bin'):
        with pytest.raises(ConfigError, match='input'):
            convert(str(tmp_path / 'in' / 'w.bin'), str(target))
    monkeypatch.chdir(out)
    with pytest.raises(ConfigError, match='current folder'):
        convert(TINY, '.', overwrite=True)
    assert sorted(os.listdir(out)) == PUBLISHED


# ----------------------------------------------------------------------------- push
class FakeHub:
    """The hub's HTTP API as huggingface_hub speaks it (repo creation, preupload, LFS batch, commit)."""

    def __init__(self):
        self.requests, self.commits, self.uploads = [], [], {}
        self.down = False

    def __call__(self, request):
        import httpx2

        path = request.url.path
        self.requests.append((request.method, path))
        if self.down:
            raise httpx2.ConnectError('connection refused', request=request)
        if path == '/api/repos/create':
            return httpx2.Response(200, json={'url': 'https://huggingface.co/me/tiny-caps', 'name': 'me/tiny-caps'})
        if path == '/api/validate-yaml':
            return httpx2.Response(200, json={'errors': [], 'warnings': []})
        if '/preupload/' in path:
            files = json.loads(request.content)['files']
            return httpx2.Response(200, json={'files': [
                {'path': f['path'], 'uploadMode': 'lfs' if f['path'].endswith('.safetensors') else 'regular',
                 'shouldIgnore': False} for f in files]})
        if path.endswith('.git/info/lfs/objects/batch'):
            objects = json.loads(request.content)['objects']
            return httpx2.Response(200, json={'transfer': 'basic', 'objects': [
                {'oid': o['oid'], 'size': o['size'], 'actions': {'upload': {'href': f'https://lfs.test/{o["oid"]}'}}}
                for o in objects]})
        if request.url.host == 'lfs.test' and request.method == 'PUT':
            self.uploads[path.strip('/')] = request.read()
            return httpx2.Response(200)
        if '/commit/' in path:
            self.commits.append([json.loads(line) for line in request.content.decode().splitlines()])
            return httpx2.Response(200, json={'commitUrl': 'https://huggingface.co/me/tiny-caps/commit/' + 'c' * 40,
                                              'commitOid': 'c' * 40})
        return httpx2.Response(404, json={'error': f'not faked: {request.method} {path}'})


@pytest.fixture
def fake_hub(monkeypatch):
    """huggingface_hub's HTTP client with a mock transport; xet (a Rust client outside that layer) off."""
    httpx2 = pytest.importorskip('httpx2')
    from huggingface_hub import constants
    from huggingface_hub.utils import _http

    if not hasattr(_http, 'set_client_factory'):
        pytest.skip('this huggingface_hub has no set_client_factory')
    hub = FakeHub()
    monkeypatch.delenv('HF_HUB_OFFLINE', raising=False)
    monkeypatch.setattr(constants, 'HF_HUB_OFFLINE', False)
    monkeypatch.setattr(constants, 'HF_HUB_DISABLE_XET', True)
    monkeypatch.setattr(constants, 'HF_HUB_DISABLE_TELEMETRY', True)
    _http.set_client_factory(lambda: httpx2.Client(transport=httpx2.MockTransport(hub)))
    yield hub
    _http.set_client_factory(_http.default_client_factory)


def test_push_uploads_the_model_files_of_a_fine_tune(tmp_path, fake_hub, capsys):
    folder = Components.from_pretrained(TINY).save_pretrained(tmp_path / 'step')
    for extra in ('training_state.pt', 'rng_state_0.pt'):  # what a trainer checkpoint also holds
        torch.save({'x': torch.zeros(1)}, os.path.join(folder, extra))
    code = cli.main(['push', folder, 'me/tiny-caps', '--token', 'hf_test', '--message', 'tiny fine-tune'])
    assert code == 0, capsys.readouterr().err
    assert 'commit/' + 'c' * 40 in capsys.readouterr().out
    assert ('POST', '/api/repos/create') in fake_hub.requests
    (commit,) = fake_hub.commits
    assert commit[0]['key'] == 'header' and commit[0]['value']['summary'] == 'tiny fine-tune'
    regular = {op['value']['path']: op['value']['content'] for op in commit if op['key'] == 'file'}
    lfs = {op['value']['path']: op['value']['oid'] for op in commit if op['key'] == 'lfsFile'}
    assert sorted(regular) == ['README.md', 'bpe.model', 'config.json']
    assert sorted(lfs) == ['model.safetensors', 'vqgan.safetensors']
    for name, oid in lfs.items():  # each big file went to LFS storage byte for byte
        data = open(os.path.join(folder, name), 'rb').read()
        assert hashlib.sha256(data).hexdigest() == oid and fake_hub.uploads[oid] == data
    import base64
    assert json.loads(base64.b64decode(regular['config.json']))['format'] == 'rudolph'


def test_push_to_hub_of_components_saves_first(tmp_path, fake_hub):
    url = Components.from_pretrained(TINY).push_to_hub('me/tiny-caps', token='hf_test')
    assert url.endswith('c' * 40)
    (commit,) = fake_hub.commits
    assert sorted(op['value']['path'] for op in commit if op['key'] != 'header') == PUBLISHED
    with pytest.raises(ValueError, match='owner/name'):
        push_to_hub(str(tmp_path), 'no-owner')


def test_push_without_a_reachable_hub_is_a_one_line_error(tmp_path, fake_hub, capsys):
    folder = Components.from_pretrained(TINY).save_pretrained(tmp_path / 'm')
    fake_hub.down = True
    assert cli.main(['push', folder, 'me/tiny-caps', '--token', 'hf_test']) == 1
    assert 'cannot reach the hub to push me/tiny-caps: ConnectError' in capsys.readouterr().err


# ----------------------------------------------------------------------------- what a folder may name (issue 24)
@pytest.fixture
def saved_copy(tmp_path):
    """A copy of the embedded saved model, and a secret file beside it that no folder may reach."""
    folder = tmp_path / 'models' / 'saved'
    shutil.copytree(TINY_SHAPES_DIR, folder)
    secret = tmp_path / 'secret.txt'
    secret.write_text('SECRET-FIRST-LINE root:x:0:0\nmore\n', encoding='utf-8')
    return folder, secret


def _edit_config(folder, **changes):
    path = folder / CONFIG_NAME
    config = json.loads(path.read_text(encoding='utf-8'))
    config.update(changes)
    path.write_text(json.dumps(config), encoding='utf-8')


@pytest.mark.parametrize('name', ['../../secret.txt', '{secret}', 'sub/../../../secret.txt'])
def test_a_folder_naming_a_tokenizer_outside_itself_is_refused_without_showing_it(saved_copy, name):
    folder, secret = saved_copy
    _edit_config(folder, tokenizer={'file': name.format(secret=secret)})
    with pytest.raises(ConfigError, match='outside the model folder|not a file name inside') as info:
        Components.from_pretrained(str(folder))
    assert 'SECRET' not in str(info.value) and 'root:' not in str(info.value)


def test_a_folder_naming_weights_elsewhere_is_refused(saved_copy, tmp_path):
    folder, _ = saved_copy
    elsewhere = tmp_path / 'elsewhere'
    shutil.copytree(folder, elsewhere)  # valid weights: the old code loaded them silently
    _edit_config(folder, weights=str(elsewhere / 'model.safetensors'))
    with pytest.raises(ConfigError, match='not a file name inside the model folder'):
        Components.from_pretrained(str(folder))


def test_a_link_out_of_the_folder_is_refused(saved_copy, tmp_path):
    folder, secret = saved_copy
    os.remove(folder / 'bpe.model')
    os.symlink(secret, folder / 'bpe.model')
    with pytest.raises(ConfigError, match='outside the model folder') as info:
        Components.from_pretrained(str(folder))
    assert 'SECRET' not in str(info.value)
    os.remove(folder / 'bpe.model')
    os.remove(folder / 'model.safetensors')
    os.symlink(tmp_path / 'nowhere.safetensors', folder / 'model.safetensors')  # also for bare weight folders
    (tmp_path / 'nowhere.safetensors').write_bytes(b'x')
    with pytest.raises(ConfigError, match='outside'):
        get_rudolph_model(TINY, checkpoint_path=folder)


def test_a_latest_file_naming_a_folder_elsewhere_is_refused(saved_copy, tmp_path):
    folder, _ = saved_copy
    run = tmp_path / 'run'
    run.mkdir()
    (run / 'latest').write_text('../models/saved', encoding='utf-8')
    with pytest.raises(ConfigError, match='outside'):
        Components.from_pretrained(str(run / 'latest'))


def test_a_hub_cache_snapshot_folder_still_loads(tmp_path):
    """huggingface_hub links a snapshot's files to ../../blobs: inside the repository's cache folder."""
    repo = tmp_path / 'models--me--tiny'
    (repo / 'blobs').mkdir(parents=True)
    snapshot = repo / 'snapshots' / ('a' * 40)
    snapshot.mkdir(parents=True)
    for i, name in enumerate(sorted(os.listdir(TINY_SHAPES_DIR))):
        shutil.copyfile(os.path.join(TINY_SHAPES_DIR, name), repo / 'blobs' / f'blob{i}')
        os.symlink(os.path.join('..', '..', 'blobs', f'blob{i}'), snapshot / name)
    assert Components.from_pretrained(str(snapshot)).name == str(snapshot)


def test_a_config_asking_for_a_huge_model_is_refused_before_building_it(saved_copy):
    folder, _ = saved_copy
    config = json.loads((folder / CONFIG_NAME).read_text(encoding='utf-8'))
    _edit_config(folder, config={**config['config'], 'num_layers': 100_000})
    with pytest.raises(CheckpointError, match=r'num_layers=100000 but the weights hold 4 layers'):
        Components.from_pretrained(str(folder))  # the old code built 100,000 layers first (minutes, gigabytes)
    _edit_config(folder, config={**config['config'], 'hidden_size': 1 << 20, 'num_attention_heads': 1})
    with pytest.raises(CheckpointError, match=r'shape mismatches.*vs model \(.*1048576'):
        Components.from_pretrained(str(folder))


@pytest.mark.parametrize('field, value', [('num_attention_heads', -4), ('hidden_size', 0), ('num_layers', 2.5),
                                          ('image_tokens_per_dim', -1), ('attention_dropout_prob', 1.5)])
def test_a_config_with_an_impossible_size_names_the_field(saved_copy, field, value):
    folder, _ = saved_copy
    config = json.loads((folder / CONFIG_NAME).read_text(encoding='utf-8'))
    _edit_config(folder, config={**config['config'], field: value})
    with pytest.raises(ConfigError, match=rf'{field}={value!r}: expected'):
        Components.from_pretrained(str(folder))


def test_push_refuses_a_folder_whose_file_links_outside(saved_copy, fake_hub):
    folder, secret = saved_copy
    os.remove(folder / 'bpe.model')
    os.symlink(secret, folder / 'bpe.model')  # would publish the secret under the tokenizer's name
    with pytest.raises(ConfigError, match='outside the model folder'):
        push_to_hub(str(folder), 'me/tiny-caps', token='hf_test')
    assert not fake_hub.commits
