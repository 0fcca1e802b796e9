"""Model core: masks, forward math against a literal SPEC implementation, loss, cache, loading."""
import math
import re
import shutil
import time

import pytest
import torch
import torch.nn.functional as F
from conftest import TINY_PARAMS, TINY_REPO, fill_hub_cache

from rudolph.model import (
    MODELS,
    FP16Module,
    KVCache,
    get_col_mask,
    get_conv_mask,
    get_row_mask,
    get_rudolph_model,
    ruDolphModel,
)
from rudolph.model.image_attention import layer_mask_name


# ----------------------------------------------------------------------------- masks
def loop_mask(l, n, r, rule):
    """The masks of SPEC section 4, one pair at a time."""
    total = l + n * n + r
    mask = torch.zeros(total, total, dtype=torch.bool)
    for q in range(total):
        for k in range(q + 1):
            if l <= q < l + n * n and l <= k < l + n * n:
                mask[q, k] = rule(q - l, k - l, n)
            else:
                mask[q, k] = True
    return mask


def conv_rule(kernel):
    return lambda qi, ki, n: abs(qi // n - ki // n) <= kernel // 2 and abs(qi % n - ki % n) <= kernel // 2


@pytest.mark.parametrize('l,n,r', [(3, 4, 2), (5, 3, 0), (0, 5, 4)])
def test_masks_match_pairwise_definition(l, n, r):
    assert torch.equal(get_row_mask(l, n, r, is_bool_mask=True), loop_mask(l, n, r, lambda qi, ki, n: qi - ki <= n))
    assert torch.equal(get_col_mask(l, n, r, is_bool_mask=True), loop_mask(l, n, r, lambda qi, ki, n: (qi - ki) % n == 0))
    for kernel in (3, 5, 7):
        assert torch.equal(get_conv_mask(l, n, r, kernel=kernel, is_bool_mask=True), loop_mask(l, n, r, conv_rule(kernel)))


@pytest.mark.parametrize('name', sorted(MODELS))
def test_masks_of_every_published_config(name):
    p = MODELS[name]['model_params']
    l, n, r = p['l_text_seq_length'], p['image_tokens_per_dim'], p['r_text_seq_length']
    masks = {
        'row': (get_row_mask(l, n, r, is_bool_mask=True), lambda qi, ki, n: qi - ki <= n),
        'col': (get_col_mask(l, n, r, is_bool_mask=True), lambda qi, ki, n: (qi - ki) % n == 0),
        'conv': (get_conv_mask(l, n, r, kernel=p['kernel_size'], is_bool_mask=True), conv_rule(p['kernel_size'])),
        'last_conv': (get_conv_mask(l, n, r, kernel=p['last_kernel_size'], is_bool_mask=True),
                      conv_rule(p['last_kernel_size'])),
    }
    total = l + n * n + r
    g = torch.Generator().manual_seed(0)
    # every text row and column exactly causal; image pairs sampled densely around the diagonal and at random
    pairs = torch.randint(0, total, (4000, 2), generator=g).tolist()
    pairs += [(q, q - d) for q in range(l, l + n * n, 7) for d in range(0, 3 * n) if q - d >= 0]
    for kind, (mask, rule) in masks.items():
        assert mask.shape == (total, total), kind
        causal = torch.ones(total, total, dtype=torch.bool).tril()
        assert torch.equal(mask[:l], causal[:l]) and torch.equal(mask[l + n * n:], causal[l + n * n:]), kind
        assert torch.equal(mask[:, :l], causal[:, :l]), kind
        for q, k in pairs:
            if l <= q < l + n * n and l <= k < l + n * n:
                expected = k <= q and rule(q - l, k - l, n)
            else:
                expected = k <= q
            assert bool(mask[q, k]) == expected, (kind, q, k)


def test_mask_dtype_and_shape():
    float_mask = get_row_mask(4, 3, 2)
    assert float_mask.dtype == torch.float32 and float_mask.shape == (15, 15)
    assert set(float_mask.unique().tolist()) == {0.0, 1.0}
    assert get_conv_mask(4, 3, 2, kernel=3, is_bool_mask=True).dtype == torch.bool
    with pytest.raises(ValueError, match='kernel'):
        get_conv_mask(4, 3, 2, kernel=0)


def test_masks_of_2_7b_shapes():
    # Timing lives in bench/masks.py; tests never assert a duration.
    params = MODELS['2.7B']['model_params']
    args = (params['l_text_seq_length'], params['image_tokens_per_dim'], params['r_text_seq_length'])
    masks = [get_row_mask(*args), get_col_mask(*args), get_conv_mask(*args, kernel=7), get_conv_mask(*args, kernel=9)]
    assert all(m.shape == (1088, 1088) for m in masks)
    text_rows = masks[0][:384]
    assert torch.equal(text_rows, torch.ones(1088, 1088).tril()[:384])


def test_layer_schedule():
    names = [layer_mask_name(i, 8) for i in range(8)]
    assert names == ['row_mask', 'col_mask', 'row_mask', 'conv_mask', 'row_mask', 'col_mask', 'row_mask', 'last_conv_mask']


# ------------------------------------------------------------------ reference forward
def reference_forward(model, input_ids, attention_mask):
    """SPEC section 4 written out literally: -10000 masking, pb-relax, explicit softmax."""
    p = TINY_PARAMS
    L, N, V = model.l_text_seq_length, model.image_tokens_per_dim, model.vocab_size
    N2, sd = N * N, model.state_dict()
    b, s = input_ids.shape
    heads, h = p['num_attention_heads'], p['hidden_size']
    d = h // heads
    emb = []
    for pos in range(s):
        tok = input_ids[:, pos]
        if pos < L:
            tok = torch.where(tok == 0, torch.full_like(tok, V - L + pos), tok)
            e = sd['text_embeddings.weight'][tok] + sd['l_text_pos_embeddings.weight'][pos]
        elif pos < L + N2:
            j = pos - L
            e = (sd['image_embeddings.weight'][tok] + sd['image_row_embeddings.weight'][j // N]
                 + sd['image_col_embeddings.weight'][j % N])
        else:
            e = sd['text_embeddings.weight'][tok] + sd['r_text_pos_embeddings.weight'][pos - L - N2]
        emb.append(e)
    x = torch.stack(emb, dim=1)

    def ln(t, name):
        return F.layer_norm(t, (h,), sd[name + '.weight'], sd[name + '.bias'], 1e-5)

    def lin(t, name):
        return t @ sd[name + '.weight'].T + sd[name + '.bias']

    def gelu(t):
        return 0.5 * t * (1 + torch.tanh(0.7978845608028654 * t * (1 + 0.044715 * t * t)))

    for i in range(p['num_layers']):
        pre = f'transformer.layers.{i}.'
        mask = attention_mask[:, :, :s, :s] * sd['transformer.' + layer_mask_name(i, p['num_layers'])][:s, :s].float()
        y = lin(ln(x, pre + 'input_layernorm'), pre + 'attention.query_key_value')
        q, k, v = (t.view(b, s, heads, d).transpose(1, 2) for t in y.split(h, dim=-1))
        scores = (q / math.sqrt(d)) @ k.transpose(-1, -2)
        scores = scores * mask - 10000.0 * (1.0 - mask)
        scaled = scores / 32
        scores = (scaled - scaled.amax(dim=(-1, -2), keepdim=True)) * 32
        a = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, s, h)
        a = lin(a, pre + 'attention.dense').clamp(-65504, 65504)
        x = x + ln(a, pre + 'before_first_addition_layernorm')
        m = lin(gelu(lin(ln(x, pre + 'post_attention_layernorm'), pre + 'mlp.dense_h_to_4h')), pre + 'mlp.dense_4h_to_h')
        x = x + ln(m, pre + 'before_second_addition_layernorm')
    x = ln(ln(x, 'transformer.final_layernorm'), 'to_logits.0')
    return lin(x, 'to_logits.1')


def random_ids(model, b, s, generator=None):
    """Random valid ids: text ids in the left/right parts (with some left pads), image codes in between."""
    L, N2, V = model.l_text_seq_length, model.image_seq_length, model.vocab_size
    ids = torch.randint(4, V - L, (b, s), generator=generator)
    image = ids[:, L:L + N2]
    image.copy_(torch.randint(0, model.image_vocab_size, image.shape, generator=generator))
    left = ids[:, 3:L]
    left.copy_(torch.where(torch.rand(left.shape, generator=generator) < 0.4, 0, left))
    return ids


@pytest.mark.parametrize('s', [5, 8, 20, 30])
def test_forward_matches_reference(tiny_model, s):
    g = torch.Generator().manual_seed(s)
    ids = random_ids(tiny_model, 3, s, g)
    mask = torch.tril(torch.ones(3, 1, 30, 30))
    with torch.no_grad():
        logits, cache = tiny_model(ids, mask)
        expected = reference_forward(tiny_model, ids, mask)
    assert cache is None
    assert logits.shape == (3, s, tiny_model.total_vocab_size)
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=0)


