"""``rudolph eval zero-shot|linear-probe IMAGEFOLDER``: accuracy on an ImageFolder (see :mod:`rudolph.jobs.evaluate`).

    rudolph eval zero-shot shapes/ --template 'форма фигуры: {}' --model tiny-shapes --out eval/
    rudolph eval linear-probe shapes/ --model tiny-shapes --out eval/
    rudolph eval zero-shot shapes/ --test-part ...   # only the pictures the probe tests

Each writes into ``--out`` (default ``rudolph_eval/``) the per-picture results (resumable like
every job), ``<mode>.json`` (accuracy, per-class accuracy, confusion matrix, settings) and
``<mode>.confusion.png``, and prints the accuracy.
"""
import argparse
import os
from typing import Any, Dict

from rudolph.cli.options import CliError, add_common
from rudolph.io.atomic import write_atomic_stream
from rudolph.io.tables import json_text
from rudolph.jobs.cli import add_job_options
from rudolph.jobs.commands import check_features, setup
from rudolph.jobs.evaluate import (
    choose_l2,
    confusion_matrix,
    draw_confusion,
    fit_logistic,
    metrics,
    predict_logistic,
    read_imagefolder,
    stratified_split,
)
from rudolph.jobs.features import read_features, rows_path
from rudolph.jobs.output import format_for, read_records

__all__ = ['add_arguments', 'run']


