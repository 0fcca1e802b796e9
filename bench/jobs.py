"""Dataset jobs end to end (``rudolph caption/vqa/classify/embed/text2image`` on tiny-shapes pictures).

Prints one markdown table: items/s of each job on one process, and of captioning on two
processes under ``accelerate launch --cpu`` next to one process (on a 2-core machine expect no
gain: the point is that the merged output is byte-identical, which the last column checks).
Every run is a fresh ``python -m rudolph`` process, so the times include loading the model.

Usage: python bench/jobs.py [--pictures 32] [--bs 8] [--workers 1] [--generations 4] [--out DIR]
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time
from typing import List, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ['--model', 'tiny-shapes', '--quiet', '--seed', '0']


def _run(argv: List[str], processes: int = 1) -> float:
    """Seconds of one command (``processes`` > 1: under ``accelerate launch --cpu``)."""
    launch = [sys.executable, '-m', 'rudolph']
    if processes > 1:
        launch = [sys.executable, '-m', 'accelerate.commands.launch', '--num_processes', str(processes),
                  '--num_machines', '1', '--mixed_precision', 'no', '--dynamo_backend', 'no', '--cpu', '-m',
                  'rudolph']
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''), HF_HUB_OFFLINE='1')
    start = time.perf_counter()
    done = subprocess.run(launch + argv + TINY, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f'{" ".join(argv)} failed:\n{done.stderr}')
    return time.perf_counter() - start


def _row(name: str, n: int, seconds: float, note: str = '') -> str:
    return f'| {name} | {n} | {seconds:.1f} | {n / seconds:.2f} | {note} |'


def main(argv: Optional[List[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--pictures', type=int, default=32)
    p.add_argument('--bs', type=int, default=8)
    p.add_argument('--workers', type=int, default=1)
    p.add_argument('--generations', type=int, default=4, help='captions / codebooks sampled per input')
    p.add_argument('--out', default=None, help='working folder (default: a temporary one)')
    args = p.parse_args(argv)
    sys.path.insert(0, ROOT)
    from rudolph.demo.shapes import write_imagefolder

    work = args.out or tempfile.mkdtemp(prefix='bench-jobs-')
    pictures = os.path.join(work, 'pictures')
    write_imagefolder(pictures, args.pictures, by='shape', seed=20240)
    with open(os.path.join(work, 'prompts.txt'), 'w', encoding='utf-8') as f:
        f.write('синий круг\nкрасный квадрат\nзеленая звезда\nжелтый крест\n' * max(1, args.pictures // 16))
    prompts = sum(1 for _ in open(os.path.join(work, 'prompts.txt'), encoding='utf-8'))
    n, common = args.pictures, ['--bs', str(args.bs), '--overwrite']
    loader = ['--workers', str(args.workers)]
    out = lambda name: os.path.join(work, name)  # noqa: E731
    caption = ['caption', pictures, '--generations-num', str(args.generations)] + common + loader
    rows = [
        _row('caption', n, _run(caption + ['--out', out('c1.jsonl')])),
        _row('vqa', n, _run(['vqa', pictures, '--question', 'какого цвета фигура?', '--out', out('v.jsonl')]
                            + common + loader)),
        _row('classify, 6 classes', n, _run(['classify', pictures, '--classes', 'круг', 'квадрат', 'треугольник',
                                            'звезда', 'кольцо', 'крест', '--template', 'форма фигуры: {}',
                                            '--out', out('k.csv')] + common + loader)),
        _row('embed', n, _run(['embed', pictures, '--out', out('f.npy')] + common + loader)),
        _row('text2image, 1 of 2 codebooks', prompts,
             _run(['text2image', '--prompts', out('prompts.txt'), '-o', out('t2i'), '-n', '1', '--codebooks-num',
                   '2'] + common)),
    ]
    two = _run(caption + ['--out', out('c2.jsonl')], processes=2)
    same = open(out('c1.jsonl'), 'rb').read() == open(out('c2.jsonl'), 'rb').read()
    rows.append(_row('caption, 2 processes (accelerate --cpu)', n, two, f'byte-identical to 1 process: {same}'))
    print(f'pictures {n}, bs {args.bs}, workers {args.workers}, generations {args.generations}; '
          'times include starting Python and loading the model\n')
    print('| job | inputs | seconds | items/s | note |\n|---|---|---|---|---|')
    print('\n'.join(rows))


if __name__ == '__main__':
    main()
