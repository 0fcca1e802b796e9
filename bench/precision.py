"""Reduced precision and weight formats: every speed target in ONE run, ratios against our own fp32 in that run.

Formats (``--formats``): fp32, bf16 (oneDNN-packed weights), int8 (weight-only), int8-dynamic
(per-row int8 activations), fp16 (fbgemm fp16 weights, fp32 activations); see ``rudolph.model.quant``.
The script refuses to time on a busy machine (1-minute load average above ``--max-load``) unless
``--busy``, which marks the output.

Parts (``--parts``, comma-separated; default all but ``load`` and ``original``):

- ``kernels``: one 350M layer's four linear layers per format through its layer class (the rule
  of ``rudolph.model.quant.pick_kernel``) and the kernels the rule passed over, by rows per call.
- ``decode``: image-token decode steps at bs 1/8/32 per format (same random weights), speed-up
  vs fp32, the linears' time at one row, and the weight-read floor (every stored weight byte
  read once) with the step's ratio to it.
- ``tasks``: reranking by text of 8 codebooks (full-sequence scoring) and zero-shot
  classification over 10 classes, through ``rudolph.pipelines``.
- ``image``: one whole image at bs=1 through ``pipelines.generate_codebooks``.
- ``big``: 1.3B and 2.7B decode steps (bs 1 and 8) in each of ``--formats`` with their peak RSS
  (each in its own process; random weights made directly in the target dtype).
- ``train``: tiny-shapes fine-tuning step time, fp32 vs bf16 autocast (``TrainConfig(precision=)``).
- ``load``: peak RSS of loading 2.7B with ``quantize='int8'`` from an fp32 checkpoint
  (``--checkpoint-2.7b PATH``, or ``--make-checkpoint`` writes a random one under ``--tmp``: 11 GB).
- ``original``: the original package's whole image at bs=1 (``bench/vs_original.py``'s
  worker; needs its venv, ``--original-venv``) against our int8 ``generate_codebooks``.

Usage: python bench/precision.py [--threads 2] [--steps 16] [--parts decode,tasks] [--model 350M]
"""
import argparse
import copy
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from decode import decode_loop, read_floor, weight_bytes, weight_floor  # noqa: E402

from rudolph.model import MODELS, get_rudolph_model, ruDolphModel  # noqa: E402
from rudolph.model.heap import release_pages  # noqa: E402
from rudolph.model.model import skip_init  # noqa: E402
from rudolph.model.precision import resolve_precision  # noqa: E402
from rudolph.model.quant import (  # noqa: E402
    INT8_MM_MAX_ROWS,
    Fp16Linear,
    Int8Linear,
    quantize_linears,
    quantized_linear_names,
)
from rudolph.model.transformer import Linear  # noqa: E402

#: The formats timed: name -> (dtype, quantize), as ``get_rudolph_model(dtype=, quantize=)`` takes them.
FORMATS = {'fp32': (torch.float32, None), 'bf16': (torch.bfloat16, None), 'int8': (torch.bfloat16, 'int8'),
           'int8-dynamic': (torch.float32, 'int8-dynamic'), 'fp16': (torch.float32, 'fp16')}
NAMES = tuple(FORMATS)
CLASSES = ['кошка', 'собака', 'лошадь', 'автомобиль', 'самолёт', 'корабль', 'птица', 'олень', 'лягушка', 'грузовик']


def peak_rss_mb() -> float:
    """This process's own peak RSS: ``VmHWM`` belongs to the address space, which ``exec`` makes new, while
    ``ru_maxrss`` starts a worker from its parent's peak on Linux."""
    try:
        with open('/proc/self/status') as f:
            return next(int(line.split()[1]) for line in f if line.startswith('VmHWM:')) / 1024
    except (OSError, StopIteration):  # not Linux
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


#: Torch's 2-thread kernels slow down several-fold when the other core is busy: above this 1-minute load
#: average (what a quiet 2-core machine shows between runs) the timings mean little.
IDLE_LOAD = 1.0


