"""Dataset-scale jobs (rudolph.jobs): inputs, resumable outputs, errors, batch and process invariance, CLI."""
import csv
import json
import os
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
from fakes import write_header_only_png
from PIL import Image

from rudolph.cli import commands as cli
from rudolph.demo import shapes
from rudolph.errors import ConfigError, DataError, InputError
from rudolph.jobs import output
from rudolph.jobs.inputs import list_images, read_prompts
from rudolph.jobs.runner import run_job

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(cli.__file__))))
TINY = ['--model', 'tiny-shapes', '--quiet']
CAPTION = ['--generations-num', '1', '--workers', '0'] + TINY


@pytest.fixture(scope='module')
def parts():
    from rudolph.pretrained.components import Components
    from rudolph.tasks.core import Parts

    c = Components.from_pretrained('tiny-shapes')
    return Parts.of(c.model, c.tokenizer, c.vae, c.spc_tokens, progress=False)


def _pictures(folder, n, start=0, nested=True):
    """``n`` tiny-shapes pictures, half of them in a sub-folder."""
    os.makedirs(os.path.join(folder, 'sub'), exist_ok=True)
    names = []
    for i in range(start, start + n):
        name = os.path.join('sub', f'{i:03d}.png') if nested and i % 2 else f'{i:03d}.png'
        shapes.make_sample(i, seed=3).image.save(os.path.join(folder, name))
        names.append(name.replace(os.sep, '/'))
    return names


def _env():
    return dict(os.environ, PYTHONPATH=ROOT, HF_HUB_OFFLINE='1', PYTHONWARNINGS='ignore')


def _read(path):
    with open(path, encoding='utf-8') as f:
        return f.read()


# ----------------------------------------------------------------------------- inputs
def test_inputs_folder_glob_list_and_tables(tmp_path):
    names = _pictures(tmp_path / 'imgs', 4)
    (tmp_path / 'imgs' / 'notes.txt').write_text('not a picture')
    assert [i.key for i in list_images(str(tmp_path / 'imgs'))] == sorted(names)
    assert [i.key for i in list_images(str(tmp_path / 'imgs' / '**' / '*.png'))] == sorted(names)
    assert [i.key for i in list_images(str(tmp_path / 'imgs' / 'sub' / '*.png'))] == ['001.png', '003.png']
    (tmp_path / 'imgs' / 'list.txt').write_text('sub/003.png\n\n000.png\n')
    listed = list_images(str(tmp_path / 'imgs' / 'list.txt'))
    assert [(i.key, os.path.isfile(i.path)) for i in listed] == [('sub/003.png', True), ('000.png', True)]
    rows = [{'id': 'a', 'image': 'imgs/000.png', 'question': 'где фигура?'},
            {'image': 'imgs/sub/001.png', 'question': 'q'}]
    (tmp_path / 't.jsonl').write_text(''.join(json.dumps(r, ensure_ascii=False) + '\n' for r in rows), encoding='utf-8')
    table = list_images(str(tmp_path / 't.jsonl'), question_column='question')
    assert [(i.key, i.text) for i in table] == [('a', 'где фигура?'), ('imgs/sub/001.png', 'q')]
    assert os.path.isfile(table[1].path)
    with open(tmp_path / 't.csv', 'w', newline='', encoding='utf-8') as f:
        csv.writer(f).writerows([['image', 'id'], ['imgs/000.png', 'x'], ['imgs/sub/001.png', '']])
    assert [i.key for i in list_images(str(tmp_path / 't.csv'))] == ['x', 'imgs/sub/001.png']
    (tmp_path / 'dup.csv').write_text('image,id\nimgs/000.png,k\nimgs/sub/001.png,k\n')
    with pytest.raises(DataError, match="'k' appears twice"):
        list_images(str(tmp_path / 'dup.csv'))
    (tmp_path / 'bad.csv').write_text('picture\nimgs/000.png\n')
    with pytest.raises(DataError, match="no 'image'"):
        list_images(str(tmp_path / 'bad.csv'))
    with pytest.raises(InputError, match='no such folder or file'):
        list_images(str(tmp_path / 'missing'))
    (tmp_path / 'p.txt').write_text('синий круг\n\nкрасный квадрат\n', encoding='utf-8')
    assert [(i.key, i.text) for i in read_prompts(str(tmp_path / 'p.txt'))] == [('000000', 'синий круг'),
                                                                               ('000001', 'красный квадрат')]


