"""rudolph.finetune on a tiny model with a char-level FakeTokenizer and a FakeVAE (no network)."""
import argparse
import json
import logging
import os
import runpy
import shutil
import subprocess
import sys
import textwrap

import pytest
import safetensors.torch
import torch
from torch import nn

from rudolph.errors import ConfigError
from rudolph.finetune import (
    DEFAULT_SPC_TOKENS,
    DataError,
    EncodedDataset,
    NonFiniteLossError,
    TrainConfig,
    encode_task_text,
    find_checkpoint,
    freeze,
    parameter_group,
    prepare_dataset,
    train,
)
from rudolph.finetune.cli import add_arguments, main
from rudolph.generation.engine import generate
from rudolph.model import get_rudolph_model, ruDolphModel
from rudolph.model.config import Layout

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Task tokens inside the tiny text vocabulary (V=1024, left pads from 1016): "user-added" ids.
SPC = {name: 1000 + i for i, name in enumerate(DEFAULT_SPC_TOKENS)}


@pytest.fixture(autouse=True)
def _one_thread():
    """Two shared cores: one intra-op thread avoids oversubscription (10x faster here)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class FakeBPE:
    def encode(self, texts):
        return [[4 + ord(c) % 900 for c in t] for t in texts]


class FakeTokenizer:
    """Char-level stand-in for ruDALL-E's tokenizer wrapper (``tokenizer.encode([text])``)."""
    tokenizer = FakeBPE()


class FakeVAE(nn.Module):
    """Codes = mean brightness of each ``factor x factor`` cell, quantised to 64 levels."""

    def __init__(self, factor: int = 8, image_size: int = 32):
        super().__init__()
        self.downsample_factor_ = factor
        self.image_size = image_size
        self.scale = nn.Parameter(torch.tensor(63.0))
        self.calls = 0

    @torch.no_grad()
    def get_codebook_indices(self, img):
        self.calls += img.shape[0]
        cells = nn.functional.avg_pool2d(img.mean(1, keepdim=True), self.downsample_factor_)
        return (cells * self.scale).round().long().clamp(0, 63).flatten(1)


def tiny(params, dropout=None):
    if dropout is not None:
        params = {**params, 'embedding_dropout_prob': dropout, 'attention_dropout_prob': dropout,
                  'output_dropout_prob': dropout}
    torch.manual_seed(0)
    return ruDolphModel(device='cpu', **params)


def make_images(folder, n=4):
    from PIL import Image

    os.makedirs(folder, exist_ok=True)
    paths = []
    for i in range(n):
        g = torch.Generator().manual_seed(i)
        array = (torch.rand(40, 48, 3, generator=g) * 255).to(torch.uint8).numpy()
        path = os.path.join(folder, f'img{i}.png')
        Image.fromarray(array).save(path)
        paths.append(path)
    return paths


def write_jsonl(path, rows):
    with open(path, 'w', encoding='utf-8') as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + '\n')
    return str(path)


def config(tmp_path, name='out', **kwargs):
    defaults = dict(out_dir=str(tmp_path / name), max_steps=4, batch_size=4, lr=1e-2, schedule='constant',
                    show_progress=False, seed=0)
    return TrainConfig(**{**defaults, **kwargs})


def text_rows(n=4):
    return [{'left_text': f'вопрос {i}', 'right_text': f'да {i}'} for i in range(n)]


# ----------------------------------------------------------------------------- data
def test_encode_task_text_layout():
    ids, cut = encode_task_text(FakeTokenizer(), '  AbC ', 8, 1003)
    assert ids.tolist() == [2, 1003, 4 + ord('a'), 4 + ord('b'), 4 + ord('c'), 3, 0, 0] and not cut
    ids, cut = encode_task_text(FakeTokenizer(), 'abcdefgh', 6, None)
    assert ids.tolist() == [2] + [4 + ord(c) for c in 'abcde'] and cut


def test_prepare_dataset_layout_and_code_cache(tmp_path, tiny_params, caplog):
    make_images(tmp_path / 'images')
    rows = [{'image': f'img{i}.png', 'right_text': f'кот {i}'} for i in range(4)]
    rows[3] = {'image': 'img3.png', 'left_text': 'что это?', 'right_text': 'собака', 'task': 'vqa'}
    data = write_jsonl(tmp_path / 'rows.jsonl', rows)
    model, vae = tiny(tiny_params), FakeVAE()
    kwargs = dict(image_root=tmp_path / 'images', cache_dir=tmp_path / 'cache', spc_tokens=SPC, show_progress=False)
    ds = prepare_dataset(data, FakeTokenizer(), vae, model, **kwargs)
    assert vae.calls == 4 and ds.tasks == ['i2t', 'i2t', 'i2t', 'vqa']
    L, N2 = 8, 16
    x = ds.input_ids
    assert x.shape == (4, 8 + 16 + 6)
    assert x[0, :L].tolist() == [2, SPC['<LT_I2T>'], 3, 0, 0, 0, 0, 0]
    assert x[0, L + N2:].tolist() == [2, SPC['<RT_I2T>']] + [4 + ord(c) % 900 for c in 'кот 0'][:4]
    assert ds.weights['i2t'] == dict(lt_loss_weight=0.0, img_loss_weight=0.0, rt_loss_weight=1.0)
    with caplog.at_level(logging.WARNING):
        again = prepare_dataset(data, FakeTokenizer(), vae, model, **kwargs)
    assert vae.calls == 4, 'second preparation must read the cached codes, not run the VAE'
    assert torch.equal(again.input_ids, x)
    assert 'right_text texts were cut' in caplog.text
    # text QA: zero image positions, task tokens of QA, loss on left and right text only
    qa = prepare_dataset(text_rows(2), FakeTokenizer(), None, model, spc_tokens=SPC)
    assert qa.tasks == ['tqa', 'tqa'] and qa.input_ids[:, L:L + N2].eq(0).all()
    assert qa.input_ids[0, 1] == SPC['<LT_TQA>'] and qa.input_ids[0, L + N2 + 1] == SPC['<RT_TQA>']
    assert qa.weights['tqa']['img_loss_weight'] == 0