def check_idle(args) -> None:
    """Exit with a message when the machine is busy, unless ``--busy`` (then every table is marked)."""
    load = os.getloadavg()[0]
    if load <= args.max_load:
        return
    if not args.busy:
        sys.exit(f'bench/precision.py: load average {load:.2f} > {args.max_load} (see `uptime`, `top`): the timings '
                 f'would mean little. Wait for a quiet machine, or pass --busy to time anyway.')
    print(f'\n**WARNING: NOT IDLE: load average {load:.2f} > {args.max_load}; ratios only, and even those are '
          f'noisy.**\n')


def median_ms(fn, repeat: int = 7) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def same_weight_models(name: str, names=NAMES) -> dict:
    """fp32 random weights (the tests' init: normal(0, 0.02)) and its copy in each format of ``names``."""
    torch.manual_seed(0)
    fp32 = get_rudolph_model(name, pretrained=False)
    models = {}
    for fmt in names:
        dtype, method = FORMATS[fmt]
        model = copy.deepcopy(fp32).to(dtype)
        if method is not None:  # quantised once, from the fp32 weights
            quantize_linears(model, dtype, fill=False, method=method)
            for name, src in quantized_linear_names(fp32).items():
                model.get_submodule(name).set_weight(src.weight, src.bias)
        models[fmt] = model.eval()
    return models


# ----------------------------------------------------------------------------- kernels
@torch.no_grad()
def part_kernels(args) -> None:
    """One layer's four linears per format through its layer class (the kernel rule), and the kernels the rule
    passed over, by rows in the call."""
    h = MODELS[args.model]['model_params']['hidden_size']
    shapes = [(3 * h, h), (h, h), (4 * h, h), (h, 4 * h)]
    torch.manual_seed(0)
    floats = [Linear(i, o) for o, i in shapes]
    layers = {
        'fp32 (rule)': (floats, torch.float32),
        'bf16 MKL F.linear': ([copy.deepcopy(m).bfloat16() for m in floats], torch.bfloat16),
        'bf16 (rule: packed)': ([copy.deepcopy(m).bfloat16() for m in floats], torch.bfloat16),
        'int8 (rule)': ([Int8Linear.from_linear(m) for m in floats], torch.bfloat16),
        'int8 -> bf16 + F.linear': ([Int8Linear.from_linear(m) for m in floats], torch.bfloat16),
        'int8-dynamic (rule)': ([Int8Linear.from_linear(m, torch.float32, dynamic=True) for m in floats], torch.float32),
        'fp16 (rule)': ([Fp16Linear.from_linear(m) for m in floats], torch.float32),
    }
    calls = {
        'bf16 MKL F.linear': lambda m, x: F.linear(x, m.weight, m.bias),
        'int8 -> bf16 + F.linear': lambda m, x: F.linear(x, m.weight.to(x.dtype)) * m.weight_scale.to(x.dtype),
    }
    print(f'\n## kernels: one {args.model} layer (4 linear layers, hidden {h}), median ms per call of all four\n')
    print('| rows | ' + ' | '.join(layers) + ' |')
    print('|---' * (len(layers) + 1) + '|')
    for rows in (1, 2, 4, 8, 12, 16, 32, 64, 128, 256):
        xs = {dtype: [torch.randn(rows, i, dtype=dtype) for _, i in shapes]
              for dtype in (torch.float32, torch.bfloat16)}
        cells = []
        for name, (mods, dtype) in layers.items():
            call = calls.get(name, lambda m, x: m(x))
            cells.append(median_ms(lambda: [call(m, x) for m, x in zip(mods, xs[dtype])]))
        print(f'| {rows} | ' + ' | '.join(f'{v:.2f}' for v in cells) + ' |', flush=True)
    print(f'\nThe rule (rudolph.model.quant.pick_kernel): int8 uses `_weight_int8pack_mm` up to '
          f'{INT8_MM_MAX_ROWS} rows, the converted weight above; the others one kernel at every row count.')


