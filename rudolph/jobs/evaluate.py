"""Evaluation on an ImageFolder (one sub-folder of pictures per class).

- :func:`zero_shot_eval`: every picture classified zero-shot (``classify_batch`` over the class
  names in a template) -> accuracy, per-class accuracy, the confusion matrix (JSON and PNG).
- :func:`linear_probe_eval`: features from ``embed_image_batch``, a stratified train/test split
  with a seed, a multinomial logistic regression fitted on the train part, accuracy on the test part.

The probe is a small torch implementation (standardised features, L2 penalty, full-batch
L-BFGS from zero weights): deterministic on CPU, no extra dependency for a problem this size,
and the same code on GPU features.

The class name of a folder is the folder's name, or its entry in a JSON mapping
``{"folder": "русское имя"}`` (``--classes-file``, or ``classes.json`` inside the ImageFolder).
"""
import json
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from rudolph.errors import DataError, InputError
from rudolph.io.atomic import write_atomic_stream
from rudolph.jobs.inputs import Item, folder_images

__all__ = ['ImageFolder', 'read_imagefolder', 'CLASSES_FILE', 'confusion_matrix', 'metrics', 'stratified_split',
           'stratified_folds', 'fit_logistic', 'predict_logistic', 'choose_l2', 'L2_GRID', 'draw_confusion']

#: the mapping file looked for inside an ImageFolder
CLASSES_FILE = 'classes.json'
#: the L2 penalties :func:`choose_l2` tries (on standardised features), weakest first
L2_GRID = (1e-3, 1e-2, 1e-1, 1.0, 10.0)


@dataclass
class ImageFolder:
    """The pictures (``items``), their class indexes (``labels``), the folders and their class ``names``."""
    items: List[Item]
    labels: List[int]
    folders: List[str]
    names: List[str]


def _mapping(root: str, classes_file: Optional[str]) -> Dict[str, str]:
    path = classes_file or os.path.join(root, CLASSES_FILE)
    if not os.path.isfile(path):
        if classes_file:
            raise InputError(f'--classes-file {classes_file!r}: no such file')
        return {}
    with open(path, encoding='utf-8') as f:
        try:
            mapping = json.load(f)
        except json.JSONDecodeError as error:
            raise DataError(f'{path}: not JSON ({error}); expected {{"folder": "class name"}}') from None
    if not isinstance(mapping, dict) or not all(isinstance(v, str) and v.strip() for v in mapping.values()):
        raise DataError(f'{path}: expected a JSON object {{"folder": "class name"}}')
    return mapping


def read_imagefolder(root: str, classes_file: Optional[str] = None) -> ImageFolder:
    """The ImageFolder ``root``: sub-folders sorted by name, their pictures (recursive), the class names."""
    if not os.path.isdir(root):
        raise InputError(f'{root!r} is not a folder (expected an ImageFolder: one sub-folder per class)')
    folders = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)) and not d.startswith('.'))
    if len(folders) < 2:
        raise InputError(f'{root!r} has {len(folders)} class sub-folder(s); an ImageFolder needs at least 2')
    mapping = _mapping(root, classes_file)
    items, labels = [], []
    for label, folder in enumerate(folders):
        found = folder_images(os.path.join(root, folder))  # an empty class is still a candidate
        items += [Item(f'{folder}/{item.key}', item.path) for item in found]
        labels += [label] * len(found)
    if not items:
        raise InputError(f'{root!r}: no pictures in its class sub-folders')
    names = [mapping.get(folder, folder) for folder in folders]
    if len(set(names)) != len(names):
        raise DataError(f'{root!r}: two folders have the same class name ({names})')
    return ImageFolder(items, labels, folders, names)


def confusion_matrix(truth: Sequence[int], pred: Sequence[int], classes: int) -> np.ndarray:
    """``[classes, classes]`` counts: row = true class, column = predicted class."""
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(truth, dtype=np.int64), np.asarray(pred, dtype=np.int64)), 1)
    return matrix


def metrics(matrix: np.ndarray, names: Sequence[str]) -> Dict[str, object]:
    """Accuracy, per-class accuracy (recall; ``None`` for a class without pictures) and the matrix."""
    total = int(matrix.sum())
    per_class = {name: (float(matrix[i, i] / matrix[i].sum()) if matrix[i].sum() else None)
                 for i, name in enumerate(names)}
    return {'accuracy': float(np.trace(matrix) / total) if total else 0.0, 'n': total,
            'per_class_accuracy': per_class, 'classes': list(names), 'confusion_matrix': matrix.tolist()}


def stratified_split(labels: Sequence[int], test_fraction: float, seed: int) -> Tuple[List[int], List[int]]:
    """``(train, test)`` indexes: per class a seeded shuffle, the first ``round(fraction * n)`` (at least one
    while the class has two pictures) to the test part."""
    if not 0.0 < test_fraction < 1.0:
        raise InputError(f'test fraction must be in (0, 1), got {test_fraction}')
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    train, test = [], []
    for label in np.unique(labels):
        where = rng.permutation(np.flatnonzero(labels == label))
        cut = min(max(1, round(test_fraction * len(where))), len(where) - 1) if len(where) > 1 else 0
        test += where[:cut].tolist()
        train += where[cut:].tolist()
    return sorted(train), sorted(test)


def stratified_folds(labels: Sequence[int], folds: int, seed: int) -> List[List[int]]:
    """``folds`` disjoint index lists covering ``labels``: per class a seeded shuffle dealt round-robin."""
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise InputError(f'folds must be an int >= 2, got {folds!r}')
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    out: List[List[int]] = [[] for _ in range(folds)]
    turn = 0  # the next class starts where the last one stopped, so the folds' sizes differ by one at most
    for label in np.unique(labels):
        for index in rng.permutation(np.flatnonzero(labels == label)).tolist():
            out[turn % folds].append(index)
            turn += 1
    return [sorted(f) for f in out]