@pytest.mark.skipif(not hasattr(os, 'symlink') or sys.platform == 'win32', reason='needs symlinks')
def test_symlink_loops_give_each_picture_once(tmp_path):
    root = tmp_path / 'imgs'
    names = _pictures(root, 3)
    os.symlink('..', root / 'sub' / 'up')  # a loop: imgs/sub/up/sub/up/...
    os.symlink(str(root / 'sub'), root / 'again')  # the same folder twice
    os.symlink('000.png', root / 'same.png')  # the same picture under another name
    (tmp_path / 'b').mkdir()
    os.symlink(str(root), tmp_path / 'b' / 'a')  # imgs/b2/a/b2/a/...: a loop through two folders
    os.symlink(str(tmp_path / 'b'), root / 'b2')
    for source in (str(root), str(root / '**' / '*.png')):  # glob.glob would walk the two loops for hours
        items = list_images(source)
        assert sorted(i.key for i in items) == sorted(names), source
        assert len({os.path.realpath(i.path) for i in items}) == len(items) == 3


def test_json_object_errors_name_where(tmp_path):
    from rudolph.cli.options import json_option
    from rudolph.io.tables import json_object, jsonl_rows

    assert json_object('{"a": 1}', 'x') == {'a': 1}
    with pytest.raises(DataError, match=r"^f.jsonl:2: not valid JSON \(.*\); expected one JSON object a line$"):
        list(jsonl_rows(['{"a": 1}\n', '{oops\n'], 'f.jsonl'))
    with pytest.raises(DataError, match='^f.jsonl:1: expected a JSON object, got list$'):
        list(jsonl_rows(['[1]\n'], 'f.jsonl'))
    with pytest.raises(DataError, match=r"^--config '\{\"ch\": ': not valid JSON .*a file holding one$"):
        json_option('{"ch": ', '--config')
    (tmp_path / 'c.json').write_text('{"ch": 64}')
    assert json_option(str(tmp_path / 'c.json'), '--config') == {'ch': 64}


def test_open_image_is_the_one_picture_reader(tmp_path):
    from rudolph.jobs.data import ImageDataset
    from rudolph.jobs.inputs import Item, open_image

    Image.new('RGB', (16, 16), 'red').save(tmp_path / 'ok.png')
    (tmp_path / 'bad.png').write_bytes(b'not an image')
    assert open_image(str(tmp_path / 'ok.png')).size == (16, 16)
    with pytest.raises(InputError, match='image not found: .*missing.png'):
        open_image(str(tmp_path / 'missing.png'))
    with pytest.raises(InputError, match='cannot read the image .*bad.png'):
        open_image(str(tmp_path / 'bad.png'))
    # the jobs' loader says the same (one error, naming the file)
    data = ImageDataset([Item('m', str(tmp_path / 'missing.png')), Item('b', str(tmp_path / 'bad.png'))], 8)
    assert data[0].error.startswith('image not found: ') and data[1].error.startswith('cannot read the image ')


@pytest.mark.parametrize('side', [20_000, 10_000])  # beyond PIL's error limit, and beyond its warning limit
def test_a_decompression_bomb_is_refused_from_its_header(tmp_path, side):
    from rudolph.errors import ImageFileError
    from rudolph.jobs.data import ImageDataset
    from rudolph.jobs.inputs import Item, open_image

    path = tmp_path / 'bomb.png'
    write_header_only_png(path, side, side)
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # not even PIL's warning gets out
        with pytest.raises(ImageFileError, match=r'bomb\.png: .*more than 89 megapixels are refused'):
            open_image(str(path))
        assert 'more than 89 megapixels' in ImageDataset([Item('b', str(path))], 8)[0].error


