"""Fine-tuning output folders: the ``step-NNNNNN/`` checkpoints a run writes, which are complete, and the one
``latest`` names. The trainer (:mod:`rudolph.finetune.checkpoints`) writes them; loading a model from a run
(``--model OUT/latest``) and resuming one both find them here.
"""
import logging
import os
from typing import Any, List, Optional, Union

from rudolph.errors import CorruptCheckpointError
from rudolph.io.files import safe_torch_load

__all__ = ['WEIGHTS_NAME', 'LEGACY_WEIGHTS_NAME', 'STATE_NAME', 'LATEST_NAME', 'find_checkpoint', 'safe_load', 'step_number']

logger = logging.getLogger(__name__)

WEIGHTS_NAME = 'model.safetensors'
#: the weights file of checkpoints written before the self-describing format (still resumed)
LEGACY_WEIGHTS_NAME = 'pytorch_model.bin'
STATE_NAME = 'training_state.pt'
LATEST_NAME = 'latest'


def step_number(name: str) -> int:
    """The N of a ``step-N`` folder name; -1 for any other name."""
    try:
        return int(name[len('step-'):])
    except ValueError:
        return -1


def safe_load(path: str, what: str = 'checkpoint file') -> Any:
    """A file of this trainer (tensors and plain data only); errors name the file, nothing is unpickled."""
    return safe_torch_load(path, what, training_objects=False)


def _incomplete_reason(folder: str) -> Optional[str]:
    """``None`` if ``folder`` is a complete checkpoint, else why not.

    Complete: ``training_state.pt`` (written last) loads and lists every file of the
    checkpoint with its size, and each file exists with that size.
    """
    state_path = os.path.join(folder, STATE_NAME)
    if not os.path.isfile(state_path):
        return f'{STATE_NAME} is missing'
    try:
        state = safe_load(state_path, 'training state')
    except CorruptCheckpointError as error:  # an unsafe (tampered) file is an error, not a fallback
        return str(error)
    files = state.get('files') if isinstance(state, dict) else None
    if not isinstance(files, dict) or not (WEIGHTS_NAME in files or LEGACY_WEIGHTS_NAME in files):
        return f'{STATE_NAME} lists no checkpoint files (written by an older rudolph?)'
    for name, size in files.items():
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            return f'{name} is missing'
        if os.path.getsize(path) != size:
            return f'{name} has {os.path.getsize(path)} bytes, expected {size} (truncated or modified)'
    return None


def _candidates(path: str) -> List[str]:
    """Checkpoint folders of an output folder, the one ``latest`` names first, then newest first."""
    steps = sorted((d for d in os.listdir(path) if d.startswith('step-') and os.path.isdir(os.path.join(path, d))),
                   key=step_number, reverse=True)
    latest = os.path.join(path, LATEST_NAME)
    if os.path.isfile(latest):
        with open(latest, encoding='utf-8') as f:
            name = f.read().strip()
        if name in steps:
            steps.remove(name)
            steps.insert(0, name)
    return [os.path.join(path, d) for d in steps]


def find_checkpoint(path: Union[str, os.PathLike]) -> str:
    """The checkpoint folder ``path`` points at: itself, or an output folder's newest complete checkpoint.

    A newer checkpoint that is incomplete (e.g. a truncated ``model.safetensors``) is skipped
    with a warning naming it and the one used instead.
    """
    path = os.fspath(path)
    if os.path.isfile(os.path.join(path, STATE_NAME)):
        reason = _incomplete_reason(path)
        if reason is not None:
            raise CorruptCheckpointError(f'checkpoint {path!r} is incomplete: {reason}; resume from its output '
                                         'folder to fall back to the newest complete checkpoint')
        return path
    skipped = []
    for candidate in (_candidates(path) if os.path.isdir(path) else []):
        reason = _incomplete_reason(candidate)
        if reason is None:
            for bad, why in skipped:
                logger.warning('checkpoint %s is incomplete (%s); using %s instead', bad, why, candidate)
            return candidate
        skipped.append((candidate, reason))
    if skipped:
        raise CorruptCheckpointError(f'no complete checkpoint in {path!r}: ' +
                                     '; '.join(f'{bad}: {why}' for bad, why in skipped))
    raise FileNotFoundError(f'no checkpoint to resume from at {path!r}: expected a folder with {STATE_NAME} '
                            'or an output folder holding step-* checkpoints')