def test_attention_mask_with_blocked_rows_matches_reference(tiny_model):
    ids = random_ids(tiny_model, 2, 30, torch.Generator().manual_seed(1))
    mask = torch.tril(torch.ones(2, 1, 30, 30))
    mask[0, :, :, :4] = 0          # sample 0 never sees its first four tokens:
    mask[1, :, 10:12, :] = 0       # fully blocked rows become a uniform average, not NaN
    with torch.no_grad():
        logits, _ = tiny_model(ids, mask)
        expected = reference_forward(tiny_model, ids, mask)
    assert torch.isfinite(logits).all()
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=0)


def test_attention_mask_none_equals_causal_ones(tiny_model):
    ids = random_ids(tiny_model, 2, 30)
    with torch.no_grad():
        a, _ = tiny_model(ids, None)
        b, _ = tiny_model(ids, torch.tril(torch.ones(2, 1, 30, 30)))
    torch.testing.assert_close(a, b)


def test_hidden_states_returned(tiny_model):
    ids = random_ids(tiny_model, 1, 30)
    with torch.no_grad():
        logits, cache, hidden = tiny_model(ids, None, return_hidden_states=True)
    assert len(hidden) == TINY_PARAMS['num_layers'] and hidden[-1].shape == (1, 30, TINY_PARAMS['hidden_size'])


# ------------------------------------------------------------------------------ loss
def reference_loss(model, ids, logits, weights):
    L, N2, R, V = model.l_text_seq_length, model.image_seq_length, model.r_text_seq_length, model.vocab_size
    s = ids.shape[1]
    lt = ids[:, :L].clone()
    for p in range(L):
        lt[:, p] = torch.where(lt[:, p] == 0, V - L + p, lt[:, p])
    img, rt = ids[:, L:L + N2], ids[:, L + N2:]
    labels = torch.cat((lt[:, 1:], img, rt), dim=1)
    lg = logits.transpose(1, 2)
    ll = L if s > L else L - 1
    parts = {'l_text_loss': F.cross_entropy(lg[:, :V, :ll], labels[:, :ll])}
    if s > L:
        parts['image_loss'] = F.cross_entropy(lg[:, V:, L:L + N2 - 1], img[:, 1:])
    if s > L + N2:
        parts['r_text_loss'] = F.cross_entropy(lg[:, :V, -R:-1], rt[:, 1:], ignore_index=0)
    w = dict(zip(('l_text_loss', 'image_loss', 'r_text_loss'), weights))
    total = sum(w[k] * v for k, v in parts.items()) / sum(w[k] for k in parts)
    return total, parts


@pytest.mark.parametrize('s', [8, 24, 30])
@pytest.mark.parametrize('weights', [(1, 7, 1), (0, 1, 1), (2, 0, 3)])
def test_loss_matches_spec(tiny_model, s, weights):
    ids = random_ids(tiny_model, 4, s, torch.Generator().manual_seed(7))
    ids[:, -2:] = 0  # right-text pads are ignored
    if s == 8 and weights[0] == 0:
        with pytest.raises(ValueError, match='zero'):
            tiny_model(ids, None, return_loss=True, lt_loss_weight=0)
        return
    with torch.no_grad():
        loss, values = tiny_model(ids, None, return_loss=True, lt_loss_weight=weights[0],
                                  img_loss_weight=weights[1], rt_loss_weight=weights[2])
        logits, _ = tiny_model(ids, None)
    expected, parts = reference_loss(tiny_model, ids, logits, weights)
    torch.testing.assert_close(loss, expected, atol=1e-5, rtol=1e-5)
    for name, value in parts.items():
        torch.testing.assert_close(values[name], value, atol=1e-5, rtol=1e-5)
        assert not values[name].requires_grad


