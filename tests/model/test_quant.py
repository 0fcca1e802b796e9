"""Packed and quantised kernels (rudolph.model.quant): the kernel rule, each format against float, rows that
never depend on their batch, packed weights that follow their source, quantised files of every format."""
import copy
import os

import pytest
import torch

from rudolph.errors import ConfigError, MissingDependencyError
from rudolph.model import get_rudolph_model, quant
from rudolph.model.precision import resolve_precision
from rudolph.model.quant import Fp16Linear, Int8Linear, pick_kernel
from rudolph.model.transformer import Linear

NEEDS = {m: quant.kernel_available(m, torch.device('cpu')) for m in quant.QUANT_METHODS}


def _layer(kind: str, linear: torch.nn.Linear) -> torch.nn.Module:
    if kind == 'bf16':
        out = Linear(linear.in_features, linear.out_features)
        out.load_state_dict(linear.state_dict())
        return out.to(torch.bfloat16)
    if kind == 'fp16':
        return Fp16Linear.from_linear(linear)
    return Int8Linear.from_linear(linear, torch.bfloat16, dynamic=kind == 'int8-dynamic')


def _input_dtype(kind: str) -> torch.dtype:
    return torch.float32 if kind == 'fp16' else torch.bfloat16


@pytest.mark.parametrize('weights, rows, dtype, expected', [
    ('float', 1, torch.bfloat16, 'onednn-bf16'), ('float', 300, torch.bfloat16, 'onednn-bf16'),
    ('float', 8, torch.float32, 'weight-first'), ('float', 65, torch.float32, 'dense'),
    ('int8', 8, torch.bfloat16, 'int8pack'), ('int8', 9, torch.bfloat16, 'dense'),
    ('int8-dynamic', 1, torch.bfloat16, 'dynamic'), ('int8-dynamic', 500, torch.float32, 'dynamic'),
    ('fp16', 3, torch.float32, 'fbgemm-fp16')])
def test_the_kernel_rule(weights, rows, dtype, expected):
    x = torch.zeros(rows, 4, dtype=dtype)
    if expected == 'dynamic':  # the first int8 GEMM exact on this machine (tested below)
        expected = quant.dynamic_int8_kernel()
        if expected is None:
            pytest.skip('no exact int8 x int8 GEMM in this torch build')
    with torch.no_grad():
        assert pick_kernel(weights, rows, x) == expected
    with torch.enable_grad():  # training: plain F.linear whatever the format
        assert pick_kernel(weights, rows, x) == 'dense'
    with torch.no_grad():
        assert pick_kernel(weights, 0, x) == 'dense'
    with pytest.raises(ConfigError, match="unknown weight format 'int4'"):
        pick_kernel('int4', 1, x)


@pytest.mark.parametrize('kind, tolerance', [
    # relative error of a [40, 256] x [256, 384] product against float32 F.linear: bf16 rounds weights and
    # activations (2^-8 each); int8 weights 1/254 of each row's max; int8-dynamic also each activation row's;
    # fp16 rounds the weights only (2^-11)
    ('bf16', 0.01), ('int8', 0.02), ('int8-dynamic', 0.03), ('fp16', 0.002)])
def test_each_format_matches_float_and_rows_never_depend_on_their_batch(kind, tolerance):
    if kind != 'bf16' and not NEEDS[kind]:
        pytest.skip(f'torch has no {kind} kernel here')
    torch.manual_seed(0)
    linear = torch.nn.Linear(256, 384)
    layer = _layer(kind, linear)
    x = torch.randn(40, 256)
    x[5] = 0  # a row of zeros: its own scale must not blow up
    with torch.no_grad():
        ref = linear(x)
        full = layer(x.to(_input_dtype(kind)))
        assert full.dtype == _input_dtype(kind) and torch.isfinite(full).all()
        assert ((full.float() - ref).norm() / ref.norm()).item() < tolerance
        if kind == 'int8':
            return  # weight-only int8 switches kernels at INT8_MM_MAX_ROWS: batch-invariant only below it
        for rows in (1, 2, 7, 33):
            assert torch.equal(layer(x[:rows].to(_input_dtype(kind))), full[:rows]), rows
        sliced = layer.sliced(x[:3].to(_input_dtype(kind)), slice(100, 200))
        assert torch.equal(sliced, full[:3, 100:200])