def test_json_text_and_writable_folder(tmp_path):
    import torch

    assert output.json_text({'p': np.float32(0.5), 't': torch.tensor([1, 2]), 'ё': 'ё'}) == (
        '{\n  "p": 0.5,\n  "t": [\n    1,\n    2\n  ],\n  "ё": "ё"\n}')
    with pytest.raises(TypeError, match='object is not JSON serialisable'):
        output.json_text({'x': object()})
    output.check_writable_folder(str(tmp_path / 'a' / 'b'))
    assert (tmp_path / 'a' / 'b').is_dir()
    (tmp_path / 'file').write_text('x')
    with pytest.raises(ConfigError, match="-o/--out .*file.*cannot create the folder"):
        output.check_writable_folder(str(tmp_path / 'file'))


# ----------------------------------------------------------------------------- outputs
def test_repair_cuts_only_a_torn_last_line(tmp_path):
    path = tmp_path / 'o.jsonl'
    path.write_text('{"key": "a"}\n{"key": "b"}\n{"key": "c", "capt')
    fmt = output.Format(('key',))
    assert [k for k, _, _ in output.read_records(str(path), fmt)] == ['a', 'b']
    assert output.repair(str(path)) and path.read_text() == '{"key": "a"}\n{"key": "b"}\n'
    assert not output.repair(str(path))
    path.write_text('{"key": "a"}\nnot json\n{"key": "b"}\n')
    with pytest.raises(DataError, match='o.jsonl:2'):
        output.read_records(str(path), fmt)
    with pytest.raises(ConfigError, match='.jsonl or .csv'):
        output.format_for('out.txt', ('key',))


def test_csv_and_jsonl_records_round_trip(tmp_path):
    record = dict(key='a,b', path='x "y".png', captions=['один, два', 'три\u2028четыре'], scores=[0.5, 1e-7], seed=3)
    columns = tuple(record)
    for name in ('o.csv', 'o.jsonl'):
        fmt = output.format_for(name, columns)
        with output.RecordWriter(str(tmp_path / name), fmt.header()) as w:
            w.write([fmt.encode(record)])
        (key, line, fields), = output.read_records(str(tmp_path / name), fmt)
        assert key == 'a,b' and line == fmt.encode(record)
        assert json.loads(fields['captions']) if name.endswith('csv') else fields['captions'] == record['captions']
    with pytest.raises(DataError, match='columns'):
        output.read_records(str(tmp_path / 'o.csv'), output.Format(('key', 'other'), csv_=True))


# ----------------------------------------------------------------------------- runner
def test_batch_size_does_not_change_the_output(parts, tmp_path):
    from rudolph.jobs.specs import CaptionJob

    _pictures(tmp_path / 'imgs', 7)
    items = list_images(str(tmp_path / 'imgs'))
    files = []
    for bs in (1, 7, 3):
        out = str(tmp_path / f'bs{bs}.jsonl')
        job = CaptionJob(parts, seed=11, template='на картинке', generations_num=2)
        summary = run_job(job, items, out, bs=bs, progress=False)
        assert (summary.done, summary.skipped, summary.failed) == (7, 0, 0)
        files.append(_read(out))
    assert files[0] == files[1] == files[2]
    records = [json.loads(line) for line in files[0].splitlines()]
    assert [r['key'] for r in records] == [i.key for i in items] and {r['seed'] for r in records} == {11}
    assert all(r['captions'] and len(r['scores']) == len(r['captions']) for r in records)