def test_bad_rows_and_images(tmp_path, tiny_params, caplog):
    paths = make_images(tmp_path, n=2)
    model, tok = tiny(tiny_params), FakeTokenizer()
    kw = dict(spc_tokens=SPC, show_progress=False)
    missing = [{'image': paths[0], 'right_text': 'a'}, {'image': str(tmp_path / 'nope.png'), 'right_text': 'b'}]
    with caplog.at_level(logging.WARNING):
        ds = prepare_dataset(missing, tok, FakeVAE(), model, **kw)
    assert len(ds) == 1 and 'skipped 1 of 2 rows whose image is missing' in caplog.text
    with pytest.raises(FileNotFoundError, match='nope.png'):
        prepare_dataset(missing, tok, FakeVAE(), model, missing_images='error', **kw)
    corrupt = tmp_path / 'corrupt.png'
    corrupt.write_bytes(b'not an image at all')
    rows = [{'image': paths[0], 'right_text': 'a'}, {'image': str(corrupt), 'right_text': 'b'}]
    with pytest.raises(OSError, match='cannot read the image .*corrupt.png'):
        prepare_dataset(rows, tok, FakeVAE(), model, missing_images='error', **kw)
    assert len(prepare_dataset(rows, tok, FakeVAE(), model, **kw)) == 1
    with pytest.raises(DataError, match=r"row 1: task 'i2t' needs non-empty \['right_text'\]"):
        prepare_dataset([rows[0], {'image': paths[1], 'right_text': '  ', 'task': 'i2t'}], tok, FakeVAE(), model, **kw)
    with pytest.raises(DataError, match='row 0: has neither text nor image'):
        prepare_dataset([{'left_text': ''}, {'left_text': 'x'}], tok, None, model, **kw)
    assert len(prepare_dataset([{'left_text': ''}, {'left_text': 'x'}], tok, None, model, bad_rows='skip', **kw)) == 1
    with pytest.raises(ValueError, match=r'expects \[b, 16\]'):
        prepare_dataset(rows[:1], tok, FakeVAE(factor=16, image_size=64), model, **kw)
    with pytest.raises(ValueError, match='does not fit the model text vocabulary'):
        prepare_dataset(text_rows(1), tok, None, model)  # the published ids (16384+) on a 1024-token model
    not_a_dir = tmp_path / 'file'
    not_a_dir.write_text('x')
    with pytest.raises(OSError, match='output folder .* is not writable'):
        train(model, prepare_dataset(text_rows(), tok, None, model, **kw), config(tmp_path, 'file/out'))
    assert not_a_dir.read_text() == 'x'


# ----------------------------------------------------------------------------- freezing
def test_freeze_groups(tiny_model):
    groups = {name: parameter_group(name) for name, _ in tiny_model.named_parameters()}
    assert groups['transformer.layers.0.attention.query_key_value.weight'] == 'attn'
    assert groups['transformer.layers.0.mlp.dense_h_to_4h.weight'] == 'ff'
    assert groups['transformer.layers.0.before_first_addition_layernorm.weight'] == 'ln'
    assert groups['transformer.final_layernorm.bias'] == 'ln' and groups['to_logits.0.weight'] == 'ln'
    assert groups['to_logits.1.weight'] == 'other' and groups['image_row_embeddings.weight'] == 'emb'
    assert groups['module.transformer.layers.1.attention.dense.bias'.replace('module.', '')] == 'attn'
    frozen = freeze(tiny_model)  # defaults: attention and feed-forward
    assert any('.attention.' in n for n in frozen), 'attention must really be frozen (the notebooks never froze it)'
    assert set(frozen) == {n for n, g in groups.items() if g in ('attn', 'ff')}
    assert freeze(tiny_model, freeze_attn=False, freeze_ff=False) == []
    assert all(p.requires_grad for p in tiny_model.parameters())


