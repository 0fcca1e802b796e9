"""Checkpoint loading cost: wall time and peak RSS of ``get_rudolph_model`` against the file size.

Writes a random-weight checkpoint of the chosen config once (to --dir), then loads it in a
fresh subprocess per mode so that peak RSS is measured from a clean interpreter:
- ``ours``: meta-device build + memory-mapped ``torch.load`` + ``assign`` (no random init),
- ``naive``: the textbook way (random-init build, ``torch.load`` into RAM, ``load_state_dict``).
Target: peak RSS within 1.3x the checkpoint size (over the interpreter's baseline) and a
load time bounded by reading the file.

Usage: python bench/loading.py [--model 350M] [--dir /tmp/rudolph-bench]
"""
import argparse
import json
import os
import subprocess
import sys
import time

CHILD = r'''
import json, sys, time
import torch


def vm_hwm_mb():
    # VmHWM is per address space and starts fresh at exec (ru_maxrss can carry the parent's peak).
    with open('/proc/self/status') as f:
        return next(int(line.split()[1]) for line in f if line.startswith('VmHWM')) / 1024

torch.set_num_threads(2)
from rudolph.model import MODELS, get_rudolph_model, ruDolphModel
mode, name, path = sys.argv[1:4]
base = vm_hwm_mb()
start = time.perf_counter()
if mode == 'ours':
    model = get_rudolph_model(name, checkpoint_path=path)
else:
    model = ruDolphModel(device='cpu', **MODELS[name]['model_params'])
    model.load_state_dict(torch.load(path, map_location='cpu', weights_only=True))
    model.eval()
elapsed = time.perf_counter() - start
# touch every weight once, as the first forward pass would (memory-mapped pages are read here)
total = sum(float(p.float().sum()) for p in model.parameters())
touched = time.perf_counter() - start
print(json.dumps({'seconds': elapsed, 'touched': touched, 'peak_mb': vm_hwm_mb(), 'base_mb': base}))
'''


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--model', default='350M')
    parser.add_argument('--dir', default='/tmp/rudolph-bench')
    args = parser.parse_args()

    os.makedirs(args.dir, exist_ok=True)
    path = os.path.join(args.dir, f'{args.model}-random.bin')
    if not os.path.exists(path):
        import torch

        from rudolph.model import get_rudolph_model
        torch.save(get_rudolph_model(args.model, pretrained=False).state_dict(), path)
    size_mb = os.path.getsize(path) / 2 ** 20
    # the first read warms the page cache (both modes start from it); the second is the reference
    reads = []
    for _ in range(2):
        with open(path, 'rb') as f:
            started = time.perf_counter()
            while f.read(1 << 24):
                pass
            reads.append(time.perf_counter() - started)
    read_s = reads[-1]

    print(f'## loading {args.model}: checkpoint {size_mb:.0f} MB, warm sequential read {read_s:.2f} s\n')
    print('| mode | load (s) | load / read | load + first touch of every weight (s) | / read | peak RSS (MB) '
          '| interpreter baseline (MB) | (peak - baseline) / checkpoint |')
    print('|---|---|---|---|---|---|---|---|')
    for mode in ('ours', 'naive'):
        out = subprocess.run([sys.executable, '-c', CHILD, mode, args.model, path],
                             check=True, capture_output=True, text=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        print(f"| {mode} | {r['seconds']:.2f} | {r['seconds'] / read_s:.2f} | {r['touched']:.2f} | "
              f"{r['touched'] / read_s:.2f} | {r['peak_mb']:.0f} | {r['base_mb']:.0f} | "
              f"{(r['peak_mb'] - r['base_mb']) / size_mb:.2f} |")


if __name__ == '__main__':
    main()