# ----------------------------------------------------------------------------- decode
def part_decode(args, models) -> dict:
    lay = models['fp32'].config
    g = torch.Generator().manual_seed(0)
    text = torch.randint(4, lay.V - lay.L, (1, lay.L), generator=g)
    results, floors, reads = {}, {}, {}
    for name in models:
        model = models[name]
        floors[name] = weight_floor(model, torch.device('cpu'))
        reads[name] = read_floor(model, torch.device('cpu'))
        for bs in args.bs:
            r = decode_loop(model, text, bs, args.steps, lay.image_slice, 0, g)
            results[name, bs] = r
    print(f'\n## image-token decode, {args.model}, random weights, {args.threads} threads, {args.steps} steps '
          f'(median step)\n')
    print('| format | bs | step (ms) | tokens/s | vs fp32 tokens/s | linears at 1 row (ms) | weight-read floor (ms) '
          '| step / read floor |')
    print('|---|---|---|---|---|---|---|---|')
    for name in models:
        for bs in args.bs:
            r, ref = results[name, bs], results['fp32', bs]
            print(f"| {name} | {bs} | {r['step_ms']:.1f} | {r['tok_s']:.1f} | {r['tok_s'] / ref['tok_s']:.2f}x | "
                  f"{floors[name] * 1e3:.1f} | {reads[name] * 1e3:.1f} | {r['step_ms'] / 1e3 / reads[name]:.2f} |")
    print('\nweights read per step: ' + ', '.join(f'{n} {weight_bytes(models[n]) / 2 ** 20:.0f} MiB' for n in models))
    return {'results': results, 'floors': floors, 'reads': reads}


# ----------------------------------------------------------------------------- tasks
def task_inputs(args, model):
    import numpy as np
    from PIL import Image

    from rudolph.tokenizer import get_tokenizer, train_bpe
    from rudolph.vae import get_vae

    os.makedirs(args.tmp, exist_ok=True)
    bpe_path = os.path.join(args.tmp, 'bench-bpe.model')
    texts = ['рисунок кота на диване', 'красивый пейзаж с озером', 'на картинке'] + CLASSES
    train_bpe(texts * 20, 400, bpe_path)
    torch.manual_seed(0)
    # a packaged model brings its own VQGAN; the published ones use ruDALL-E's (random: costs do not depend on values)
    vae = get_vae(name=args.model) if MODELS[args.model].get('local_path') else get_vae(pretrained=False)
    N = model.image_tokens_per_dim
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (N * 8, N * 8, 3), dtype=np.uint8))
    return get_tokenizer(bpe_path), vae, image


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def part_tasks(args, models) -> dict:
    from rudolph import pipelines

    tokenizer, vae, image = task_inputs(args, models['fp32'])
    N2 = models['fp32'].image_seq_length
    codebooks = torch.randint(0, models['fp32'].config.image_vocab, (8, N2), generator=torch.Generator().manual_seed(1))
    rows = {}
    for name in models:
        model = models[name]
        rerank, ppl = timed(lambda: pipelines.self_reranking_by_text('рисунок кота', codebooks, tokenizer, model,
                                                                     bs=8, progress=False))
        zs, res = timed(lambda: pipelines.zs_clf(image, CLASSES, model, tokenizer, vae, bs=10,
                                                 template='на картинке {}', progress=False))
        rows[name] = (rerank, zs, ppl, res)
    print(f'\n## tasks, {args.model}, random weights (seconds; speed-up vs fp32)\n')
    print('| format | reranking by text, 8 codebooks | zero-shot classification, 10 classes |')
    print('|---|---|---|')
    for name in rows:
        r, z = rows[name][:2]
        print(f"| {name} | {r:.2f} ({rows['fp32'][0] / r:.2f}x) | {z:.2f} ({rows['fp32'][1] / z:.2f}x) |")
    return rows


def part_image(args, models) -> dict:
    from rudolph import pipelines

    tokenizer, _, _ = task_inputs(args, models['fp32'])
    seconds = {}
    for name in models:
        seconds[name], _ = timed(lambda: pipelines.generate_codebooks('рисунок кота', tokenizer, models[name],
                                                                      top_k=768, top_p=0.99, images_num=1, bs=1,
                                                                      seed=0, progress=False))
    print(f'\n## one whole image ({models["fp32"].image_seq_length} tokens) at bs=1, generate_codebooks, '
          f'{args.model}\n')
    print('| format | seconds | vs fp32 |')
    print('|---|---|---|')
    for name in seconds:
        print(f"| {name} | {seconds[name]:.2f} | {seconds['fp32'] / seconds[name]:.2f}x |")
    return seconds


