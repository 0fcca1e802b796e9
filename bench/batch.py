"""Dataset-scale jobs: the batched tasks of ``rudolph.tasks.batched`` against a per-input loop, same run.

Jobs (issue 14's targets): captioning ``--captions`` different pictures, one caption each,
at most ``--caption-tokens`` tokens, batched at ``--bs`` vs looping ``pipelines.generate_captions``'
task per picture (``tasks.caption_counts``, with the same length limit); zero-shot over
``--zs-images`` pictures x ``--zs-classes`` classes vs looping ``tasks.zero_shot``; text-to-image
for ``--t2i`` different prompts, one image each, vs looping ``tasks.text_to_image``; image
embeddings vs looping ``tasks.image_embedding``. Both sides use the same sampling and lengths.
Models: ``350M`` (random weights, a BPE trained on the spot, a random full-size VQGAN: no
download; the cost does not depend on the weights' values, except that the random model's text head
is biased so that its captions fill the length limit: see ``writes_whole_captions``) and
``tiny-shapes`` (packaged; its captions end where it writes eos).

Usage: python bench/batch.py [--models 350M tiny-shapes] [--threads 2] [--bs 16] [--captions 64] [--caption-tokens 20]
       [--zs-images 100] [--zs-classes 10] [--t2i 32] [--embed 64] [--jobs caption zero-shot t2i embed]
       [--processes 2 --processes-pictures 32]
Small counts (e.g. --captions 4 --zs-images 4 --t2i 2 --embed 4) check that it runs. ``--processes N``
also runs captioning and zero-shot on tiny-shapes through the CLI on 1 and on N processes
(``accelerate launch --cpu -m rudolph ...``, the jobs layer's multi-process run) and checks that the
merged outputs are byte-identical; ``--models`` with no name runs only that comparison.
"""
import argparse
import os
import time
from typing import Callable, List, Tuple

import numpy as np
import torch
from PIL import Image

from rudolph.tasks import batched
from rudolph.tasks import core as tasks
from rudolph.tasks.core import SamplingConfig
from rudolph.tasks.sequences import EOS_ID, bpe_ids, tokenizer_vocab_limit

CLASSES = ['кошка', 'собака', 'лошадь', 'автомобиль', 'самолёт', 'корабль', 'птица', 'олень', 'лягушка', 'грузовик',
           'дерево', 'дом']
PROMPTS = ['рисунок кота', 'красивый пейзаж с озером', 'собака на траве', 'город ночью']
TINY_CLASSES = ['круг', 'квадрат', 'треугольник', 'звезда', 'кольцо', 'крест', 'красный', 'синий', 'зеленый', 'желтый',
                'белый', 'черный']
TINY_PROMPTS = ['большой красный круг в центре на белом фоне', 'маленькая синяя звезда слева на черном фоне',
                'большой зеленый квадрат справа на сером фоне']
#: generate_captions' own defaults, used on both sides
CAPTION_SAMPLING = SamplingConfig(32, 0.6, 1.0)