@pytest.mark.parametrize('kind', ['bf16', 'int8-dynamic', 'fp16'])
def test_packed_weights_follow_their_source_and_copies_pack_again(kind):
    if kind != 'bf16' and not NEEDS[kind]:
        pytest.skip(f'torch has no {kind} kernel here')
    torch.manual_seed(0)
    layer = _layer(kind, torch.nn.Linear(64, 32))
    x = torch.randn(3, 64).to(_input_dtype(kind))
    with torch.no_grad():
        before = layer(x)
        twin = copy.deepcopy(layer)  # the packed forms are not copied: the copy packs its own
        assert torch.equal(twin(x), before)
        other = _layer(kind, torch.nn.Linear(64, 32))
        layer.load_state_dict(other.state_dict())  # in place: the packed weight must not be stale
        assert torch.equal(layer(x), other(x)) and not torch.equal(layer(x), before)
        assert torch.equal(twin(x), before)


def test_precision_of_each_format(monkeypatch):
    # both take float32 activations under 'auto' (the fastest measured); int8-dynamic takes bf16 when asked
    assert resolve_precision(None, 'int8-dynamic') == resolve_precision('auto', 'int8-dynamic') \
        == (torch.float32, 'int8-dynamic')
    assert resolve_precision('bf16', 'int8-dynamic') == (torch.bfloat16, 'int8-dynamic')
    assert resolve_precision(None, 'fp16') == resolve_precision('auto', 'fp16') == (torch.float32, 'fp16')
    with pytest.raises(ConfigError, match=r"quantize='fp16' on cpu needs dtype=torch.float32.*got torch.bfloat16"):
        resolve_precision('bf16', 'fp16')
    for method in ('int8-dynamic', 'fp16'):
        with pytest.raises(MissingDependencyError, match=rf"quantize='{method}' needs .* on cuda"):
            resolve_precision(None, method, device='cuda')
    # a torch built without either int8 GEMM: the probes fail, and the message names what is missing
    def missing(*args):
        raise RuntimeError('not compiled in')
    monkeypatch.setattr(torch.ops.onednn, 'qlinear_prepack', missing)
    monkeypatch.setattr(torch.ops.quantized, 'linear_prepack', missing)
    quant.dynamic_int8_kernel.cache_clear()
    try:
        assert not quant.kernel_available('int8-dynamic', torch.device('cpu'))
        with pytest.raises(MissingDependencyError, match=r"quantize='int8-dynamic' needs an int8 GEMM exact over u8"):
            resolve_precision(None, 'int8-dynamic')
    finally:
        monkeypatch.undo()
        quant.dynamic_int8_kernel.cache_clear()
    assert quant.kernel_available('int8-dynamic', torch.device('cpu')) == NEEDS['int8-dynamic']


def test_both_int8_gemms_give_the_same_bits():
    exact = [k for k in quant.DYNAMIC_INT8_KERNELS if quant._exact_dynamic(k)]
    assert quant.dynamic_int8_kernel() == (exact[0] if exact else None)
    if len(exact) < 2:
        pytest.skip(f'only {exact} exact in this torch build')
    torch.manual_seed(0)
    layer = Int8Linear.from_linear(torch.nn.Linear(320, 96), torch.float32, dynamic=True)
    x = torch.randn(7, 320) * torch.logspace(-3, 3, 7)[:, None]  # rows of very different scales
    outs = [layer._dynamic(x, layer.weight, layer.weight_scale, layer.bias, None, k) for k in exact]
    assert torch.equal(outs[0], outs[1])


@pytest.mark.parametrize('saturates', [False, True])
def test_the_int8_probe_refuses_a_gemm_whose_pair_sums_saturate(monkeypatch, saturates):
    # u8 x s8 the way x86 without VNNI multiplies (vpmaddubsw: pairs of products summed in int16, saturating)
    def pack(kernel, w, scale):
        return w.int(), scale

    def gemm(kernel, packed, xs):
        w, scale = packed
        q = torch.round(xs).int() + 128
        pairs = q[:, None, 0::2] * w[None, :, 0::2] + q[:, None, 1::2] * w[None, :, 1::2]
        if saturates:
            pairs = pairs.clamp(-2 ** 15, 2 ** 15 - 1)
        return (pairs.sum(-1) - 128 * w.sum(1)).float() * scale

    monkeypatch.setattr(quant, '_pack_dynamic', pack)
    monkeypatch.setattr(quant, '_gemm_dynamic', gemm)
    assert quant._exact_dynamic('fbgemm-int8') is not saturates


