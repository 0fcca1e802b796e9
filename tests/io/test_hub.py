"""rudolph.io.hub: the cache first, then one short probe, else a WeightsNotFoundError that says how to get the file."""
import os
import socket

import pytest
from conftest import fill_hub_cache

from rudolph.errors import RudolphError, WeightsNotFoundError
from rudolph.io import hub
from rudolph.io.hub import hub_download, weights_not_found_message

REPO, FILE = 'owner-test/name-test', 'weights.bin'


def _write(content: bytes):
    def writer(path):
        with open(path, 'wb') as f:
            f.write(content)
    return writer


def _download(cache_dir=None, repo=REPO, filename=FILE):
    return hub_download(repo, filename, what='the test weights', local_arg="path='weights.bin'", cache_dir=cache_dir)


def test_a_file_in_the_offline_cache_is_found(tmp_path):
    cache = tmp_path / 'hub'
    expected = fill_hub_cache(cache, REPO, FILE, _write(b'cached weights'))
    path = _download(cache)
    assert os.path.samefile(path, expected)
    with open(path, 'rb') as f:
        assert f.read() == b'cached weights'


def test_the_cached_file_of_the_commit_refs_main_names(tmp_path):
    cache = tmp_path / 'hub'
    fill_hub_cache(cache, REPO, FILE, _write(b'old'), commit='1' * 40)
    fill_hub_cache(cache, REPO, FILE, _write(b'new'), commit='2' * 40)  # refs/main now names this commit
    with open(_download(cache), 'rb') as f:
        assert f.read() == b'new'


def test_cache_dir_accepts_a_path_object_and_a_string(tmp_path):
    cache = tmp_path / 'hub'
    fill_hub_cache(cache, REPO, FILE, _write(b'x'))
    assert _download(cache) == _download(str(cache))
    assert isinstance(_download(cache), str)


def test_the_default_cache_is_used_without_cache_dir(tmp_path, monkeypatch):
    from huggingface_hub import constants

    cache = tmp_path / 'default-hub'
    expected = fill_hub_cache(cache, REPO, FILE, _write(b'default'))
    monkeypatch.setattr(constants, 'HF_HUB_CACHE', str(cache))
    assert os.path.samefile(_download(), expected)


def test_a_missing_file_names_the_repo_the_file_how_to_get_it_and_the_local_argument(tmp_path):
    cache = tmp_path / 'hub'
    fill_hub_cache(cache, REPO, 'other.bin', _write(b'x'))  # the repo is cached, this file is not
    with pytest.raises(WeightsNotFoundError) as info:
        _download(cache)
    message = str(info.value)
    assert f'{REPO}/{FILE}' in message
    assert 'the test weights' in message
    assert f'hf download {REPO} {FILE} --cache-dir {cache}' in message
    assert "path='weights.bin'" in message
    assert 'HF_HUB_OFFLINE' in message  # why it could not be downloaded
    assert repr(str(cache)) in message


def test_the_error_is_a_file_not_found_error_and_a_rudolph_error(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        _download(tmp_path / 'empty-cache')
    assert isinstance(info.value, RudolphError)


def test_cache_dir_is_honoured_a_file_cached_elsewhere_is_not_found(tmp_path):
    fill_hub_cache(tmp_path / 'a', REPO, FILE, _write(b'x'))
    other = tmp_path / 'b'
    with pytest.raises(WeightsNotFoundError) as info:
        _download(other)
    assert str(other) in str(info.value)
    assert str(tmp_path / 'a') not in str(info.value)


def test_another_repo_with_the_same_file_name_is_not_taken(tmp_path):
    cache = tmp_path / 'hub'
    fill_hub_cache(cache, 'someone/else', FILE, _write(b'x'))
    with pytest.raises(WeightsNotFoundError, match='owner-test/name-test/weights.bin'):
        _download(cache)


def test_without_cache_dir_the_message_gives_no_cache_option(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, 'HF_HUB_CACHE', str(tmp_path / 'empty'))
    with pytest.raises(WeightsNotFoundError) as info:
        _download()
    message = str(info.value)
    assert f'`hf download {REPO} {FILE}`' in message
    assert '--cache-dir' not in message


@pytest.mark.parametrize('flag', ['1', 'ON', 'yes', ' true '])
def test_every_spelling_of_hf_hub_offline_counts(tmp_path, monkeypatch, flag):
    monkeypatch.setenv('HF_HUB_OFFLINE', flag)
    with pytest.raises(WeightsNotFoundError, match='HF_HUB_OFFLINE is set'):
        _download(tmp_path / 'empty')


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_online_an_unreachable_hub_is_probed_once_and_named(tmp_path, monkeypatch):
    """No network: HF_ENDPOINT is a closed port on this machine, so the probe is refused at once."""
    from huggingface_hub import constants

    monkeypatch.delenv('HF_HUB_OFFLINE', raising=False)
    monkeypatch.setattr(constants, 'HF_HUB_OFFLINE', False)
    endpoint = f'http://127.0.0.1:{_closed_port()}'
    monkeypatch.setenv('HF_ENDPOINT', endpoint + '/')  # read at call time, trailing slash dropped
    with pytest.raises(WeightsNotFoundError) as info:
        _download(tmp_path / 'empty')
    message = str(info.value)
    assert f'the hub at {endpoint} did not answer' in message
    assert f'{REPO}/{FILE}' in message and "path='weights.bin'" in message
    assert 'HF_HUB_OFFLINE' not in message


def test_the_probe_is_short():
    assert 0 < hub.PROBE_TIMEOUT_S <= 10


def test_weights_not_found_message_names_everything():
    message = weights_not_found_message('the VQGAN', 'o/r', 'f.ckpt', "vae='x.ckpt'", 'a reason', '/c')
    assert message.startswith('the VQGAN (o/r/f.ckpt) is not in the Hugging Face cache')
    assert '(a reason)' in message and '`hf download o/r f.ckpt --cache-dir /c`' in message
    assert message.endswith("vae='x.ckpt'")
