"""Evaluation on an ImageFolder (rudolph eval, rudolph.jobs.evaluate) and shapes.write_imagefolder."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from rudolph import cli
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