def test_frozen_parameters_do_not_change(tmp_path, tiny_params):
    model = tiny(tiny_params)
    ds = prepare_dataset(text_rows(), FakeTokenizer(), None, model, spc_tokens=SPC)
    frozen = set(freeze(model, freeze_emb=True, freeze_ln=True))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train(model, ds, config(tmp_path, max_steps=3, save_final=False))
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in frozen)
    assert not torch.equal(before['to_logits.1.weight'], after['to_logits.1.weight'])


def test_the_fp16_module_of_the_original_notebook_trains(tmp_path, tiny_params):
    """The fine-tuning notebook's way: get_rudolph_model(..., fp16=True), freeze(model.module, ...), train(model)."""
    from rudolph.model import FP16Module

    model = FP16Module(tiny(tiny_params), convert=False)  # what get_rudolph_model(fp16=True) returns on CPU
    frozen = set(freeze(model.module, freeze_emb=True, freeze_ln=True))
    ds = prepare_dataset(text_rows(), FakeTokenizer(), None, model, spc_tokens=SPC)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = train(model, ds, config(tmp_path, max_steps=3, save_final=False))
    assert result.model is model.module
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in frozen)
    assert not torch.equal(before['to_logits.1.weight'], after['to_logits.1.weight'])


def test_an_int8_model_cannot_be_fine_tuned(tmp_path, tiny_params):
    from rudolph.errors import ConfigError
    from rudolph.model.quant import quantize_linears

    model = tiny(tiny_params)
    ds = prepare_dataset(text_rows(), FakeTokenizer(), None, model, spc_tokens=SPC)
    quantize_linears(model.to(torch.bfloat16))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ConfigError, match=r"quantize='int8'.*quantised layers.*Load it without quantize"):
        train(model, ds, config(tmp_path, max_steps=1, save_final=False))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not os.path.exists(os.path.join(tmp_path, 'out', 'metrics.jsonl'))


# ----------------------------------------------------------------------------- training
TASK_ROWS = {
    't2i': lambda p: [{'image': p[i], 'left_text': f'картинка {i}'} for i in range(4)],
    'i2t': lambda p: [{'image': p[i], 'right_text': f'кот {i}'} for i in range(4)],
    'vqa': lambda p: [{'image': p[i], 'left_text': 'кто?', 'right_text': f'кот {i}'} for i in range(4)],
    't2t': lambda p: [{'left_text': f'текст {i}'} for i in range(4)],
    'tqa': lambda p: text_rows(),
}


@pytest.mark.parametrize('task', sorted(TASK_ROWS))
def test_loss_goes_down_on_memorisation_set(task, tmp_path, tiny_params):
    model = tiny(tiny_params)
    ds = prepare_dataset(TASK_ROWS[task](make_images(tmp_path / 'img')), FakeTokenizer(), FakeVAE(), model,
                         spc_tokens=SPC, show_progress=False)
    assert set(ds.tasks) == {task}
    result = train(model, ds, config(tmp_path, max_steps=30, save_final=False, warmup=3, lr=3e-3), eval_data=ds)
    first, last = result.history[0]['loss'], result.history[-1]['loss']
    logging.getLogger('measured').info('%s: loss %.4f -> %.4f', task, first, last)
    assert last < 0.6 * first, f'{task}: loss {first:.3f} -> {last:.3f}'
    used = {p for p, w in zip(('l_text_loss', 'image_loss', 'r_text_loss'), ds.weights[task].values()) if w}
    assert {k for k in ('l_text_loss', 'image_loss', 'r_text_loss') if result.history[-1][k] is not None} == used


def test_first_image_token_option_trains_the_first_image_token(tmp_path, tiny_params):
    """The published loss never scores the first image token; ``first_image_token=True`` does."""
    def first_token_ce(model, ds):
        ids = torch.stack([ds[i]['input_ids'] for i in range(len(ds))])
        L, V = model.l_text_seq_length, model.vocab_size
        with torch.no_grad():
            logits, _ = model(ids, None)
        return float(nn.functional.cross_entropy(logits[:, L - 1, V:], ids[:, L]))

    # the first image cell is white, every other cell black: nothing else predicts it
    image = torch.zeros(3, 32, 32)
    image[:, :8, :8] = 1
    rows = [{'image': image, 'left_text': f'картинка {i}'} for i in range(4)]
    ce = {}
    for flag in (False, True):
        model = tiny(tiny_params)
        ds = prepare_dataset(rows, FakeTokenizer(), FakeVAE(), model, spc_tokens=SPC, show_progress=False)
        assert ds[0]['input_ids'][model.l_text_seq_length] == 63
        before = first_token_ce(model, ds)
        train(model, ds, config(tmp_path, f'out{flag}', max_steps=40, save_final=False, lr=3e-3,
                                first_image_token=flag))
        ce[flag] = (before, first_token_ce(model, ds))
    assert ce[True][1] < 0.5 * ce[True][0], ce
    assert ce[True][1] < 0.5 * ce[False][1], ce


