"""Reduced precision (issue 13): dtype resolution, int8 weights, every task in every dtype, int8 files."""
import logging
import os
import subprocess
import sys

import pytest
import torch

from rudolph.errors import ConfigError, CorruptCheckpointError, MissingDependencyError
from rudolph.model import get_rudolph_model, quant
from rudolph.model.heap import release_pages
from rudolph.model.precision import resolve_precision
from rudolph.model.quant import INT8_MM_MAX_ROWS, Int8Linear, save_int8

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PRECISIONS = {'fp32': dict(dtype='fp32'), 'bf16': dict(dtype='bf16'), 'int8': dict(quantize='int8'),
              'int8-dynamic': dict(quantize='int8-dynamic'), 'fp16': dict(quantize='fp16')}
REDUCED = sorted(set(PRECISIONS) - {'fp32'})


# ----------------------------------------------------------------------------- resolving the precision
@pytest.mark.parametrize('name, expected', [('fp32', torch.float32), ('float32', torch.float32),
                                            ('bf16', torch.bfloat16), ('BFloat16', torch.bfloat16),
                                            (torch.bfloat16, torch.bfloat16), (None, torch.float32)])
def test_dtype_names(name, expected):
    assert resolve_precision(name) == (expected, None)


def test_float16_names_on_cpu_warn_and_stay_float32_and_are_float16_on_cuda():
    for name in ('fp16', 'float16', 'half', torch.float16):
        with pytest.warns(UserWarning, match='float32'):
            assert resolve_precision(name).dtype == torch.float32
        assert resolve_precision(name, device='cuda').dtype == torch.float16


@pytest.mark.parametrize('native, expected', [(True, torch.bfloat16), (False, torch.float32)])
def test_auto_follows_the_cpu_capability(monkeypatch, caplog, native, expected):
    # the capability query itself (torch's oneDNN answer) is mocked, not the choice made from it
    monkeypatch.setattr(torch.ops.mkldnn, '_is_mkldnn_bf16_supported', lambda: native)
    with caplog.at_level(logging.INFO, logger='rudolph.model.precision'):
        assert resolve_precision('auto') == (expected, None)
    lines = [r.getMessage() for r in caplog.records if r.name == 'rudolph.model.precision']
    assert len(lines) == 1 and str(expected).removeprefix('torch.') in lines[0]
    assert ('native bf16' in lines[0]) == native


def test_auto_is_float16_on_cuda_and_int8_defaults_to_bf16_on_cpu(monkeypatch):
    assert resolve_precision('auto', device='cuda').dtype == torch.float16
    monkeypatch.setattr(torch.ops.mkldnn, '_is_mkldnn_bf16_supported', lambda: False)
    assert resolve_precision(None, 'int8') == (torch.bfloat16, 'int8')  # emulated bf16 still runs the int8 kernel
    assert resolve_precision('auto', 'int8') == (torch.bfloat16, 'int8')


def test_unsupported_combinations_are_clear_errors(monkeypatch):
    for bad in ('int8', 'float64', torch.int64, 3):
        with pytest.raises(ConfigError, match=r"(?s)unsupported dtype=.*'auto'.*bf16"):
            resolve_precision(bad)
    with pytest.raises(ConfigError, match=r"unsupported quantize='int4'.*int8"):
        resolve_precision(None, 'int4')
    with pytest.raises(ConfigError, match=r'(?s)needs dtype=torch.bfloat16.*got torch.float32.*_weight_int8pack_mm'):
        resolve_precision('fp32', 'int8')
    with pytest.raises(ConfigError, match='contradicts'):
        resolve_precision('bf16', fp16=True)
    with pytest.raises(ConfigError, match=r"quantize='int8' on cuda needs dtype=torch.float16 or torch.bfloat16"):
        resolve_precision('fp32', 'int8', device='cuda')
    with pytest.raises(MissingDependencyError, match=r'_weight_int8pack_mm on mps'):
        resolve_precision('bf16', 'int8', device='mps')
    # a torch build without the kernel: the probe (the capability query) fails
    monkeypatch.delattr(torch, '_weight_int8pack_mm')
    with pytest.raises(MissingDependencyError, match=r'needs torch._weight_int8pack_mm on cpu.*torch '):
        resolve_precision('bf16', 'int8')
    assert isinstance(MissingDependencyError('x'), ImportError)


