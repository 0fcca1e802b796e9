"""``rudolph demo`` / ``python -m rudolph.demo``: every task of the embedded tiny-shapes model, offline.

Text-to-image (a grid PNG of the best reranked images per prompt), captioning, VQA,
zero-shot classification and self-reranking on held-out pictures, then the measured
accuracies, each with its sample size and 95% interval: the recorded ones and a fresh
measurement on ``--n`` pictures (default 20), or on the 200 of the README with ``--eval``.
"""
import argparse
import os
import time

from rudolph import demo
from rudolph.cli.options import add_precision, precision_args
from rudolph.demo import T2I_SAMPLING
from rudolph.demo import shapes as S
from rudolph.errors import ConfigError, RudolphError

#: held-out pictures measured by a plain ``rudolph demo`` / by ``--eval``
DEFAULT_N, EVAL_N = 20, 200
#: the count options, each of which must be a positive integer when given
COUNT_OPTIONS = ('n', 'images', 'codebooks', 'threads')

PROMPTS = (
    'большой красный круг слева на белом фоне',
    'маленькая синяя звезда в центре на черном фоне',
    'большой зеленый треугольник снизу на сером фоне',
    'большое желтое кольцо справа на черном фоне',
    'большой фиолетовый квадрат сверху на белом фоне',
    'маленький оранжевый крест в центре на сером фоне',
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument('--eval', action='store_true', help='measure the accuracies on 200 held-out pictures')
    p.add_argument('--n', type=int, default=None,
                   help=f'held-out pictures to measure on (default {DEFAULT_N}, {EVAL_N} with --eval)')
    p.add_argument('--out', default='rudolph_demo', help='folder for the text-to-image grid PNG')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--images', type=int, default=4, help='images per prompt in the grid (best by self-reranking)')
    p.add_argument('--codebooks', type=int, default=8, help='images generated per prompt before reranking')
    p.add_argument('--threads', type=int, default=None, help='torch intra-op threads (default: 1 on <=2 cores)')
    g = p.add_argument_group('precision')
    # float32 by default (bf16 activations with --quantize int8): the recorded accuracies are float32's
    add_precision(g, default=None)


def _grid(rows, size: int = 64):
    from PIL import Image

    cols = max(len(r) for r in rows)
    grid = Image.new('RGB', (cols * size, len(rows) * size), 'white')
    for y, row in enumerate(rows):
        for x, img in enumerate(row):
            grid.paste(img.resize((size, size)), (x * size, y * size))
    return grid


def check_args(args: argparse.Namespace) -> None:
    """Reject counts <= 0 (and more images than codebooks) before anything is loaded."""

    for name in COUNT_OPTIONS:
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise ConfigError(f'--{name} {value}: expected a positive integer')
    if args.images > args.codebooks:
        raise ConfigError(f'--images {args.images} cannot exceed --codebooks {args.codebooks} '
                          '(the images shown are the best of the codebooks generated)')


def run(args: argparse.Namespace) -> int:
    """``rudolph demo``: every task of tiny-shapes, then the accuracies; returns 0."""
    check_args(args)
    import torch

    from rudolph.demo.evaluate import EVAL_SEED, RECORDED, evaluate, format_table, make_api

    threads = args.threads or (1 if (os.cpu_count() or 1) <= 2 else min(4, os.cpu_count()))
    torch.set_num_threads(threads)
    t0 = time.time()

    precision = precision_args(args)
    bundle = demo.load_bundle(dtype='fp16' if precision['fp16'] else precision['dtype'], quantize=precision['quantize'])
    api = make_api(bundle)
    print(f'tiny-shapes RuDOLPH loaded in {time.time() - t0:.1f}s '
          f'({sum(p.numel() for p in bundle.model.parameters()) / 1e6:.1f}M float parameters, {bundle.model.dtype}, '
          'offline)\n')

    # --- text -> image, reranked by the model itself
    print('== text-to-image (best of', args.codebooks, 'by self-reranking of the decoded pictures) ==')
    rows = []
    for i, prompt in enumerate(PROMPTS):
        images, scores = api.dream(prompt, images_num=args.images, codebooks_num=args.codebooks,
                                   seed=args.seed + i, bs=args.codebooks, reencode=True, **T2I_SAMPLING)
        rows.append(images)
        judged = S.check_image(images[0])
        print(f'  {prompt!r}: best ppl_txt={scores[0]["ppl_txt"]:.2f}; pixels say {judged["colour"]} '
              f'{judged["shape"]} on {judged["background"]}')
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, 'text2image.png')
    _grid(rows).save(path)
    print(f'  grid saved to {path} (one row per prompt)\n')

    # --- image -> text on held-out pictures
    print('== captioning, VQA and zero-shot classification on held-out pictures ==')
    samples = S.make_samples(3, seed=EVAL_SEED + 1)
    for k, s in enumerate(samples):
        print(f'  picture {k}: truth = {S.caption(s)!r}')
        caps = api.image_captioning(s.image, r_template='на картинке', captions_num=3, generations_num=8,
                                    seed=args.seed + k, bs=8)
        for c in caps:
            print(f'    caption {c["text"]!r} (score {c["score"]:.3f}, x{c["count"]})')
        for q in (S.VQA_COLOUR, S.VQA_SHAPE, S.VQA_POSITION):
            ans = api.vqa(s.image, q, generations_num=8, seed=args.seed + k, bs=8)
            print(f'    vqa {q!r} -> {ans[0]["answer"] if ans else ""!r}')
        for template, classes in ((S.ZS_COLOUR_TEMPLATE, S.colour_classes()), (S.ZS_SHAPE_TEMPLATE, S.shape_classes())):
            pred = api.zs_clf(s.image, classes, r_template=template, bs=len(classes))
            print(f'    zs_clf {template!r} -> {pred["class"]}')
    print()

    # --- measured quality
    n = args.n or (EVAL_N if args.eval else DEFAULT_N)
    if not args.eval:
        print('== accuracies recorded on 200 held-out pictures (rudolph demo --eval) ==')
        print(format_table(RECORDED))
        print()
    print(f'== accuracies measured now on {n} held-out pictures ==')
    result = evaluate(api, n=n)
    print(format_table(result))
    print(f'\ndemo finished in {time.time() - t0:.0f}s')
    return 0


def main(argv=None) -> int:
    """``python -m rudolph.demo``: errors the user can fix are printed without a traceback (exit 1)."""
    import sys


    parser = argparse.ArgumentParser(prog='python -m rudolph.demo', description=__doc__.split('\n')[0])
    add_arguments(parser)
    try:
        return run(parser.parse_args(argv))
    except RudolphError as error:
        print(f'rudolph demo: error: {error}', file=sys.stderr)
        return 1