def timed(fn: Callable) -> Tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def load(name: str, tmp: str, precision: dict):
    """``(parts, pictures, classes, prompts)`` of a model in ``precision`` (``dtype``/``quantize`` keywords):
    random 350M-size weights, or tiny-shapes."""
    from rudolph.model import get_rudolph_model
    if name == 'tiny-shapes':
        from rudolph.demo import load_bundle
        from rudolph.demo.shapes import render
        bundle = load_bundle()
        model = get_rudolph_model('tiny-shapes', **precision)
        shapes = ['circle', 'square', 'triangle', 'star', 'ring', 'cross']
        colours = ['red', 'blue', 'green', 'yellow']
        pictures = [render(shapes[i % 6], colours[(i // 6) % 4], ['big', 'small'][(i // 24) % 2], 'centre', 'white')
                    for i in range(200)]
        return (tasks.Parts.of(model, bundle.tokenizer, bundle.vae, progress=False), pictures, TINY_CLASSES,
                TINY_PROMPTS)
    from rudolph.tokenizer import get_tokenizer, train_bpe
    from rudolph.vae import get_vae
    os.makedirs(tmp, exist_ok=True)
    bpe_path = os.path.join(tmp, 'bench-bpe.model')
    train_bpe((PROMPTS + ['на картинке'] + CLASSES) * 20, 400, bpe_path)
    model = get_rudolph_model(name, pretrained=False, **precision)
    px = model.image_tokens_per_dim * 8
    rng = np.random.default_rng(0)
    pictures = [Image.fromarray(rng.integers(0, 255, (px, px, 3), dtype=np.uint8)) for _ in range(200)]
    tokenizer = get_tokenizer(bpe_path)
    writes_whole_captions(model, tokenizer_vocab_limit(tokenizer, model.config))
    parts = tasks.Parts.of(model, tokenizer, get_vae(pretrained=False).eval(), progress=False)
    return parts, pictures, CLASSES, PROMPTS


@torch.no_grad()
def writes_whole_captions(model, plain_ids: int) -> None:
    """Make the random model write captions of the whole requested length, as a trained one writes words.

    Untouched, it samples text ids beyond the bench BPE's few ids at once, which end a caption (the
    reference's rule), so every caption would be empty and captioning would time no decoding at all.
    The head's bias rules out those ids and eos; zero-shot and reranking are not affected beyond
    the values of their perplexities.
    """
    bias = model.to_logits[1].bias
    bias[plain_ids:model.config.V] = -30.0
    bias[EOS_ID] = -30.0


def caption_job(parts, pictures, n: int, bs: int, tokens: int) -> Tuple[float, float, float]:
    """Loop and batched seconds, and the mean caption length in tokens, of ``n`` captions of at most
    ``tokens`` tokens. The loop is ``pipelines.generate_captions``'s own task (``tasks.caption_counts``),
    which takes the length limit that the compatibility signature has no argument for."""
    items = [(f'{i}.png', pictures[i % len(pictures)]) for i in range(n)]
    loop, _ = timed(lambda: [tasks.caption_counts(parts, img, 1, CAPTION_SAMPLING, 1, seed=i, early_stop=tokens)
                             for i, (_, img) in enumerate(items)])
    together, out = timed(lambda: list(batched.caption_images(parts, items, bs=bs, sampling=CAPTION_SAMPLING,
                                                              early_stop=tokens)))
    lengths = [len(bpe_ids(parts.tokenizer, row['captions'][0])) if row['captions'] else 0 for _, row in out]
    return loop, together, sum(lengths) / len(lengths)


def zero_shot_job(parts, pictures, n: int, classes: List[str], bs: int) -> Tuple[float, float]:
    items = [(f'{i}.png', pictures[i % len(pictures)]) for i in range(n)]
    loop, _ = timed(lambda: [tasks.zero_shot(parts, img, classes, 'на картинке {}', bs=len(classes))
                             for _, img in items])
    together, _ = timed(lambda: list(batched.classify_images(parts, items, classes, template='на картинке {}',
                                                             bs=bs)))
    return loop, together


def t2i_job(parts, prompts: List[str], n: int, bs: int) -> Tuple[float, float]:
    items = [(f'p{i}', f'{prompts[i % len(prompts)]} {i}') for i in range(n)]
    sampling = batched.recommended_sampling(parts, 'text2image')
    loop, _ = timed(lambda: [tasks.text_to_image(parts, text, 1, sampling, bs=1, seed=i)
                             for i, (_, text) in enumerate(items)])
    together, _ = timed(lambda: list(batched.text2image_prompts(parts, items, bs=bs, sampling=sampling)))
    return loop, together


def embed_job(parts, pictures, n: int, bs: int) -> Tuple[float, float]:
    items = [(f'{i}.png', pictures[i % len(pictures)]) for i in range(n)]
    loop, _ = timed(lambda: [tasks.image_embedding(parts, [img]) for _, img in items])
    together, _ = timed(lambda: list(batched.embed_images(parts, items, bs=bs)))
    return loop, together


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _launch(argv: List[str], processes: int, threads: int) -> dict:
    """``python -m rudolph ARGV --json`` on one process, or under ``accelerate launch --cpu`` (gloo) on
    ``processes``: the job's report (its ``seconds`` start after the model is loaded), plus ``wall`` seconds."""
    import json
    import subprocess
    import sys

    launch = [sys.executable, '-m', 'rudolph']
    if processes > 1:  # the launcher of the jobs layer's 2-process equality test (tests/jobs/test_jobs.py)
        launch = [sys.executable, '-m', 'accelerate.commands.launch', '--num_processes', str(processes),
                  '--num_machines', '1', '--mixed_precision', 'no', '--dynamo_backend', 'no', '--cpu', '-m',
                  'rudolph']
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''), HF_HUB_OFFLINE='1',
               OMP_NUM_THREADS=str(threads), PYTHONWARNINGS='ignore')
    start = time.perf_counter()
    done = subprocess.run(launch + argv + ['--model', 'tiny-shapes', '--quiet', '--json'], env=env,
                          capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f'{" ".join(argv)} on {processes} process(es) failed:\n{done.stderr[-3000:]}')
    return {**json.loads(done.stdout), 'wall': wall}


def processes_row(args) -> None:
    """The same jobs (tiny-shapes: captioning and zero-shot) on 1 and on ``--processes`` processes through the
    CLI, one table: items/s of the job itself and wall seconds (with start-up and model loading), and
    whether the merged output is byte-identical to the one-process file."""
    from rudolph.demo.shapes import write_imagefolder

    work = os.path.join(args.tmp, 'processes')
    pictures = os.path.join(work, 'pictures')
    n = args.processes_pictures
    write_imagefolder(pictures, n, by='shape', seed=20240)
    # each process gets --threads / processes threads, so both runs use the same cores
    threads = max(1, args.threads // args.processes)
    jobs = {'caption': ['caption', pictures, '--generations-num', '1', '--seed', '0'],
            'zero-shot (6 classes)': ['classify', pictures, '--classes', 'круг', 'квадрат', 'треугольник', 'звезда',
                                      'кольцо', 'крест', '--template', 'форма фигуры: {}']}
    print(f'\n## {args.processes} processes vs 1 (accelerate launch --cpu, gloo; tiny-shapes, {n} pictures, '
          f'bs={args.bs}, {args.threads} threads in all)\n')
    print('| job | processes | job s | items/s | wall s (with start-up) | byte-identical to 1 process |')
    print('|---|---|---|---|---|---|', flush=True)
    for name, argv in jobs.items():
        outputs = {}
        for procs in (1, args.processes):
            out = os.path.join(work, f'{name.split()[0]}-{procs}.jsonl')
            common = ['--out', out, '--bs', str(args.bs), '--workers', '0', '--overwrite']
            report = _launch(argv + common, procs, args.threads if procs == 1 else threads)
            with open(out, 'rb') as f:
                outputs[procs] = f.read()
            same = 'yes' if outputs[procs] == outputs[1] else 'NO'
            print(f"| {name} | {procs} | {report['seconds']:.2f} | {report['items_per_s']:.2f} | "
                  f"{report['wall']:.1f} | {same if procs > 1 else '(reference)'} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--models', nargs='*', default=['350M', 'tiny-shapes'])
    parser.add_argument('--jobs', nargs='+', default=['caption', 'zero-shot', 't2i', 'embed'])
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--bs', type=int, default=16)
    parser.add_argument('--captions', type=int, default=64)
    parser.add_argument('--caption-tokens', type=int, default=20,
                        help='caption length limit (early_stop) on both sides; the random 350M model fills it')
    parser.add_argument('--zs-images', type=int, default=100)
    parser.add_argument('--zs-classes', type=int, default=10)
    parser.add_argument('--t2i', type=int, default=32)
    parser.add_argument('--embed', type=int, default=64)
    parser.add_argument('--processes', type=int, default=1,
                        help='also run the jobs on N processes vs 1 through the CLI (accelerate launch --cpu)')
    parser.add_argument('--processes-pictures', type=int, default=32, help='pictures of that comparison')
    parser.add_argument('--tmp', default='/tmp/rudolph-bench')
    parser.add_argument('--dtype', default=None, help='the models\' dtype (get_rudolph_model(dtype=); default float32)')
    parser.add_argument('--quantize', default=None, help='their weight format (get_rudolph_model(quantize=))')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    precision = {'dtype': args.dtype, 'quantize': args.quantize}
    shown = ', '.join(f'{k}={v}' for k, v in precision.items() if v) or 'float32'
    if args.models:
        print(f'\n## batched jobs vs a per-input loop (CPU, {shown}, {args.threads} threads, bs={args.bs}, '
              f'load average {os.getloadavg()[0]:.1f}, {time.strftime("%Y-%m-%d %H:%M")})\n')
        print('| model | job | loop s | batched s | loop items/s | batched items/s | speed-up |')
        print('|---|---|---|---|---|---|---|', flush=True)
    for name in args.models:
        parts, pictures, classes, prompts = load(name, args.tmp, precision)
        classes = classes[:args.zs_classes]
        jobs = {
            'caption': (f'captioning, {args.captions} pictures, 1 caption each', args.captions,
                        lambda: caption_job(parts, pictures, args.captions, args.bs, args.caption_tokens)),
            'zero-shot': (f'zero-shot, {args.zs_images} pictures x {len(classes)} classes', args.zs_images,
                          lambda: zero_shot_job(parts, pictures, args.zs_images, classes, args.bs)),
            't2i': (f'text-to-image, {args.t2i} prompts, 1 image each', args.t2i,
                    lambda: t2i_job(parts, prompts, args.t2i, args.bs)),
            'embed': (f'image embeddings, {args.embed} pictures', args.embed,
                      lambda: embed_job(parts, pictures, args.embed, args.bs)),
        }
        for job in args.jobs:  # each row as soon as it is measured
            what, n, run = jobs[job]
            loop, together, *length = run()
            if length:
                what += f' (mean {length[0]:.1f} tokens)'
            print(f'| {name} | {what} | {loop:.2f} | {together:.2f} | {n / loop:.2f} | {n / together:.2f} | '
                  f'{loop / together:.1f}x |', flush=True)
    if args.processes > 1:
        processes_row(args)


if __name__ == '__main__':
    main()