# ----------------------------------------------------------------------------- Int8Linear
def test_int8_linear_matches_the_float_layer_on_both_kernel_paths():
    torch.manual_seed(0)
    linear = torch.nn.Linear(192, 300)
    q = Int8Linear.from_linear(linear)
    assert q.weight.dtype == torch.int8 and q.weight_scale.dtype == torch.float32 and q.bias.dtype == torch.bfloat16
    w = q.weight.float() * q.weight_scale[:, None]
    assert (w - linear.weight).abs().max() <= q.weight_scale.max() / 2 + 1e-7  # round to nearest step
    with torch.no_grad():
        for rows in (1, INT8_MM_MAX_ROWS, INT8_MM_MAX_ROWS + 1, 40):
            x = torch.randn(rows, 192)
            out = q(x.bfloat16())
            assert out.shape == (rows, 300) and out.dtype == torch.bfloat16
            expected = linear(x)
            assert ((out.float() - expected).abs().max() / expected.abs().max()) < 0.03, rows
            part = q.sliced(x.bfloat16(), slice(10, 50))
            assert torch.allclose(part.float(), out[:, 10:50].float(), atol=1e-2)
    x = torch.randn(3, 5, 192).bfloat16()
    with torch.no_grad():
        small = q(x[:1, :1])
        big = q(x)
    assert big.shape == (3, 5, 300) and torch.allclose(small.float(), big[:1, :1].float(), atol=2e-2)


def test_int8_kernel_applies_exact_scales_and_older_scales_keep_the_float32_path():
    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 48)
    q = Int8Linear.from_linear(linear)
    x = torch.randn(3, 64).bfloat16()
    reference = (x.float() @ (q.weight.float() * q.weight_scale[:, None]).T + q.bias.float())
    with torch.no_grad():
        assert q._act_scale(torch.bfloat16) is not None  # quantize_weight's scales are bf16-exact
        fast = q(x)
        assert ((fast.float() - reference).abs().max() / reference.abs().max()) < 1e-2
        # a scale bf16 cannot hold (an int8 file written before scales were rounded): the float32 path,
        # whose result is the exact product rounded once
        q.weight_scale.copy_(q.weight_scale * (1 + 2 ** -12))
        assert q._act_scale(torch.bfloat16) is None
        slow = q(x)
        exact = (x.float() @ (q.weight.float() * q.weight_scale[:, None]).T + q.bias.float()).bfloat16()
        assert torch.allclose(slow.float(), exact.float(), rtol=1e-2, atol=1e-2)


def test_quantised_models_hold_int8_linears_and_activation_dtype_elsewhere():
    model = get_rudolph_model('tiny-shapes', quantize='int8')
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert not linears  # every transformer linear and the head are int8
    assert isinstance(model.to_logits[1], Int8Linear) and model.dtype == torch.bfloat16
    assert model.text_embeddings.weight.dtype == torch.bfloat16
    assert model.transformer.layers[0].input_layernorm.weight.dtype == torch.bfloat16
    assert model.new_cache(2).k.dtype == torch.bfloat16
    # quantising while loading gives the same weights as quantising the loaded float model
    reference = quant.quantize_linears(get_rudolph_model('tiny-shapes'), torch.bfloat16)
    for (k, a), (k2, b) in zip(model.state_dict().items(), reference.state_dict().items()):
        b = b if b.dtype in (torch.int8, torch.bool) or k.endswith('weight_scale') else b.to(torch.bfloat16)
        assert k == k2 and a.dtype == b.dtype and torch.equal(a, b), k


def test_random_init_model_can_be_quantised(tiny_registered):
    model = get_rudolph_model(tiny_registered, pretrained=False, quantize='int8')
    ids = torch.randint(4, 100, (2, 8))  # the left text of the tiny config
    with torch.no_grad():
        logits, _ = model(ids)
    assert logits.dtype == torch.bfloat16 and torch.isfinite(logits.float()).all()