def test_checkpoint_round_trips_through_get_rudolph_model(tmp_path, tiny_params, tiny_registered):
    model = tiny(tiny_params)
    ds = prepare_dataset(text_rows(), FakeTokenizer(), None, model, spc_tokens=SPC)
    result = train(model, ds, config(tmp_path, max_steps=2))
    assert os.path.basename(result.last_checkpoint) == 'step-000002'
    assert not [d for d in os.listdir(tmp_path / 'out') if d.startswith('.tmp')]
    loaded = get_rudolph_model(tiny_registered, checkpoint_path=result.last_checkpoint)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_resume_is_exact(tmp_path, tiny_params):
    def run(name, **kwargs):
        model = tiny(tiny_params)  # with dropout: the RNG state is part of the checkpoint
        ds = prepare_dataset(text_rows(6), FakeTokenizer(), None, model, spc_tokens=SPC)
        return train(model, ds, config(tmp_path, name, max_steps=6, batch_size=2, grad_accum=2, schedule='one_cycle',
                                       warmup=2, **kwargs))

    straight = run('a', save_every=2)  # 3 batches an epoch, 2 per step: resumes mid-epoch
    assert os.path.isdir(tmp_path / 'a' / 'step-000002')
    resumed = run('b', resume=str(tmp_path / 'a' / 'step-000002'))
    assert resumed.state.step == 6 and resumed.state.epoch == straight.state.epoch
    assert [h['loss'] for h in resumed.history] == [h['loss'] for h in straight.history]
    a = torch.load(tmp_path / 'a' / 'step-000006' / 'training_state.pt', weights_only=False)
    b = torch.load(tmp_path / 'b' / 'step-000006' / 'training_state.pt', weights_only=False)
    assert a['step'] == b['step'] == 6 and a['scheduler'] == b['scheduler']
    for sa, sb in zip(a['optimizer']['state'].values(), b['optimizer']['state'].values()):
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    for key, value in straight.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[key], value), key


def test_gradient_checkpointing_same_gradients(tmp_path, tiny_params):
    x = prepare_dataset(text_rows(), FakeTokenizer(), None, tiny_params, spc_tokens=SPC).input_ids
    grads = []
    for checkpointing in (False, True):
        model = tiny(tiny_params).train()
        model.gradient_checkpointing = checkpointing
        torch.manual_seed(1)
        model(x, return_loss=True)[0].backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    assert all(torch.allclose(grads[0][n], grads[1][n], atol=1e-6) for n in grads[0])
    results = [train(tiny(tiny_params), EncodedDataset(x, ['tqa'] * 4, {'tqa': dict(
        lt_loss_weight=1, img_loss_weight=0, rt_loss_weight=1)}),
        config(tmp_path, f'gc{gc}', max_steps=2, save_final=False, gradient_checkpointing=gc)) for gc in (False, True)]
    assert results[0].history[-1]['loss'] == pytest.approx(results[1].history[-1]['loss'], rel=1e-5)
    # the trained model comes back ready for inference: eval mode, and the cached generation that
    # gradient checkpointing refuses runs
    model = results[1].model
    assert not model.training and not model.gradient_checkpointing
    L = Layout.from_model(model).L
    out = generate(model, x[0, :L], L + 2, 2, vocab=slice(0, 16), top_k=0, top_p=1.0, seed=0, progress=False)
    assert out.shape == (2, L + 2)


def test_ctrl_c_saves_and_nan_stops_without_checkpoint(tmp_path, tiny_params):
    model = tiny(tiny_params)
    ds = prepare_dataset(text_rows(), FakeTokenizer(), None, model, spc_tokens=SPC)

    def interrupt(state, logs):
        if state.step == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(model, ds, config(tmp_path, 'int', max_steps=5), step_callback=interrupt)
    assert sorted(os.listdir(tmp_path / 'int')) == ['latest', 'metrics.jsonl', 'step-000002']
    assert sorted(os.listdir(tmp_path / 'int' / 'step-000002')) == ['README.md', 'config.json', 'model.safetensors',
                                                                    'rng_state_0.pt', 'training_state.pt']
    with torch.no_grad():
        model.to_logits[1].bias[5] = float('nan')
    with pytest.raises(NonFiniteLossError, match='loss is nan at step 1 .* stopped without saving'):
        train(model, ds, config(tmp_path, 'nan', save_every=1))
    assert sorted(os.listdir(tmp_path / 'nan')) == ['metrics.jsonl']


