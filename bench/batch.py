"""Dataset-scale jobs: the batched tasks of ``rudolph.batched`` against a per-input loop, same run.

Jobs (issue 14's targets): captioning ``--captions`` different pictures, one caption each,
batched at ``--bs`` vs looping ``pipelines.generate_captions`` per picture; zero-shot over
``--zs-images`` pictures x ``--zs-classes`` classes vs looping ``tasks.zero_shot``; text-to-image
for ``--t2i`` different prompts, one image each, vs looping ``tasks.text_to_image``; image
embeddings vs looping ``tasks.image_embedding``. Both sides use the same sampling and lengths.
Models: ``350M`` (random weights, a BPE trained on the spot, a random full-size VQGAN: no
download; the cost does not depend on the weights' values) and ``tiny-shapes`` (packaged).

Usage: python bench/batch.py [--models 350M tiny-shapes] [--threads 2] [--bs 16] [--captions 64]
       [--zs-images 100] [--zs-classes 10] [--t2i 32] [--embed 64] [--jobs caption zero-shot t2i embed]
Small counts (e.g. --captions 4 --zs-images 4 --t2i 2 --embed 4) check that it runs.
"""
import argparse
import os
import time
from typing import Callable, List, Tuple

import numpy as np
import torch
from PIL import Image

from rudolph import batched, pipelines, tasks
from rudolph.tasks import SamplingConfig

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


def load(name: str, tmp: str):
    """``(parts, pictures, classes, prompts)`` of a model: random 350M-size weights, or tiny-shapes."""
    if name == 'tiny-shapes':
        from rudolph.demo import load_bundle
        from rudolph.demo.shapes import render
        bundle = load_bundle()
        shapes = ['circle', 'square', 'triangle', 'star', 'ring', 'cross']
        colours = ['red', 'blue', 'green', 'yellow']
        pictures = [render(shapes[i % 6], colours[(i // 6) % 4], ['big', 'small'][(i // 24) % 2], 'centre', 'white')
                    for i in range(200)]
        return (tasks.Parts.of(bundle.model, bundle.tokenizer, bundle.vae, progress=False), pictures, TINY_CLASSES,
                TINY_PROMPTS)
    from rudolph.model import get_rudolph_model
    from rudolph.tokenizer import get_tokenizer, train_bpe
    from rudolph.vae import get_vae
    os.makedirs(tmp, exist_ok=True)
    bpe_path = os.path.join(tmp, 'bench-bpe.model')
    train_bpe((PROMPTS + ['на картинке'] + CLASSES) * 20, 400, bpe_path)
    model = get_rudolph_model(name, pretrained=False)
    px = model.image_tokens_per_dim * 8
    rng = np.random.default_rng(0)
    pictures = [Image.fromarray(rng.integers(0, 255, (px, px, 3), dtype=np.uint8)) for _ in range(200)]
    parts = tasks.Parts.of(model, get_tokenizer(bpe_path), get_vae(pretrained=False).eval(), progress=False)
    return parts, pictures, CLASSES, PROMPTS


def caption_job(parts, pictures, n: int, bs: int) -> Tuple[float, float]:
    items = [(f'{i}.png', pictures[i % len(pictures)]) for i in range(n)]
    loop, _ = timed(lambda: [pipelines.generate_captions(img, parts.tokenizer, parts.model, parts.vae, captions_num=1,
                                                         bs=1, seed=i, progress=False)
                             for i, (_, img) in enumerate(items)])
    together, _ = timed(lambda: list(batched.caption_images(parts, items, bs=bs, sampling=CAPTION_SAMPLING)))
    return loop, together


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


def processes_row(args) -> None:
    """TODO(jobs layer): time the same job on ``--processes`` processes (``accelerate launch -m rudolph caption
    ... --out f.jsonl``) against one; filled in by the jobs helper once that CLI exists."""
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--models', nargs='+', default=['350M', 'tiny-shapes'])
    parser.add_argument('--jobs', nargs='+', default=['caption', 'zero-shot', 't2i', 'embed'])
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--bs', type=int, default=16)
    parser.add_argument('--captions', type=int, default=64)
    parser.add_argument('--zs-images', type=int, default=100)
    parser.add_argument('--zs-classes', type=int, default=10)
    parser.add_argument('--t2i', type=int, default=32)
    parser.add_argument('--embed', type=int, default=64)
    parser.add_argument('--processes', type=int, default=1,
                        help='TODO: also time N processes vs 1 (the jobs layer fills this in; not measured yet)')
    parser.add_argument('--tmp', default='/tmp/rudolph-bench')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f'\n## batched jobs vs a per-input loop (CPU, float32, {args.threads} threads, bs={args.bs})\n')
    print('| model | job | loop s | batched s | loop items/s | batched items/s | speed-up |')
    print('|---|---|---|---|---|---|---|', flush=True)
    for name in args.models:
        parts, pictures, classes, prompts = load(name, args.tmp)
        classes = classes[:args.zs_classes]
        jobs = {
            'caption': (f'captioning, {args.captions} pictures, 1 caption each', args.captions,
                        lambda: caption_job(parts, pictures, args.captions, args.bs)),
            'zero-shot': (f'zero-shot, {args.zs_images} pictures x {len(classes)} classes', args.zs_images,
                          lambda: zero_shot_job(parts, pictures, args.zs_images, classes, args.bs)),
            't2i': (f'text-to-image, {args.t2i} prompts, 1 image each', args.t2i,
                    lambda: t2i_job(parts, prompts, args.t2i, args.bs)),
            'embed': (f'image embeddings, {args.embed} pictures', args.embed,
                      lambda: embed_job(parts, pictures, args.embed, args.bs)),
        }
        for job in args.jobs:  # each row as soon as it is measured
            what, n, run = jobs[job]
            loop, together = run()
            print(f'| {name} | {what} | {loop:.2f} | {together:.2f} | {n / loop:.2f} | {n / together:.2f} | '
                  f'{loop / together:.1f}x |', flush=True)
    if args.processes > 1:
        processes_row(args)
        print(f'\n{args.processes} processes vs 1: not measured (TODO: the jobs layer\'s accelerate launch)')

if __name__ == '__main__':
    main()