def test_bad_inputs_go_to_the_errors_file_and_the_run_goes_on(parts, tmp_path):
    from rudolph.jobs.specs import ClassifyJob

    _pictures(tmp_path / 'imgs', 3, nested=False)
    (tmp_path / 'imgs' / 'broken.png').write_bytes(b'not an image')
    Image.new('RGB', (4, 50), 'red').save(tmp_path / 'imgs' / 'tiny.png')  # smaller than one token
    Image.new('I;16', (64, 64), 40000).save(tmp_path / 'imgs' / 'wide16.png')  # a 16-bit picture works
    items = list_images(str(tmp_path / 'imgs'))
    out = str(tmp_path / 'labels.csv')
    job = ClassifyJob(parts, ['круг', 'квадрат', 'звезда'], 'форма фигуры: {}')
    summary = run_job(job, items, out, bs=2, workers=2, progress=False)
    assert (summary.done, summary.failed) == (4, 2)
    rows = list(csv.DictReader(open(out, encoding='utf-8')))
    assert [r['key'] for r in rows] == ['000.png', '001.png', '002.png', 'wide16.png']
    assert all(r['label'] in ('круг', 'квадрат', 'звезда') for r in rows)
    assert abs(sum(json.loads(rows[0]['probs']).values()) - 1) < 1e-5
    errors = [json.loads(line) for line in open(output.errors_path(out), encoding='utf-8')]
    assert [e['key'] for e in errors] == ['broken.png', 'tiny.png']
    assert 'cannot read the image' in errors[0]['error'] and 'smaller than one token' in errors[1]['error']
    # a resumed run retries only what failed; the errors file is that run's
    again = run_job(job, items, out, resume=True, bs=2, progress=False)
    assert (again.done, again.skipped, again.failed) == (0, 4, 2)
    assert len(open(output.errors_path(out)).readlines()) == 2


def test_existing_output_needs_resume_or_overwrite(parts, tmp_path):
    from rudolph.jobs.specs import CaptionJob, EmbedJob

    _pictures(tmp_path / 'imgs', 2)
    items = list_images(str(tmp_path / 'imgs'))
    out = str(tmp_path / 'c.jsonl')
    run_job(CaptionJob(parts, seed=1, generations_num=1), items[:1], out, progress=False)
    with pytest.raises(ConfigError, match='--resume'):
        run_job(CaptionJob(parts, seed=1, generations_num=1), items, out, progress=False)
    with pytest.raises(ConfigError, match=r'seed \(--seed\): 1 in the output, 2 now'):
        run_job(CaptionJob(parts, seed=2, generations_num=1), items, out, resume=True, progress=False)
    assert run_job(CaptionJob(parts, seed=1, generations_num=1), items, out, resume=True, progress=False).done == 1
    assert run_job(EmbedJob(parts), items, str(tmp_path / 'e.jsonl'), progress=False).done == 2
    assert run_job(EmbedJob(parts), items, str(tmp_path / 'e.jsonl'), overwrite=True, progress=False).done == 2


def test_resume_refuses_another_job_or_other_settings(parts, tmp_path):
    from rudolph.jobs.specs import CaptionJob, ClassifyJob, VqaJob

    _pictures(tmp_path / 'imgs', 2)
    items = list_images(str(tmp_path / 'imgs'))
    out = str(tmp_path / 'c.jsonl')
    run_job(CaptionJob(parts, seed=1, generations_num=1), items[:1], out, progress=False)
    before = _read(out)
    with pytest.raises(ConfigError, match=r"job \(the command\): 'caption' in the output, 'classify' now"):
        run_job(ClassifyJob(parts, ['круг', 'квадрат']), items, out, resume=True, progress=False)
    with pytest.raises(ConfigError) as refused:
        run_job(CaptionJob(parts, seed=1, generations_num=3, template='это'), items, out, resume=True,
                progress=False, settings={'model': 'other'})
    message = str(refused.value)
    for part in ('generations_num (--generations-num): 1 in the output, 3 now',
                 "template (--template): '' in the output, 'это' now", "model (--model): None in the output, 'other'"):
        assert part in message
    with pytest.raises(ConfigError, match='--resume'):  # another job's columns: refused on the record too
        run_job(VqaJob(parts, seed=1), items, out, resume=True, progress=False)
    assert _read(out) == before
    os.remove(out + '.settings.json')  # an output of an older rudolph: no record of its settings
    with pytest.raises(ConfigError, match='no settings record.*--overwrite'):
        run_job(CaptionJob(parts, seed=1, generations_num=1), items, out, resume=True, progress=False)
    assert run_job(CaptionJob(parts, seed=1, generations_num=1), items, out, overwrite=True, progress=False).done == 2
    assert json.loads(_read(out + '.settings.json'))['job'] == 'caption'
    assert run_job(CaptionJob(parts, seed=1, generations_num=1), items, out, resume=True, progress=False).skipped == 2


