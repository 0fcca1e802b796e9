"""Fine-tuning checkpoints on disk: written atomically, complete or not, found again, pruned, resumed exactly.

A checkpoint is a ``step-NNNNNN/`` folder in the layout of :func:`rudolph.pretrained.folder.save_pretrained`
(``model.safetensors``, ``config.json``, a ``README.md`` model card, the tokenizer/VQGAN when they are
not published ones), so ``Components.from_pretrained(folder)`` and ``--model OUT/latest`` load it with
nothing else given; beside it for resuming, ``rng_state_<rank>.pt`` and, written last,
``training_state.pt`` (optimizer, scheduler, progress and the size of every file of the folder).
Everything is tensors and plain data, read with ``weights_only=True``. Checkpoints of older versions
(``pytorch_model.bin`` instead of the first three files) still resume.
"""
import logging
import os
import random
import shutil
import tempfile
from dataclasses import asdict
from typing import Any, Dict, List, Optional, Tuple, Union

import torch

from rudolph.checks import setting
from rudolph.finetune.config import TrainConfig, TrainState
from rudolph.io.safetensors import read_safetensors
from rudolph.pretrained.folder import model_sources, pretrained_config, write_pretrained
from rudolph.pretrained.runs import (  # noqa: F401
    LATEST_NAME,
    LEGACY_WEIGHTS_NAME,
    STATE_NAME,
    WEIGHTS_NAME,
    find_checkpoint,
    safe_load,
    step_number,
)

__all__ = ['WEIGHTS_NAME', 'LEGACY_WEIGHTS_NAME', 'STATE_NAME', 'LATEST_NAME', 'check_writable', 'find_checkpoint',
           'safe_load', 'save_checkpoint', 'load_resume', 'load_optimizer_state', 'set_rng_state', 'remove_leftovers',
           'RESUME_FIXED', 'resume_differences']

logger = logging.getLogger(__name__)

def check_writable(out_dir: Union[str, os.PathLike]) -> str:
    """Create ``out_dir`` if needed and prove it writable; raises ``OSError`` naming the folder otherwise."""
    out_dir = os.fspath(out_dir)
    try:
        os.makedirs(out_dir, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix='.write-test-', dir=out_dir)
        os.close(fd)
        os.remove(probe)
    except OSError as error:
        raise OSError(f'output folder {out_dir!r} is not writable ({type(error).__name__}: {error.strerror or error}); '
                      'expected a folder this process can create files in') from None
    return out_dir


def remove_leftovers(out_dir: str) -> None:
    """Delete the temporary folders of a checkpoint whose writing was killed (they are never complete)."""
    for name in os.listdir(out_dir):
        if name.startswith('.tmp-step-') or name == f'.{LATEST_NAME}.tmp':
            logger.warning('removing %s, left behind by an interrupted checkpoint write', os.path.join(out_dir, name))
            target = os.path.join(out_dir, name)
            if os.path.isdir(target):
                shutil.rmtree(target, ignore_errors=True)
            else:
                os.remove(target)