def test_release_pages_keeps_the_values(tmp_path):
    data = torch.randn(300_000)
    torch.save({'w': data}, tmp_path / 'w.bin')
    mapped = torch.load(tmp_path / 'w.bin', mmap=True, weights_only=True)['w']
    assert torch.equal(mapped, data)
    release_pages(mapped)  # read again from the file when touched
    assert torch.equal(mapped, data)


# ----------------------------------------------------------------------------- int8 files
def test_int8_file_round_trip_does_not_quantise_again(tmp_path, monkeypatch):
    model = get_rudolph_model('tiny-shapes', quantize='int8')
    path = save_int8(model, tmp_path / 'tiny.int8.safetensors')
    assert quant.int8_file_metadata(path)['dtype'] == 'bfloat16'
    assert quant.int8_file_metadata(os.path.join(ROOT, 'rudolph/demo/weights/tiny-shapes/model.safetensors')) is None
    torch.save({'w': torch.zeros(2)}, tmp_path / 'plain.bin')
    assert quant.int8_file_metadata(str(tmp_path / 'plain.bin')) is None
    assert not [p for p in os.listdir(tmp_path) if 'tmp' in p]

    def no_quantising(*args, **kwargs):
        raise AssertionError('an int8 file must load without quantising again')

    monkeypatch.setattr(quant, 'quantize_weight', no_quantising)
    loaded = get_rudolph_model('tiny-shapes', checkpoint_path=path)  # quantize is taken from the file
    assert loaded.spc_tokens == model.spc_tokens and isinstance(loaded.to_logits[1], Int8Linear)
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k
    ids = torch.randint(4, 200, (2, 30))
    with torch.no_grad():
        assert torch.equal(model(ids)[0], loaded(ids)[0])
    from rudolph.pretrained.components import Components

    c = Components.from_pretrained('tiny-shapes', checkpoint=path, with_vae=False)
    assert isinstance(c.model.to_logits[1], Int8Linear)


