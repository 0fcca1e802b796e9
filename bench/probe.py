"""Which linear probe: the validation experiment behind ``rudolph eval linear-probe``'s defaults.

On tiny-shapes pictures of a *validation* seed (not the evaluation seed 20240 of the README's
table), for every layer and pooling of ``embed_image_batch``: the probe's ``--folds``-fold
cross-validated accuracy over the validation pictures at the best L2 of the grid (``choose_l2``
on all of them: these pictures only choose the defaults, they are never the test part), for
shape and for colour. The zero-shot accuracy of the same pictures is printed as the reference.

Usage: python bench/probe.py [--pictures 1000] [--seed 7] [--folds 5] [--threads 1] [--layers 2 3] [--no-zero-shot]
Small counts (e.g. --pictures 60 --folds 2) check that it runs.
"""
import argparse
import time
from typing import Dict, List, Tuple

import numpy as np
import torch


@torch.no_grad()
def features(parts, codes) -> Dict[Tuple[int, str], np.ndarray]:
    """``{(layer, pooling): [n, d]}`` from one pass a picture (``embed_image_batch``'s numbers, checked below)."""
    layout = parts.layout
    left = parts.context([''], layout.L, '<LT_I2T>')
    rows: Dict[Tuple[int, str], List[np.ndarray]] = {}
    for row in codes:
        _, hidden = parts.model.hidden(torch.cat((left, row[None]), dim=1), 0, None, return_hidden_states=True)
        for layer, states in enumerate(hidden):
            image = states[0, layout.L:layout.L + layout.N2].float()
            mean, top = image.mean(0).numpy(), image.amax(0).numpy()
            for pooling, value in (('mean', mean), ('max', top), ('meanmax', np.concatenate([mean, top]))):
                rows.setdefault((layer, pooling), []).append(value)
    return {k: np.stack(v) for k, v in rows.items()}


def cv_accuracy(x: np.ndarray, y: np.ndarray, classes: int, folds: int) -> Tuple[float, float]:
    """``(accuracy, l2)``: the cross-validated accuracy at the grid's best L2 (``choose_l2``)."""
    from rudolph.jobs.evaluate import choose_l2

    l2, scores = choose_l2(x, y, classes, folds=folds, seed=0)
    return scores[l2], l2


def zero_shot(parts, images, names: List[str], template: str, truth: np.ndarray) -> float:
    from rudolph.tasks.batched import classify_batch

    found = classify_batch(parts, images, names, template=template, bs=16)
    return float(np.mean([names.index(r['label']) == t for r, t in zip(found, truth)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--pictures', type=int, default=1000)
    parser.add_argument('--seed', type=int, default=7, help='the validation pictures (the README evaluates 20240)')
    parser.add_argument('--folds', type=int, default=5)
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--layers', type=int, nargs='*', default=None, help='only these layers (default: all)')
    parser.add_argument('--no-zero-shot', action='store_true')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from rudolph.demo import load_bundle, shapes
    from rudolph.tasks import core as tasks
    from rudolph.tasks.batched import embed_image_batch, encode_images

    bundle = load_bundle()
    parts = tasks.Parts.of(bundle.model, bundle.tokenizer, bundle.vae, progress=False)
    samples = [shapes.make_sample(i, args.seed) for i in range(args.pictures)]
    images = [s.image for s in samples]
    start = time.perf_counter()
    feats = features(parts, encode_images(parts, images))
    for layer in range(parts.model.num_layers):  # the bench measures what the CLI computes
        same = embed_image_batch(parts, images[:3], layer=layer, pooling='meanmax').numpy()
        assert np.allclose(same, feats[(layer, 'meanmax')][:3], atol=1e-5), layer
    tasks_ = {'shape': ([s.shape for s in samples], shapes.ZS_SHAPE_TEMPLATE),
              'colour': ([s.colour for s in samples], shapes.ZS_COLOUR_TEMPLATE)}
    print(f'\n{args.pictures} tiny-shapes pictures (seed {args.seed}), {args.folds}-fold CV at the best L2 of '
          f'the grid; features {time.perf_counter() - start:.0f} s\n')
    print('| layer | pooling | shape | colour | best L2 (shape; colour) |\n|---|---|---|---|---|', flush=True)
    labels = {}
    for task, (values, _) in tasks_.items():
        names = sorted(set(values))
        labels[task] = (names, np.array([names.index(v) for v in values]))
    for (layer, pooling), x in sorted(feats.items()):
        if args.layers is not None and layer not in args.layers:
            continue
        cells, l2s = [], []
        for task in tasks_:
            names, y = labels[task]
            acc, l2 = cv_accuracy(x, y, len(names), args.folds)
            cells.append(f'{100 * acc:.1f}%')
            l2s.append(f'{l2:g}')
        print(f'| {layer} | {pooling} | {cells[0]} | {cells[1]} | {"; ".join(l2s)} |', flush=True)
    if not args.no_zero_shot:
        cells = []
        for task, (values, template) in tasks_.items():
            names = sorted(set(values))
            russian = [shapes.SHAPES[n][1] if task == 'shape' else shapes.COLOURS[n][1]['m'] for n in names]
            cells.append(f'{100 * zero_shot(parts, images, russian, template, labels[task][1]):.1f}%')
        print(f'| zero-shot | (all pictures) | {cells[0]} | {cells[1]} | |')


if __name__ == '__main__':
    main()