# ----------------------------------------------------------------------------- CLI jobs
def test_cli_jobs_embed_vqa_table_and_text2image(tmp_path, capsys):
    _pictures(tmp_path / 'imgs', 3)
    out = str(tmp_path / 'f.npy')
    assert cli.main(['embed', str(tmp_path / 'imgs'), '--out', out, '--json', '--workers', '0'] + TINY) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report['done'], report['failed']) == (3, 0) and not os.path.exists(out + '.rows.jsonl')
    features = np.load(out)
    index = [json.loads(line) for line in open(tmp_path / 'f.index.jsonl', encoding='utf-8')]
    assert features.shape == (3, 192) and features.dtype == np.float32
    assert [e['key'] for e in index] == ['000.png', '002.png', 'sub/001.png']
    assert cli.main(['embed', str(tmp_path / 'imgs'), '--out', out, '--workers', '0'] + TINY) == 1
    assert 'already exists' in capsys.readouterr().err
    _pictures(tmp_path / 'imgs', 1, start=3)  # one more picture: resume embeds only it
    assert cli.main(['embed', str(tmp_path / 'imgs'), '--out', out, '--resume', '--json', '--workers', '0'] + TINY) == 0
    assert (json.loads(capsys.readouterr().out)['done'], np.load(out).shape) == (1, (4, 192))
    np.testing.assert_array_equal(np.load(out)[[0, 1, 2]], features)  # keys sorted: the new one is sub/003.png
    # vqa: a question column of a table
    (tmp_path / 'q.jsonl').write_text(json.dumps({'id': 'k1', 'image': 'imgs/000.png', 'q': 'какого цвета фигура?'},
                                                 ensure_ascii=False) + '\n', encoding='utf-8')
    assert cli.main(['vqa', str(tmp_path / 'q.jsonl'), '--question-column', 'q', '--out', str(tmp_path / 'a.jsonl'),
                     '--workers', '0'] + TINY) == 0
    (record,) = [json.loads(line) for line in open(tmp_path / 'a.jsonl', encoding='utf-8')]
    assert record['key'] == 'k1' and record['question'] == 'какого цвета фигура?' and record['answers']
    assert cli.main(['vqa', str(tmp_path / 'imgs'), '--out', str(tmp_path / 'b.jsonl')] + TINY) == 1
    assert '--question' in capsys.readouterr().err
    # text2image --prompts: one PNG per prompt and image, and a JSONL
    (tmp_path / 'p.txt').write_text('синий круг\nкрасный квадрат\n', encoding='utf-8')
    pics = tmp_path / 'pics'
    argv = ['text2image', '--prompts', str(tmp_path / 'p.txt'), '-o', str(pics), '-n', '1', '--codebooks-num', '2']
    assert cli.main(argv + TINY) == 0
    records = [json.loads(line) for line in open(pics / 'images.jsonl', encoding='utf-8')]
    assert [(r['key'], r['prompt'], r['images']) for r in records] == [
        ('000000', 'синий круг', ['000000_0.png']), ('000001', 'красный квадрат', ['000001_0.png'])]
    assert Image.open(pics / '000001_0.png').size == (64, 64)
    assert cli.main(argv + ['--resume', '--json'] + TINY) == 0
    assert json.loads(capsys.readouterr().out)['skipped'] == 2
    # a folder without --out is an error, not a picture
    assert cli.main(['caption', str(tmp_path / 'imgs')] + TINY) == 1
    assert '--out' in capsys.readouterr().err


