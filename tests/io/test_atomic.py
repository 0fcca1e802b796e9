"""rudolph.io.atomic: a reader sees the old file (folder) or the whole new one; nothing is left beside it."""
import errno
import os

import pytest

from rudolph.errors import ConfigError
from rudolph.io.atomic import check_folder_target, write_atomic, write_atomic_stream, write_folder_atomic


def _write_text(text):
    def write(tmp):
        with open(tmp, 'w', encoding='utf-8') as f:
            f.write(text)
    return write


class Boom(Exception):
    pass


# ----------------------------------------------------------------------------- write_atomic
def test_write_atomic_writes_a_new_file_and_leaves_nothing_beside_it(tmp_path):
    target = tmp_path / 'out.json'
    assert write_atomic(target, _write_text('new')) == str(target)
    assert target.read_text() == 'new'
    assert os.listdir(tmp_path) == ['out.json']


def test_write_atomic_replaces_an_existing_file(tmp_path):
    target = tmp_path / 'out.json'
    target.write_text('old')
    write_atomic(str(target), _write_text('new'))
    assert target.read_text() == 'new'
    assert os.listdir(tmp_path) == ['out.json']


def test_write_atomic_writes_beside_the_target(tmp_path):
    seen = []
    write_atomic(tmp_path / 'out.bin', lambda tmp: (seen.append(tmp), _write_text('x')(tmp)))
    assert os.path.dirname(seen[0]) == str(tmp_path) and seen[0] != str(tmp_path / 'out.bin')


def test_when_the_writer_raises_the_old_file_is_intact_and_no_temp_file_remains(tmp_path):
    target = tmp_path / 'out.json'
    target.write_text('old')

    def write(tmp):
        _write_text('half of the new')(tmp)
        raise Boom('writer failed')

    with pytest.raises(Boom):
        write_atomic(target, write)
    assert target.read_text() == 'old'
    assert os.listdir(tmp_path) == ['out.json']


def test_when_the_writer_raises_no_target_is_created(tmp_path):
    with pytest.raises(Boom):
        write_atomic(tmp_path / 'out.json', lambda tmp: (_ for _ in ()).throw(Boom()))
    assert os.listdir(tmp_path) == []


def test_an_os_error_without_a_file_name_names_the_target(tmp_path):
    target = tmp_path / 'out.bin'

    def full_disk(tmp):
        raise OSError(errno.ENOSPC, 'No space left on device')

    with pytest.raises(OSError) as info:
        write_atomic(target, full_disk)
    assert info.value.filename == str(target) and info.value.errno == errno.ENOSPC
    assert os.listdir(tmp_path) == []


def test_write_atomic_stream_writes_the_bytes(tmp_path):
    target = tmp_path / 'weights.bin'
    target.write_bytes(b'old')
    assert write_atomic_stream(target, lambda f: f.write(b'\x00\x01new')) == str(target)
    assert target.read_bytes() == b'\x00\x01new'
    assert os.listdir(tmp_path) == ['weights.bin']


def test_write_atomic_stream_keeps_the_old_file_when_the_writer_raises(tmp_path):
    target = tmp_path / 'weights.bin'
    target.write_bytes(b'old')

    def write(f):
        f.write(b'partial')
        raise Boom()

    with pytest.raises(Boom):
        write_atomic_stream(target, write)
    assert target.read_bytes() == b'old'
    assert os.listdir(tmp_path) == ['weights.bin']


# ----------------------------------------------------------------------------- check_folder_target
def _never(folder):
    raise AssertionError(f'ours() asked about {folder}')


def test_the_current_folder_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for target in ('.', str(tmp_path)):
        with pytest.raises(ConfigError, match='current folder'):
            check_folder_target(target, ours=lambda f: True, overwrite=True)


def test_a_folder_holding_the_current_folder_is_refused(tmp_path, monkeypatch):
    (tmp_path / 'inner').mkdir()
    monkeypatch.chdir(tmp_path / 'inner')
    with pytest.raises(ConfigError, match='current folder'):
        check_folder_target('..', ours=lambda f: True, overwrite=True)


def test_a_folder_holding_an_input_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'out' / 'data').mkdir(parents=True)
    source = tmp_path / 'out' / 'data' / 'train.jsonl'
    source.write_text('{}\n')
    with pytest.raises(ConfigError) as info:
        check_folder_target(str(tmp_path / 'out'), ours=lambda f: True, overwrite=True, inputs=[str(source)],
                            what='--save-dir')
    assert '--save-dir' in str(info.value) and str(source) in str(info.value)