def test_cli_end_to_end(tmp_path, tiny_params, tiny_registered, monkeypatch):
    import rudolph.tokenizer

    monkeypatch.setattr(rudolph.tokenizer, 'get_tokenizer', lambda *a, **k: FakeTokenizer())
    monkeypatch.setattr('rudolph.finetune.data.DEFAULT_SPC_TOKENS', SPC)
    start = tmp_path / 'start.bin'
    torch.save(tiny(tiny_params).state_dict(), start)
    data = write_jsonl(tmp_path / 'qa.jsonl', text_rows())
    with open(tmp_path / 'qa.csv', 'w', encoding='utf-8') as f:
        f.write('left_text,right_text,task\nвопрос,ответ,tqa\nтекст,,t2t\n')
    argv = ['--model', tiny_registered, '--checkpoint', str(start), '--data', data, '--out', str(tmp_path / 'out'),
            '--max-steps', '2', '--bs', '2', '--lr', '1e-3', '--freeze', 'attn', 'ff', '--quiet', '--cpu',
            '--first-image-token', '--eval-data', str(tmp_path / 'qa.csv'), '--eval-every', '1']
    assert main(argv) == 0
    assert get_rudolph_model(tiny_registered, checkpoint_path=tmp_path / 'out' / 'step-000002') is not None
    logs = [json.loads(line) for line in open(tmp_path / 'out' / 'metrics.jsonl')]
    assert [e['step'] for e in logs if 'eval_loss' in e] == [1, 2]
    assert main(argv[:-4] + ['--data', str(tmp_path / 'missing.jsonl')]) == 1
    with pytest.raises(SystemExit):
        add_arguments(__import__('argparse').ArgumentParser()).parse_args(['--help'])


# ----------------------------------------------------------------------------- two processes
WORKER = textwrap.dedent('''
    import json, os, sys, torch
    sys.path.insert(0, {tests!r})
    from conftest import TINY_PARAMS
    from rudolph.finetune import EncodedDataset, TrainConfig, train
    from rudolph.model import ruDolphModel
    torch.set_num_threads(1)
    params = dict(TINY_PARAMS, embedding_dropout_prob=0.0, attention_dropout_prob=0.0, output_dropout_prob=0.0)
    torch.manual_seed(0)
    model = ruDolphModel(device='cpu', **params)
    g = torch.Generator().manual_seed(1)
    x = torch.cat([torch.randint(4, 1000, (8, 8), generator=g), torch.randint(0, 64, (8, 16), generator=g),
                   torch.randint(4, 1000, (8, 6), generator=g)], dim=1)
    data = EncodedDataset(x, ['t2i'] * 8, {{'t2i': dict(lt_loss_weight=1, img_loss_weight=7, rt_loss_weight=0)}})
    train(model, data, TrainConfig(out_dir=sys.argv[1], max_steps=5, batch_size=4, lr=3e-3, schedule='constant',
                                   cpu=True, show_progress=False, save_final=False))
''')


def test_two_processes_match_one(tmp_path, monkeypatch):
    script = tmp_path / 'worker.py'
    script.write_text(WORKER.format(tests=os.path.join(REPO, 'tests')))
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONPATH': REPO}
    # Two processes (gloo, via torchrun) against the same script run in this process.
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2', str(script),
           str(tmp_path / 'out2')]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    monkeypatch.setattr(sys, 'argv', [str(script), str(tmp_path / 'out1')])
    runpy.run_path(str(script), run_name='__main__')
    curves = {n: [json.loads(line)['loss'] for line in open(tmp_path / f'out{n}' / 'metrics.jsonl')] for n in (1, 2)}
    logging.getLogger('measured').info('1 process: %s; 2 processes: %s', curves[1], curves[2])
    assert len(curves[1]) == 5
    assert curves[2] == pytest.approx(curves[1], rel=1e-5, abs=1e-6)


# ----------------------------------------------------------------------------- issue 11
def trained_run(tmp_path, tiny_params, name='run', **kwargs):
    model = tiny(tiny_params)
    ds = prepare_dataset(text_rows(6), FakeTokenizer(), None, model, spc_tokens=SPC)
    return train(model, ds, config(tmp_path, name, batch_size=2, **kwargs)), ds


def test_state_files_load_weights_only_and_tampered_ones_run_no_code(tmp_path, tiny_params):
    from fakes import write_malicious_pickle

    from rudolph.errors import UnsafeCheckpointError

    result, ds = trained_run(tmp_path, tiny_params, max_steps=2)
    folder = result.last_checkpoint
    for name in ('training_state.pt', 'rng_state_0.pt'):
        torch.load(os.path.join(folder, name), weights_only=True)  # plain data only
    safetensors.torch.load_file(os.path.join(folder, 'model.safetensors'))  # no pickle at all
    for name in ('rng_state_0.pt', 'training_state.pt'):
        tampered = tmp_path / f'tampered-{name}'
        shutil.copytree(folder, tampered)
        marker = tmp_path / f'marker-{name}'
        write_malicious_pickle(tampered / name, marker)
        if name != 'training_state.pt':  # keep the file list consistent: the attacker controls the folder
            state = torch.load(tampered / 'training_state.pt', weights_only=True)
            state['files'][name] = os.path.getsize(tampered / name)
            torch.save(state, tampered / 'training_state.pt')
        with pytest.raises(UnsafeCheckpointError, match=name):
            train(tiny(tiny_params), ds, config(tmp_path, f'b-{name}', resume=str(tampered)))
        assert not marker.exists()