def test_text2image_prompt_files_never_collide_nor_replace(tmp_path, capsys):
    from rudolph.io.paths import file_stems

    keys = ['a/b', 'a_b', 'A_B', '.x', 'a_b-' + file_stems(['a/b'])['a/b'][4:]]
    stems = file_stems(keys)
    assert len({s.lower() for s in stems.values()}) == len(keys) and stems['a_b'] != 'a_b' and '/' not in stems['a/b']
    table = tmp_path / 'p.jsonl'
    table.write_text(''.join(json.dumps({'id': k, 'prompt': 'синий круг'}, ensure_ascii=False) + '\n' for k in keys),
                     encoding='utf-8')
    pics = tmp_path / 'pics'
    argv = ['text2image', '--prompts', str(table), '-o', str(pics), '-n', '1', '--codebooks-num', '1'] + TINY
    assert cli.main(argv) == 0
    records = [json.loads(line) for line in open(pics / 'images.jsonl', encoding='utf-8')]
    names = [r['images'][0] for r in records]
    assert [r['key'] for r in records] == keys and names == [f'{stems[k]}_0.png' for k in keys]
    assert sorted(os.listdir(pics)) == sorted(names + ['images.jsonl', 'images.jsonl.settings.json'])
    other = tmp_path / 'other'
    other.mkdir()
    (other / names[2]).write_bytes(b'mine')
    assert cli.main(argv[:4] + [str(other)] + argv[5:]) == 1
    err = capsys.readouterr().err
    assert str(other / names[2]) in err and '--overwrite' in err
    assert os.listdir(other) == [names[2]] and (other / names[2]).read_bytes() == b'mine'


def test_cli_messages_name_the_commands_own_options(tmp_path, capsys):
    (tmp_path / 'empty.txt').write_text('\n', encoding='utf-8')
    argv = ['embed', str(tmp_path / 'empty.txt'), '--texts', '--out', str(tmp_path / 'f.npy')] + TINY
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert '--texts' in err and 'empty.txt' in err and '--prompts' not in err


@pytest.mark.skipif(not os.path.exists('/dev/full'), reason='needs /dev/full (a device whose writes fail: ENOSPC)')
def test_a_full_disk_names_the_file(tmp_path, capsys):
    _pictures(tmp_path / 'imgs', 1)
    out = tmp_path / 'captions.jsonl'
    os.symlink('/dev/full', out)  # every write: OSError ENOSPC, which names no file by itself
    assert cli.main(_caption_args(tmp_path / 'imgs', out)) == 1
    err = capsys.readouterr().err
    assert 'No space left on device' in err and str(out) in err


def _caption_args(folder, out, *extra):
    return (['caption', str(folder), '--out', str(out), '--seed', '5', '--template', 'на картинке'] + CAPTION
            + list(extra))


def _caption_argv(folder, out, *extra):
    return [sys.executable, '-m', 'rudolph'] + _caption_args(folder, out, *extra)


def test_resume_after_sigkill_gives_the_uninterrupted_file(tmp_path, capsys):
    _pictures(tmp_path / 'imgs', 6)
    whole, killed = tmp_path / 'whole.jsonl', tmp_path / 'killed.jsonl'
    assert cli.main(_caption_args(tmp_path / 'imgs', whole, '--bs', '2')) == 0
    proc = subprocess.Popen(_caption_argv(tmp_path / 'imgs', killed, '--bs', '1'), env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while not (killed.exists() and killed.stat().st_size) and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)  # right after the first batch reached the disk
    finally:
        proc.wait(timeout=60)
    lines = killed.read_text(encoding='utf-8').splitlines()
    assert 1 <= len(lines) < 6
    with open(killed, 'a', encoding='utf-8') as f:  # what a kill in the middle of a write leaves
        f.write('{"key": "sub/005.png", "path": "x", "capt')
    capsys.readouterr()
    assert cli.main(_caption_args(tmp_path / 'imgs', killed, '--resume', '--json')) == 0
    report = json.loads(capsys.readouterr().out)
    assert report['skipped'] == len(lines) and report['done'] == 6 - len(lines)
    assert killed.read_bytes() == whole.read_bytes()


