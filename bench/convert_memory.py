"""Peak memory of ``rudolph convert`` on a published-layout checkpoint (random weights): prints a table.

    python bench/convert_memory.py                      # the 350M config, float32 (as torch.save writes it)
    python bench/convert_memory.py --model 350M --dtype float16 --dir /tmp/bench-convert

A checkpoint with random weights in the published layout (every key of the model's state dict,
mask buffers included) is written once; then ``rudolph.pretrained.publish.convert`` runs in a fresh
process that samples its own ``/proc/self/status`` every 5 ms. ``RssAnon`` is memory the process
owns (a copy of the weights would show here); ``RssFile`` is pages of the memory-mapped checkpoint
and of the written file that the kernel may drop at any time (page cache). Linux only.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

CHILD = r'''
import json, sys, threading, time
peak = {}
def sample():
    while True:
        with open('/proc/self/status') as f:
            for line in f:
                key, _, value = line.partition(':')
                if key in ('VmRSS', 'RssAnon', 'RssFile', 'VmHWM'):
                    peak[key] = max(peak.get(key, 0), int(value.split()[0]))
        time.sleep(0.005)
threading.Thread(target=sample, daemon=True).start()
import torch
torch.set_num_threads(int(sys.argv[4]))
from rudolph.pretrained.publish import convert
time.sleep(0.05)
base = dict(peak)
t0 = time.perf_counter()
convert(sys.argv[1], sys.argv[2], model=sys.argv[3])
seconds = time.perf_counter() - t0
time.sleep(0.05)
print(json.dumps({'base': base, 'peak': peak, 'seconds': seconds}))
'''


def write_checkpoint(path: str, model: str, dtype: str) -> int:
    """A random checkpoint in the published layout of ``model``; returns its size in bytes."""
    import numpy as np
    import torch

    from rudolph.model import MODELS
    from rudolph.model.model import ruDolphModel, skip_init

    with torch.device('meta'), skip_init():
        layout = ruDolphModel(device='cpu', **MODELS[model]['model_params']).state_dict()
    rng = np.random.default_rng(0)
    state = {}
    for key, value in layout.items():
        if value.dtype == torch.bool:
            state[key] = torch.ones(value.shape, dtype=torch.bool)
        else:
            state[key] = torch.from_numpy(rng.standard_normal(value.numel(), dtype=np.float32)).reshape(value.shape)
            state[key] = state[key].to(getattr(torch, dtype))
    torch.save(state, path)
    return os.path.getsize(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--model', default='350M')
    parser.add_argument('--dtype', default='float32', choices=('float32', 'float16', 'bfloat16'))
    parser.add_argument('--dir', default=None, help='work folder (default: a temporary one, removed)')
    parser.add_argument('--threads', type=int, default=2)
    args = parser.parse_args()
    import json

    with tempfile.TemporaryDirectory(dir=args.dir) as work:
        source = os.path.join(work, 'published', 'pytorch_model.bin')
        os.makedirs(os.path.dirname(source))
        t0 = time.perf_counter()
        size = write_checkpoint(source, args.model, args.dtype)
        made = time.perf_counter() - t0
        env = {**os.environ, 'PYTHONPATH': os.pathsep.join([os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                                            os.environ.get('PYTHONPATH', '')])}
        out = subprocess.run([sys.executable, '-c', CHILD, source, os.path.join(work, 'converted'), args.model,
                              str(args.threads)], check=True, capture_output=True, text=True, env=env)
        result = json.loads(out.stdout.strip().splitlines()[-1])
        written = os.path.getsize(os.path.join(work, 'converted', 'model.safetensors'))
    mb = lambda kb: kb / 1024  # noqa: E731
    base, peak = result['base'], result['peak']
    print(f'{args.model} {args.dtype}: checkpoint {size / 2**20:.0f} MiB (written in {made:.1f} s), '
          f'model.safetensors {written / 2**20:.0f} MiB, convert {result["seconds"]:.1f} s\n')
    print('| memory of the converting process | before convert (MiB) | peak (MiB) | peak / checkpoint |')
    print('|---|---|---|---|')
    for key, label in (('RssAnon', 'RssAnon (owned: copies would show here)'),
                       ('RssFile', 'RssFile (mapped file pages, page cache)'), ('VmHWM', 'VmHWM (peak RSS, both)')):
        print(f'| {label} | {mb(base.get(key, 0)):.0f} | {mb(peak[key]):.0f} | {peak[key] * 1024 / size:.2f} |')


if __name__ == '__main__':
    main()