# ----------------------------------------------------------------------------- building blocks
def _rng_state() -> Dict[str, Any]:
    """Every RNG's state as plain lists and tensors, so that it loads with ``weights_only=True``."""
    import numpy as np

    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {'python': [version, list(internal), gauss],
             'numpy': [str(kind), torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
             'torch': torch.get_rng_state()}
    if torch.cuda.is_available():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    import numpy as np

    version, internal, gauss = state['python']
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state['numpy']
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


def _is_fsdp(accelerator) -> bool:
    return str(accelerator.distributed_type).endswith('FSDP')


def _optimizer_state(accelerator, model, optimizer) -> Dict[str, Any]:
    if _is_fsdp(accelerator):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        return get_optimizer_state_dict(model, optimizer.optimizer,
                                        options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return optimizer.state_dict()


def load_optimizer_state(accelerator, model, optimizer, state: Dict[str, Any]) -> None:
    if _is_fsdp(accelerator):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        set_optimizer_state_dict(model, optimizer.optimizer, state,
                                 options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=False))
    else:
        optimizer.load_state_dict(state)


def _write_state(tmp: str, accelerator, scheduler, optim_state, state: TrainState, config: TrainConfig,
                 training: Optional[Dict[str, Any]] = None) -> None:
    """``training_state.pt``, written last: it lists every file of the checkpoint with its size."""
    files = {name: os.path.getsize(os.path.join(tmp, name)) for name in sorted(os.listdir(tmp))}
    torch.save({
        'optimizer': optim_state,
        'scheduler': scheduler.state_dict(),
        'scaler': accelerator.scaler.state_dict() if accelerator.scaler is not None else None,
        'step': state.step, 'epoch': state.epoch, 'batch_in_epoch': state.batch_in_epoch,
        'total_steps': state.total_steps, 'history': state.history,
        'config': {k: os.fspath(v) if isinstance(v, os.PathLike) else v for k, v in asdict(config).items()},
        'num_processes': accelerator.num_processes, 'files': files, 'training': training,
    }, os.path.join(tmp, STATE_NAME))


def _publish(tmp: str, final: str, out_dir: str, name: str) -> None:
    """Rename the finished temporary folder into place, then point ``latest`` at it."""
    if os.path.isdir(final):
        shutil.rmtree(final)
    os.replace(tmp, final)
    latest_tmp = os.path.join(out_dir, f'.{LATEST_NAME}.tmp')
    with open(latest_tmp, 'w', encoding='utf-8') as f:
        f.write(name)
    os.replace(latest_tmp, os.path.join(out_dir, LATEST_NAME))


def _write_model(tmp: str, accelerator, model, weights: Dict[str, torch.Tensor],
                 training: Optional[Dict[str, Any]], out_dir: str) -> None:
    """The saved-model files (weights, config.json, card, tokenizer/VQGAN when unpublished) of the checkpoint."""

    unwrapped = accelerator.unwrap_model(model)
    sources = model_sources(unwrapped)
    dtype = next((v.dtype for v in weights.values() if v.is_floating_point()), None)
    meta = pretrained_config(unwrapped.config, getattr(unwrapped, 'spc_tokens', None) or {}, sources,
                             training=training, dtype=dtype)
    write_pretrained(tmp, {k: v.detach().cpu() for k, v in weights.items()}, meta, sources,
                     name=os.path.join(os.path.basename(os.path.abspath(out_dir)), LATEST_NAME))


def save_checkpoint(accelerator, model, optimizer, scheduler, state: TrainState, config: TrainConfig,
                    name: str, training: Optional[Dict[str, Any]] = None) -> str:
    """Write ``out_dir/name`` atomically: everything goes to a temporary folder that is renamed at the end.

    ``training`` (data, rows, steps...) goes into ``config.json`` and the model card.
    """
    out_dir = config.out_dir
    final = os.path.join(out_dir, name)
    tmp = os.path.join(out_dir, f'.tmp-{name}')
    # Collectives first (FSDP gathers full weights / optimizer state on every rank).
    weights = accelerator.get_state_dict(model)
    optim_state = _optimizer_state(accelerator, model, optimizer)
    error: Optional[BaseException] = None
    if accelerator.is_main_process:
        try:
            shutil.rmtree(tmp, ignore_errors=True)
            os.makedirs(tmp)
        except OSError as e:
            error = e
    accelerator.wait_for_everyone()
    try:
        if error is None and os.path.isdir(tmp):
            torch.save(_rng_state(), os.path.join(tmp, f'rng_state_{accelerator.process_index}.pt'))
    except OSError as e:
        error = e
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        try:
            if error is None:
                _write_model(tmp, accelerator, model, weights, training, out_dir)
                _write_state(tmp, accelerator, scheduler, optim_state, state, config, training)
                _publish(tmp, final, out_dir, name)
        except OSError as e:
            error = e
        if error is not None:
            shutil.rmtree(tmp, ignore_errors=True)
            raise OSError(f'could not write checkpoint {final!r}: {error}; nothing was left behind') from error
        _prune(out_dir, config.keep_last, name)
        logger.info('saved checkpoint %s (step %d)', final, state.step)
    accelerator.wait_for_everyone()
    return final


def _prune(out_dir: str, keep_last: Optional[int], newest: str) -> None:
    """Keep the ``keep_last`` newest step folders (``None``/``0``: all); ``newest``, just written, always stays."""
    if not keep_last:
        return
    steps = sorted((d for d in os.listdir(out_dir) if d.startswith('step-')), key=step_number)
    for old in steps[:-keep_last]:
        if old != newest:
            shutil.rmtree(os.path.join(out_dir, old), ignore_errors=True)


#: settings a resumed run cannot change: the optimizer and schedule state, the position in the shuffled data
#: and the model card (which states them for the whole run) all come from the checkpoint
RESUME_FIXED = ('lr', 'weight_decay', 'warmup', 'schedule', 'optimizer', 'epochs', 'max_steps', 'batch_size',
                'grad_accum', 'seed', 'clip', 'precision', 'first_image_token')


def resume_differences(saved: Dict[str, Any], config: TrainConfig, data: Dict[str, Any]) -> List[str]:
    """What a run resumed from the training state ``saved`` would change: each setting of :data:`RESUME_FIXED`
    and the data (its fingerprint), as ``option: THEN in the checkpoint, NOW now``."""
    then, now = saved.get('config') or {}, asdict(config)
    differences = [f'{setting(key)}: {then.get(key)!r} in the checkpoint, {now[key]!r} now'
                   for key in RESUME_FIXED if key in then and then[key] != now[key]]
    trained = saved.get('training') or {}
    if trained.get('data_sha256') and trained['data_sha256'] != data['data_sha256']:
        differences.append(f'{setting("data")}: {trained.get("data")!r} ({trained.get("rows")} rows) in the '
                           f'checkpoint, {data["data"]!r} ({data["rows"]} rows, other content) now')
    return differences


def load_resume(path: str, accelerator) -> Tuple[Dict[str, Any], Dict[str, torch.Tensor], Optional[Dict[str, Any]]]:
    folder = find_checkpoint(path)
    state = safe_load(os.path.join(folder, STATE_NAME), 'training state')
    weights = _load_weights(folder)
    rng_file = os.path.join(folder, f'rng_state_{accelerator.process_index}.pt')
    rng = safe_load(rng_file, 'RNG state') if os.path.isfile(rng_file) else None
    logger.info('resuming from %s (step %d)', folder, state['step'])
    return state, weights, rng


def _load_weights(folder: str) -> Dict[str, torch.Tensor]:
    """The weights of a checkpoint: ``model.safetensors``, or the ``pytorch_model.bin`` of older versions."""

    path = os.path.join(folder, WEIGHTS_NAME)
    if os.path.isfile(path):
        return read_safetensors(path, 'model weights')
    return safe_load(os.path.join(folder, LEGACY_WEIGHTS_NAME), 'model weights')