# ----------------------------------------------------------------------------- big models (own processes)
def random_model(name: str, precision: str) -> ruDolphModel:
    """Random weights made directly in ``precision`` (no float32 copy of a big model in memory)."""
    prec = resolve_precision(*FORMATS[precision])
    with torch.device('meta'), skip_init():
        model = ruDolphModel(device='cpu', **MODELS[name]['model_params'])
    if prec.quantize:
        quantize_linears(model, prec.dtype, fill=False, method=prec.quantize)
    g = torch.Generator().manual_seed(0)
    state = {}
    for key, meta in model.state_dict().items():
        if meta.dtype == torch.bool:
            continue
        if meta.dtype == torch.int8:  # uniform int8 has std ~73: scale 0.02 / 73 gives std 0.02
            state[key] = torch.randint(-127, 128, meta.shape, dtype=torch.int8, generator=g)
        elif key.endswith('weight_scale'):
            state[key] = torch.full(meta.shape, 0.02 / 73.3)
        elif key.endswith('bias') or 'layernorm' in key or key.startswith('to_logits.0'):
            state[key] = (torch.ones if key.endswith('weight') else torch.zeros)(meta.shape, dtype=prec.dtype)
        else:  # fp16 weights of quantize='fp16' in their own dtype, the rest in the activation dtype
            dtype = torch.float16 if meta.dtype == torch.float16 else prec.dtype
            state[key] = torch.randn(meta.shape, generator=g, dtype=dtype) * 0.02
    state.update({f'transformer.{k}': v for k, v in model.transformer.build_masks(torch.device('cpu')).items()})
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()


def worker_big(name: str, precision: str, bs_list, steps: int) -> dict:
    t0 = time.perf_counter()
    model = random_model(name, precision)
    build = time.perf_counter() - t0
    lay = model.config
    g = torch.Generator().manual_seed(0)
    text = torch.randint(4, lay.V - lay.L, (1, lay.L), generator=g)
    out = {'build_s': build, 'weights_mib': weight_bytes(model) / 2 ** 20}
    for bs in bs_list:
        out[f'bs{bs}'] = decode_loop(model, text, bs, steps, lay.image_slice, 0, g)
    out['peak_rss_mb'] = peak_rss_mb()
    return out


def run_worker(args, kind: str, *extra) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), '--threads', str(args.threads), '--_worker', kind, *extra]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        return {'error': done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f'exit {done.returncode}'}
    return json.loads(done.stdout.strip().splitlines()[-1])


def part_big(args) -> None:
    print(f'\n## 1.3B and 2.7B decode (random weights, {args.big_steps} image steps, one process each)\n')
    print('| model | format | weights (MiB) | bs=1 step (ms) | bs=8 step (ms) | bs=8 tokens/s | peak RSS (MB) |')
    print('|---|---|---|---|---|---|---|')
    for name in ('1.3B', '2.7B'):
        for precision in args.formats.split(','):
            r = run_worker(args, 'big', name, precision, str(args.big_steps))
            if 'error' in r:
                print(f"| {name} | {precision} | failed: {r['error']} | | | | |")
                continue
            print(f"| {name} | {precision} | {r['weights_mib']:.0f} | {r['bs1']['step_ms']:.0f} | "
                  f"{r['bs8']['step_ms']:.0f} | {r['bs8']['tok_s']:.1f} | {r['peak_rss_mb']:.0f} |")


# ----------------------------------------------------------------------------- loading 2.7B int8
def make_checkpoint(name: str, path: str) -> None:
    """A random float32 checkpoint of ``name`` (normal(0, 0.02)) written without the model in memory.

    ``torch.save`` under ``skip_data`` lays out the file from fake tensors; the file is then mapped
    shared and each tensor filled in place, a chunk at a time.
    """
    from torch._subclasses.fake_tensor import FakeTensorMode

    with torch.device('meta'), skip_init():
        model = ruDolphModel(device='cpu', **MODELS[name]['model_params'])
    shapes = {k: v.shape for k, v in model.state_dict().items() if v.dtype != torch.bool}
    with FakeTensorMode():
        fake = {k: torch.empty(shape) for k, shape in shapes.items()}
    with torch.serialization.skip_data(materialize_fake_tensors=True):
        torch.save(fake, path + '.tmp')
    import mmap

    torch.serialization.set_default_mmap_options(mmap.MAP_SHARED)
    try:
        state = torch.load(path + '.tmp', mmap=True, weights_only=True)
        g = torch.Generator().manual_seed(0)
        for key, tensor in state.items():
            flat = tensor.view(-1)
            for begin in range(0, flat.numel(), 1 << 24):  # 64 MB chunks
                chunk = flat[begin:begin + (1 << 24)]
                chunk.copy_(torch.randn(chunk.shape, generator=g) * 0.02)
            release_pages(tensor)
        del state
    finally:
        torch.serialization.set_default_mmap_options(mmap.MAP_PRIVATE)
    os.replace(path + '.tmp', path)


