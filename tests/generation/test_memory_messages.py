"""The memory check's message names the batch size as the caller knows it (issue 14: ``--bs`` on the CLI)."""
import pytest
import torch

from rudolph.cli import commands as cli
from rudolph.errors import ResourceError
from rudolph.generation import memory
from rudolph.generation.memory import MemoryNeed, bs_option, check_memory

NEED = MemoryNeed(fixed=100, per_row=10)


def _check_with(monkeypatch, available: int, bs: int) -> None:
    monkeypatch.setattr(memory, 'available_memory', lambda device: available)
    check_memory(NEED, bs, 'cpu', 'sampling', f'{bs} rows')


def test_python_callers_read_bs_equals_and_the_cli_spelling_is_scoped(monkeypatch):
    with pytest.raises(ResourceError, match=r'with bs=8 .* largest bs that fits is 3 \(pass bs=3 or less\)'):
        _check_with(monkeypatch, 135, 8)
    with bs_option('--bs'):
        with pytest.raises(ResourceError, match=r'with --bs 8 .* largest --bs that fits is 3 \(pass --bs 3 or less\)'):
            _check_with(monkeypatch, 135, 8)
        with pytest.raises(ResourceError, match=r'even with --bs 1 \(4 rows'):
            _check_with(monkeypatch, 105, 4)
    with pytest.raises(ResourceError, match=r'even with bs=1 '):  # the spelling is back once the block ends
        _check_with(monkeypatch, 105, 4)


def test_the_cli_error_names_the_bs_option(tmp_path, monkeypatch, capsys):
    from PIL import Image

    img = tmp_path / 'a.png'
    Image.new('RGB', (64, 64), 'white').save(img)
    monkeypatch.setattr(memory, 'available_memory', lambda device: 1)  # nothing fits: the engine's check refuses
    argv = ['caption', str(img), '--model', 'tiny-shapes', '--captions-num', '8', '--bs', '8', '--quiet']
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert 'error:' in err and 'even with --bs 1' in err and 'bs=' not in err


def test_rows_the_task_fixes_suggest_no_batch_size(monkeypatch, tiny_model):
    """Zero-shot scores a picture and all its classes at once: its message names no --bs to pass."""
    from rudolph.generation.engine import ScorePart
    from rudolph.generation.rows import score_suffixes

    lay = tiny_model.config
    prefixes = torch.randint(4, 100, (2, lay.L + 3))
    suffixes = torch.randint(4, 100, (5, 4))
    part = ScorePart(lay.L + 3, lay.L + 6, lay.text_slice)
    monkeypatch.setattr(memory, 'available_memory', lambda device: 1)
    with bs_option('--bs'):
        with pytest.raises(ResourceError, match=r'2 x 5 rows \(6 rows at once, whatever the batch size\)') as caught:
            score_suffixes(tiny_model, prefixes, suffixes, part, bs=4)
    assert '--bs' not in str(caught.value) and 'bs=' not in str(caught.value)
