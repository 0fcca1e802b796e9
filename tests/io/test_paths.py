"""rudolph.io.paths: names a model folder may use, file stems that never collide, and write checks."""
import errno
import os
import re

import pytest

from rudolph.errors import ConfigError
from rudolph.io.paths import check_writable_folder, file_stems, folder_file, is_inside, naming_file, refuse_existing


# ----------------------------------------------------------------------------- folder_file
@pytest.fixture
def model_folder(tmp_path):
    folder = tmp_path / 'model'
    (folder / 'sub').mkdir(parents=True)
    (folder / 'bpe.model').write_text('bpe')
    (folder / 'sub' / 'vqgan.safetensors').write_text('vq')
    (tmp_path / 'secret.txt').write_text('secret')
    return folder


def test_a_plain_name_is_a_path_in_the_folder(model_folder):
    assert folder_file(str(model_folder), 'bpe.model', 'the tokenizer') == os.path.join(str(model_folder), 'bpe.model')
    assert folder_file(model_folder, 'sub/vqgan.safetensors', 'the VQGAN') == os.path.join(
        str(model_folder), 'sub/vqgan.safetensors')


def test_a_name_of_a_file_not_there_yet_is_accepted(model_folder):
    assert folder_file(str(model_folder), 'later.bin', 'x') == os.path.join(str(model_folder), 'later.bin')


def test_a_link_that_stays_inside_is_accepted(model_folder):
    os.symlink(model_folder / 'bpe.model', model_folder / 'alias.model')
    assert folder_file(str(model_folder), 'alias.model', 'x').endswith('alias.model')


@pytest.mark.parametrize('name', ['/etc/passwd', '../secret.txt', 'sub/../../secret.txt', '..', 'sub/../..'])
def test_absolute_paths_and_dot_dot_out_of_the_folder_are_refused(model_folder, name):
    with pytest.raises(ConfigError) as info:
        folder_file(str(model_folder), name, 'the tokenizer of config.json')
    message = str(info.value)
    assert message.startswith('the tokenizer of config.json: ')
    assert repr(name) in message and repr(str(model_folder)) in message
    assert 'secret' not in message.replace(repr(name), '')  # nothing of the other file is shown


def test_dot_dot_that_stays_inside_is_accepted(model_folder):
    assert folder_file(str(model_folder), 'sub/../bpe.model', 'x') == os.path.join(str(model_folder),
                                                                                   'sub/../bpe.model')


@pytest.mark.parametrize('link_to', ['file', 'folder'])
def test_a_link_out_of_the_folder_is_refused(model_folder, tmp_path, link_to):
    target = tmp_path / 'secret.txt' if link_to == 'file' else tmp_path
    os.symlink(target, model_folder / 'escape')
    name = 'escape' if link_to == 'file' else 'escape/secret.txt'
    with pytest.raises(ConfigError, match='points outside the model folder'):
        folder_file(str(model_folder), name, 'x')


@pytest.mark.parametrize('name', [None, 3, '', '   ', 'a\x00b', ['bpe.model']])
def test_a_name_that_is_no_relative_file_name_is_refused(model_folder, name):
    with pytest.raises(ConfigError) as info:
        folder_file(str(model_folder), name, 'the weights of latest')
    assert str(info.value).startswith('the weights of latest: ') and repr(name) in str(info.value)


def test_files_of_a_hub_cache_snapshot_linked_to_its_blobs_are_accepted(tmp_path):
    repo = tmp_path / 'models--o--r'
    snapshot = repo / 'snapshots' / ('a' * 40)
    snapshot.mkdir(parents=True)
    (repo / 'blobs').mkdir()
    (repo / 'blobs' / 'deadbeef').write_text('bpe')
    os.symlink(os.path.join('..', '..', 'blobs', 'deadbeef'), snapshot / 'bpe.model')
    assert folder_file(str(snapshot), 'bpe.model', 'x') == os.path.join(str(snapshot), 'bpe.model')
    (tmp_path / 'elsewhere').write_text('x')
    os.symlink(tmp_path / 'elsewhere', snapshot / 'escape')
    with pytest.raises(ConfigError):
        folder_file(str(snapshot), 'escape', 'x')


def test_is_inside(tmp_path):
    (tmp_path / 'a' / 'b').mkdir(parents=True)
    assert is_inside(tmp_path / 'a' / 'b', tmp_path / 'a')
    assert is_inside(tmp_path / 'a', tmp_path / 'a')
    assert not is_inside(tmp_path / 'ab', tmp_path / 'a')  # a shared prefix is not inside
    assert not is_inside(tmp_path, tmp_path / 'a')


# ----------------------------------------------------------------------------- file_stems
_SAFE_STEM = re.compile(r'^[\w-][\w.-]*$')


def _assert_distinct(stems):
    lowered = [stem.lower() for stem in stems.values()]
    assert len(set(lowered)) == len(lowered), stems
    for stem in stems.values():
        assert _SAFE_STEM.match(stem) and len(stem.encode('utf-8')) < 255, stem


def test_safe_keys_are_their_own_stems():
    keys = ['cat', 'a_b', 'photo-1.v2', 'кот']
    assert file_stems(keys) == {key: key for key in keys}


