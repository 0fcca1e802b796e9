"""Runs the ORIGINAL rudolph==0.0.1rc10 in its own venv for ``bench/vs_original.py``.

Usage (done by vs_original.py, with the benchmark venv's python)::

    python bench/_original_shims/orig_worker.py TASK.json RESULT.json

This file is our code, not the original's. It only installs small import shims and then
imports the installed original package (``import rudolph`` resolves to the venv's copy:
this script's folder, not the repository root, is ``sys.path[0]``):

* ``transformers``: the shim package beside this file (``top_k_top_p_filtering`` only);
* ``huggingface_hub.cached_download`` (removed in huggingface_hub 0.26): a local-only
  stand-in that returns a file already placed at ``cache_dir/force_filename``;
* ``matplotlib.pyplot``: an empty module (only ``ruDolphApi.show`` uses it).

Tensors are exchanged through ``torch.save`` files named in the task.
"""
import json
import os
import resource
import sys
import time
import types

HERE = os.path.dirname(os.path.abspath(__file__))


def install_shims():
    if HERE not in sys.path:
        sys.path.insert(0, HERE)
    import huggingface_hub

    if not hasattr(huggingface_hub, 'cached_download'):
        def cached_download(url, cache_dir=None, force_filename=None, **kwargs):
            path = os.path.join(cache_dir or '.', force_filename or os.path.basename(url))
            if not os.path.exists(path):
                raise FileNotFoundError(f'benchmark shim of cached_download has no network: {path} is missing ({url})')
            return path

        huggingface_hub.cached_download = cached_download
    try:
        import matplotlib.pyplot  # noqa: F401
    except ImportError:
        mpl = types.ModuleType('matplotlib')
        plt = types.ModuleType('matplotlib.pyplot')
        mpl.pyplot = plt
        sys.modules['matplotlib'] = mpl
        sys.modules['matplotlib.pyplot'] = plt


install_shims()

import torch  # noqa: E402

import rudolph  # noqa: E402  (the original package, from the benchmark venv)

if getattr(rudolph, '__version__', None) != '0.0.1rc10':
    raise SystemExit(f'expected the original rudolph 0.0.1rc10, imported {rudolph.__file__} '
                     f'version {getattr(rudolph, "__version__", "?")}')
import transformers  # noqa: E402  (the shim beside this file)

from rudolph.model import MODELS, get_rudolph_model, ruDolphModel  # noqa: E402


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def model_params(task):
    if task.get('name') in MODELS and not task.get('params'):
        return dict(MODELS[task['name']]['model_params'])
    return dict(task['params'])


def compare_state(model, state):
    """Keys, shapes and dtypes of ``state`` against ``model.state_dict()``."""
    own = model.state_dict()
    missing = sorted(k for k in own if k not in state)
    unexpected = sorted(k for k in state if k not in own)
    shapes = sorted(f'{k}: given {tuple(state[k].shape)} vs original {tuple(own[k].shape)}'
                    for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape))
    dtypes = sorted(f'{k}: given {state[k].dtype} vs original {own[k].dtype}'
                    for k in own if k in state and state[k].dtype != own[k].dtype)
    buffers = {name for name, _ in model.named_buffers()}
    buffer_diff = []
    for k in sorted(buffers):
        if k in state and tuple(state[k].shape) == tuple(own[k].shape):
            if not torch.equal(state[k].to(own[k].dtype), own[k]):
                n = int((state[k].to(own[k].dtype) != own[k]).sum())
                buffer_diff.append(f'{k}: {n} differing entries')
    return dict(n_keys_original=len(own), n_keys_given=len(state), missing=missing, unexpected=unexpected,
                shape_mismatches=shapes, dtype_differences=dtypes, buffer_value_differences=buffer_diff)


@torch.no_grad()
def run_model(model, inputs, decode_steps):
    ids = inputs['input_ids']
    b, s = ids.shape
    L = model.l_text_seq_length
    mask = torch.tril(torch.ones((b, 1, model.total_seq_length, model.total_seq_length)))
    logits, _ = model(ids, mask, return_loss=False)
    out = {'logits': logits}
    if s == model.total_seq_length:
        loss, values = model(ids, mask, return_loss=True)
        out['loss'] = loss
        out.update({k: v for k, v in values.items()})
    # Cached incremental decoding, teacher-forced, exactly as ruDolphApi.generate_codebooks calls it.
    cache, steps = None, []
    for n in range(L, min(L + decode_steps, s) + 1):
        step_logits, cache = model(ids[:, :n], mask, cache=cache, use_cache=True, return_loss=False)
        steps.append(step_logits[:, -1])
    out['cached_last_logits'] = torch.stack(steps, 1)  # logits at positions L-1 .. L-1+decode_steps
    return out


