"""Decode-loop benchmark of the 350M config (random weights): per-token latency, prefill, memory.

Prints one table per device/dtype:
- image generation at several batch sizes (left-text prefill, then one image token per step),
- captioning (text + image prefix shared across the batch, then right-text tokens),
- text generation (left text, token by token),
- prefill times, peak RSS (CPU) or peak CUDA memory,
- the weight-streaming floor per dtype: one pass of every linear layer over a single token's
  activations in the dtype actually used (int8 weights through the int8 kernel for ``int8``),
  the cost no decoder can avoid at bs=1, its bytes, and the decode step's ratio to it.

Usage: python bench/decode.py [--model 350M] [--threads 2] [--steps 32] [--bs 1 8 32] [--device cpu|cuda]
                              [--dtypes fp32 bf16 int8]   (int8: int8 weights, bf16 activations on CPU)
"""
import argparse
import resource
import statistics
import time
from typing import Callable, List

import torch

from rudolph.model import get_rudolph_model
from rudolph.model.quant import QUANTIZED_LAYERS

#: --dtypes values: (dtype, quantize) for get_rudolph_model
PRECISIONS = {'fp32': ('float32', None), 'bf16': ('bfloat16', None), 'fp16': ('float16', None),
              'int8': (None, 'int8')}


def sync(device: torch.device):
    if device.type == 'cuda':
        torch.cuda.synchronize()


def timed(fn: Callable[[], object], device: torch.device, repeat: int = 3) -> float:
    """Median wall time of ``fn`` in seconds."""
    times = []
    for _ in range(repeat):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_memory_mb(device: torch.device) -> float:
    if device.type == 'cuda':
        return torch.cuda.max_memory_allocated() / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def linear_layers(model) -> list:
    """Every linear layer of the model (float ``nn.Linear`` or a layer of a ``quantize=`` format)."""
    return [m for m in model.modules() if isinstance(m, (torch.nn.Linear, *QUANTIZED_LAYERS))]


def weight_bytes(model) -> int:
    """Bytes of the linear layers' weights in the dtype they are stored in (int8: weights + scales)."""
    return sum(t.numel() * t.element_size() for m in linear_layers(model) for t in m.state_dict().values())


@torch.no_grad()
def weight_floor(model, device: torch.device) -> float:
    """One matmul per linear layer with a single token, in the model's dtype: every weight read once
    by the layer's own forward (the kernel :func:`rudolph.model.quant.pick_kernel` picks at one row)."""
    linears = linear_layers(model)
    xs = {m: torch.randn(1, m.in_features, device=device, dtype=model.dtype) for m in linears}

    def run():
        for m in linears:
            m(xs[m])
    run()
    return timed(run, device, repeat=5)


@torch.no_grad()
def read_floor(model, device: torch.device) -> float:
    """Seconds to read every linear layer's stored weights once (a sum over them as 64-bit words): the
    memory-traffic floor of a decode step in the model's weight format, whatever the kernel."""
    words = [t.reshape(-1).view(torch.int64) for m in linear_layers(model) for t in m.state_dict().values()
             if (t.numel() * t.element_size()) % 8 == 0]

    def run():
        for w in words:
            w.sum()
    run()
    return timed(run, device, repeat=5)


@torch.no_grad()
def decode_loop(model, prefix: torch.Tensor, bs: int, steps: int, vocab: slice, offset: int,
                generator: torch.Generator) -> dict:
    """Prefill ``prefix`` once (batch 1), broadcast, then ``steps`` sampled tokens; returns timings."""
    device = prefix.device
    prefix_cache = model.new_cache(1)
    sync(device)
    t0 = time.perf_counter()
    h, _ = model.hidden(prefix, 0, prefix_cache)
    cache = model.new_cache(bs).expand_from(prefix_cache)
    logits = model.logits(h[:, -1], vocab).expand(bs, -1)
    sync(device)
    prefill = time.perf_counter() - t0
    pos = prefix.shape[1]
    step_times: List[float] = []
    for _ in range(steps):
        sync(device)
        t0 = time.perf_counter()
        probs = torch.softmax(logits.float(), dim=-1)
        tokens = torch.multinomial(probs, 1, generator=generator) + offset
        h, _ = model.hidden(tokens, pos, cache)
        logits = model.logits(h[:, -1], vocab)
        sync(device)
        step_times.append(time.perf_counter() - t0)
        pos += 1
    step = statistics.median(step_times[2:] or step_times)
    return {'prefill_s': prefill, 'step_ms': step * 1e3, 'tok_s': bs / step}


