"""Every int8 matmul torch offers on this CPU, streamed over a whole model's linear layers.

Issue 13's bs=1 target (int8 decode 2.5x faster than fp32) needs an int8 kernel that reads a
model's weights much faster than fp32 ``F.linear`` does. This script times one pass over all
linear layers of the transformer (each weight distinct, so nothing stays in cache: what a decode
step pays) per kernel and rows in the call:

- ``fp32`` / ``bf16``: ``F.linear`` in that dtype; ``fp32 ours`` / ``bf16 ours``: the model's own
  ``rudolph.model.transformer.linear`` (weight-first GEMM at few rows, ``addmv`` for one bf16 row);
- ``int8 wo``: ``torch._weight_int8pack_mm`` (int8 weights, bf16 activations): ``quantize='int8'``;
- ``fbgemm w8a8``: ``torch.ops.quantized.linear_dynamic`` (int8 weights and dynamically quantised
  int8 activations, VNNI); its weights need quantised tensors, which torch deprecates;
- ``onednn w8a8``: ``torch.ops.onednn.qlinear_pointwise`` with the activation quantised per call;
- ``_int_mm``: ``torch._int_mm`` (int8 x int8 -> int32, at least 17 rows), activations
  quantised per row, scales applied after;
- ``compiled wo``: ``torch.compile`` (inductor, default mode) of ``F.linear(x, w.to(bf16)) * scale``;
- ``int8 read``: a sum over every int8 weight read as int64 words: the memory-traffic floor.

Usage: python bench/int8_kernels.py [--model 350M] [--threads 2] [--rows 1 8 32] [--compile]
"""
import argparse
import warnings

import torch
import torch.nn.functional as F
from precision import median_ms  # bench/precision.py (this folder is on the path)

from rudolph.model import MODELS
from rudolph.model.transformer import linear


def model_layers(name: str) -> list:
    """Per linear layer of the transformer: float weight, int8 weight and per-channel scale."""
    params = MODELS[name]['model_params']
    h, n = params['hidden_size'], params['num_layers']
    layers = []
    for out_f, in_f in [(3 * h, h), (h, h), (4 * h, h), (h, 4 * h)] * n:
        w = torch.randn(out_f, in_f) * 0.02
        scale = w.abs().amax(1) / 127
        layers.append({'w': w, 'b': torch.randn(out_f) * 0.01, 'q': (w / scale[:, None]).round().to(torch.int8),
                       'scale': scale})
    return layers


def quantise_rows(x: torch.Tensor):
    scale = x.abs().amax(1, keepdim=True).clamp_min(1e-8) / 127
    return (x / scale).round().to(torch.int8), scale


def kernels(layers: list, compile_wo: bool) -> dict:
    """Name -> function(layer, x_fp32, x_bf16) of each kernel (some set up per layer first)."""
    for d in layers:
        d['wb'], d['bb'], d['sb'] = d['w'].bfloat16(), d['b'].bfloat16(), d['scale'].bfloat16()
        d['pk'] = torch.ops.onednn.qlinear_prepack(d['q'], None)
        with warnings.catch_warnings():  # quantised tensors are deprecated: this is what the row measures
            warnings.simplefilter('ignore')
            torch.backends.quantized.engine = 'x86'
            qw = torch.quantize_per_channel(d['w'], d['scale'].double(), torch.zeros(len(d['w']), dtype=torch.long),
                                            0, torch.qint8)
            d['fbgemm'] = torch.ops.quantized.linear_prepack(qw, d['b'])

    def onednn(d, x, _):
        scale = x.abs().amax().clamp_min(1e-8) / 127
        xq = (x / scale).round().add_(128).to(torch.uint8)
        return torch.ops.onednn.qlinear_pointwise.tensor(xq, scale, torch.tensor(128), d['pk'], d['scale'],
                                                         torch.zeros(len(d['w']), dtype=torch.long), d['b'], 1.0, 0,
                                                         torch.float32, 'none', [], '')

    def int_mm(d, x, _):
        xq, scale = quantise_rows(x)
        rows = len(x)
        y = torch._int_mm(F.pad(xq, (0, 0, 0, max(0, 17 - rows))), d['q'].t())[:rows]
        return y * scale * d['scale'] + d['b']

    out = {
        'fp32': lambda d, x, xb: F.linear(x, d['w'], d['b']),
        'bf16': lambda d, x, xb: F.linear(xb, d['wb'], d['bb']),
        'fp32 ours': lambda d, x, xb: linear(x, d['w'], d['b']),
        'bf16 ours': lambda d, x, xb: linear(xb, d['wb'], d['bb']),
        'int8 wo': lambda d, x, xb: torch._weight_int8pack_mm(xb, d['q'], d['sb']) + d['bb'],
        'fbgemm w8a8': lambda d, x, xb: torch.ops.quantized.linear_dynamic(x, d['fbgemm'], True),
        'onednn w8a8': onednn,
        '_int_mm': int_mm,
    }
    if compile_wo:
        step = torch.compile(lambda x, q, s: F.linear(x, q.to(x.dtype)) * s, dynamic=False)
        out['compiled wo'] = lambda d, x, xb: step(xb, d['q'], d['sb'])
    return out


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--model', default='350M')
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--rows', type=int, nargs='+', default=[1, 8, 32])
    parser.add_argument('--compile', action='store_true', help='also time the inductor-compiled weight-only kernel')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    layers = model_layers(args.model)
    table = kernels(layers, args.compile)
    mib = sum(d['q'].numel() for d in layers) / 2 ** 20
    print(f'\n## {args.model}: one pass over its {len(layers)} transformer linear layers ({mib:.0f} MiB int8, '
          f'{4 * mib:.0f} MiB fp32), {args.threads} threads, median ms\n')
    print('| rows | ' + ' | '.join(table) + ' | int8 read |')
    print('|---' * (len(table) + 2) + '|')
    for rows in args.rows:
        xs = {n: torch.randn(rows, n) for n in {d['w'].shape[1] for d in layers}}
        xbs = {n: x.bfloat16() for n, x in xs.items()}
        cells = [median_ms(lambda: [fn(d, xs[d['w'].shape[1]], xbs[d['w'].shape[1]]) for d in layers])
                 for fn in table.values()]
        cells.append(median_ms(lambda: [d['q'].view(torch.int64).sum() for d in layers]))
        print(f'| {rows} | ' + ' | '.join(f'{c:.1f}' for c in cells) + ' |', flush=True)


if __name__ == '__main__':
    main()