def test_a_slash_and_an_underscore_never_collide():
    stems = file_stems(['a/b', 'a_b'])
    assert stems['a_b'] == 'a_b'
    assert stems['a/b'].startswith('a_b-') and stems['a/b'] != 'a_b'
    _assert_distinct(stems)


def test_keys_that_differ_only_by_case_get_stems_that_differ_beyond_case():
    stems = file_stems(['Cat', 'cat', 'CAT'])
    _assert_distinct(stems)
    for key, stem in stems.items():
        assert stem.startswith(key + '-')


def test_a_safe_key_equal_to_another_keys_hashed_stem_still_gets_its_own():
    first = file_stems(['a/b'])['a/b']  # 'a_b-<hash>'
    stems = file_stems(['a/b', first])
    _assert_distinct(stems)


@pytest.mark.parametrize('key', ['.hidden', '../../etc/passwd', 'x' * 300, 'a b', '', '...', 'ё' * 200, 'a\x00b'])
def test_unsafe_keys_become_safe_hashed_stems(key):
    stem = file_stems([key])[key]
    _assert_distinct({key: stem})
    assert not stem.startswith('.')
    assert re.search(r'-[0-9a-f]{8}$', stem)


def test_stems_are_the_same_on_every_call_and_in_every_order():
    keys = ['a/b', 'a_b', 'A_B', '.x', 'x', 'y' * 100]
    assert file_stems(keys) == file_stems(list(reversed(keys)))


def test_many_similar_keys_never_collide():
    keys = [f'{a}{sep}{b}' for a in ('a', 'A') for sep in ('/', '_', ' ', '\\', ':', '.') for b in ('b', 'B', '')]
    keys = list(dict.fromkeys(keys))
    stems = file_stems(keys)
    assert set(stems) == set(keys)
    _assert_distinct(stems)


# ----------------------------------------------------------------------------- refuse_existing
def test_refuse_existing_accepts_paths_that_do_not_exist(tmp_path):
    refuse_existing([str(tmp_path / 'a.png'), str(tmp_path / 'b.png')])


def test_refuse_existing_names_the_first_existing_path_and_the_option(tmp_path):
    (tmp_path / 'b.png').write_bytes(b'x')
    (tmp_path / 'c.png').write_bytes(b'x')
    paths = [str(tmp_path / name) for name in ('a.png', 'b.png', 'c.png')]
    with pytest.raises(ConfigError) as info:
        refuse_existing(paths, option='--force')
    message = str(info.value)
    assert message.startswith(paths[1] + ' already exists')
    assert '--force' in message and paths[2] not in message


def test_refuse_existing_counts_a_broken_link(tmp_path):
    os.symlink(tmp_path / 'nowhere', tmp_path / 'link.png')
    with pytest.raises(ConfigError, match='--overwrite'):
        refuse_existing([str(tmp_path / 'link.png')])


# ----------------------------------------------------------------------------- naming_file
def test_naming_file_adds_the_file_name_to_an_os_error_without_one():
    with pytest.raises(OSError) as info:
        with naming_file('/out/model.bin'):
            raise OSError(errno.ENOSPC, 'No space left on device')
    error = info.value
    assert error.filename == '/out/model.bin' and error.errno == errno.ENOSPC
    assert 'No space left on device while writing' in str(error) and '/out/model.bin' in str(error)
    assert isinstance(error.__cause__, OSError)


def test_naming_file_keeps_an_os_error_that_names_a_file():
    original = OSError(errno.EACCES, 'Permission denied', '/elsewhere')
    with pytest.raises(OSError) as info:
        with naming_file('/out/model.bin'):
            raise original
    assert info.value is original


def test_naming_file_keeps_an_os_error_without_errno_and_other_errors():
    original = OSError('no errno')
    with pytest.raises(OSError) as info:
        with naming_file('/out/model.bin'):
            raise original
    assert info.value is original
    with pytest.raises(KeyError):
        with naming_file('/out/model.bin'):
            raise KeyError('x')


def test_naming_file_accepts_a_path_object(tmp_path):
    with pytest.raises(OSError) as info:
        with naming_file(tmp_path / 'f'):
            raise OSError(errno.EIO, 'I/O error')
    assert info.value.filename == str(tmp_path / 'f')


# ----------------------------------------------------------------------------- check_writable_folder
def test_check_writable_folder_creates_the_folder(tmp_path):
    target = tmp_path / 'a' / 'b'
    check_writable_folder(str(target))
    assert target.is_dir()
    check_writable_folder(str(target))  # an existing folder is fine


def test_check_writable_folder_refuses_a_file_naming_the_option_and_the_path(tmp_path):
    (tmp_path / 'file').write_text('x')
    for target in (tmp_path / 'file', tmp_path / 'file' / 'below'):
        with pytest.raises(ConfigError) as info:
            check_writable_folder(str(target), option='--out-dir')
        assert str(info.value).startswith(f'--out-dir {str(target)!r}: ')


@pytest.mark.skipif(not hasattr(os, 'geteuid') or os.geteuid() == 0, reason='root may write anywhere')
def test_check_writable_folder_refuses_a_read_only_folder(tmp_path):
    folder = tmp_path / 'ro'
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(ConfigError, match='not a writable folder'):
            check_writable_folder(str(folder))
    finally:
        folder.chmod(0o700)