def worker_load(name: str, path: str) -> dict:
    t0 = time.perf_counter()
    model = get_rudolph_model(name, checkpoint_path=path, quantize='int8')
    seconds = time.perf_counter() - t0
    int8_bytes = sum(t.numel() * t.element_size() for k, t in model.state_dict().items() if t.dtype != torch.bool)
    return {'load_s': seconds, 'int8_mib': int8_bytes / 2 ** 20, 'peak_rss_mb': peak_rss_mb()}


def part_load(args) -> None:
    name = args.load_model
    path = args.checkpoint_27b or os.path.join(args.tmp, f'rudolph-{name}-random-fp32.bin')
    if not os.path.exists(path):
        if not args.make_checkpoint:
            print(f'\n(load: no checkpoint at {path}; pass --checkpoint-2.7b PATH or --make-checkpoint)')
            return
        os.makedirs(args.tmp, exist_ok=True)
        t0 = time.perf_counter()
        make_checkpoint(name, path)
        print(f'\n(wrote a random float32 {name} checkpoint in {time.perf_counter() - t0:.0f} s: {path})')
    r = run_worker(args, 'load', name, path)
    if 'error' in r:
        print(f"\nload {name} int8 failed: {r['error']}")
        return
    limit = 1.3 * r['int8_mib'] + 1024
    print(f"\n## loading {name} with quantize='int8' from the float32 file ({os.path.getsize(path) / 2 ** 30:.1f} GiB)\n")
    print('| load (s) | int8 model (MiB) | peak RSS (MiB) | target: 1.3 x int8 + 1 GiB (MiB) | met |')
    print('|---|---|---|---|---|')
    print(f"| {r['load_s']:.1f} | {r['int8_mib']:.0f} | {r['peak_rss_mb']:.0f} | {limit:.0f} | "
          f"{'yes' if r['peak_rss_mb'] <= limit else 'NO'} |")


# ----------------------------------------------------------------------------- the original package
def part_original(args, image_seconds) -> None:
    import vs_original as vs

    py = vs.ensure_venv(args.original_venv)
    ns = argparse.Namespace(steps=256, seed=0, warmup=2, threads=args.threads, repeats=1)
    os.makedirs(args.tmp, exist_ok=True)
    r = vs.Bench(ns, py, args.tmp).decode('350M', 1, 'early')
    orig = r['orig']['prefill_s'] + sum(r['orig']['step_s'])
    print('\n## one whole 350M image at bs=1: the original package (bench/vs_original.py worker) vs ours\n')
    print('| | seconds | original / this |')
    print('|---|---|---|')
    print(f'| original rudolph 0.0.1rc10 (prefill + 256 steps) | {orig:.1f} | 1.00x |')
    for name, seconds in (image_seconds or {}).items():
        print(f'| ours {name}, generate_codebooks | {seconds:.1f} | {orig / seconds:.2f}x |')


# ----------------------------------------------------------------------------- fine-tuning step
def worker_train(precision: str, steps: int, tmp: str) -> dict:
    from rudolph.demo import load_bundle
    from rudolph.demo import shapes as S
    from rudolph.finetune import TrainConfig, prepare_dataset, train

    bundle = load_bundle()
    folder = os.path.join(tmp, 'train-images')
    os.makedirs(folder, exist_ok=True)
    rows = []
    for i, sample in enumerate(S.make_samples(32, seed=99)):
        path = os.path.join(folder, f'{i}.png')
        sample.image.save(path)
        rows.append({'image': path, 'right_text': S.caption(sample), 'task': 'i2t' if i % 2 else 't2i',
                     **({'left_text': S.caption(sample)} if not i % 2 else {})})
    data = prepare_dataset(rows, bundle.tokenizer, bundle.vae, bundle.model, show_progress=False,
                           cache_dir=os.path.join(tmp, 'codes'))
    config = TrainConfig(out_dir=os.path.join(tmp, f'train-{precision}'), max_steps=2, batch_size=8, lr=1e-4,
                         precision=precision, cpu=True, show_progress=False, save_final=False)
    train(bundle.model, data, config)  # warm-up (and accelerate's set-up)
    config = TrainConfig(**{**config.__dict__, 'max_steps': steps,
                            'out_dir': os.path.join(tmp, f'train-{precision}-2')})
    t0 = time.perf_counter()
    result = train(bundle.model, data, config)
    return {'step_s': (time.perf_counter() - t0) / steps, 'loss': result.history[-1]['loss']}


