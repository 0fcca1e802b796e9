"""Evaluation on an ImageFolder (rudolph eval, rudolph.jobs.evaluate) and shapes.write_imagefolder."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from rudolph.cli import commands as cli
from rudolph.demo import shapes
from rudolph.errors import DataError, InputError
from rudolph.jobs import evaluate

TINY = ['--model', 'tiny-shapes', '--quiet', '--workers', '0']


def test_write_imagefolder_by_shape_and_colour(tmp_path):
    counts = shapes.write_imagefolder(str(tmp_path / 's'), 10, by='shape', seed=4)
    assert sum(counts.values()) == 10 and set(counts) == set(shapes.SHAPES)
    mapping = json.loads((tmp_path / 's' / 'classes.json').read_text(encoding='utf-8'))
    assert mapping['circle'] == 'круг' and mapping['star'] == 'звезда'
    folder = evaluate.read_imagefolder(str(tmp_path / 's'))
    assert folder.names == [mapping[f] for f in sorted(shapes.SHAPES)] and len(folder.items) == 10
    for item, label in zip(folder.items, folder.labels):
        index = int(os.path.basename(item.path)[:-4])
        assert shapes.make_sample(index, seed=4).shape == folder.folders[label]
    colours = shapes.write_imagefolder(str(tmp_path / 'c'), 6, by='colour', seed=4)
    assert sum(colours.values()) == 6
    assert json.loads((tmp_path / 'c' / 'classes.json').read_text(encoding='utf-8'))['red'] == 'красный'
    with pytest.raises(ValueError, match='shape'):
        shapes.write_imagefolder(str(tmp_path / 'x'), 1, by='size')


def test_imagefolder_names_from_folders_or_a_mapping(tmp_path):
    for folder in ('cat', 'dog'):
        os.makedirs(tmp_path / 'f' / folder)
        Image.new('RGB', (16, 16)).save(tmp_path / 'f' / folder / 'a.png')
    assert evaluate.read_imagefolder(str(tmp_path / 'f')).names == ['cat', 'dog']
    (tmp_path / 'm.json').write_text('{"cat": "кошка", "dog": "собака"}', encoding='utf-8')
    found = evaluate.read_imagefolder(str(tmp_path / 'f'), str(tmp_path / 'm.json'))
    assert found.names == ['кошка', 'собака'] and [i.key for i in found.items] == ['cat/a.png', 'dog/a.png']
    (tmp_path / 'same.json').write_text('{"cat": "зверь", "dog": "зверь"}', encoding='utf-8')
    with pytest.raises(DataError, match='same class name'):
        evaluate.read_imagefolder(str(tmp_path / 'f'), str(tmp_path / 'same.json'))
    with pytest.raises(InputError, match='at least 2'):
        evaluate.read_imagefolder(str(tmp_path / 'f' / 'cat'))


def test_metrics_split_and_probe():
    matrix = evaluate.confusion_matrix([0, 0, 1, 1, 2], [0, 1, 1, 1, 0], 4)
    assert matrix.tolist() == [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]
    report = evaluate.metrics(matrix, ['a', 'b', 'c', 'd'])
    assert report['accuracy'] == pytest.approx(0.6) and report['per_class_accuracy'] == {
        'a': 0.5, 'b': 1.0, 'c': 0.0, 'd': None}
    labels = [0] * 10 + [1] * 4 + [2] * 2
    train, test = evaluate.stratified_split(labels, 0.5, seed=1)
    assert sorted(train + test) == list(range(16)) and not set(train) & set(test)
    assert [sum(labels[i] == c for i in test) for c in range(3)] == [5, 2, 1]
    assert (train, test) == evaluate.stratified_split(labels, 0.5, seed=1)
    assert test != evaluate.stratified_split(labels, 0.5, seed=2)[1]
    rng = np.random.default_rng(0)  # three separable blobs in 20 dimensions
    y = np.repeat(np.arange(3), 30)
    x = rng.normal(size=(90, 20)) + 4 * np.eye(3, 20)[y]
    model = evaluate.fit_logistic(x[::2], y[::2], 3)
    assert np.mean(np.asarray(evaluate.predict_logistic(model, x[1::2])) == y[1::2]) > 0.95


def test_eval_zero_shot_and_linear_probe_on_a_tiny_imagefolder(tmp_path, capsys):
    root = str(tmp_path / 'colours')
    shapes.write_imagefolder(root, 16, by='colour', seed=20240)
    out = str(tmp_path / 'ev')
    argv = ['eval', 'zero-shot', root, '--template', shapes.ZS_COLOUR_TEMPLATE, '--out', out, '--bs', '5'] + TINY
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    report = json.loads(open(os.path.join(out, 'zero-shot.json'), encoding='utf-8').read())
    assert f"zero-shot accuracy: {report['accuracy']:.4f} (16 pictures)" in printed
    assert report['n'] == 16 and np.asarray(report['confusion_matrix']).sum() == 16
    assert report['accuracy'] >= 0.75  # the demo measures 100% on colour
    assert set(report['per_class_accuracy']) == set(shapes.colour_classes())
    assert Image.open(os.path.join(out, 'zero-shot.confusion.png')).size[0] > 100
    predictions = open(os.path.join(out, 'zero-shot.predictions.jsonl'), encoding='utf-8').read().splitlines()
    assert len(predictions) == 16
    assert cli.main(argv) == 1 and '--resume' in capsys.readouterr().err  # results are never overwritten silently
    assert cli.main(argv + ['--resume', '--json']) == 0
    assert json.loads(capsys.readouterr().out)['run']['skipped'] == 16
    argv = ['eval', 'linear-probe', root, '--out', out, '--split-seed', '3', '--json'] + TINY
    assert cli.main(argv) == 0
    probe = json.loads(capsys.readouterr().out)
    assert probe['n'] + probe['train_n'] == 16 and 0.0 <= probe['accuracy'] <= 1.0 and probe['train_accuracy'] == 1.0
    assert os.path.isfile(os.path.join(out, 'features.npy')) and os.path.isfile(probe['confusion_png'])
    assert cli.main(argv + ['--resume']) == 0
    assert json.loads(capsys.readouterr().out)['accuracy'] == probe['accuracy']  # same features, same split


def test_choose_l2_cross_validates_on_what_it_is_given_and_picks_from_the_grid():
    rng = np.random.default_rng(1)  # 3 classes, 2 informative dimensions among 40 noisy ones: a penalty helps
    y = np.repeat(np.arange(3), 20)
    x = rng.normal(size=(60, 40))
    x[:, :2] += 1.5 * np.eye(3, 2)[y]
    grid = (1e-3, 1.0, 30.0)
    best, scores = evaluate.choose_l2(x, y, 3, grid=grid, folds=4, seed=0)
    assert best in grid and set(scores) == set(grid) and scores[best] == max(scores.values())
    assert (best, scores) == evaluate.choose_l2(x, y, 3, grid=grid, folds=4, seed=0)  # deterministic
    # by hand: the folds' held-out pictures, each scored by a probe fitted on the rest
    folds = evaluate.stratified_folds(y, 4, seed=0)
    assert sorted(i for f in folds for i in f) == list(range(60)) and {len(f) for f in folds} == {15}
    right = 0
    for held in folds:
        train = np.setdiff1d(np.arange(60), held)
        model = evaluate.fit_logistic(x[train], y[train], 3, l2=best)
        right += int(np.sum(np.asarray(evaluate.predict_logistic(model, x[held])) == y[held]))
    assert scores[best] == pytest.approx(right / 60, abs=1 / 60)  # warm starts may move a borderline picture
    separable = np.eye(3)[y] * 5  # every penalty is right everywhere: the tie goes to the stronger one
    assert evaluate.choose_l2(separable, y, 3, grid=(0.01, 0.1), folds=2) == (0.1, {0.1: 1.0, 0.01: 1.0})
    assert evaluate.choose_l2(x[:4], [0, 1, 2, 2], 3, grid=grid) == (30.0, {})  # one picture a class: no CV
    with pytest.raises(InputError, match='folds'):
        evaluate.choose_l2(x, y, 3, folds=1)
    with pytest.raises(InputError, match='positive'):
        evaluate.choose_l2(x, y, 3, grid=(0.1, 0.0))


def test_meanmax_pooling_is_the_mean_and_the_max_of_one_pass():
    from rudolph.demo import load_bundle
    from rudolph.errors import ConfigError
    from rudolph.tasks.batched import embed_image_batch
    from rudolph.tasks.core import Parts

    bundle = load_bundle()
    parts = Parts.of(bundle.model, bundle.tokenizer, bundle.vae, progress=False)
    images = [shapes.make_sample(i, seed=3).image for i in range(2)]
    both = embed_image_batch(parts, images, layer=2, pooling='meanmax')
    hidden = bundle.model.hidden_size
    assert both.shape == (2, 2 * hidden)
    assert torch_close(both[:, :hidden], embed_image_batch(parts, images, layer=2, pooling='mean'))
    assert torch_close(both[:, hidden:], embed_image_batch(parts, images, layer=2, pooling='max'))
    with pytest.raises(ConfigError, match='meanmax'):
        embed_image_batch(parts, images, pooling='sum')


def torch_close(a, b) -> bool:
    return bool(np.allclose(a.numpy(), b.numpy(), atol=1e-5))


def test_probe_defaults_and_zero_shot_on_the_probes_test_part(tmp_path, capsys):
    root = str(tmp_path / 'shapes')
    shapes.write_imagefolder(root, 40, by='shape', seed=20240)
    out = str(tmp_path / 'ev')
    assert cli.main(['eval', 'linear-probe', root, '--out', out, '--json', '--folds', '2'] + TINY) == 0
    probe = json.loads(capsys.readouterr().out)
    assert probe['layer'] == 2 and probe['pooling'] == 'meanmax'  # the middle of tiny-shapes' 4 layers
    assert probe['l2'] in evaluate.L2_GRID and probe['l2_chosen_by'].startswith('cross-validation')
    assert set(probe['cv_accuracy']) == {f'{v:g}' for v in evaluate.L2_GRID}
    assert np.load(os.path.join(out, 'features.npy')).shape == (40, 2 * 192)
    argv = ['eval', 'zero-shot', root, '--template', shapes.ZS_SHAPE_TEMPLATE, '--out', out, '--test-part', '--json']
    assert cli.main(argv + TINY) == 0
    zs = json.loads(capsys.readouterr().out)
    assert zs['n'] == probe['n'] and zs['test_part'] is True  # the same pictures as the probe's test part
    _, test = evaluate.stratified_split(evaluate.read_imagefolder(root).labels, 0.5, 0)
    lines = open(os.path.join(out, 'zero-shot.predictions.jsonl'), encoding='utf-8').read().splitlines()
    assert len(lines) == len(test) == zs['n']
    assert cli.main(['eval', 'linear-probe', root, '--out', out, '--json', '--l2', '0.5', '--resume'] + TINY) == 0
    assert json.loads(capsys.readouterr().out)['l2_chosen_by'] == 'given (--l2)'


def test_eval_lists_no_table_options(capsys):
    # an ImageFolder has no table columns: eval must not offer options it would ignore
    with pytest.raises(SystemExit):
        cli.main(['eval', 'zero-shot', '--help'])
    out = capsys.readouterr().out
    assert '--workers' in out and not any(o in out for o in ('--image-column', '--id-column', '--root'))