def test_image_code_cache_that_is_unsafe_or_corrupt_is_rebuilt(tmp_path, tiny_params, caplog):
    from fakes import write_malicious_pickle

    paths = make_images(tmp_path / 'img', n=2)
    rows = [{'image': p, 'right_text': 'кот'} for p in paths]
    model, vae, cache = tiny(tiny_params), FakeVAE(), tmp_path / 'cache'
    kw = dict(cache_dir=cache, spc_tokens=SPC, show_progress=False)
    reference = prepare_dataset(rows, FakeTokenizer(), vae, model, **kw).input_ids
    marker = tmp_path / 'marker'
    write_malicious_pickle(cache / 'image_codes.pt', marker)
    with caplog.at_level(logging.WARNING):
        assert torch.equal(prepare_dataset(rows, FakeTokenizer(), vae, model, **kw).input_ids, reference)
    assert not marker.exists() and vae.calls == 4
    assert f'ignoring unreadable image-code cache {cache / "image_codes.pt"}' in caplog.text
    assert len(torch.load(cache / 'image_codes.pt', weights_only=True)) == 2, 'the cache must be rebuilt'
    caplog.clear()
    (cache / 'image_codes.pt').write_bytes(bytes(range(256)) * 4)  # random bytes
    with caplog.at_level(logging.WARNING):
        assert torch.equal(prepare_dataset(rows, FakeTokenizer(), vae, model, **kw).input_ids, reference)
    assert 'image_codes.pt' in caplog.text and 'rebuilt' in caplog.text and vae.calls == 6
    assert len(torch.load(cache / 'image_codes.pt', weights_only=True)) == 2


@pytest.mark.parametrize('field, value', [
    ('max_steps', 0), ('max_steps', -1), ('epochs', 0), ('batch_size', 0), ('grad_accum', 0), ('lr', 0.0),
    ('lr', -1e-3), ('lr', float('nan')), ('keep_last', -1), ('warmup', -0.5), ('weight_decay', -1.0),
    ('clip', 0.0), ('eval_every', 0), ('save_every', -2), ('log_every', 0), ('batch_size', 2.5),
    ('schedule', 'step'), ('optimizer', 'sgd'), ('precision', 'fp8')])
def test_train_config_rejects_nonsense(tmp_path, field, value):
    from rudolph.errors import ConfigError

    with pytest.raises(ConfigError, match=f'{field} must be .*got {value!r}'):
        config(tmp_path, **{field: value})
    assert not (tmp_path / 'out').exists()


def test_keep_last(tmp_path, tiny_params):
    with pytest.raises(ValueError, match=r'keep_last must be an int >= 0 or None \(0 or None: keep all\), got -1'):
        config(tmp_path, keep_last=-1)
    every = ['step-000001', 'step-000002', 'step-000003']
    for keep, expected in ((0, every), (None, every), (1, every[2:]), (2, every[1:])):
        result, _ = trained_run(tmp_path, tiny_params, f'keep{keep}', max_steps=3, save_every=1, keep_last=keep)
        out = tmp_path / f'keep{keep}'
        assert sorted(d for d in os.listdir(out) if d.startswith('step-')) == expected
        assert (out / 'latest').read_text() == 'step-000003'
        assert find_checkpoint(out) == str(out / 'step-000003') == result.last_checkpoint


def test_resume_is_exact_in_any_epoch(tmp_path, tiny_params):
    """3 epochs of 3 steps; stopped at step 7 (epoch 2, mid-epoch) and resumed in a fresh loader."""
    def stop_at(step):
        def callback(state, logs):
            if state.step == step:
                raise KeyboardInterrupt
        return callback

    kw = dict(max_steps=None, epochs=3, schedule='cosine', warmup=2)
    straight, ds = trained_run(tmp_path, tiny_params, 'a', **kw)
    assert straight.state.step == 9 and straight.state.epoch == 3
    model = tiny(tiny_params)
    with pytest.raises(KeyboardInterrupt):
        train(model, ds, config(tmp_path, 'b', batch_size=2, **kw), step_callback=stop_at(7))
    resumed = train(tiny(tiny_params), ds, config(tmp_path, 'b', batch_size=2, resume=str(tmp_path / 'b'), **kw))
    assert [h['epoch'] for h in resumed.history] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert [h['loss'] for h in resumed.history] == [h['loss'] for h in straight.history]
    for key, value in straight.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[key], value), key


def test_resume_refuses_other_data_or_settings(tmp_path, tiny_params):
    """The optimizer, schedule and data position come from the checkpoint: another --lr or other data would
    be ignored or scramble the run while the model card named them; refused, each named."""
    _, ds = trained_run(tmp_path, tiny_params, 'a', max_steps=4, save_every=2)
    other = prepare_dataset(text_rows(7), FakeTokenizer(), None, tiny(tiny_params), spc_tokens=SPC)
    other.source = 'other.jsonl'
    resume = str(tmp_path / 'a' / 'step-000002')
    with pytest.raises(ConfigError) as refused:
        train(tiny(tiny_params), other, config(tmp_path, 'b', batch_size=2, lr=2e-2, resume=resume))
    message = str(refused.value)
    assert 'lr: 0.01 in the checkpoint, 0.02 now' in message and 'data: ' in message and '(7 rows' in message
    assert not (tmp_path / 'b').exists() or not [d for d in os.listdir(tmp_path / 'b') if d.startswith('step-')]
    resumed = train(tiny(tiny_params), ds, config(tmp_path, 'c', batch_size=2, resume=resume))
    assert resumed.state.step == 4
    card = json.load(open(os.path.join(resumed.last_checkpoint, 'config.json'), encoding='utf-8'))['training']
    assert card['lr'] == 0.01 and card['rows'] == 6 and card['data_sha256'] == ds.fingerprint()