def test_int8_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="quantize='int8'"):
        save_int8(get_rudolph_model('tiny-shapes'), tmp_path / 'x.safetensors')
    path = save_int8(get_rudolph_model('tiny-shapes', quantize='int8'), tmp_path / 'q.safetensors')
    with pytest.raises(ConfigError, match='needs dtype=torch.bfloat16'):
        get_rudolph_model('tiny-shapes', checkpoint_path=path, dtype='fp32')
    with open(path, 'rb') as f:
        head = f.read()
    (tmp_path / 'cut.safetensors').write_bytes(head[:len(head) // 2])
    with pytest.raises(CorruptCheckpointError, match='cut.safetensors'):
        get_rudolph_model('tiny-shapes', checkpoint_path=tmp_path / 'cut.safetensors')


# ----------------------------------------------------------------------------- every task in every dtype
@pytest.fixture(scope='module')
def apis():
    from rudolph.api import ruDolphApi
    from rudolph.tokenizer import get_tokenizer
    from rudolph.vae import get_vae

    tokenizer, vae = get_tokenizer('tiny-shapes'), get_vae(name='tiny-shapes')
    return {name: ruDolphApi(get_rudolph_model('tiny-shapes', **kw), tokenizer, vae, quite=True)
            for name, kw in PRECISIONS.items()}


@pytest.fixture(scope='module')
def pictures():
    from rudolph.demo import shapes as S

    return S.make_samples(4, seed=12345)


def _natural_sequences(api, n=4):
    """Sequences in the model's own distribution: fp32 text-to-image codes + a right-text caption."""
    from rudolph.demo import shapes as S

    captions = [S.caption(s) for s in S.make_samples(n, seed=7)]
    rows = []
    for i, text in enumerate(captions):
        codes = api.generate_codebooks(text, images_num=1, seed=i, top_k=64, top_p=0.95, temperature=0.7)
        rows.append(codes[0])
    return torch.stack(rows), captions


@pytest.mark.parametrize('name', REDUCED)
def test_teacher_forced_agreement_with_fp32(apis, name):
    model32, model = apis['fp32'].model, apis[name].model
    codes, captions = _natural_sequences(apis['fp32'])
    lay = model32.config
    left = torch.stack([apis['fp32'].encode_text(c, lay.L, '<LT_T2I>') for c in captions])
    ids = torch.cat([left, codes], dim=1)
    with torch.no_grad():
        ref = model32(ids)[0][:, lay.L - 1:-1, lay.V:]
        got = model(ids)[0][:, lay.L - 1:-1, lay.V:].float()
    agreement = (ref.argmax(-1) == got.argmax(-1)).float().mean().item()
    relative = ((got - ref).abs().max() / ref.abs().max()).item()
    logging.getLogger('measured').info('%s: image argmax agreement %.4f, max relative logit error %.4f',
                                       name, agreement, relative)
    assert agreement >= 0.95 and relative < 0.15


@pytest.mark.parametrize('name', sorted(PRECISIONS))
def test_every_task_runs(apis, pictures, name):
    from rudolph.demo import shapes as S
    from rudolph.image_prompts import ImagePrompts

    api = apis[name]
    text = S.caption(pictures[0])
    images, scores = api.dream(text, images_num=2, codebooks_num=3, bs=3, seed=0, top_k=64, top_p=0.95,
                               temperature=0.7)
    assert len(images) == 2 and images[0].size == (64, 64) and all(torch.isfinite(torch.tensor(
        [float(s['score']) for s in scores])))
    prompts = ImagePrompts(pictures[1].image, {'up': 2}, api.vae, crop_first=True)
    codes = api.generate_codebooks(text, images_num=2, image_prompts=prompts, seed=1, bs=2)
    assert codes.shape == (2, 64) and torch.equal(codes[:, :16], prompts.image_prompts.expand(2, -1)[:, :16])
    cfg = api.generate_codebooks_cfg(text, images_num=2, weight_cfg=0.2, seed=1, bs=2)
    assert cfg.shape == (2, 64)
    caps = api.image_captioning(pictures[0].image, captions_num=2, generations_num=4, seed=0, bs=4)
    assert caps and all(isinstance(c['text'], str) for c in caps)
    answers = api.vqa(pictures[0].image, S.VQA_COLOUR, generations_num=4, seed=0, bs=4)
    assert answers and isinstance(answers[0]['answer'], str)
    texts = api.generate_texts('на картинке', texts_num=3, seed=0, bs=3)
    assert len(texts) == 3


def test_zero_shot_and_reranking_order_match_fp32(apis, pictures):
    from rudolph.demo import shapes as S

    classes = S.colour_classes()
    for picture in pictures:
        ref = apis['fp32'].zs_clf(picture.image, classes, r_template=S.ZS_COLOUR_TEMPLATE, bs=len(classes))
        for name in REDUCED:
            got = apis[name].zs_clf(picture.image, classes, r_template=S.ZS_COLOUR_TEMPLATE, bs=4)
            assert got['class'] == ref['class'], (name, S.caption(picture))
    text = S.caption(pictures[0])
    codes = apis['fp32'].generate_codebooks(text, images_num=4, seed=3, bs=4)
    ref = apis['fp32'].self_reranking_by_text(text, codes, bs=4)
    for name in REDUCED:
        got = apis[name].self_reranking_by_text(text, codes, bs=3)
        assert got[1].dtype == torch.float32 or not torch.is_tensor(got[1])
        ppl_ref, ppl = torch.as_tensor(ref[1]).float(), torch.as_tensor(got[1]).float()
        for i in range(len(ppl_ref)):
            for j in range(len(ppl_ref)):
                if ppl_ref[i] < ppl_ref[j] * 0.99:  # fp32 separates them by more than 1%
                    assert ppl[i] < ppl[j], (name, i, j, ppl_ref, ppl)


@pytest.mark.parametrize('name', REDUCED)
def test_scoring_is_float32_and_prefix_sharing_agrees(apis, name):
    from rudolph.generation.engine import ScorePart, cross_entropy

    model = apis[name].model
    lay = model.config
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(4, lay.V - lay.L, (5, lay.S), generator=g)
    ids[:, lay.L:lay.L + lay.N2] = torch.randint(0, lay.image_vocab, (5, lay.N2), generator=g)
    ids[:, :lay.L + lay.N2] = ids[:1, :lay.L + lay.N2]  # a shared prefix (the image)
    parts = [ScorePart(lay.L + lay.N2, lay.S - 1, slice(0, lay.V))]
    shared = cross_entropy(model, ids, parts, bs=2)[0]
    alone = cross_entropy(model, ids, parts, bs=2, reuse_prefix=False, truncate=False)[0]
    assert shared.dtype == torch.float32 and torch.isfinite(shared).all()
    assert (shared - alone).abs().max() < 0.1 * shared.abs().max()


# ----------------------------------------------------------------------------- command line and fine-tuning
def test_cli_precision_options(tmp_path, capsys):
    import json

    from rudolph.cli import commands as cli
    from rudolph.demo import shapes as S

    path = tmp_path / 'p.png'
    S.make_sample(0, seed=3).image.save(path)
    argv = ['classify', str(path), '--classes', *S.colour_classes(), '--template', S.ZS_COLOUR_TEMPLATE,
            '--model', 'tiny-shapes', '--quiet', '--json']
    answers = {}
    for extra in ([], ['--dtype', 'fp32'], ['--dtype', 'bf16'], ['--quantize', 'int8']):
        assert cli.main(argv + extra) == 0
        answers[tuple(extra)] = json.loads(capsys.readouterr().out)['class']
    assert len(set(answers.values())) == 1, answers
    assert cli.main(argv + ['--quantize', 'int8', '--dtype', 'fp32']) == 1
    err = capsys.readouterr().err
    assert "quantize='int8'" in err and 'bfloat16' in err and 'Traceback' not in err
    with pytest.raises(SystemExit):
        cli.main(argv + ['--dtype', 'int4'])
    with pytest.raises(SystemExit):
        cli.main(argv + ['--dtype', 'bf16', '--fp16'])


def test_demo_accepts_the_precision_options():
    import argparse

    from rudolph.cli.options import precision_args
    from rudolph.demo.cli import add_arguments

    p = argparse.ArgumentParser()
    add_arguments(p)
    default = precision_args(p.parse_args([]))
    assert resolve_precision(default['dtype'], default['quantize']).dtype == torch.float32  # the recorded numbers
    args = p.parse_args(['--eval', '--dtype', 'bf16', '--quantize', 'int8'])
    assert precision_args(args) == {'dtype': 'bf16', 'fp16': False, 'quantize': 'int8'}
    int8 = precision_args(p.parse_args(['--eval', '--quantize', 'int8']))  # was an error with a fp32 default
    assert resolve_precision(int8['dtype'], int8['quantize']) == (torch.bfloat16, 'int8')


@pytest.mark.parametrize('native, expected', [(True, 'bf16'), (False, 'no')])
def test_finetune_auto_precision_uses_bf16_autocast_where_native(tmp_path, monkeypatch, native, expected):
    from rudolph.finetune import TrainConfig, Trainer

    monkeypatch.setattr(torch.ops.mkldnn, '_is_mkldnn_bf16_supported', lambda: native)
    config = TrainConfig(out_dir=str(tmp_path / 'run'), precision='auto', cpu=True, show_progress=False)
    trainer = Trainer.__new__(Trainer)
    trainer.config = config
    accelerator = trainer._make_accelerator()
    assert str(accelerator.mixed_precision) == expected
    with accelerator.autocast():
        out = torch.nn.Linear(8, 8)(torch.randn(2, 8))
    assert out.dtype == (torch.bfloat16 if native else torch.float32)


# ----------------------------------------------------------------------------- benchmarks run on tiny-shapes
def test_decode_bench_runs_on_tiny_shapes():
    # the vocabulary and image sizes come from the model's config (it used to hard-code 350M's 16384)
    env = {**os.environ, 'PYTHONPATH': ROOT}
    out = subprocess.run([sys.executable, os.path.join(ROOT, 'bench', 'decode.py'), '--model', 'tiny-shapes',
                          '--steps', '3', '--bs', '1', '2', '--threads', '1', '--dtypes', 'fp32', 'int8'],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert 'int8' in out.stdout and 'step / floor' in out.stdout


# ----------------------------------------------------------------------------- CUDA
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')


@cuda
@pytest.mark.parametrize('kw', [dict(dtype='fp16'), dict(dtype='bf16'), dict(quantize='int8'),
                                dict(quantize='int8', dtype='bf16')])
def test_cuda_precisions_agree_with_fp32(kw):
    ref = get_rudolph_model('tiny-shapes')
    model = get_rudolph_model('tiny-shapes', device='cuda', **kw)
    ids = torch.randint(4, 200, (2, 40))
    with torch.no_grad():
        expected = ref(ids)[0]
        got = model(ids.cuda())[0].float().cpu()
        cache = model.new_cache(2)
        step = [model.prefill(ids[:, :20].cuda(), cache)]
        step += [model.prefill(ids[:, t:t + 1].cuda(), cache) for t in range(20, 22)]
    assert torch.isfinite(got).all() and all(torch.isfinite(s.float()).all() for s in step)
    assert (got - expected).abs().max() / expected.abs().max() < 0.15


def test_blockwise_quantisation_is_the_per_channel_formula_and_leaves_the_source():
    torch.manual_seed(0)
    w = torch.randn(700, 600) * torch.rand(700, 1)  # channels of different ranges; several blocks of rows
    source = w.clone()
    q, scale = quant.quantize_weight(w)
    # max |w| / 127, rounded up to the next value bf16 holds exactly (at most 2**-7 relative)
    expected_scale = quant.bf16_exact_ceil(w.abs().amax(dim=1) / 127)
    assert torch.equal(w, source) and q.dtype == torch.int8 and scale.dtype == torch.float32
    assert torch.equal(scale, expected_scale) and torch.equal(scale.bfloat16().float(), scale)
    assert bool((scale >= w.abs().amax(dim=1) / 127).all())
    assert torch.equal(q, torch.round(w / expected_scale[:, None]).clamp(-127, 127).to(torch.int8))


@pytest.mark.parametrize('key', ['transformer.layers.1.mlp.dense_h_to_4h.weight', 'text_embeddings.weight'])
def test_quantising_while_loading_rejects_non_finite_weights(tmp_path, key):
    from rudolph.errors import CheckpointError

    state = get_rudolph_model('tiny-shapes').state_dict()
    state[key] = state[key].clone()
    state[key][3, 5] = float('nan')
    torch.save(state, tmp_path / 'nan.bin')
    with pytest.raises(CheckpointError, match=f"nan.bin.*{key}.*non-finite"):
        get_rudolph_model('tiny-shapes', checkpoint_path=tmp_path / 'nan.bin', quantize='int8')


def test_a_weight_beyond_float16_is_named_as_such_under_fp16_weights(tmp_path):
    key = 'transformer.layers.0.attention.dense.weight'
    state = get_rudolph_model('tiny-shapes').state_dict()
    state[key] = state[key].clone()
    state[key][2, 7] = 1e5  # finite in float32, inf in float16
    torch.save(state, tmp_path / 'big.bin')
    with pytest.raises(ConfigError, match=rf"big.bin: tensor '{key}' holds weights up to \|w\| = 1e\+05, beyond "
                                          r"float16's range .*quantize='fp16' cannot hold them"):
        get_rudolph_model('tiny-shapes', checkpoint_path=tmp_path / 'big.bin', quantize='fp16')
    model = get_rudolph_model('tiny-shapes', checkpoint_path=tmp_path / 'big.bin', quantize='int8-dynamic')
    assert model.get_submodule(key.removesuffix('.weight')).weight_scale[2] > 1e5 / 127 * 0.99