def _children(pid):
    """The processes whose parent is ``pid`` (Linux: from /proc)."""
    found = []
    for entry in os.listdir('/proc'):
        try:
            with open(f'/proc/{entry}/stat', encoding='utf-8') as f:
                stat = f.read()
        except OSError:
            continue
        if int(stat.rsplit(')', 1)[1].split()[1]) == pid:
            found.append(int(entry))
    return found


def _alive(pids):
    alive = []
    for pid in pids:
        try:
            with open(f'/proc/{pid}/stat', encoding='utf-8') as f:
                if f.read().rsplit(')', 1)[1].split()[0] != 'Z':
                    alive.append(pid)
        except OSError:
            pass
    return alive


def _job_with_workers(tmp_path, name):
    """A caption job with 2 decoding workers, once its first batch is on disk: (process, output, worker pids)."""
    out = tmp_path / f'{name}.jsonl'
    proc = subprocess.Popen(_caption_argv(tmp_path / 'imgs', out, '--bs', '1', '--workers', '2'), env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not (out.exists() and out.stat().st_size) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    workers = _children(proc.pid)
    assert proc.poll() is None and len(workers) >= 2, 'the job ended before it could be stopped'
    return proc, out, workers


def _gone_within(pids, seconds):
    deadline = time.monotonic() + seconds
    while _alive(pids) and time.monotonic() < deadline:
        time.sleep(0.02)
    return not _alive(pids)


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='reads /proc; PR_SET_PDEATHSIG is Linux-only')
def test_sigterm_stops_a_job_as_ctrl_c_and_workers_die_with_it(tmp_path):
    _pictures(tmp_path / 'imgs', 40)
    proc, out, workers = _job_with_workers(tmp_path, 'term')
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM and 'rudolph: interrupted' in err and 'Traceback' not in err
    assert _gone_within(workers, 5)
    assert all(line.endswith('}') for line in out.read_text(encoding='utf-8').splitlines())
    proc, _, workers = _job_with_workers(tmp_path, 'kill')
    os.kill(proc.pid, signal.SIGKILL)  # no chance to clean up: the kernel ends the workers (PyTorch: after 5 s)
    proc.communicate(timeout=60)
    assert _gone_within(workers, 2), f'workers {_alive(workers)} outlived their killed parent'


def test_two_accelerate_processes_merge_to_the_one_process_file(tmp_path):
    _pictures(tmp_path / 'imgs', 5)
    (tmp_path / 'imgs' / 'broken.png').write_bytes(b'\x89PNG broken')
    one, two = tmp_path / 'one.csv', tmp_path / 'two.csv'
    assert cli.main(_caption_args(tmp_path / 'imgs', one, '--bs', '3')) == 0
    launch = [sys.executable, '-m', 'accelerate.commands.launch', '--num_processes', '2', '--num_machines', '1',
              '--mixed_precision', 'no', '--dynamo_backend', 'no', '--cpu', '-m', 'rudolph']
    done = subprocess.run(launch + _caption_args(tmp_path / 'imgs', two, '--bs', '2'), env=_env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert two.read_bytes() == one.read_bytes()
    assert len(two.read_text(encoding='utf-8').splitlines()) == 6  # header + 5 pictures
    assert _read(output.errors_path(str(two))) == _read(output.errors_path(str(one)))
    assert not [p for p in os.listdir(tmp_path) if '.part-' in p]