def test_first_image_token_loss_adds_exactly_the_first_image_position(tiny_model):
    """``first_image_token=True``: the image part is the mean over all N2 image ids, the first
    scored from the last left-text position with image logits; other parts unchanged."""
    L, N2, V = tiny_model.l_text_seq_length, tiny_model.image_seq_length, tiny_model.vocab_size
    ids = random_ids(tiny_model, 3, L + N2, torch.Generator().manual_seed(3))
    with torch.no_grad():
        logits, _ = tiny_model(ids, None)
        _, plain = tiny_model(ids, None, return_loss=True)
        loss, values = tiny_model(ids, None, return_loss=True, first_image_token=True, lt_loss_weight=0)
    image_logits = logits[:, L - 1:L + N2 - 1, V:]
    expected = F.cross_entropy(image_logits.reshape(-1, image_logits.shape[-1]), ids[:, L:].reshape(-1))
    torch.testing.assert_close(values['image_loss'], expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(loss, expected, atol=1e-5, rtol=1e-5)
    first = F.cross_entropy(image_logits[:, 0], ids[:, L])
    torch.testing.assert_close(values['image_loss'], (plain['image_loss'] * (N2 - 1) + first) / N2,
                               atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(values['l_text_loss'], plain['l_text_loss'])


def test_loss_errors(tiny_model):
    with pytest.raises(ValueError, match='whole parts'):
        tiny_model(random_ids(tiny_model, 1, 12), None, return_loss=True)
    with pytest.raises(ValueError, match='zero'):
        tiny_model(random_ids(tiny_model, 1, 8), None, return_loss=True, lt_loss_weight=0)


def test_loss_backward_and_embedding_gradient_scale(tiny_params):
    torch.manual_seed(0)
    params = {**tiny_params, 'attention_dropout_prob': 0.0, 'output_dropout_prob': 0.0}
    model = ruDolphModel(device='cpu', **params).train()
    ids = random_ids(model, 2, 30)
    loss, _ = model(ids, None, return_loss=True)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    # the 0.1 * e + 0.9 * e.detach() trick: embedding gradients are a tenth of the plain ones
    model.zero_grad()
    e = model.embed(ids)
    e.sum().backward()
    grad = model.l_text_pos_embeddings.weight.grad
    torch.testing.assert_close(grad[:8], torch.full_like(grad[:8], 0.2))  # batch of 2 * 0.1


def test_gradient_checkpointing_same_loss_and_grads(tiny_params):
    torch.manual_seed(0)
    base = ruDolphModel(device='cpu', **tiny_params).train()
    ckpt = ruDolphModel(device='cpu', **{**tiny_params, 'gradient_checkpointing': True}).train()
    ckpt.load_state_dict(base.state_dict())
    ids = random_ids(base, 2, 30)
    results = []
    for model in (base, ckpt):
        torch.manual_seed(123)  # same dropout masks: checkpointing replays the RNG state
        loss, _ = model(ids, None, return_loss=True)
        loss.backward()
        results.append((loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    torch.testing.assert_close(results[0][0], results[1][0])
    for name, grad in results[0][1].items():
        torch.testing.assert_close(results[1][1][name], grad, atol=1e-6, rtol=1e-5, msg=name)


# ----------------------------------------------------------------------------- cache
def test_cached_forward_equals_full(tiny_model):
    ids = random_ids(tiny_model, 2, 30, torch.Generator().manual_seed(3))
    with torch.no_grad():
        full, _ = tiny_model(ids, None)
        logits, cache = tiny_model(ids[:, :10], None, use_cache=True)
        steps = [logits]
        for t in range(11, 31):
            logits, cache = tiny_model(ids[:, :t], None, use_cache=True, cache=cache)
            assert logits.shape[1] == 1
            steps.append(logits)
    assert isinstance(cache, KVCache) and cache.length == 30
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=2e-5, rtol=1e-4)


def test_cache_prefix_broadcast(tiny_model):
    ids = random_ids(tiny_model, 1, 30)
    with torch.no_grad():
        prefix = tiny_model.new_cache(1)
        tiny_model.hidden(ids[:, :12], 0, prefix)
        cache = tiny_model.new_cache(3).expand_from(prefix)
        tail = torch.randint(0, 64, (3, 1))
        h, _ = tiny_model.hidden(tail, 12, cache)
        full, _ = tiny_model.hidden(torch.cat([ids[:, :12].expand(3, -1), tail], dim=1))
    torch.testing.assert_close(h[:, 0], full[:, -1], atol=1e-5, rtol=1e-4)


def test_prefix_cache_reused_for_several_continuations(tiny_model):
    """The zero-shot classification pattern: one text+image prefix, many right texts."""
    prefix = random_ids(tiny_model, 1, 24, torch.Generator().manual_seed(8))
    with torch.no_grad():
        _, cache = tiny_model(prefix, None, use_cache=True)
        saved = cache.clone()
        for seed in range(3):
            tail = torch.randint(4, 900, (1, 6), generator=torch.Generator().manual_seed(seed))
            ids = torch.cat([prefix, tail], dim=1)
            logits, cache = tiny_model(ids, None, use_cache=True, cache=cache.truncate(24))
            full, _ = tiny_model(ids, None)
            torch.testing.assert_close(logits, full[:, 24:], atol=2e-5, rtol=1e-4)
        torch.testing.assert_close(saved.k[:, :, :, :24], cache.k[:, :, :, :24])
    with pytest.raises(ValueError, match='truncate'):
        cache.truncate(31)


def test_static_decode_step_equals_full_forward(tiny_model):
    ids = random_ids(tiny_model, 2, 30, torch.Generator().manual_seed(5))
    with torch.no_grad():
        full, _ = tiny_model.hidden(ids)
        cache = tiny_model.new_cache(2)
        tiny_model.hidden(ids[:, :3], 0, cache)
        steps = [tiny_model.decode_one(ids[:, t:t + 1], torch.tensor(t), cache) for t in range(3, 30)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full[:, 3:], atol=2e-5, rtol=1e-4)


def test_compiled_decode_routes_single_token_steps(tiny_model):
    # backend='eager' traces with dynamo (fullgraph: no graph breaks) without the slow C++ codegen.
    ids = random_ids(tiny_model, 2, 30, torch.Generator().manual_seed(6))
    with torch.no_grad():
        full, _ = tiny_model.hidden(ids)
        tiny_model.compile_decode(backend='eager', fullgraph=True)
        calls = []
        compiled = tiny_model._compiled_decode
        tiny_model._compiled_decode = lambda *a: calls.append(1) or compiled(*a)
        cache = tiny_model.new_cache(2)
        tiny_model.hidden(ids[:, :20], 0, cache)
        steps = [tiny_model.hidden(ids[:, t:t + 1], t, cache)[0] for t in range(20, 30)]
    assert len(calls) == 10 and cache.length == 30
    torch.testing.assert_close(torch.cat(steps, dim=1), full[:, 20:], atol=2e-5, rtol=1e-4)


def test_kv_cache_update_writes_given_positions_and_returns_whole_buffers(tiny_model):
    cache = tiny_model.new_cache(2, 10)
    k = torch.randn(2, 4, 3, 8)
    v = torch.randn(2, 4, 3, 8)
    keys, values = cache.update(1, torch.tensor([4, 5, 7]), k, v)
    assert keys.shape == values.shape == (2, 4, 10, 8) and cache.length == 0  # the model advances the length
    torch.testing.assert_close(cache.k[1, :, :, [4, 5, 7]], k, rtol=0, atol=0)
    torch.testing.assert_close(cache.v[1, :, :, [4, 5, 7]], v, rtol=0, atol=0)
    cache.update(2, torch.tensor(9), k[:, :, :1], v[:, :, :1])  # one token: a 0-d position
    torch.testing.assert_close(cache.k[2, :, :, 9], k[:, :, 0], rtol=0, atol=0)


def test_a_static_step_reads_zeros_where_nothing_was_written(tiny_model):
    # the buffers start uninitialised (eager steps read only written positions); the static step's
    # whole-buffer read must not meet garbage: a masked NaN would still poison the attention's sum
    cache = tiny_model.new_cache(2, 10)
    cache.k.fill_(float('nan'))
    cache.v.fill_(float('nan'))
    cache.k[:, :, :, :3], cache.v[:, :, :, :3], cache.length = 1.0, 1.0, 3
    with torch.no_grad():
        h = tiny_model.decode_one(torch.tensor([[5], [6]]), torch.tensor(3), cache)
    assert torch.isfinite(h).all()
    assert not cache.k[:, :, :, 4:].any() and (cache.k[:, :, :, :3] == 1).all()
    cache.zero_unwritten()  # once: later calls leave the buffer alone
    cache.k[:, :, :, 5] = 2.0
    cache.zero_unwritten()
    assert (cache.k[:, :, :, 5] == 2).all()


def test_prefill_returns_last_logits_and_advances_the_cache(tiny_model):
    ids = random_ids(tiny_model, 2, 30, torch.Generator().manual_seed(9))
    vocab = slice(5, 40)
    with torch.no_grad():
        full, _ = tiny_model(ids, None)
        cache = tiny_model.new_cache(2)
        first = tiny_model.prefill(ids[:, :20], cache, vocab)
        assert cache.length == 20
        step = tiny_model.prefill(ids[:, 20:21], cache)
        rest = tiny_model.prefill(ids[:, 21:30], cache, vocab)
    assert cache.length == 30 and first.shape == (2, 35)
    torch.testing.assert_close(first, full[:, 19, vocab], atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(step, full[:, 20], atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(rest, full[:, 29, vocab], atol=2e-5, rtol=1e-4)


def test_runs_compiled_step_is_the_one_rule(tiny_model):
    cache = tiny_model.new_cache(2)
    with torch.no_grad():
        assert not tiny_model.runs_compiled_step(1, cache)  # nothing compiled
        tiny_model.compile_decode(backend='eager')
        assert tiny_model.runs_compiled_step(1, cache)
        assert not tiny_model.runs_compiled_step(2, cache)
        assert not tiny_model.runs_compiled_step(1, None)
        assert not tiny_model.runs_compiled_step(1, cache, attention_mask=torch.ones(1, 1, 1, 1, dtype=torch.bool))
        assert not tiny_model.runs_compiled_step(1, cache, return_hidden_states=True)
    assert not tiny_model.runs_compiled_step(1, cache)  # gradients on: eager


def test_cache_errors(tiny_model):
    cache = tiny_model.new_cache(2)
    ids = random_ids(tiny_model, 2, 10)
    with pytest.raises(ValueError, match='starts at position'):
        tiny_model.hidden(ids[:, 5:], 5, cache)
    with pytest.raises(ValueError, match='batch'):
        tiny_model.hidden(ids[:1], 0, cache)
    tiny_model(ids, None, use_cache=True, cache=cache)
    with pytest.raises(ValueError, match='already in the cache'):
        tiny_model(ids, None, use_cache=True, cache=cache)
    with pytest.raises(ValueError, match='do not fit'):
        tiny_model.embed(torch.zeros(1, 31, dtype=torch.long))


def test_bad_input_ids(tiny_model):
    V, I = tiny_model.vocab_size, tiny_model.image_vocab_size
    with pytest.raises(TypeError, match='integer'):
        tiny_model(torch.zeros(1, 5), None)
    with pytest.raises(TypeError, match='torch.Tensor'):
        tiny_model([[1, 2, 3]], None)
    with pytest.raises(ValueError, match='batch, seq'):
        tiny_model(torch.zeros(5, dtype=torch.long), None)
    with pytest.raises(ValueError, match='31 positions'):
        tiny_model(torch.zeros(1, 31, dtype=torch.long), None)
    ids = random_ids(tiny_model, 1, 30)
    for start, bad, part in ((0, V, 'left text'), (8, I, 'image'), (25, V, 'right text'), (2, -1, 'left text')):
        broken = ids.clone()
        broken[0, start] = bad
        with pytest.raises(ValueError, match=part):
            tiny_model(broken, None)
    with pytest.raises(ValueError, match='attention_mask'):
        tiny_model(ids, torch.ones(1, 1, 10, 10))


def test_logits_slices(tiny_model):
    h = torch.randn(2, 3, TINY_PARAMS['hidden_size'])
    full = tiny_model.logits(h)
    torch.testing.assert_close(tiny_model.logits(h, tiny_model.config.image_slice),
                               full[..., tiny_model.vocab_size:tiny_model.vocab_size + 64])
    torch.testing.assert_close(tiny_model.logits(h, tiny_model.config.text_slice), full[..., :tiny_model.vocab_size])


def test_get_param(tiny_model):
    p = TINY_PARAMS
    assert tiny_model.get_param('vocab_size') == p['vocab_size'] + p['text_special_tokens']
    assert tiny_model.get_param('image_seq_length') == 16
    assert tiny_model.get_param('total_seq_length') == 8 + 16 + 6
    for name in ('l_text_seq_length', 'r_text_seq_length', 'image_tokens_per_dim', 'text_special_tokens',
                 'image_special_tokens', 'device'):
        tiny_model.get_param(name)
    with pytest.raises(AttributeError, match='nonsense'):
        tiny_model.get_param('nonsense')


# --------------------------------------------------------------------- real configs
def expected_state_dict_shapes(p):
    """SPEC section 3, written out."""
    h = p['hidden_size']
    V, I = p['vocab_size'] + p['text_special_tokens'], p['image_vocab_size'] + p['image_special_tokens']
    L, N, R = p['l_text_seq_length'], p['image_tokens_per_dim'], p['r_text_seq_length']
    S = L + N * N + R
    expected = {
        'text_embeddings.weight': (V, h), 'image_embeddings.weight': (I, h),
        'l_text_pos_embeddings.weight': (L + 1, h), 'r_text_pos_embeddings.weight': (R + 1, h),
        'image_row_embeddings.weight': (N, h), 'image_col_embeddings.weight': (N, h),
        'to_logits.0.weight': (h,), 'to_logits.0.bias': (h,),
        'to_logits.1.weight': (V + I, h), 'to_logits.1.bias': (V + I,),
        'transformer.row_mask': (S, S), 'transformer.col_mask': (S, S), 'transformer.conv_mask': (S, S),
        'transformer.last_conv_mask': (S, S),
        'transformer.final_layernorm.weight': (h,), 'transformer.final_layernorm.bias': (h,),
    }
    per_layer = {
        'input_layernorm.weight': (h,), 'input_layernorm.bias': (h,),
        'before_first_addition_layernorm.weight': (h,), 'before_first_addition_layernorm.bias': (h,),
        'before_second_addition_layernorm.weight': (h,), 'before_second_addition_layernorm.bias': (h,),
        'attention.query_key_value.weight': (3 * h, h), 'attention.query_key_value.bias': (3 * h,),
        'attention.dense.weight': (h, h), 'attention.dense.bias': (h,),
        'post_attention_layernorm.weight': (h,), 'post_attention_layernorm.bias': (h,),
        'mlp.dense_h_to_4h.weight': (4 * h, h), 'mlp.dense_h_to_4h.bias': (4 * h,),
        'mlp.dense_4h_to_h.weight': (h, 4 * h), 'mlp.dense_4h_to_h.bias': (h,),
    }
    for i in range(p['num_layers']):
        expected.update({f'transformer.layers.{i}.{k}': v for k, v in per_layer.items()})
    return expected


@pytest.mark.parametrize('name', sorted(MODELS))
def test_key_layout_of_every_config_on_meta(name):
    params = MODELS[name]['model_params']
    with torch.device('meta'):
        model = ruDolphModel(device='cpu', **params)
    sd = model.state_dict()
    assert {k: tuple(v.shape) for k, v in sd.items()} == expected_state_dict_shapes(params)
    assert all(sd[f'transformer.{m}'].dtype == torch.bool for m in ('row_mask', 'col_mask', 'conv_mask', 'last_conv_mask'))


def test_350m_numbers():
    shapes = expected_state_dict_shapes(MODELS['350M']['model_params'])
    assert shapes['text_embeddings.weight'] == (16384 + 64 + 384, 1024)
    assert shapes['image_embeddings.weight'] == (8192 + 384, 1024)
    assert shapes['transformer.row_mask'] == (384, 384)
    assert shapes['to_logits.1.bias'] == (16832 + 8576,)


@pytest.mark.parametrize('name', sorted(MODELS))
def test_every_config_constructs_on_meta(name):
    with torch.device('meta'):
        model = ruDolphModel(device='cpu', **MODELS[name]['model_params'])
    p = MODELS[name]['model_params']
    assert model.total_seq_length == p['l_text_seq_length'] + p['image_tokens_per_dim'] ** 2 + p['r_text_seq_length']
    assert model.text_embeddings.weight.shape[0] == p['vocab_size'] + p['text_special_tokens']


def test_350m_random_init_forward():
    model = get_rudolph_model('350M', pretrained=False)
    assert sum(p.numel() for p in model.parameters()) > 300e6
    assert not model.training
    ids = torch.randint(0, 8192, (1, 64 + 4))
    with torch.no_grad():
        logits, _ = model(ids, None)
    assert logits.shape == (1, 68, 16832 + 8576) and torch.isfinite(logits).all()


# --------------------------------------------------------------------------- loading
def save_tiny(path, model, masks='bool'):
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    for name in ('row_mask', 'col_mask', 'conv_mask', 'last_conv_mask'):
        key = f'transformer.{name}'
        if masks == 'absent':
            del sd[key]
        elif masks == 'float':
            sd[key] = sd[key].float()
    torch.save(sd, path)


@pytest.mark.parametrize('masks', ['bool', 'float', 'absent'])
def test_load_local_file_and_folder(tmp_path, tiny_model, tiny_registered, masks):
    save_tiny(tmp_path / 'pytorch_model.bin', tiny_model, masks)
    ids = random_ids(tiny_model, 1, 30)
    with torch.no_grad():
        expected, _ = tiny_model(ids, None)
    for where in (tmp_path, tmp_path / 'pytorch_model.bin', str(tmp_path)):
        model = get_rudolph_model(tiny_registered, checkpoint_path=where)
        assert not model.training
        with torch.no_grad():
            got, _ = model(ids, None)
        torch.testing.assert_close(got, expected)
        assert model.transformer.row_mask.dtype == torch.bool


def test_load_through_hub_cache_offline(tmp_path, tiny_model, tiny_registered):
    fill_hub_cache(tmp_path, TINY_REPO, 'pytorch_model.bin', lambda p: save_tiny(p, tiny_model))
    model = get_rudolph_model(tiny_registered, cache_dir=str(tmp_path))
    for (name, a), b in zip(model.state_dict().items(), tiny_model.state_dict().values()):
        assert torch.equal(a, b), name


def test_load_through_hf_home(tmp_path, tiny_model, tiny_registered, monkeypatch):
    fill_hub_cache(tmp_path / 'hub', TINY_REPO, 'pytorch_model.bin', lambda p: save_tiny(p, tiny_model))
    monkeypatch.setenv('HF_HUB_CACHE', str(tmp_path / 'hub'))
    import huggingface_hub.constants as constants
    monkeypatch.setattr(constants, 'HF_HUB_CACHE', str(tmp_path / 'hub'))
    model = get_rudolph_model(tiny_registered)
    assert torch.equal(model.text_embeddings.weight, tiny_model.text_embeddings.weight)


def test_offline_without_cache_is_a_clear_error(tmp_path, tiny_registered):
    with pytest.raises(FileNotFoundError) as info:
        get_rudolph_model(tiny_registered, cache_dir=str(tmp_path))
    message = str(info.value)
    assert TINY_REPO in message and 'pytorch_model.bin' in message
    assert f'hf download {TINY_REPO} pytorch_model.bin' in message and 'checkpoint_path' in message  # issue 11: the CLI that exists


def test_strict_loading_errors(tmp_path, tiny_model, tiny_registered):
    sd = tiny_model.state_dict()
    broken = {k: v for k, v in sd.items() if k != 'transformer.layers.2.mlp.dense_h_to_4h.bias'}
    broken['extra.weight'] = torch.zeros(1)
    torch.save(broken, tmp_path / 'a.bin')
    with pytest.raises(RuntimeError) as info:
        get_rudolph_model(tiny_registered, checkpoint_path=tmp_path / 'a.bin')
    message = str(info.value)
    assert 'transformer.layers.2.mlp.dense_h_to_4h.bias' in message and 'extra.weight' in message
    assert "'num_layers': 5" in message  # names the config used
    wrong = dict(sd)
    wrong['text_embeddings.weight'] = torch.zeros(3, 32)
    torch.save(wrong, tmp_path / 'b.bin')
    with pytest.raises(RuntimeError, match=r'text_embeddings.weight: checkpoint \(3, 32\)'):
        get_rudolph_model(tiny_registered, checkpoint_path=tmp_path / 'b.bin')
    with pytest.raises(FileNotFoundError, match='nowhere'):
        get_rudolph_model(tiny_registered, checkpoint_path=tmp_path / 'nowhere.bin')
    with pytest.raises(ValueError, match='unknown RuDOLPH model'):
        get_rudolph_model('9000B')


def test_module_prefix_is_stripped(tmp_path, tiny_model, tiny_registered):
    torch.save({'module.' + k: v for k, v in tiny_model.state_dict().items()}, tmp_path / 'm.bin')
    model = get_rudolph_model(tiny_registered, checkpoint_path=tmp_path / 'm.bin')
    assert torch.equal(model.image_embeddings.weight, tiny_model.image_embeddings.weight)


def test_dtypes_and_fp16_on_cpu(tmp_path, tiny_model, tiny_registered):
    save_tiny(tmp_path / 'pytorch_model.bin', tiny_model)
    model = get_rudolph_model(tiny_registered, checkpoint_path=tmp_path, dtype=torch.bfloat16)
    assert model.dtype == torch.bfloat16 and model.transformer.row_mask.dtype == torch.bool
    ids = random_ids(tiny_model, 1, 30)
    with torch.no_grad():
        logits, _ = model(ids, None)
        expected, _ = tiny_model(ids, None)
    assert (logits.float() - expected).abs().max() < 0.1
    with pytest.warns(UserWarning, match='float32'):
        model = get_rudolph_model(tiny_registered, checkpoint_path=tmp_path, fp16=True)
    assert model.dtype == torch.float32
    with pytest.raises(ValueError, match='contradicts'):
        get_rudolph_model(tiny_registered, checkpoint_path=tmp_path, fp16=True, dtype=torch.bfloat16)


def test_model_kwargs_override_and_pretrained_false(tiny_registered):
    model = get_rudolph_model(tiny_registered, pretrained=False, gradient_checkpointing=True)
    assert model.gradient_checkpointing is True and model._compiled_decode is None
    assert get_rudolph_model(tiny_registered, pretrained=False, compile=True)._compiled_decode is not None


def test_fp16_module_wrapper_is_importable_and_delegates(tiny_model):
    wrapped = FP16Module(tiny_model)
    assert wrapped.get_param('vocab_size') == tiny_model.vocab_size
    assert next(wrapped.parameters()).dtype == torch.float16


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
@pytest.mark.parametrize('mode', [None, 'reduce-overhead'])
def test_compiled_decode_on_cuda(tiny_model, mode):
    model = tiny_model.cuda().half()
    ids = random_ids(tiny_model, 4, 30).cuda()
    with torch.no_grad():
        full, _ = model.hidden(ids)
        model.compile_decode(mode=mode)
        cache = model.new_cache(4)
        model.hidden(ids[:, :20], 0, cache)
        steps = [model.hidden(ids[:, t:t + 1], t, cache)[0].clone() for t in range(20, 30)]
    assert (torch.cat(steps, dim=1).float() - full[:, 20:].float()).abs().max() < 2e-2


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_fp16_on_cuda(tmp_path, tiny_model, tiny_registered):
    save_tiny(tmp_path / 'pytorch_model.bin', tiny_model)
    model = get_rudolph_model(tiny_registered, checkpoint_path=tmp_path, fp16=True, device='cuda')
    assert model.dtype == torch.float16
    ids = random_ids(tiny_model, 2, 30)
    with torch.no_grad():
        logits, _ = model(ids.cuda(), None)
        expected, _ = tiny_model(ids, None)
    assert (logits.float().cpu() - expected).abs().max() < 0.05
    wrapped = FP16Module(tiny_model.cuda())
    with torch.no_grad():
        out, _ = wrapped(ids.cuda(), torch.tril(torch.ones(2, 1, 30, 30, device='cuda')))
    assert out.dtype == torch.float32


def test_pretrained_load_skips_random_init(tmp_path, tiny_model, tiny_registered, monkeypatch):
    save_tiny(tmp_path / 'pytorch_model.bin', tiny_model)
    calls = []
    monkeypatch.setattr(ruDolphModel, 'reset_parameters', lambda self, std=0.02: calls.append(1))
    get_rudolph_model(tiny_registered, checkpoint_path=tmp_path)
    assert calls == []


# ---------------------------------------------------------------- issue 11: loader errors

def test_mismatch_is_a_checkpoint_mismatch_error_and_still_a_runtime_error(tmp_path, tiny_model, tiny_registered):
    from rudolph.errors import CheckpointMismatchError

    sd = {k: v for k, v in tiny_model.state_dict().items() if k != 'text_embeddings.weight'}
    torch.save(sd, tmp_path / 'a.bin')
    with pytest.raises(CheckpointMismatchError, match='missing keys: text_embeddings.weight') as info:
        get_rudolph_model(tiny_registered, checkpoint_path=tmp_path / 'a.bin')
    assert isinstance(info.value, RuntimeError) and str(info.value).startswith('checkpoint does not match config')


@pytest.mark.parametrize('bad', [float('nan'), float('inf')])
def test_non_finite_weights_are_refused(tmp_path, tiny_model, tiny_registered, bad):
    from rudolph.errors import CheckpointError

    sd = dict(tiny_model.state_dict())
    sd['transformer.layers.1.mlp.dense_4h_to_h.weight'] = sd['transformer.layers.1.mlp.dense_4h_to_h.weight'].clone()
    sd['transformer.layers.1.mlp.dense_4h_to_h.weight'][0, 3] = bad
    path = tmp_path / 'nan.bin'
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match=str(path) + r".*'transformer\.layers\.1\.mlp\.dense_4h_to_h\.weight'"):
        get_rudolph_model(tiny_registered, checkpoint_path=path)


def test_unreadable_checkpoints_name_the_file(tmp_path, tiny_model, tiny_registered):
    from rudolph.errors import CorruptCheckpointError

    save_tiny(tmp_path / 'good.bin', tiny_model)
    data = (tmp_path / 'good.bin').read_bytes()
    cases = {'half.bin': (data[:len(data) // 2], 'zip central directory'),
             'empty.bin': (b'', 'empty'),
             'notes.bin': ('just some text, not weights\n' * 20).encode(), }
    for name, blob in cases.items():
        blob, what = blob if isinstance(blob, tuple) else (blob, 'truncated or corrupt')
        path = tmp_path / name
        path.write_bytes(blob)
        with pytest.raises(CorruptCheckpointError, match=re.escape(str(path)) + '.*' + what):
            get_rudolph_model(tiny_registered, checkpoint_path=path)
    torch.save({'weights': 'not tensors'}, tmp_path / 'dict.bin')
    with pytest.raises(CorruptCheckpointError, match='dict.bin.*expected a state dict of tensors'):
        get_rudolph_model(tiny_registered, checkpoint_path=tmp_path / 'dict.bin')


def test_dtype_names_and_bad_dtypes(tmp_path, tiny_model, tiny_registered):
    from rudolph.errors import ConfigError

    save_tiny(tmp_path / 'pytorch_model.bin', tiny_model)
    for name, dtype in (('bf16', torch.bfloat16), ('bfloat16', torch.bfloat16), ('fp32', torch.float32),
                        ('float32', torch.float32), ('torch.bfloat16', torch.bfloat16)):
        assert get_rudolph_model(tiny_registered, checkpoint_path=tmp_path, dtype=name).dtype == dtype
    for name in ('float16', 'fp16', 'half'):
        with pytest.warns(UserWarning, match='float32'):  # float16 on CPU: kept float32, as for fp16=True
            assert get_rudolph_model(tiny_registered, checkpoint_path=tmp_path, dtype=name).dtype == torch.float32
    for bad in (torch.int64, 'int8', 'float64x', 3):
        with pytest.raises(ConfigError, match=r'(?s)unsupported dtype=.*torch\.bfloat16.*fp16'):
            get_rudolph_model(tiny_registered, pretrained=False, dtype=bad)


def test_trainer_folders_load_for_every_model(tmp_path):
    from rudolph.errors import WeightsNotFoundError

    reference = get_rudolph_model('tiny-shapes')
    step = tmp_path / 'step-000010'
    step.mkdir()
    torch.save(reference.state_dict(), step / 'pytorch_model.bin')
    torch.save({'step': 10}, step / 'optimizer.pt')
    loaded = get_rudolph_model('tiny-shapes', checkpoint_path=step)
    assert torch.equal(loaded.text_embeddings.weight, reference.text_embeddings.weight)
    # the registry's file name is looked for too; the error lists every name
    other = tmp_path / 'registry-name'
    other.mkdir()
    shutil.copy(MODELS['tiny-shapes']['local_path'], other / MODELS['tiny-shapes']['filename'])
    assert torch.equal(get_rudolph_model('tiny-shapes', checkpoint_path=other).text_embeddings.weight,
                       reference.text_embeddings.weight)
    (tmp_path / 'empty').mkdir()
    with pytest.raises(WeightsNotFoundError, match=r'empty.*model\.safetensors and pytorch_model\.bin'):
        get_rudolph_model('tiny-shapes', checkpoint_path=tmp_path / 'empty')


def test_offline_hub_fails_fast_with_the_message(tmp_path, tiny_registered, monkeypatch):
    import socket

    from rudolph.errors import WeightsNotFoundError

    with socket.socket() as sock:  # a localhost port that nothing listens on
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    monkeypatch.delenv('HF_HUB_OFFLINE', raising=False)
    import huggingface_hub.constants as constants
    monkeypatch.setattr(constants, 'HF_HUB_OFFLINE', False)
    monkeypatch.setenv('HF_ENDPOINT', f'http://127.0.0.1:{port}')
    start = time.monotonic()
    with pytest.raises(WeightsNotFoundError) as info:
        get_rudolph_model(tiny_registered, cache_dir=str(tmp_path))
    assert time.monotonic() - start < 30  # a generous bound: the retry loop took over a minute
    message = str(info.value)
    assert f'127.0.0.1:{port}' in message and f'hf download {TINY_REPO} pytorch_model.bin' in message
    assert 'checkpoint_path=' in message


def test_loss_of_a_first_image_id_beyond_the_text_vocabulary():
    """tiny-shapes has more image codes (2048) than text ids: the left-text score of that position is skipped."""
    from rudolph.model.configs import TINY_SHAPES_PARAMS

    torch.manual_seed(0)
    model = ruDolphModel(device='cpu', **TINY_SHAPES_PARAMS).eval()
    L, N2, R, V = model.l_text_seq_length, model.image_seq_length, model.r_text_seq_length, model.vocab_size
    ids = torch.cat([torch.randint(4, 200, (2, L)), torch.randint(0, 2048, (2, N2)), torch.randint(4, 200, (2, R))], 1)
    ids[0, L], ids[1, L] = 1500, 7  # beyond the text vocabulary / inside it
    with torch.no_grad():
        logits, _ = model(ids, None)
        _, parts = model(ids, None, return_loss=True)
    lt = torch.where(ids[:, :L] == 0, V - L + torch.arange(L), ids[:, :L])
    labels = torch.cat((lt[:, 1:], ids[:, L:L + 1]), 1)
    ce = F.cross_entropy(logits[:, :L, :V].float().reshape(-1, V), labels.clamp(max=V - 1).reshape(-1),
                         reduction='none').view(2, L)
    expected = torch.cat((ce[0, :-1], ce[1])).mean()  # row 0's last position is not a text class
    assert torch.isfinite(parts['l_text_loss'])
    torch.testing.assert_close(parts['l_text_loss'], expected, rtol=1e-5, atol=1e-6)


def test_rudolph_config_is_the_constructor_and_the_layout(tiny_params):
    """``ruDolphModel(config)`` equals the keyword constructor; the engine's layout is the model's config."""
    import dataclasses

    from rudolph.generation.engine import Layout
    from rudolph.model import RudolphConfig

    config = RudolphConfig.from_params(tiny_params)
    assert RudolphConfig.from_params(config.to_params()) == config
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.num_layers = 3
    torch.manual_seed(0)
    by_config = ruDolphModel(config, device='cpu')
    torch.manual_seed(0)
    by_keywords = ruDolphModel(device='cpu', **tiny_params)
    torch.manual_seed(0)
    positional = ruDolphModel('cpu', tiny_params['num_layers'], tiny_params['vocab_size'], tiny_params['hidden_size'],
                              tiny_params['num_attention_heads'], *[tiny_params[k] for k in (
                                  'embedding_dropout_prob', 'attention_dropout_prob', 'output_dropout_prob')],
                              **{k: v for k, v in tiny_params.items() if k not in (
                                  'num_layers', 'vocab_size', 'hidden_size', 'num_attention_heads',
                                  'embedding_dropout_prob', 'attention_dropout_prob', 'output_dropout_prob')})
    for other in (by_keywords, positional):
        assert other.config == config
        for (k, a), b in zip(by_config.state_dict().items(), other.state_dict().values()):
            assert torch.equal(a, b), k
    layout = Layout.from_model(by_config)
    assert layout is by_config.config
    assert (layout.L, layout.N, layout.R, layout.V, layout.S) == (
        by_config.l_text_seq_length, by_config.image_tokens_per_dim, by_config.r_text_seq_length,
        by_config.vocab_size, by_config.total_seq_length)
    assert layout.image_slice == slice(by_config.vocab_size, by_config.vocab_size + by_config.plain_image_vocab_size)
    assert config.replace(attention_dropout_prob=0.0).attention_dropout_prob == 0.0
    with pytest.raises(TypeError, match='unexpected'):
        ruDolphModel(device='cpu', **tiny_params, bogus=1)
    with pytest.raises(ValueError, match='must exceed l_text_seq_length'):
        config.replace(vocab_size=4, text_special_tokens=0)


def test_registry_entries_are_frozen_model_specs():
    import dataclasses

    from rudolph.model.configs import ModelSpec

    for name, spec in MODELS.items():
        assert isinstance(spec, ModelSpec), name
        assert spec['model_params'] == spec.config.to_params() and spec['model_params'] is not spec['model_params']
        with torch.device('meta'):
            ruDolphModel(spec.config, device='meta')  # every config builds (no memory on meta)
    spec = MODELS['tiny-shapes']
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.repo_id = 'x'
    with pytest.raises(TypeError):
        spec['spc_tokens']['<LT_T2I>'] = 0
    with pytest.raises(TypeError):
        spec['sampling']['text2image']['top_k'] = 1
    spec['model_params']['num_layers'] = 99  # a fresh dict: the registry is unchanged
    assert spec.config.num_layers == 4 and 'local_path' in spec and 'local_path' not in MODELS['350M']


def test_original_attributes_are_the_config_values():
    from rudolph.model.config import RudolphConfig

    config = RudolphConfig(**TINY_PARAMS)
    model = ruDolphModel(config, device='cpu')
    assert (model.l_text_seq_length, model.r_text_seq_length, model.image_tokens_per_dim) == (config.L, config.R,
                                                                                              config.N)
    assert (model.image_seq_length, model.total_seq_length, model.vocab_size) == (config.N2, config.S, config.V)
    assert model.image_vocab_size == config.image_vocab_total and model.plain_image_vocab_size == config.image_vocab
    assert model.total_vocab_size == config.V + config.image_vocab_total
    assert (model.num_layers, model.hidden_size, model.kernel_size) == (config.num_layers, config.hidden_size,
                                                                        config.kernel_size)
    assert model.gradient_checkpointing == config.gradient_checkpointing


def test_350m_and_350m_v1_share_their_geometry():
    v2, v1 = MODELS['350M'].config, MODELS['350M_v1'].config
    assert v2.replace(text_special_tokens=0, image_special_tokens=0) == v1
    assert (v2.text_special_tokens, v2.image_special_tokens, v1.num_layers, v1.L, v1.N) == (384, 384, 24, 64, 16)


@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
def test_linear_matches_f_linear_at_every_row_count_and_shape(dtype):
    from rudolph.model.transformer import SMALL_BATCH_ROWS, linear

    torch.manual_seed(0)
    w, b = (torch.randn(96, 64) * 0.1).to(dtype), (torch.randn(96) * 0.1).to(dtype)
    tol = dict(atol=1e-5, rtol=1e-5) if dtype == torch.float32 else dict(atol=2e-2, rtol=2e-2)
    for shape in [(1, 64), (1, 1, 64), (3, 1, 64), (2, 4, 64), (SMALL_BATCH_ROWS + 1, 64)]:
        x = torch.randn(*shape).to(dtype)
        with torch.no_grad():  # the decode paths (one-row matrix-vector, weight-first GEMM) run without grad
            out = linear(x, w, b)
        assert out.shape == (*shape[:-1], 96) and out.dtype == dtype
        torch.testing.assert_close(out.float(), F.linear(x.float(), w.float(), b.float()), **tol)
    rows = torch.randn(5, 64).to(dtype)  # a row alone and in a batch of small-batch rows: same values
    with torch.no_grad():
        alone = torch.cat([linear(r[None], w, b) for r in rows])
        together = linear(rows, w, b)
    torch.testing.assert_close(alone, together, **tol)


def test_a_device_that_is_not_here_is_named_with_those_that_are():
    from rudolph.errors import ConfigError

    with pytest.raises(ConfigError, match=r"device 'cuda:7'.*devices here: cpu"):
        get_rudolph_model('tiny-shapes', device='cuda:7')
    with pytest.raises(ConfigError, match=r"device 'cuda:7'"):
        get_rudolph_model('tiny-shapes', pretrained=False, device=torch.device('cuda', 7))


def test_a_bin_checkpoint_is_checked_against_the_config_before_the_model_is_built(tmp_path, tiny_model):
    from rudolph.errors import CheckpointMismatchError

    save_tiny(tmp_path / 'pytorch_model.bin', tiny_model)
    huge = {**TINY_PARAMS, 'num_layers': 2_000}
    with pytest.raises(CheckpointMismatchError, match=r'num_layers=2000 but the weights hold 5 layers'):
        get_rudolph_model('big', model_params=huge, checkpoint_path=tmp_path)
    wide = {**TINY_PARAMS, 'hidden_size': 64}
    with pytest.raises(CheckpointMismatchError, match=r'text_embeddings\.weight: checkpoint \(1024, 32\) vs model'):
        get_rudolph_model('wide', model_params=wide, checkpoint_path=tmp_path)