@pytest.mark.skipif(not os.path.exists('/dev/full'), reason='needs /dev/full (a device whose writes fail: ENOSPC)')
def test_a_full_disk_names_the_metrics_file(tmp_path, tiny_params):
    out = tmp_path / 'full'
    out.mkdir()
    os.symlink('/dev/full', out / 'metrics.jsonl')
    with pytest.raises(OSError, match='No space left on device.*metrics.jsonl'):
        trained_run(tmp_path, tiny_params, 'full', max_steps=1)


def test_leftover_tmp_folder_is_removed_at_start(tmp_path, tiny_params, caplog):
    out = tmp_path / 'run'
    (out / '.tmp-step-000004').mkdir(parents=True)
    (out / '.tmp-step-000004' / 'pytorch_model.bin').write_bytes(b'half a file')
    (out / '.latest.tmp').write_text('step-000004')
    with caplog.at_level(logging.WARNING):
        trained_run(tmp_path, tiny_params, max_steps=1)
    assert sorted(os.listdir(out)) == ['latest', 'metrics.jsonl', 'step-000001']
    assert '.tmp-step-000004, left behind by an interrupted checkpoint write' in caplog.text


def test_resume_falls_back_from_a_truncated_checkpoint(tmp_path, tiny_params, caplog):
    from rudolph.errors import CorruptCheckpointError

    straight, ds = trained_run(tmp_path, tiny_params, 'a', max_steps=4, save_every=2)
    out = tmp_path / 'a'
    weights = out / 'step-000004' / 'model.safetensors'
    weights.write_bytes(weights.read_bytes()[:weights.stat().st_size // 2])
    with pytest.raises(CorruptCheckpointError, match='step-000004.* model.safetensors has .* bytes, expected'):
        find_checkpoint(out / 'step-000004')
    with caplog.at_level(logging.WARNING):
        resumed = train(tiny(tiny_params), ds, config(tmp_path, 'b', max_steps=4, batch_size=2, resume=str(out)))
    assert f'checkpoint {out / "step-000004"} is incomplete' in caplog.text
    assert f'using {out / "step-000002"} instead' in caplog.text
    assert [h['loss'] for h in resumed.history] == [h['loss'] for h in straight.history]
    for name in ('model.safetensors', 'training_state.pt'):
        (out / 'step-000002' / name).write_bytes(b'')
        with pytest.raises(CorruptCheckpointError, match=f'no complete checkpoint in .*step-000002: .*{name}'):
            find_checkpoint(out)


def test_csv_with_wrong_columns(tmp_path, tiny_params):
    path = tmp_path / 'rows.csv'
    path.write_text('caption,file\nкот,a.png\n', encoding='utf-8')
    with pytest.raises(DataError, match=r"rows.csv: no usable columns; expected a header with some of \['image', "
                                        r"'left_text', 'right_text', 'task'\].* found \['caption', 'file'\]"):
        prepare_dataset(path, FakeTokenizer(), None, tiny(tiny_params), spc_tokens=SPC)


def test_adam8bit_without_bitsandbytes(tmp_path, tiny_params, monkeypatch):
    from rudolph.errors import MissingDependencyError

    monkeypatch.setitem(sys.modules, 'bitsandbytes', None)  # as if not installed: `import` raises ImportError
    with pytest.raises(MissingDependencyError, match='pip install bitsandbytes'):
        trained_run(tmp_path, tiny_params, optimizer='adam8bit')


def test_accelerate_is_a_dependency_and_preprocess_image_is_the_vae_one():
    import rudolph.finetune
    import rudolph.vae.image

    with open(os.path.join(REPO, 'pyproject.toml'), encoding='utf-8') as f:  # [project] dependencies
        dependencies = f.read().split('dependencies = [', 1)[1].split(']', 1)[0]
    assert '"accelerate>=' in dependencies
    assert rudolph.finetune.preprocess_image is rudolph.vae.image.preprocess_image
    import rudolph.finetune.data
    assert not hasattr(rudolph.finetune.data, 'vae_preprocess')


def test_step_folder_loads_for_tiny_shapes(tmp_path):
    model = get_rudolph_model('tiny-shapes')
    L, N2, R = model.l_text_seq_length, model.image_tokens_per_dim ** 2, model.r_text_seq_length
    g = torch.Generator().manual_seed(0)
    # codes < 256: the published loss scores the first image code with the (284-token) text logits
    x = torch.cat([torch.randint(4, 200, (2, L), generator=g), torch.randint(0, 256, (2, N2), generator=g),
                   torch.randint(4, 200, (2, R), generator=g)], dim=1)
    data = EncodedDataset(x, ['t2i'] * 2, {'t2i': dict(lt_loss_weight=0, img_loss_weight=1, rt_loss_weight=0)})
    result = train(model, data, config(tmp_path, max_steps=1, batch_size=2, lr=1e-3))
    assert os.path.isfile(os.path.join(result.last_checkpoint, 'model.safetensors'))
    # The folder form (checkpoint_path=result.last_checkpoint) needs the loaders' folder lookup of model.safetensors.
    loaded = get_rudolph_model('tiny-shapes', checkpoint_path=os.path.join(result.last_checkpoint, 'model.safetensors'))
    for key, value in result.model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_cli_rejects_negative_max_steps_and_keep_last(tmp_path, tiny_registered, monkeypatch, caplog):
    import rudolph.tokenizer

    monkeypatch.setattr(rudolph.tokenizer, 'get_tokenizer', lambda *a, **k: FakeTokenizer())
    monkeypatch.setattr('rudolph.finetune.data.DEFAULT_SPC_TOKENS', SPC)
    data = write_jsonl(tmp_path / 'qa.jsonl', text_rows())
    argv = ['--model', tiny_registered, '--data', data, '--out', str(tmp_path / 'out'), '--quiet', '--cpu', '--resume',
            str(tmp_path / 'none')]
    for flag, value in (('--max-steps', '-1'), ('--keep-last', '-1')):
        caplog.clear()
        with caplog.at_level(logging.ERROR):
            assert main(argv + [flag, value]) == 1
        assert f"{flag} must be an int >= " in caplog.text and 'got -1' in caplog.text
    assert not [d for d in os.listdir(tmp_path / 'out') if d.startswith('step-')]


def test_cli_messages_name_the_options_not_the_keywords(tmp_path, tiny_registered, tiny_params, monkeypatch, caplog):
    """On the command line a refusal names the option (--bad-rows skip); from Python, the keyword."""
    import rudolph.tokenizer

    monkeypatch.setattr(rudolph.tokenizer, 'get_tokenizer', lambda *a, **k: FakeTokenizer())
    monkeypatch.setattr('rudolph.finetune.data.DEFAULT_SPC_TOKENS', SPC)
    data = write_jsonl(tmp_path / 'bad.jsonl', [{'left_text': ''}, {'left_text': 'x', 'right_text': 'y'}])
    argv = ['--model', tiny_registered, '--data', data, '--out', str(tmp_path / 'out'), '--quiet', '--cpu']
    with caplog.at_level(logging.ERROR):
        assert main(argv) == 1  # no weights here: the message names the option that gives them
    assert '--checkpoint PATH' in caplog.text and 'checkpoint=' not in caplog.text
    caplog.clear()
    start = tmp_path / 'start.bin'
    torch.save(tiny(tiny_params).state_dict(), start)
    argv += ['--checkpoint', str(start)]
    with caplog.at_level(logging.ERROR):
        assert main(argv) == 1
    assert '--bad-rows skip' in caplog.text and 'bad_rows' not in caplog.text
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        assert main(argv + ['--bad-rows', 'skip', '--lr', '-1']) == 1
    assert '--lr must be a finite number' in caplog.text
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        assert main(argv + ['--bad-rows', 'skip', '--precision', 'fp16']) == 1
    assert '--precision fp16 needs a CUDA device' in caplog.text and "precision='" not in caplog.text
    with pytest.raises(DataError, match="bad_rows='skip'"):
        prepare_dataset([{'left_text': ''}], FakeTokenizer(), None, tiny(tiny_params), spc_tokens=SPC,
                        show_progress=False)


def test_16_bit_training_pictures_are_scaled_not_white(tmp_path, tiny_params):
    """A 16-bit PNG gives the codes of its 8-bit twin (it went through convert('RGB') before: all white)."""
    import numpy as np
    from PIL import Image

    grey = (np.arange(32 * 32).reshape(32, 32) % 200 + 20).astype(np.uint8)
    Image.fromarray(grey).save(tmp_path / 'eight.png')
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / 'sixteen.png')
    assert Image.open(tmp_path / 'sixteen.png').mode.startswith('I')
    rows = [{'image': 'eight.png', 'right_text': 'кот'}, {'image': 'sixteen.png', 'right_text': 'кот'}]
    ds = prepare_dataset(rows, FakeTokenizer(), FakeVAE(), tiny(tiny_params), image_root=tmp_path, spc_tokens=SPC,
                         show_progress=False)
    image = ds.input_ids[:, 8:8 + 16]
    assert torch.equal(image[0], image[1]) and image[1].lt(63).any()


def test_every_finetune_option_has_help():
    parser = add_arguments(argparse.ArgumentParser())
    bare = [a.option_strings[0] for a in parser._actions if a.option_strings and not a.help]
    assert not bare, f'options without help: {bare}'