def _fraction(value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        x = -1.0
    if not 0.0 < x < 1.0:
        raise argparse.ArgumentTypeError(f'expected a number in (0, 1), got {value!r}')
    return x


def _shared(p: argparse.ArgumentParser) -> None:

    p.add_argument('folder', help='an ImageFolder: one sub-folder of pictures per class')
    p.add_argument('--classes-file', default=None,
                   help='JSON {"folder": "class name"} (default: classes.json in the folder if any, else the '
                        'folder names)')
    p.add_argument('--out', default='rudolph_eval', help='folder for the results (default rudolph_eval/)')
    add_job_options(p, out=False, tables=False)  # an ImageFolder: no table columns
    add_common(p)


def _split_options(p: argparse.ArgumentParser) -> None:
    p.add_argument('--test-fraction', type=_fraction, default=0.5, help='share of each class tested (default 0.5)')
    p.add_argument('--split-seed', type=int, default=0, help='seed of the train/test split (default 0)')


def add_arguments(p: argparse.ArgumentParser) -> None:
    """``rudolph eval zero-shot ...`` and ``rudolph eval linear-probe ...``."""
    sub = p.add_subparsers(dest='mode', metavar='MODE')
    sub.required = True
    zs = sub.add_parser('zero-shot', help='zero-shot classification by the class names in a template')
    zs.add_argument('--template', default='{}', help="right text of each class, e.g. 'на картинке {}' (default '{}')")
    zs.add_argument('--test-part', action='store_true',
                    help="score only the pictures linear-probe tests (its split: --test-fraction, --split-seed), "
                         "so that both are measured on the same pictures")
    _split_options(zs)
    _shared(zs)
    lp = sub.add_parser('linear-probe', help='a logistic regression on the pooled image hidden states')
    _split_options(lp)
    lp.add_argument('--l2', type=float, default=None,
                    help='L2 penalty of the probe (default: chosen from a grid by cross-validation on the train part)')
    lp.add_argument('--folds', type=int, default=5, help='folds of that cross-validation (default 5)')
    lp.add_argument('--layer', type=int, default=None,
                    help='hidden states of this layer (default: the middle one, num_layers // 2; -1: the last)')
    lp.add_argument('--pooling', choices=('mean', 'max', 'meanmax'), default='meanmax',
                    help='over the image positions (default meanmax: the mean and the max side by side)')
    _shared(lp)


def _write_report(path: str, report: Dict[str, Any]) -> None:

    write_atomic_stream(path, lambda f: f.write((json_text(report) + '\n').encode('utf-8')))


def _emit(args: argparse.Namespace, report: Dict[str, Any]) -> None:

    if args.json:
        print(json_text(report))
        return
    print(f"{args.mode} accuracy: {report['accuracy']:.4f} ({report['n']} pictures)")
    if args.mode == 'linear-probe':
        print(f"  probe: layer {report['layer']}, {report['pooling']} pooling, L2 {report['l2']:g} "
              f"({report['l2_chosen_by']}), trained on {report['train_n']} pictures")
    for name, acc in report['per_class_accuracy'].items():
        print(f"  {name}: {'-' if acc is None else f'{acc:.4f}'}")
    print(f"report: {report['report']}  confusion matrix: {report['confusion_png']}")


def _run_job(args, job, items, path, state):
    from rudolph.jobs.data import default_workers
    from rudolph.jobs.runner import run_job

    workers = default_workers() if args.workers is None else args.workers
    return run_job(job, items, path, resume=args.resume, overwrite=args.overwrite, bs=args.bs or 8, workers=workers,
                   progress=not args.quiet, state=state)


def _zero_shot(args, folder, parts, state) -> Dict[str, Any]:
    from rudolph.jobs.specs import ClassifyJob

    items, labels = folder.items, folder.labels
    if args.test_part:
        test = stratified_split(labels, args.test_fraction, args.split_seed)[1]
        items, labels = [items[i] for i in test], [labels[i] for i in test]
    job = ClassifyJob(parts, folder.names, args.template)
    path = os.path.join(args.out, 'zero-shot.predictions.jsonl')
    summary = _run_job(args, job, items, path, state)
    predicted = {key: fields['label'] for key, _, fields in read_records(path, format_for(path, job.columns))}
    truth, pred = [], []
    for item, label in zip(items, labels):
        if item.key in predicted:
            truth.append(label)
            pred.append(folder.names.index(predicted[item.key]))
    report = metrics(confusion_matrix(truth, pred, len(folder.names)), folder.names)
    split = {'test_fraction': args.test_fraction, 'split_seed': args.split_seed} if args.test_part else {}
    return {**report, 'template': args.template, 'test_part': args.test_part, **split, 'predictions': path,
            'run': summary.as_dict()}


def _probe_features(args, folder, parts, state):
    """``(x, y, layer, summary)``: the pooled features of the pictures (a resumable embed job) and their labels."""
    from rudolph.jobs.specs import EmbedJob

    npy = os.path.join(args.out, 'features.npy')
    check_features(npy, args)
    layer = parts.model.num_layers // 2 if args.layer is None else args.layer
    job = EmbedJob(parts, layer=layer, pooling=args.pooling)
    summary = _run_job(args, job, folder.items, rows_path(npy), state)
    features, index = read_features(npy)
    row = {entry['key']: i for i, entry in enumerate(index)}
    kept = [(row[item.key], label) for item, label in zip(folder.items, folder.labels) if item.key in row]
    return features[[r for r, _ in kept]], [label for _, label in kept], layer, npy, summary


def _l2_origin(args, cv) -> str:
    if args.l2 is not None:
        return 'given (--l2)'
    return f'cross-validation on the train part (up to {args.folds} folds)' if cv else \
        'the strongest of the grid (a class has too few train pictures to cross-validate)'


def _linear_probe(args, folder, parts, state) -> Dict[str, Any]:

    x, y, layer, npy, summary = _probe_features(args, folder, parts, state)
    train, test = stratified_split(y, args.test_fraction, args.split_seed)
    if not train or not test:
        raise CliError('too few pictures for a train/test split (each class needs at least two)')
    y_train = [y[i] for i in train]
    l2, cv = args.l2, {}
    if l2 is None:  # chosen on the train part only: the test part never tunes the probe
        l2, cv = choose_l2(x[train], y_train, len(folder.names), folds=args.folds, seed=args.split_seed)
    model = fit_logistic(x[train], y_train, len(folder.names), l2=l2)
    truth = [y[i] for i in test]
    report = metrics(confusion_matrix(truth, predict_logistic(model, x[test]), len(folder.names)), folder.names)
    train_pred = predict_logistic(model, x[train])
    train_acc = sum(p == t for p, t in zip(train_pred, y_train)) / len(train)
    return {**report, 'train_accuracy': train_acc, 'train_n': len(train), 'test_fraction': args.test_fraction,
            'split_seed': args.split_seed, 'l2': l2, 'l2_chosen_by': _l2_origin(args, cv),
            'cv_accuracy': {f'{k:g}': v for k, v in sorted(cv.items())}, 'layer': layer, 'pooling': args.pooling,
            'features': npy, 'run': summary.as_dict()}


def run(args: argparse.Namespace) -> int:

    folder = read_imagefolder(args.folder, args.classes_file)
    os.makedirs(args.out, exist_ok=True)
    records = os.path.join(args.out, 'zero-shot.predictions.jsonl' if args.mode == 'zero-shot'
                           else 'features.npy.rows.jsonl')
    parts, _, state = setup(args, records)
    report = (_zero_shot if args.mode == 'zero-shot' else _linear_probe)(args, folder, parts, state)
    if not state.is_main:
        return 0
    import numpy as np

    report['report'] = os.path.join(args.out, f'{args.mode}.json')
    report['confusion_png'] = os.path.join(args.out, f'{args.mode}.confusion.png')
    draw_confusion(np.asarray(report['confusion_matrix']), folder.names, report['confusion_png'],
                   f"{args.mode}: accuracy {report['accuracy']:.3f} (rows: true, columns: predicted)")
    report['model'] = args.model
    _write_report(report['report'], report)
    _emit(args, report)
    return 0