def test_the_input_itself_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = tmp_path / 'model'
    model.mkdir()
    with pytest.raises(ConfigError, match='input'):
        check_folder_target(str(model), ours=lambda f: True, overwrite=True, inputs=[str(model)])


def test_an_input_beside_the_folder_does_not_count(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'out-old').mkdir()  # shares a prefix with the target, not a folder under it
    assert check_folder_target(str(tmp_path / 'out'), ours=_never, overwrite=False,
                               inputs=[str(tmp_path / 'out-old')]) is False


def test_a_file_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'out').write_text('x')
    with pytest.raises(ConfigError, match='is a file'):
        check_folder_target(str(tmp_path / 'out'), ours=lambda f: True, overwrite=True)


def test_a_non_empty_folder_that_ours_rejects_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / 'out'
    out.mkdir()
    (out / 'holiday.jpg').write_bytes(b'x')
    asked = []
    with pytest.raises(ConfigError) as info:
        check_folder_target(str(out), ours=lambda f: asked.append(f) or False, overwrite=True)
    assert asked == [os.path.realpath(out)]
    assert str(out) in str(info.value) and 'not empty' in str(info.value)
    assert (out / 'holiday.jpg').exists()


def test_an_earlier_model_folder_needs_overwrite(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / 'out'
    out.mkdir()
    (out / 'config.json').write_text('{}')
    with pytest.raises(ConfigError) as info:
        check_folder_target(str(out), ours=lambda f: True, overwrite=False, option='--replace')
    assert '--replace' in str(info.value) and str(out) in str(info.value)
    assert check_folder_target(str(out), ours=lambda f: True, overwrite=True) is True


@pytest.mark.parametrize('overwrite', [False, True])
def test_a_new_or_empty_folder_is_accepted_without_asking_ours(tmp_path, monkeypatch, overwrite):
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'empty').mkdir()
    assert check_folder_target(str(tmp_path / 'new' / 'deeper'), ours=_never, overwrite=overwrite) is False
    assert check_folder_target(str(tmp_path / 'empty'), ours=_never, overwrite=overwrite) is False
    assert not (tmp_path / 'new').exists()  # checking creates nothing


def test_a_link_to_the_current_folder_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    os.symlink(tmp_path, tmp_path / 'link')
    with pytest.raises(ConfigError, match='current folder'):
        check_folder_target(str(tmp_path / 'link'), ours=lambda f: True, overwrite=True)


# ----------------------------------------------------------------------------- write_folder_atomic
def _fill(files):
    def fill(folder):
        for name, text in files.items():
            with open(os.path.join(folder, name), 'w') as f:
                f.write(text)
    return fill


def test_write_folder_atomic_creates_the_folder_and_leaves_nothing_beside_it(tmp_path):
    target = tmp_path / 'parent' / 'model'
    assert write_folder_atomic(str(target), _fill({'config.json': '{}', 'README.md': '# m'})) == str(target)
    assert sorted(os.listdir(target)) == ['README.md', 'config.json']
    assert os.listdir(tmp_path / 'parent') == ['model']


def test_write_folder_atomic_returns_an_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert write_folder_atomic('model', _fill({'a': '1'})) == str(tmp_path / 'model')


def test_write_folder_atomic_replaces_an_earlier_folder_whole(tmp_path):
    target = tmp_path / 'model'
    write_folder_atomic(target, _fill({'old-only.bin': 'old', 'config.json': 'old'}))
    write_folder_atomic(target, _fill({'config.json': 'new'}))
    assert os.listdir(target) == ['config.json']
    assert (target / 'config.json').read_text() == 'new'
    assert os.listdir(tmp_path) == ['model']


def test_a_failed_fill_leaves_nothing(tmp_path):
    def fill(folder):
        _fill({'config.json': 'half'})(folder)
        raise Boom()

    with pytest.raises(Boom):
        write_folder_atomic(tmp_path / 'model', fill)
    assert os.listdir(tmp_path) == []


def test_a_failed_fill_keeps_the_earlier_folder(tmp_path):
    target = tmp_path / 'model'
    write_folder_atomic(target, _fill({'config.json': 'old'}))

    def fill(folder):
        _fill({'config.json': 'new'})(folder)
        raise Boom()

    with pytest.raises(Boom):
        write_folder_atomic(target, fill)
    assert os.listdir(target) == ['config.json'] and (target / 'config.json').read_text() == 'old'
    assert os.listdir(tmp_path) == ['model']
