"""Side-by-side benchmark against the ORIGINAL ``rudolph==0.0.1rc10`` from PyPI.

The original runs in a separate virtual environment (default ``bench/.venv-original``,
created on first use) and always in a subprocess, since both packages are named
``rudolph``. Weights, inputs and outputs travel through ``torch.save`` files. Measured:

1. parity: the same random weights in both models, max |logits difference| over a full
   sequence (eval, fp32, CPU), the loss, and teacher-forced cached decoding; in both
   directions (our state dict into the original ``ruDolphModel`` with ``strict=True``, and
   the original's state dict through our ``get_rudolph_model(checkpoint_path=...)``),
   with any key / shape / dtype mismatch listed;
2. image-token decode latency on 350M (bs 1 and 8): the original's cached loop exactly
   as ``ruDolphApi.generate_codebooks`` runs it vs our ``model.hidden`` + ``KVCache``
   step; both apply the same top-k 768 / top-p 0.99 filter and ``torch.multinomial``;
3. construction time per config: the original's ``get_rudolph_model(pretrained=False)``
   and its checkpoint path vs ours (random init, and meta-device build + mmap'd
   checkpoint), each config in its own subprocess, skipped when RAM is short.

The benchmark venv gets the original with ``--no-deps`` plus ``einops`` and
``more-itertools``; torch, torchvision, numpy, tqdm, youtokentome and huggingface_hub
come from the venv running this script through a ``.pth`` link. ``transformers``,
``huggingface_hub.cached_download`` and ``matplotlib.pyplot`` are shimmed by
``bench/_original_shims/`` (see ``orig_worker.py`` there).

    python bench/vs_original.py --quick
    python bench/vs_original.py [--parts parity,decode,construct] [--configs 350M,1.3B]
                                [--bs 1,8] [--steps 32] [--windows early,late] [--venv PATH]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from typing import Any, Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SHIMS = os.path.join(HERE, '_original_shims')
ORIG_WORKER = os.path.join(SHIMS, 'orig_worker.py')
DEFAULT_VENV = os.path.join(HERE, '.venv-original')
ORIGINAL_REQ = 'rudolph==0.0.1rc10'
# What the original's import chain needs beyond what our venv provides (einops pinned as it pins it).
ORIGINAL_EXTRA = ['einops==0.3.2', 'more-itertools']
ALL_CONFIGS = ['350M', '1.3B', '2.7B', '2.7B_fbc2', '350M_v1']

# A small config touching every code path: all four mask kinds (5 layers), special tokens, left pads.
TINY = dict(num_layers=5, hidden_size=64, num_attention_heads=4, embedding_dropout_prob=0.1,
            attention_dropout_prob=0.1, output_dropout_prob=0.1, l_text_seq_length=8, image_tokens_per_dim=4,
            r_text_seq_length=8, kernel_size=3, last_kernel_size=5, cogview_sandwich_layernorm=True,
            cogview_pb_relax=True, text_special_tokens=8, image_special_tokens=4, vocab_size=256 + 8,
            image_vocab_size=128)

GB = 1024 ** 3


# --------------------------------------------------------------------------- helpers
def mem_available() -> int:
    with open('/proc/meminfo') as f:
        for line in f:
            if line.startswith('MemAvailable:'):
                return int(line.split()[1]) * 1024
    return 0


def fmt_gb(n: float) -> str:
    return f'{n / GB:.1f} GB'


class WorkerError(RuntimeError):
    pass


def run_worker(python: str, script_args: List[str], task: Dict[str, Any], tmp: str, label: str,
               timeout: Optional[float] = None) -> Dict[str, Any]:
    fd, task_path = tempfile.mkstemp(suffix='.json', dir=tmp)
    with os.fdopen(fd, 'w') as f:
        json.dump(task, f)
    result_path = task_path[:-5] + '.result.json'
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    env.setdefault('OMP_NUM_THREADS', str(task.get('threads', 2)))
    proc = subprocess.run([python, *script_args, task_path, result_path], env=env, cwd=tmp,
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0 or not os.path.exists(result_path):
        tail = (proc.stdout[-3000:] + '\n' + proc.stderr[-6000:]).strip()
        raise WorkerError(f'{label}: worker exited with {proc.returncode}\n{tail}')
    with open(result_path) as f:
        return json.load(f)


def run_original(venv_python: str, task, tmp, label, timeout=None):
    return run_worker(venv_python, [ORIG_WORKER], task, tmp, f'original {label}', timeout)


def run_ours(task, tmp, label, timeout=None):
    return run_worker(sys.executable, [os.path.abspath(__file__), '--_worker'], task, tmp, f'ours {label}', timeout)


# --------------------------------------------------------------------------- venv
def venv_python(venv: str) -> str:
    return os.path.join(venv, 'bin', 'python')


def ensure_venv(venv: str) -> str:
    """Create the original's venv if needed; return its python."""
    venv = os.path.abspath(venv)  # its probe runs with cwd=venv
    py = venv_python(venv)
    # Which `rudolph` the venv imports, and the version of the dist-info beside it (importlib.metadata
    # could report another rudolph found later on the path, e.g. an editable install of ours).
    probe = [py, '-c', 'import glob, os, importlib.util as u, torch, einops, more_itertools; '
             'd = os.path.dirname(os.path.dirname(u.find_spec("rudolph").origin)); '
             'print(",".join(sorted(os.path.basename(p) for p in glob.glob(os.path.join(d, "rudolph-*.dist-info")))))']
    want = 'rudolph-{}.dist-info'.format(ORIGINAL_REQ.split('==')[1])
    if os.path.exists(py):
        done = subprocess.run(probe, capture_output=True, text=True, cwd=venv)  # not cwd: no ./rudolph
        if done.returncode == 0 and done.stdout.strip() == want:
            return py
    print(f'## setting up the original\'s venv at {venv}', flush=True)
    if not os.path.exists(py):
        cmd = [sys.executable, '-m', 'venv', venv]
        print('$ ' + ' '.join(cmd), flush=True)
        subprocess.run(cmd, check=True)
    with open(os.path.join(venv, '.gitignore'), 'w') as f:  # keep git status clean
        f.write('*\n')
    # Reuse this interpreter's packages (torch & co.): a .pth line appends our site-packages
    # after the venv's own, so the venv's `rudolph` (the original) wins over anything of ours.
    site = subprocess.run([py, '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'],
                          capture_output=True, text=True, check=True).stdout.strip()
    ours = sorted({sysconfig.get_paths()['purelib'], sysconfig.get_paths()['platlib']})
    with open(os.path.join(site, '_rudolph_bench_host_site.pth'), 'w') as f:
        f.write('\n'.join(ours) + '\n')
    cmd = [py, '-m', 'pip', 'install', '--no-deps', ORIGINAL_REQ, *ORIGINAL_EXTRA]
    print('$ ' + ' '.join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    done = subprocess.run(probe, capture_output=True, text=True, cwd=venv)  # not cwd: no ./rudolph
    if done.returncode != 0 or done.stdout.strip() != want:
        raise SystemExit(f'the original\'s venv at {venv} is not usable:\n{done.stderr}')
    return py


# --------------------------------------------------------------------------- our side (worker process)
def _ours_setup(task):
    sys.path.insert(0, ROOT)
    import torch

    torch.set_num_threads(task.get('threads', 2))
    return torch


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _register_tiny(params):
    from rudolph.model import MODELS

    MODELS['_bench_tiny'] = dict(model_params=dict(params), filename='pytorch_model.bin', repo_id='-', hf_version='v3',
                                 description='benchmark tiny config')
    return '_bench_tiny'


def _make_inputs(torch, params, batch, seed):
    L, N, R = params['l_text_seq_length'], params['image_tokens_per_dim'], params['r_text_seq_length']
    V = params['vocab_size'] + params['text_special_tokens']
    g = torch.Generator().manual_seed(seed)
    left = torch.randint(4, V - L, (batch, L), generator=g)
    left[:, 0] = 2  # bos
    for i in range(batch):  # a text of varying length, eos, then left pads (id 0)
        n = int(torch.randint(2, L - 1, (1,), generator=g))
        left[i, n] = 3
        left[i, n + 1:] = 0
    image = torch.randint(0, params['image_vocab_size'], (batch, N * N), generator=g)
    right = torch.randint(4, V - L, (batch, R), generator=g)
    right[:, -R // 4:] = 0  # right-text padding
    return torch.cat((left, image, right), dim=1)


def _ours_outputs(torch, model, ids, decode_steps):
    b, s = ids.shape
    L = model.l_text_seq_length
    with torch.no_grad():
        mask = torch.tril(torch.ones((b, 1, model.total_seq_length, model.total_seq_length)))
        logits, _ = model(ids, mask, return_loss=False)
        out = {'logits': logits}
        loss, values = model(ids, mask, return_loss=True)
        out['loss'] = loss
        out.update(values)
        cache = model.new_cache(b)
        h, _ = model.hidden(ids[:, :L], 0, cache)
        steps = [model.logits(h[:, -1])]
        for n in range(L, min(L + decode_steps, s)):
            h, _ = model.hidden(ids[:, n:n + 1], n, cache)
            steps.append(model.logits(h[:, -1]))
        out['cached_last_logits'] = torch.stack(steps, 1)
    return out


def worker_parity_ours_build(task):
    torch = _ours_setup(task)
    from rudolph.model import ruDolphModel

    torch.manual_seed(task['seed'])
    model = ruDolphModel(device='cpu', **task['params']).eval()
    torch.save(model.state_dict(), task['state_path'])
    ids = _make_inputs(torch, task['params'], task['batch'], task['seed'])
    torch.save({'input_ids': ids}, task['inputs_path'])
    torch.save(_ours_outputs(torch, model, ids, task['decode_steps']), task['out_path'])
    return dict(n_keys=len(model.state_dict()), peak_rss_mb=_peak_rss_mb())


def worker_parity_ours_load(task):
    """The original's own state dict through our public loader (strict name/shape check)."""
    torch = _ours_setup(task)
    from rudolph.model import get_rudolph_model

    name = task['name'] if task['name'] != 'tiny' else _register_tiny(task['params'])
    ckpt_dir = os.path.dirname(task['state_path'])
    path = os.path.join(ckpt_dir, 'pytorch_model.bin')
    if not os.path.exists(path):
        os.symlink(task['state_path'], path)
    result = {}
    try:
        model = get_rudolph_model(name, checkpoint_path=path)
        result['strict_load'] = 'ok'
    except Exception as error:  # noqa: BLE001 - reported, and the run fails
        result['strict_load'] = f'FAILED: {type(error).__name__}: {str(error)[:2000]}'
        return result
    # Mask buffers: ours are rebuilt from the config; compare with the checkpoint's.
    state = torch.load(task['state_path'], map_location='cpu', weights_only=True)
    diffs = []
    for k, v in model.state_dict().items():
        if k in state and k.startswith('transformer.') and k.endswith('mask'):
            if tuple(v.shape) != tuple(state[k].shape):
                diffs.append(f'{k}: shape {tuple(state[k].shape)} vs ours {tuple(v.shape)}')
            elif not torch.equal(state[k].bool(), v.bool()):
                diffs.append(f'{k}: {int((state[k].bool() != v.bool()).sum())} differing entries')
    result['mask_differences'] = diffs
    result['checkpoint_keys'] = len(state)
    result['our_keys'] = len(model.state_dict())
    del state
    ids = torch.load(task['inputs_path'], weights_only=True)['input_ids']
    torch.save(_ours_outputs(torch, model, ids, task['decode_steps']), task['out_path'])
    result['peak_rss_mb'] = _peak_rss_mb()
    return result


def _sampler():
    try:
        sys.path.insert(0, ROOT)
        from rudolph.generation.sampling import top_k_top_p_filtering

        return top_k_top_p_filtering, 'rudolph.generation.sampling'
    except ImportError:
        sys.path.insert(0, SHIMS)
        from transformers import top_k_top_p_filtering  # the shim

        return top_k_top_p_filtering, 'bench shim'


def worker_decode_ours(task):
    torch = _ours_setup(task)
    from rudolph.model import get_rudolph_model

    filt, filt_name = _sampler()
    torch.manual_seed(task['seed'])
    model = get_rudolph_model(task['name'], pretrained=False)
    bs, steps, warmup = task['bs'], task['steps'], task['warmup']
    prefix = torch.load(task['prefix_path'], weights_only=True)
    P = prefix.shape[1]
    vocab = model.config.image_slice
    top_k, top_p, temperature = task['top_k'], task['top_p'], task['temperature']

    @torch.no_grad()
    def run(n_steps):
        torch.manual_seed(task['seed'])
        times, cpu, tokens = [], [], []
        t0, c0 = time.perf_counter(), time.process_time()
        cache = model.new_cache(bs)
        h, _ = model.hidden(prefix.repeat(bs, 1), 0, cache)
        for step in range(n_steps + 1):
            if step:
                t0, c0 = time.perf_counter(), time.process_time()
                h, _ = model.hidden(tokens[-1], P + step - 1, cache)
            logits = model.logits(h[:, -1], vocab) / temperature
            probs = torch.softmax(filt(logits, top_k=top_k, top_p=top_p), dim=-1)
            tokens.append(torch.multinomial(probs, 1))
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        return times, cpu, torch.cat(tokens, 1)

    run(warmup)
    times, cpu, tokens = run(steps)
    result = dict(prefill_s=times[0], step_s=times[1:], step_cpu_s=cpu[1:], sampler=filt_name,
                  peak_rss_mb=_peak_rss_mb(), tokens_in_range=bool(((tokens >= 0) & (tokens < 8192)).all()))
    result.update(_decode_engine(torch, model, prefix, task))
    return result


def _decode_engine(torch, model, prefix, task):
    """The same prefill + steps through our own ``rudolph.generation.engine.generate`` (what generate_codebooks calls)."""
    try:
        from rudolph.generation.engine import generate
    except ImportError:
        return {}
    P, bs, steps = prefix.shape[1], task['bs'], task['steps']
    kwargs = dict(vocab=model.config.image_slice, top_k=task['top_k'], top_p=task['top_p'],
                  temperature=task['temperature'], seed=task['seed'], bs=bs, progress=False)
    try:
        generate(model, prefix[0], P + 1 + min(task['warmup'], steps), bs, **kwargs)  # warm-up
        t0, c0 = time.perf_counter(), time.process_time()
        out = generate(model, prefix[0], P + steps + 1, bs, **kwargs)  # prefill + steps+1 samples
        return dict(engine='rudolph.generation.engine.generate', engine_total_s=time.perf_counter() - t0,
                    engine_total_cpu_s=time.process_time() - c0, engine_shape=list(out.shape))
    except Exception as error:  # noqa: BLE001 - reported as a failure by the caller
        return dict(engine='rudolph.generation.engine.generate', engine_error=f'{type(error).__name__}: {error}'[:1000])


def worker_construct_ours(task):
    torch = _ours_setup(task)
    from rudolph.model import get_rudolph_model

    t0 = time.perf_counter()
    model = get_rudolph_model(task['name'], pretrained=False)
    elapsed = time.perf_counter() - t0
    result = dict(seconds=elapsed, n_params=sum(p.numel() for p in model.parameters()), peak_rss_mb=_peak_rss_mb())
    if task.get('save_path'):
        t0 = time.perf_counter()
        torch.save(model.state_dict(), task['save_path'])
        result['save_seconds'] = time.perf_counter() - t0
    return result


def worker_load_ours(task):
    _ours_setup(task)
    from rudolph.model import get_rudolph_model

    t0 = time.perf_counter()
    model = get_rudolph_model(task['name'], checkpoint_path=task['checkpoint'])
    elapsed = time.perf_counter() - t0
    return dict(seconds=elapsed, n_params=sum(p.numel() for p in model.parameters()), peak_rss_mb=_peak_rss_mb())


WORKERS = {'parity_build': worker_parity_ours_build, 'parity_load': worker_parity_ours_load,
           'decode': worker_decode_ours, 'construct': worker_construct_ours, 'load': worker_load_ours}


def worker_main(task_path, result_path):
    with open(task_path) as f:
        task = json.load(f)
    result = WORKERS[task['task']](task)
    with open(result_path, 'w') as f:
        json.dump(result, f)


# --------------------------------------------------------------------------- orchestration
def config_params(name):
    if name == 'tiny':
        return dict(TINY)
    sys.path.insert(0, ROOT)
    from rudolph.model import MODELS

    return dict(MODELS[name]['model_params'])


def count_params(params) -> int:
    import torch

    sys.path.insert(0, ROOT)
    from rudolph.model import ruDolphModel

    with torch.device('meta'):
        model = ruDolphModel(device='cpu', **params)
    return sum(p.numel() for p in model.parameters())


def max_abs(a, b) -> float:
    return float((a.float() - b.float()).abs().max())


class Bench:
    def __init__(self, args, py, tmp):
        self.args, self.py, self.tmp = args, py, tmp
        self.failures: List[str] = []
        self.summary: List[str] = []

    def fail(self, msg):
        self.failures.append(msg)
        print(f'FAIL: {msg}', flush=True)

    # ---- 1. parity
    def parity(self, name):
        import torch

        args = self.args
        params = config_params(name)
        d = tempfile.mkdtemp(prefix=f'parity-{name}-', dir=self.tmp)
        p = lambda f: os.path.join(d, f)  # noqa: E731
        steps = 8
        common = dict(params=params, seed=args.seed, threads=args.threads, decode_steps=steps, name=name)
        t0 = time.perf_counter()
        run_ours(dict(common, task='parity_build', batch=2, state_path=p('ours_state.pt'),
                      inputs_path=p('inputs.pt'), out_path=p('ours_A.pt')), self.tmp, f'parity build {name}')
        orig = run_original(self.py, dict(common, task='parity', state_path=p('ours_state.pt'),
                                          inputs_path=p('inputs.pt'), out_path=p('orig_A.pt'),
                                          native_state_path=p('orig_state.pt'), native_out_path=p('orig_B.pt')),
                            self.tmp, f'parity {name}')
        os.remove(p('ours_state.pt'))
        loaded = run_ours(dict(common, task='parity_load', state_path=p('orig_state.pt'), inputs_path=p('inputs.pt'),
                               out_path=p('ours_B.pt')), self.tmp, f'parity load {name}')
        rows, keys = [], {}
        keys['ours -> original'] = orig
        keys['original -> ours'] = loaded
        for direction, ours_f, orig_f, load in (('ours weights -> original', 'ours_A.pt', 'orig_A.pt', orig['strict_load']),
                                                ('original weights -> ours', 'ours_B.pt', 'orig_B.pt',
                                                 loaded['strict_load'])):
            if not os.path.exists(p(ours_f)):
                rows.append((name, direction, load, 'n/a', 'n/a', 'n/a', 'n/a'))
                self.fail(f'parity {name} {direction}: strict load {load}')
                continue
            a = torch.load(p(ours_f), weights_only=True)
            b = torch.load(p(orig_f), weights_only=True)
            dl = max_abs(a['logits'], b['logits'])
            scale = float(b['logits'].abs().max())
            dloss = max(abs(float(a[k]) - float(b[k])) for k in ('loss', 'l_text_loss', 'image_loss', 'r_text_loss'))
            dc = max_abs(a['cached_last_logits'], b['cached_last_logits'])
            # ours cached vs ours full, at the same positions (L-1 .. L-1+steps)
            L = params['l_text_seq_length']
            n = a['cached_last_logits'].shape[1]
            dself = max_abs(a['cached_last_logits'], a['logits'][:, L - 1:L - 1 + n])
            rows.append((name, direction, load, f'{dl:.3g}', f'{scale:.3g}', f'{dloss:.3g}', f'{dc:.3g} / {dself:.3g}'))
            if load != 'ok':
                self.fail(f'parity {name} {direction}: strict load {load}')
            if not (dl <= args.atol and dc <= args.atol and dloss <= args.atol):
                self.fail(f'parity {name} {direction}: max|dlogits|={dl:.3g}, cached={dc:.3g}, '
                          f'dloss={dloss:.3g} > atol {args.atol}')
            self.summary.append(f'parity {name} ({direction}): strict load {load}; max|dlogits| {dl:.3g} '
                                f'(max|logit| {scale:.3g}); max|dloss| {dloss:.3g}; cached decode {dc:.3g}')
        shutil.rmtree(d, ignore_errors=True)
        return rows, keys, time.perf_counter() - t0

    # ---- 2. decode
    def decode(self, name, bs, window):
        import torch

        args = self.args
        params = config_params(name)
        L, N2 = params['l_text_seq_length'], params['image_tokens_per_dim'] ** 2
        steps = args.steps
        P = L if window == 'early' else L + N2 - steps
        g = torch.Generator().manual_seed(args.seed)
        V = params['vocab_size'] + params['text_special_tokens']
        prefix = torch.randint(4, V - L, (1, P), generator=g)
        prefix[0, 0] = 2
        prefix[0, 12] = 3
        prefix[0, 13:L] = 0  # a short caption, then pads, as encode_text builds it
        if P > L:
            prefix[0, L:] = torch.randint(0, params['image_vocab_size'], (P - L,), generator=g)
        prefix_path = os.path.join(self.tmp, f'prefix-{name}-{window}.pt')
        torch.save(prefix, prefix_path)
        task = dict(task='decode', name=name, params=params, bs=bs, steps=steps, warmup=args.warmup, seed=args.seed,
                    threads=args.threads, prefix_path=prefix_path, top_k=768, top_p=0.99, temperature=1.0)
        load0 = os.getloadavg()[0]
        # Alternate the two sides --repeats times; keep each side's fastest run (by median step),
        # which damps bursts of load from other processes on a shared machine.
        best = lambda runs: min(runs, key=lambda r: statistics.median(r['step_s']))  # noqa: E731
        ours_runs, orig_runs = [], []
        for _ in range(max(1, args.repeats)):
            ours_runs.append(run_ours(task, self.tmp, f'decode {name} bs={bs}'))
            orig_runs.append(run_original(self.py, task, self.tmp, f'decode {name} bs={bs}'))
        ours, orig = best(ours_runs), best(orig_runs)
        if ours.get('engine_error'):
            self.fail(f'decode {name} bs={bs}: rudolph.generation.engine.generate failed: {ours["engine_error"]}')
        return dict(name=name, bs=bs, window=window, positions=(P, P + steps), ours=ours, orig=orig,
                    loadavg=(load0, os.getloadavg()[0]))

    # ---- 3. construction
    def construct(self, name, ckpts):
        params = config_params(name)
        n = count_params(params)
        size = 4 * n
        row = dict(name=name, n_params=n)
        margin = 0.6 * GB
        key = json.dumps(params, sort_keys=True)

        def room(need, what):
            avail = mem_available()
            if avail < need:
                msg = (f'SKIP {what} {name}: needs ~{fmt_gb(need)} RAM, {fmt_gb(avail)} available')
                print(msg, flush=True)
                self.summary.append(msg)
                return False
            return True

        print(f'# construct {name}: {n / 1e6:.0f}M params, {fmt_gb(size)} fp32', flush=True)
        if room(1.15 * size + margin, 'original random init'):
            row['orig_init'] = run_original(self.py, dict(task='construct', name=name, threads=self.args.threads),
                                            self.tmp, f'construct {name}')
        ckpt = ckpts.get(key)
        save = None
        if ckpt is None:
            free_disk = shutil.disk_usage(self.tmp).free
            if free_disk > size + 2 * GB:
                save = os.path.join(self.tmp, f'ckpt-{name}', 'pytorch_model.bin')
                os.makedirs(os.path.dirname(save), exist_ok=True)
            else:
                print(f'SKIP checkpoint {name}: {fmt_gb(free_disk)} free disk in {self.tmp}', flush=True)
        if room(1.15 * size + margin, 'ours random init'):
            row['ours_init'] = run_ours(dict(task='construct', name=name, threads=self.args.threads, save_path=save),
                                        self.tmp, f'construct {name}')
            if save:
                ckpts[key] = ckpt = save
        if ckpt:
            if room(1.15 * size + margin, 'ours checkpoint load'):
                row['ours_load'] = run_ours(dict(task='load', name=name, threads=self.args.threads, checkpoint=ckpt),
                                            self.tmp, f'load {name}')
            # The original builds a random model, then torch.load()s the whole file (no mmap): ~2x.
            if room(2.15 * size + margin, 'original checkpoint load'):
                row['orig_load'] = run_original(self.py, dict(task='load', name=name, threads=self.args.threads,
                                                              checkpoint=ckpt,
                                                              cache_dir=os.path.join(self.tmp, 'orig-cache')),
                                                self.tmp, f'load {name}')
        return row


def stats_ms(step_s):
    return 1000 * statistics.median(step_s), 1000 * statistics.mean(step_s)


def print_parity(rows, keys_by_config):
    print('\n## 1. Parity (same random weights, eval, fp32 CPU, batch 2, full sequence)\n')
    print('| config | direction | strict load | max abs dlogits | max abs logit | max abs dloss | '
          'cached decode (orig vs ours / ours cached vs full) |')
    print('|---|---|---|---|---|---|---|')
    for r in rows:
        print('| ' + ' | '.join(r) + ' |')
    print('\n### State-dict compatibility\n')
    for name, keys in keys_by_config.items():
        o = keys['ours -> original']
        lo = keys['original -> ours']
        print(f'- **{name}**, our state dict into the original `ruDolphModel` (strict): {o["strict_load"]}; '
              f'{o["n_keys_given"]} keys given, {o["n_keys_original"]} expected; '
              f'missing {o["missing"] or "none"}; unexpected {o["unexpected"] or "none"}; '
              f'shape mismatches {o["shape_mismatches"] or "none"}; dtype differences {o["dtype_differences"] or "none"}; '
              f'buffer value differences {o["buffer_value_differences"] or "none"}')
        print(f'- **{name}**, the original\'s state dict through our `get_rudolph_model(checkpoint_path=...)`: '
              f'{lo["strict_load"]}; checkpoint keys {lo.get("checkpoint_keys", "?")}, ours {lo.get("our_keys", "?")}; '
              f'mask differences {lo.get("mask_differences") or "none"}')


def print_decode(results, threads):
    print(f'\n## 2. Image-token decode latency (fp32 CPU, torch.set_num_threads({threads}), '
          'top-k 768 / top-p 0.99 + multinomial in both)\n')
    print('One step = one model call producing one token per sequence; "ms/token" = step / bs. '
          'CPU = process CPU time (less sensitive to other load on the machine than wall time).\n')
    print('| config | bs | positions | original ms/step wall (CPU) | ours ms/step wall (CPU) | speedup wall (CPU) | '
          'original ms/token | ours ms/token | prefill ms orig / ours | total s orig / ours loop / ours engine | '
          'load avg |')
    print('|---|---|---|---|---|---|---|---|---|---|---|')
    for r in results:
        o, u = r['orig'], r['ours']
        om, uc = stats_ms(o['step_s'])[0], stats_ms(u['step_cpu_s'])[0]
        oc, um = stats_ms(o['step_cpu_s'])[0], stats_ms(u['step_s'])[0]
        a, b = r['positions']
        tot_o = o['prefill_s'] + sum(o['step_s'])
        tot_u = u['prefill_s'] + sum(u['step_s'])
        eng = f'{u["engine_total_s"]:.1f}' if 'engine_total_s' in u else ('error' if 'engine_error' in u else '-')
        print(f'| {r["name"]} | {r["bs"]} | {r["window"]} {a}..{b - 1} | {om:.1f} ({oc:.1f}) | {um:.1f} ({uc:.1f}) | '
              f'{om / um:.2f}x ({oc / uc:.2f}x) | {om / r["bs"]:.2f} | {um / r["bs"]:.2f} | '
              f'{1000 * o["prefill_s"]:.0f} / {1000 * u["prefill_s"]:.0f} | {tot_o:.1f} / {tot_u:.1f} / {eng} | '
              f'{r["loadavg"][0]:.1f}-{r["loadavg"][1]:.1f} |')


def print_construct(rows):
    print('\n## 3. Model construction (CPU, fp32)\n')
    print('| config | params | original random init s | ours random init s | ours meta + checkpoint s | '
          'original init + checkpoint s | peak RSS MB (orig init / ours init / ours load / orig load) |')
    print('|---|---|---|---|---|---|---|')

    def s(row, k):
        return f'{row[k]["seconds"]:.2f}' if k in row else 'skipped'

    def m(row, k):
        return f'{row[k]["peak_rss_mb"]:.0f}' if k in row else '-'

    for r in rows:
        print(f'| {r["name"]} | {r["n_params"] / 1e6:.0f}M | {s(r, "orig_init")} | {s(r, "ours_init")} | '
              f'{s(r, "ours_load")} | {s(r, "orig_load")} | '
              f'{m(r, "orig_init")} / {m(r, "ours_init")} / {m(r, "ours_load")} / {m(r, "orig_load")} |')


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--venv', default=DEFAULT_VENV, help='venv for the original package (created if missing)')
    parser.add_argument('--quick', action='store_true',
                        help='tiny parity, 350M decode at bs=1 (early window, 16 steps); no construction')
    parser.add_argument('--parts', default='parity,decode,construct')
    parser.add_argument('--configs', default=','.join(ALL_CONFIGS), help='configs for the construction part')
    parser.add_argument('--parity-configs', default='tiny,350M')
    parser.add_argument('--decode-config', default='350M')
    parser.add_argument('--bs', default='1,8')
    parser.add_argument('--steps', type=int, default=32)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--windows', default='early,late',
                        help='early: the first image tokens after the left text; late: the last ones')
    parser.add_argument('--repeats', type=int, default=1,
                        help='decode: alternate ours/original this many times, keep the fastest of each')
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--atol', type=float, default=1e-3)
    parser.add_argument('--tmpdir', default=None)
    parser.add_argument('--_worker', nargs=2, metavar=('TASK', 'RESULT'), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._worker:
        worker_main(*args._worker)
        return 0
    if args.quick:
        args.parts, args.parity_configs, args.bs, args.windows = 'parity,decode', 'tiny', '1', 'early'
        args.steps = min(args.steps, 16)
    parts = [p for p in args.parts.split(',') if p]
    started = time.perf_counter()

    py = ensure_venv(os.path.abspath(args.venv))
    tmp = tempfile.mkdtemp(prefix='rudolph-vs-original-', dir=args.tmpdir)
    bench = Bench(args, py, tmp)
    try:
        import torch

        print(f'# rudolph (ours, {ROOT}) vs {ORIGINAL_REQ} (venv {args.venv}); torch {torch.__version__}, '
              f'{args.threads} threads, {fmt_gb(mem_available())} RAM available', flush=True)
        if 'parity' in parts:
            rows, keys = [], {}
            for name in [c for c in args.parity_configs.split(',') if c]:
                print(f'# parity {name} ...', flush=True)
                try:
                    r, k, secs = bench.parity(name)
                    rows += r
                    keys[name] = k
                except WorkerError as error:
                    bench.fail(str(error))
            print_parity(rows, keys)
        if 'decode' in parts:
            results = []
            for window in [w for w in args.windows.split(',') if w]:
                for bs in [int(b) for b in args.bs.split(',') if b]:
                    print(f'# decode {args.decode_config} bs={bs} {window} ...', flush=True)
                    try:
                        r = bench.decode(args.decode_config, bs, window)
                    except WorkerError as error:
                        bench.fail(str(error))
                        continue
                    results.append(r)
                    om, um = stats_ms(r['orig']['step_s'])[0], stats_ms(r['ours']['step_s'])[0]
                    oc, uc = stats_ms(r['orig']['step_cpu_s'])[0], stats_ms(r['ours']['step_cpu_s'])[0]
                    bench.summary.append(
                        f'decode {r["name"]} bs={bs} {window} window (positions {r["positions"][0]}..'
                        f'{r["positions"][1] - 1}): original {om:.1f} ms/step, ours {um:.1f} ms/step -> '
                        f'{om / um:.2f}x faster; CPU time {oc:.1f} vs {uc:.1f} ms/step -> {oc / uc:.2f}x '
                        f'(ours sampler: {r["ours"]["sampler"]}; load avg {r["loadavg"][0]:.1f})')
                    if 'engine_total_s' in r['ours']:
                        bench.summary.append(
                            f'decode {r["name"]} bs={bs} {window}: prefill + {args.steps} steps, original '
                            f'{r["orig"]["prefill_s"] + sum(r["orig"]["step_s"]):.1f} s, ours through '
                            f'rudolph.generation.engine.generate (as generate_codebooks) {r["ours"]["engine_total_s"]:.1f} s')
            print_decode(results, args.threads)
        if 'construct' in parts:
            rows, ckpts = [], {}
            names = [c for c in args.configs.split(',') if c]
            for name in names:
                try:
                    row = bench.construct(name, ckpts)
                except WorkerError as error:
                    bench.fail(str(error))
                    continue
                rows.append(row)
                for k, label in (('orig_init', 'original random init'), ('ours_init', 'ours random init'),
                                 ('ours_load', 'ours meta+checkpoint'), ('orig_load', 'original init+checkpoint')):
                    if k in row:
                        bench.summary.append(f'construct {name}: {label} {row[k]["seconds"]:.2f} s '
                                             f'(peak RSS {row[k]["peak_rss_mb"]:.0f} MB)')
                later = names[names.index(name) + 1:]
                if not any(config_params(c) == config_params(name) for c in later):
                    for path in ckpts.values():  # no later config can reuse this checkpoint
                        shutil.rmtree(os.path.dirname(path), ignore_errors=True)
                    ckpts.clear()
            print_construct(rows)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print('\n## Summary\n')
    for line in bench.summary:
        print(f'- {line}')
    print(f'\n{len(bench.failures)} failure(s); {time.perf_counter() - started:.0f} s total')
    for f in bench.failures:
        print(f'- FAIL: {f.splitlines()[0]}')
    return 1 if bench.failures else 0


if __name__ == '__main__':
    sys.exit(main())
