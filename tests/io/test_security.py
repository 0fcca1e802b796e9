"""No loader runs code from a file a user hands it (issue 11): every torch.load is weights_only."""
import os
import pickle
import re

import pytest
from fakes import write_malicious_pickle

from rudolph.errors import CorruptCheckpointError, RudolphError, UnsafeCheckpointError
from rudolph.model import get_rudolph_model
from rudolph.tokenizer import get_tokenizer
from rudolph.vae import get_vae

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), 'rudolph')


@pytest.mark.parametrize('fmt', ['torch', 'pickle'])
@pytest.mark.parametrize('loader', ['model', 'vae'])
def test_checkpoint_loaders_never_run_pickled_code(tmp_path, loader, fmt):
    path, marker = tmp_path / 'evil.bin', tmp_path / 'marker'
    write_malicious_pickle(path, marker, fmt)
    load = {'model': lambda: get_rudolph_model('tiny-shapes', checkpoint_path=path),
            'vae': lambda: get_vae(path=path, config={'ch': 32, 'ch_mult': (1, 2), 'attn_resolutions': (),
                                                      'z_channels': 32, 'embed_dim': 32, 'n_embed': 64,
                                                      'resolution': 32, 'num_res_blocks': 1})}[loader]
    with pytest.raises(RudolphError) as info:
        load()
    assert not marker.exists()
    assert str(path) in str(info.value)
    if fmt == 'torch':  # a readable torch file: refused for what it pickles, which the message names
        assert isinstance(info.value, UnsafeCheckpointError) and 'open' in str(info.value)


def test_tokenizer_never_unpickles(tmp_path):
    path, marker = tmp_path / 'bpe.model', tmp_path / 'marker'
    write_malicious_pickle(path, marker, 'pickle')
    with pytest.raises(RudolphError, match=re.escape(str(path))) as info:
        get_tokenizer(path)
    assert isinstance(info.value, ValueError)
    assert not marker.exists()


def _sources():
    for root, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith('.py'):
                path = os.path.join(root, name)
                with open(path, encoding='utf-8') as f:
                    yield os.path.relpath(path, PACKAGE), f.read()


_FULL_UNPICKLING = re.compile(r'weights_only\s*=\s*False|pickle\.loads?\(|Unpickler|pickle_module\s*=')


def _offenders(select):
    return [f'{rel}: {m.group(0)}' for rel, text in _sources() if select(rel) for m in _FULL_UNPICKLING.finditer(text)]


def test_package_source_has_no_full_unpickling():
    assert len(list(_sources())) > 10  # the walk found the package
    assert _offenders(lambda rel: True) == []


def test_a_file_that_is_not_a_checkpoint_never_gets_the_advice_to_unpickle_it(tmp_path):
    """torch's message for what its safe loader refuses says to retry unsafely; ours must not pass that on."""
    (tmp_path / 'pytorch_model.bin').write_bytes(pickle.dumps({'a': 1}, protocol=4) + b'junk')
    with pytest.raises(CorruptCheckpointError) as info:
        get_rudolph_model('tiny-shapes', checkpoint_path=tmp_path)
    assert str(tmp_path / 'pytorch_model.bin') in str(info.value)
    for message in _shown_messages(info.value):  # the chained errors a traceback would print too
        assert 'weights_only' not in message and 'trusted source' not in message


def _shown_messages(error):
    while error is not None:
        yield str(error)
        error = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