def fit_logistic(x, y, classes: int, l2: float = 1e-3, steps: int = 200, init=None):
    """A multinomial logistic regression on ``x`` ``[n, d]`` (float) and ``y`` ``[n]``: ``(mean, std, W, b)``.

    ``init``: a model of the same features to start from (a warm start along an L2 path).
    """
    import torch

    x = torch.as_tensor(x, dtype=torch.float64)
    y = torch.as_tensor(y, dtype=torch.long)
    mean, std = x.mean(0), x.std(0, unbiased=False).clamp(min=1e-6)
    xs = (x - mean) / std
    weight = torch.zeros(x.shape[1], classes, dtype=torch.float64)
    bias = torch.zeros(classes, dtype=torch.float64)
    if init is not None:
        weight, bias = init[2].clone(), init[3].clone()
    weight.requires_grad_(True)
    bias.requires_grad_(True)
    opt = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=steps, line_search_fn='strong_wolfe',
                            tolerance_grad=1e-9, tolerance_change=1e-12)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(xs @ weight + bias, y) + 0.5 * l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return mean, std, weight.detach(), bias.detach()


def choose_l2(x, y, classes: int, grid: Sequence[float] = L2_GRID, folds: int = 5,
              seed: int = 0) -> Tuple[float, Dict[float, float]]:
    """The L2 penalty of ``grid`` with the best ``folds``-fold cross-validated accuracy on ``(x, y)``.

    Pass the train part only: the test part must never choose the probe. Per fold the grid is
    fitted from the strongest penalty to the weakest, each fit starting from the previous one.
    Ties go to the stronger penalty (the simpler model). Returns ``(l2, {l2: accuracy over the
    folds})``; ``folds`` is lowered to the smallest class's count, and with a class of one picture
    nothing is cross-validated (the strongest penalty, ``{}``).
    """
    grid = sorted({float(v) for v in grid}, reverse=True)
    if not grid or any(not v > 0 for v in grid):
        raise InputError(f'the L2 grid must hold positive numbers, got {list(grid)}')
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise InputError(f'folds must be an int >= 2, got {folds!r}')
    x, y = np.asarray(x), np.asarray(y)
    counts = np.bincount(y, minlength=classes)
    folds = min(folds, int(counts[counts > 0].min()))  # every fold holds each class at least once
    if folds < 2:  # a class with one picture: nothing to cross-validate, the simplest model
        return grid[0], {}
    right = dict.fromkeys(grid, 0)
    for held in stratified_folds(y, folds, seed):
        train = np.setdiff1d(np.arange(len(y)), held)
        model = None
        for l2 in grid:
            model = fit_logistic(x[train], y[train], classes, l2=l2, init=model)
            right[l2] += int(np.sum(np.asarray(predict_logistic(model, x[held])) == y[held]))
    scores = {l2: right[l2] / len(y) for l2 in grid}
    best = max(grid, key=lambda l2: (scores[l2], l2))
    return best, scores


def predict_logistic(model, x) -> List[int]:
    """The class index of each row of ``x`` under :func:`fit_logistic`'s ``model``."""
    import torch

    mean, std, weight, bias = model
    xs = (torch.as_tensor(x, dtype=torch.float64) - mean) / std
    return (xs @ weight + bias).argmax(1).tolist()


def _font(size: int):
    from PIL import ImageFont

    try:  # a font with Cyrillic letters where the system has one
        return ImageFont.truetype('DejaVuSans.ttf', size), True
    except OSError:
        return ImageFont.load_default(), False


def draw_confusion(matrix: np.ndarray, names: Sequence[str], path: str, title: str = '') -> None:
    """The confusion matrix as a PNG: rows true, columns predicted, cells shaded by the row's share."""
    from PIL import Image, ImageDraw

    font, cyrillic = _font(12)
    labels = list(names) if cyrillic else [str(i) for i in range(len(names))]
    k, cell = len(names), 36
    title = title or 'rows: true class, columns: predicted'
    measure = ImageDraw.Draw(Image.new('RGB', (1, 1)))
    margin = 12 + max(int(measure.textlength(s, font=font)) for s in labels)
    width = max(margin + k * cell + 10, int(measure.textlength(title, font=font)) + 8)
    img = Image.new('RGB', (width, margin + k * cell + 30), 'white')
    draw = ImageDraw.Draw(img)
    draw.text((4, 4), title, fill='black', font=font)
    for i in range(k):
        total = max(int(matrix[i].sum()), 1)
        draw.text((4, 24 + margin + i * cell + cell // 3), labels[i], fill='black', font=font)
        for j in range(k):
            share = matrix[i, j] / total
            shade = int(255 * (1 - share))
            x, y = margin + j * cell, 24 + margin + i * cell
            draw.rectangle([x, y, x + cell - 1, y + cell - 1], fill=(shade, shade, 255), outline='gray')
            draw.text((x + 6, y + cell // 3), str(int(matrix[i, j])), fill='black' if share < 0.6 else 'white',
                      font=font)
    for j in range(k):  # column labels, written upwards
        label = Image.new('RGB', (margin, cell), 'white')
        ImageDraw.Draw(label).text((4, cell // 3), labels[j], fill='black', font=font)
        img.paste(label.rotate(90, expand=True), (margin + j * cell, 24))

    write_atomic_stream(path, lambda f: img.save(f, format='PNG'))