@pytest.mark.parametrize('method', ['int8-dynamic', 'fp16'])
def test_every_format_saves_and_loads_back_as_itself(tmp_path, method):
    if not NEEDS[method]:
        pytest.skip(f'torch has no {method} kernel here')
    model = get_rudolph_model('tiny-shapes', quantize=method)
    assert quant.quantized_method(model) == method
    folder = str(tmp_path / 'saved')
    model.save_pretrained(folder)
    path = os.path.join(folder, 'model.safetensors')
    assert quant.int8_file_metadata(path)['quantize'] == method
    again = get_rudolph_model(folder)
    assert quant.quantized_method(again) == method and again.dtype == model.dtype
    for (k, a), (k2, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert k == k2 and a.dtype == b.dtype and torch.equal(a, b), k
    ids = torch.randint(0, 100, (2, 12))
    with torch.no_grad():
        assert torch.equal(model(ids)[0], again(ids)[0])
    other = 'int8' if method == 'fp16' else 'fp16'
    with pytest.raises(ConfigError, match=rf"holds {method} weights; it loads with quantize='{method}'"):
        get_rudolph_model(folder, quantize=other)


def test_an_int8_file_loads_with_dynamic_activations(tmp_path):
    if not NEEDS['int8-dynamic']:
        pytest.skip('torch has no oneDNN int8 GEMM here')
    folder = str(tmp_path / 'int8')
    get_rudolph_model('tiny-shapes', quantize='int8').save_pretrained(folder)
    dynamic = get_rudolph_model(folder, quantize='int8-dynamic')
    assert quant.quantized_method(dynamic) == 'int8-dynamic'
    assert quant.quantized_method(get_rudolph_model(folder)) == 'int8'  # as saved, unless asked otherwise


def test_bf16_decode_steps_agree_with_the_full_forward():
    """A cached bf16 decode (packed bf16 weights, one row per step) against the uncached forward."""
    model = get_rudolph_model('tiny-shapes', dtype='bf16')
    lay = model.config
    torch.manual_seed(0)
    ids = torch.cat([torch.randint(4, 100, (2, lay.L)), torch.randint(0, lay.image_vocab, (2, 20))], dim=1)
    with torch.no_grad():
        full = model(ids)[0][:, lay.L:, lay.V:].float()
        cache = model.new_cache(2)
        model.hidden(ids[:, :lay.L], 0, cache)
        steps = [model.logits(model.hidden(ids[:, p:p + 1], p, cache)[0][:, -1], lay.image_slice).float()
                 for p in range(lay.L, ids.shape[1])]
    got = torch.stack(steps, dim=1)
    assert cache.k.dtype == torch.bfloat16  # the cache in the activation dtype
    # bf16 logits reach ~24 here, where one bf16 step is 0.125: the two orders of summation may differ by two
    torch.testing.assert_close(got, full, rtol=0.02, atol=0.25)
    assert (got.argmax(-1) == full.argmax(-1)).float().mean() > 0.9


@pytest.mark.parametrize('kw', [dict(dtype='bf16'), dict(quantize='int8-dynamic'), dict(quantize='fp16')])
def test_compiled_decode_traces_one_graph_in_every_format(kw):
    """Inside torch.compile the layers take plain F.linear: a weight packed outside the graph cannot be traced
    (inductor's lowering asserts it is a graph constant), and the packing cache would break the graph."""
    if kw.get('quantize') and not NEEDS[kw['quantize']]:
        pytest.skip('torch has no such kernel here')
    model = get_rudolph_model('tiny-shapes', **kw)
    lay = model.config
    ids = torch.randint(4, 100, (2, lay.L))
    with torch.no_grad():
        cache = model.new_cache(2)
        model.hidden(ids, 0, cache)
        eager = model.decode_one(ids[:, :1], torch.tensor(lay.L), cache.clone())
        model.compile_decode(backend='eager', fullgraph=True)  # a graph break would raise here
        compiled = model.decode_one(ids[:, :1], torch.tensor(lay.L), cache)
    assert compiled.shape == eager.shape and torch.isfinite(compiled).all()
    # the same math through the other kernel: one rounding of the activation dtype apart
    torch.testing.assert_close(compiled.float(), eager.float(), rtol=0.05, atol=0.05)