def run_precision(args, device: torch.device, name: str) -> None:
    """Build the model in precision ``name`` and print its table."""
    dtype, quantize = PRECISIONS[name]
    torch.manual_seed(0)
    t0 = time.perf_counter()
    model = get_rudolph_model(args.model, pretrained=False, device=device, dtype=dtype, quantize=quantize)
    build = time.perf_counter() - t0
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats()
    lay = model.config
    L, N2, R = lay.L, lay.N2, lay.R
    text_ids = lay.V - lay.L  # plain text ids (the last L are the left-pad tokens)
    g = torch.Generator(device=device).manual_seed(0)
    text = torch.randint(4, text_ids, (1, L), device=device, generator=g)
    image = torch.randint(0, lay.image_vocab, (1, N2), device=device, generator=g)
    steps = min(args.steps, R - 1)
    text_vocab = lay.text_sample_slice

    floor = weight_floor(model, device)
    rows = []
    for bs in args.bs:
        r = decode_loop(model, text, bs, min(args.steps, N2 - 1), lay.image_slice, 0, g)
        rows.append((f'image generation bs={bs}', r))
    for bs in args.bs:
        prefix = torch.cat([text, image], dim=1)
        r = decode_loop(model, prefix, bs, steps, text_vocab, 0, g)
        rows.append((f'captioning bs={bs}', r))
    r = decode_loop(model, text[:, :min(8, L - 2)], 1, max(1, min(args.steps, L - 9)), text_vocab, 0, g)
    rows.append(('text generation bs=1', r))
    full = torch.cat([text, image, torch.randint(4, text_ids, (1, R), device=device, generator=g)], dim=1)
    with torch.no_grad():
        full_prefill = timed(lambda: model.hidden(full.expand(8, -1)), device, repeat=1)

    print(f'\n## {args.model} on {device.type} ({name}: {model.dtype}{", int8 weights" if quantize else ""}, '
          f'{args.threads} CPU threads), built (random init) in {build:.1f} s\n')
    print('| task | prefill (s) | decode step (ms) | tokens/s | step / floor |')
    print('|---|---|---|---|---|')
    for label, r in rows:
        print(f"| {label} | {r['prefill_s']:.3f} | {r['step_ms']:.1f} | {r['tok_s']:.1f} | "
              f"{r['step_ms'] / 1e3 / floor:.2f} |")
    print(f'\nweight-streaming floor ({name}: every linear layer once, 1 token, {weight_bytes(model) / 2 ** 20:.0f} '
          f'MiB of weights): {floor * 1e3:.1f} ms')
    print(f'full-sequence forward (scoring), bs=8 x {full.shape[1]} tokens: {full_prefill:.3f} s')
    print(f'peak memory: {peak_memory_mb(device):.0f} MB ({"CUDA allocated" if device.type == "cuda" else "RSS"})')


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--model', default='350M')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--dtypes', nargs='+', choices=sorted(PRECISIONS), default=None,
                        help='precisions to measure (default: fp32 on CPU, fp16 and bf16 on CUDA)')
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--steps', type=int, default=32)
    parser.add_argument('--bs', type=int, nargs='+', default=[1, 8, 32])
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    for name in args.dtypes or (['fp32'] if device.type == 'cpu' else ['fp16', 'bf16']):
        run_precision(args, device, name)


if __name__ == '__main__':
    main()