def task_parity(task):
    params = model_params(task)
    torch.manual_seed(task['seed'])
    model = ruDolphModel(device='cpu', **params)
    state = torch.load(task['state_path'], map_location='cpu', weights_only=True)
    report = compare_state(model, state)
    try:
        model.load_state_dict(state, strict=True)
        report['strict_load'] = 'ok'
    except RuntimeError as error:
        report['strict_load'] = f'FAILED: {str(error)[:2000]}'
        ok = {k: v for k, v in state.items() if k in model.state_dict() and
              tuple(v.shape) == tuple(model.state_dict()[k].shape)}
        model.load_state_dict(ok, strict=False)
    del state
    model.eval()
    inputs = torch.load(task['inputs_path'], weights_only=True)
    torch.save(run_model(model, inputs, task['decode_steps']), task['out_path'])
    del model
    # The other direction: the original's own random weights, for our loader to read.
    torch.manual_seed(task['seed'] + 1)
    native = ruDolphModel(device='cpu', **params).eval()
    torch.save(native.state_dict(), task['native_state_path'])
    torch.save(run_model(native, inputs, task['decode_steps']), task['native_out_path'])
    report['peak_rss_mb'] = peak_rss_mb()
    return report


@torch.no_grad()
def task_decode(task):
    """The cached loop of ruDolphApi.generate_codebooks (rudolph 0.0.1rc10, api.py), timed per step."""
    params = model_params(task)
    torch.manual_seed(task['seed'])
    model = ruDolphModel(device='cpu', **params).eval()
    if task.get('state_path'):
        model.load_state_dict(torch.load(task['state_path'], map_location='cpu', weights_only=True))
    vocab_size = model.get_param('vocab_size')
    image_special_tokens = model.get_param('image_special_tokens')
    total = model.total_seq_length
    bs, steps, warmup = task['bs'], task['steps'], task['warmup']
    prefix = torch.load(task['prefix_path'], weights_only=True)  # [1, P]
    top_k, top_p, temperature = task['top_k'], task['top_p'], task['temperature']

    def run(n_steps, timed):
        torch.manual_seed(task['seed'])
        attention_mask = torch.tril(torch.ones((bs, 1, total, total)))
        out = prefix.repeat(bs, 1)
        cache = None
        times, cpu = [], []
        for step in range(n_steps + 1):  # step 0 is the prefill
            t0, c0 = time.perf_counter(), time.process_time()
            logits, cache = model(out, attention_mask, cache=cache, use_cache=True, return_loss=False)
            logits = logits[:, -1, vocab_size:]
            if image_special_tokens:
                logits = logits[:, :-image_special_tokens]
            logits /= temperature
            filtered_logits = transformers.top_k_top_p_filtering(logits, top_k=top_k, top_p=top_p)
            probs = torch.nn.functional.softmax(filtered_logits, dim=-1)
            sample = torch.multinomial(probs, 1)
            out = torch.cat((out, sample), dim=-1)
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        return times, cpu, out[:, prefix.shape[1]:]

    run(warmup, False)
    times, cpu, tokens = run(steps, True)
    return dict(prefill_s=times[0], step_s=times[1:], step_cpu_s=cpu[1:], peak_rss_mb=peak_rss_mb(),
                tokens_in_range=bool(((tokens >= 0) & (tokens < 8192)).all()))


def task_construct(task):
    t0 = time.perf_counter()
    model = get_rudolph_model(task['name'], pretrained=False, device='cpu')
    elapsed = time.perf_counter() - t0
    n = sum(p.numel() for p in model.parameters())
    return dict(seconds=elapsed, n_params=n, peak_rss_mb=peak_rss_mb())


def task_load(task):
    """The original get_rudolph_model(pretrained=True) path, its download replaced by a local file."""
    cache_dir = task['cache_dir']
    target_dir = os.path.join(cache_dir, task['name'])
    os.makedirs(target_dir, exist_ok=True)
    target = os.path.join(target_dir, MODELS[task['name']]['filename'])
    if not os.path.exists(target):
        os.symlink(os.path.abspath(task['checkpoint']), target)
    t0 = time.perf_counter()
    model = get_rudolph_model(task['name'], pretrained=True, device='cpu', cache_dir=cache_dir)
    elapsed = time.perf_counter() - t0
    n = sum(p.numel() for p in model.parameters())
    return dict(seconds=elapsed, n_params=n, peak_rss_mb=peak_rss_mb())


TASKS = {'parity': task_parity, 'decode': task_decode, 'construct': task_construct, 'load': task_load}


def main():
    with open(sys.argv[1]) as f:
        task = json.load(f)
    torch.set_num_threads(task.get('threads', 2))
    result = TASKS[task['task']](task)
    result['original_version'] = getattr(rudolph, '__version__', '?')
    result['original_file'] = rudolph.__file__
    result['torch'] = torch.__version__
    with open(sys.argv[2], 'w') as f:
        json.dump(result, f)


if __name__ == '__main__':
    main()
