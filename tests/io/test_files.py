"""rudolph.io.files: torch files are read without running code from them; errors name the file."""
import argparse
import pickle

import pytest
import torch

from rudolph.errors import CheckpointError, CorruptCheckpointError, UnsafeCheckpointError
from rudolph.io.files import check_finite, describe_unreadable, safe_torch_load


class TouchesMarker:
    """Unpickling this would create the marker file (arbitrary code run by the pickle)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, 'a')


def _state():
    torch.manual_seed(0)
    return {'layer.weight': torch.randn(3, 4), 'layer.bias': torch.zeros(3), 'steps': torch.tensor(7)}


def _assert_same(loaded, state):
    assert set(loaded) == set(state)
    for key, value in state.items():
        assert torch.equal(loaded[key], value)


@pytest.mark.parametrize('mmap', [False, True])
def test_a_plain_state_dict_loads(tmp_path, mmap):
    path = tmp_path / 'model.bin'
    torch.save(_state(), path)
    _assert_same(safe_torch_load(path, mmap=mmap), _state())


@pytest.mark.parametrize('mmap', [False, True])
def test_a_legacy_format_file_loads_even_when_mmap_is_asked(tmp_path, mmap):
    path = tmp_path / 'legacy.bin'
    torch.save(_state(), path, _use_new_zipfile_serialization=False)
    _assert_same(safe_torch_load(str(path), mmap=mmap), _state())


def test_containers_and_plain_values_load(tmp_path):
    path = tmp_path / 'ckpt.pt'
    torch.save({'state_dict': _state(), 'epoch': 3, 'name': 'x', 'lrs': [0.1, 0.2], 'pair': (1, 2)}, path)
    loaded = safe_torch_load(path)
    assert loaded['epoch'] == 3 and loaded['name'] == 'x' and loaded['lrs'] == [0.1, 0.2] and loaded['pair'] == (1, 2)
    _assert_same(loaded['state_dict'], _state())


@pytest.mark.parametrize('training_objects', [True, False])
def test_a_pickled_arbitrary_object_is_refused_and_nothing_runs(tmp_path, training_objects):
    path, marker = tmp_path / 'evil.bin', tmp_path / 'marker'
    torch.save({'state_dict': _state(), 'evil': TouchesMarker(marker)}, path)
    with pytest.raises(UnsafeCheckpointError) as info:
        safe_torch_load(path, what='VQGAN checkpoint', training_objects=training_objects)
    assert not marker.exists()
    message = str(info.value)
    assert str(path) in message and 'VQGAN checkpoint' in message
    assert 'open' in message  # names what the file pickles
    assert isinstance(info.value, CheckpointError) and isinstance(info.value, ValueError)


def test_a_legacy_format_file_with_an_arbitrary_object_is_refused_and_nothing_runs(tmp_path):
    path, marker = tmp_path / 'evil-legacy.bin', tmp_path / 'marker'
    torch.save({'evil': TouchesMarker(marker)}, path, _use_new_zipfile_serialization=False)
    with pytest.raises(UnsafeCheckpointError, match='evil-legacy.bin'):
        safe_torch_load(path)
    assert not marker.exists()


def test_a_plain_pickle_with_an_arbitrary_object_runs_nothing(tmp_path):
    path, marker = tmp_path / 'evil.pkl', tmp_path / 'marker'
    with open(path, 'wb') as f:
        pickle.dump({'evil': TouchesMarker(marker)}, f, protocol=2)
    with pytest.raises(CheckpointError) as info:  # refused (unsafe) or not a torch file (corrupt): never run
        safe_torch_load(path)
    assert isinstance(info.value, (UnsafeCheckpointError, CorruptCheckpointError))
    assert str(path) in str(info.value)
    assert not marker.exists()


def test_training_objects_load_as_inert_stand_ins(tmp_path):
    """A PyTorch-Lightning checkpoint pickles its hyper-parameters (here an argparse.Namespace) beside the weights."""
    path = tmp_path / 'last.ckpt'
    torch.save({'state_dict': _state(), 'hyper_parameters': argparse.Namespace(lr=0.1)}, path)
    loaded = safe_torch_load(path)
    _assert_same(loaded['state_dict'], _state())
    stand_in = loaded['hyper_parameters']
    assert not isinstance(stand_in, argparse.Namespace)  # the real class is never used
    assert type(stand_in).__name__ == 'Namespace'
    assert stand_in.state == {'lr': 0.1}


def test_without_training_objects_a_training_object_is_refused(tmp_path):
    path = tmp_path / 'last.ckpt'
    torch.save({'state_dict': _state(), 'hyper_parameters': argparse.Namespace(lr=0.1)}, path)
    with pytest.raises(UnsafeCheckpointError, match='argparse.Namespace'):
        safe_torch_load(path, training_objects=False)


def test_an_empty_file_is_corrupt_and_named(tmp_path):
    path = tmp_path / 'empty.bin'
    path.write_bytes(b'')
    with pytest.raises(CorruptCheckpointError) as info:
        safe_torch_load(path, what='tokenizer-free checkpoint')
    message = str(info.value)
    assert str(path) in message and 'empty' in message and 'tokenizer-free checkpoint' in message


def test_a_truncated_zip_file_is_corrupt_and_named(tmp_path):
    whole, path = tmp_path / 'whole.bin', tmp_path / 'cut.bin'
    torch.save(_state(), whole)
    data = whole.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(CorruptCheckpointError) as info:
        safe_torch_load(path)
    message = str(info.value)
    assert str(path) in message and 'truncated' in message
    assert 'central directory' in message


@pytest.mark.parametrize('content', [b'this is not a checkpoint\n', pickle.dumps({'a': 1}, protocol=4) + b'junk'],
                         ids=['text', 'pickle-with-junk'])
def test_a_foreign_file_is_corrupt_and_the_message_never_advises_unsafe_loading(tmp_path, content):
    path = tmp_path / 'foreign.bin'
    path.write_bytes(content)
    with pytest.raises(CorruptCheckpointError) as info:
        safe_torch_load(path)
    error = info.value
    assert str(path) in str(error)
    while error is not None:  # what a traceback would print
        assert 'weights_only=False' not in str(error) and 'trusted source' not in str(error)
        error = error.__cause__ or (None if error.__suppress_context__ else error.__context__)


def test_a_missing_file_is_a_file_not_found_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        safe_torch_load(tmp_path / 'absent.bin')


def test_describe_unreadable():
    assert 'cannot be read' in describe_unreadable('/nonexistent/x.bin')


def test_check_finite_accepts_finite_and_non_float_tensors():
    check_finite({'w': torch.ones(2), 'ids': torch.tensor([1, 2]), 'half': torch.zeros(2, dtype=torch.float16),
                  'note': 'not a tensor'}, 'model.bin')


@pytest.mark.parametrize('bad', [float('nan'), float('inf'), float('-inf')])
def test_check_finite_names_the_source_and_the_bad_tensor(bad):
    state = {'good.weight': torch.ones(3), 'bad.weight': torch.tensor([1.0, bad]), 'later.weight': torch.ones(1)}
    with pytest.raises(CheckpointError) as info:
        check_finite(state, '/models/model.bin')
    message = str(info.value)
    assert message.startswith('/models/model.bin: ')
    assert "'bad.weight'" in message and 'good.weight' not in message


def test_check_finite_names_the_first_bad_tensor():
    state = {'a': torch.tensor([float('nan')]), 'b': torch.tensor([float('inf')])}
    with pytest.raises(CheckpointError, match="tensor 'a'"):
        check_finite(state, 'src')


def test_check_finite_sees_bfloat16():
    with pytest.raises(CheckpointError, match="'w'"):
        check_finite({'w': torch.tensor([float('inf')], dtype=torch.bfloat16)}, 'src')