def part_train(args) -> None:
    print(f'\n## fine-tuning tiny-shapes (batch 8, {args.train_steps} steps, CPU)\n')
    print('| precision | seconds per step | vs fp32 | last loss |')
    print('|---|---|---|---|')
    ref = None
    for precision in ('fp32', 'bf16'):
        r = run_worker(args, 'train', precision, str(args.train_steps), args.tmp)
        if 'error' in r:
            print(f"| {precision} | failed: {r['error']} | | |")
            continue
        ref = ref or r['step_s']
        print(f"| {precision} | {r['step_s']:.3f} | {ref / r['step_s']:.2f}x | {r['loss']:.3f} |")


# ----------------------------------------------------------------------------- main
WORKERS = {'big': lambda a: worker_big(a[0], a[1], (1, 8), int(a[2])), 'load': lambda a: worker_load(a[0], a[1]),
           'train': lambda a: worker_train(a[0], int(a[1]), a[2])}
DEFAULT_PARTS = 'kernels,decode,tasks,image,big,train'


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--model', default='350M')
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--steps', type=int, default=16, help='decode steps per measurement')
    parser.add_argument('--bs', type=int, nargs='+', default=[1, 8, 32])
    parser.add_argument('--big-steps', type=int, default=6)
    parser.add_argument('--train-steps', type=int, default=10)
    parser.add_argument('--parts', default=DEFAULT_PARTS, help=f'default {DEFAULT_PARTS}; also load, original')
    parser.add_argument('--tmp', default='/tmp/rudolph-bench')
    parser.add_argument('--checkpoint-2.7b', dest='checkpoint_27b', default=None)
    parser.add_argument('--make-checkpoint', action='store_true')
    parser.add_argument('--load-model', default='2.7B', help='config of the load part (default 2.7B)')
    parser.add_argument('--original-venv', default=os.path.join(HERE, '.venv-original'))
    parser.add_argument('--formats', default=','.join(NAMES), help=f'default {",".join(NAMES)}')
    parser.add_argument('--max-load', type=float, default=IDLE_LOAD,
                        help=f'refuse to time when the 1-minute load average is above this (default {IDLE_LOAD})')
    parser.add_argument('--busy', action='store_true', help='time anyway on a busy machine (the tables say so)')
    parser.add_argument('--_worker', nargs='+', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args._worker:
        print(json.dumps(WORKERS[args._worker[0]](args._worker[1:])))
        return
    check_idle(args)
    parts = args.parts.split(',')
    print(f'# bench/precision.py: torch {torch.__version__}, {torch.backends.cpu.get_cpu_capability()}, '
          f'{args.threads} threads, load average {os.getloadavg()[0]:.1f}, {time.strftime("%Y-%m-%d %H:%M")}')
    if 'kernels' in parts:
        part_kernels(args)
    names = tuple(args.formats.split(','))
    models = same_weight_models(args.model, names) if {'decode', 'tasks', 'image'} & set(parts) else None
    if 'decode' in parts:
        part_decode(args, models)
    if 'tasks' in parts:
        part_tasks(args, models)
    image = part_image(args, models) if 'image' in parts else None
    del models
    for name, fn in (('big', part_big), ('train', part_train), ('load', part_load)):
        if name in parts:
            fn(args)
    if 'original' in parts:
        part_original(args, image)
    print(f'\n(peak RSS of this process: {peak_rss_mb():.0f} MB; load average at the end {os.getloadavg()[0]:.1f})')


if __name__ == '__main__':
    main()
