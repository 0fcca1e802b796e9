"""The fine-tuning loop: one code path for 1 CPU, 1 GPU and ``accelerate launch`` on many (DDP / FSDP).

Settings live in :mod:`.config`, checkpoints on disk in :mod:`.checkpoints`.
"""
import json
import logging
import math
import os
import random
import signal
import threading
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
from torch import nn
from torch.utils.data import DataLoader

from rudolph.checks import setting
from rudolph.errors import ConfigError, MissingDependencyError
from rudolph.finetune.checkpoints import (
    STATE_NAME,
    WEIGHTS_NAME,
    check_writable,
    find_checkpoint,
    load_optimizer_state,
    load_resume,
    remove_leftovers,
    resume_differences,
    safe_load,
    save_checkpoint,
    set_rng_state,
)
from rudolph.finetune.config import NonFiniteLossError, TrainConfig, TrainResult, TrainState, check_config
from rudolph.finetune.data import EncodedDataset, TaskBatchSampler, collate
from rudolph.io.paths import naming_file
from rudolph.model.fp16 import unwrap_model
from rudolph.model.loading import check_state_dict
from rudolph.model.precision import cpu_has_native_bf16
from rudolph.model.quant import QUANTIZED_LAYERS

__all__ = ['TrainConfig', 'TrainResult', 'TrainState', 'Trainer', 'NonFiniteLossError', 'train', 'evaluate',
           'find_checkpoint', 'check_writable', 'safe_load', 'WEIGHTS_NAME', 'STATE_NAME']

logger = logging.getLogger(__name__)

PARTS = ('l_text_loss', 'image_loss', 'r_text_loss')
_WEIGHT_OF = {'l_text_loss': 'lt_loss_weight', 'image_loss': 'img_loss_weight', 'r_text_loss': 'rt_loss_weight'}


def _make_optimizer(params: List[nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == 'adamw':
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == 'adam8bit':
        try:
            import bitsandbytes as bnb
        except ImportError:
            raise MissingDependencyError(f"{setting('optimizer', 'adam8bit')} needs bitsandbytes: pip install "
                                         f"bitsandbytes (CUDA only); or use {setting('optimizer', 'adamw')}") from None
        return bnb.optim.AdamW8bit(params, lr=config.lr, weight_decay=config.weight_decay)
    raise ConfigError(f"optimizer must be 'adamw' or 'adam8bit', got {config.optimizer!r}")


def _warmup_steps(config: TrainConfig, total: int) -> int:
    if config.warmup < 0:
        raise ValueError(f'warmup must be >= 0 (a fraction < 1 or a number of steps), got {config.warmup}')
    return int(round(config.warmup * total)) if config.warmup < 1 else int(config.warmup)


def _make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, total: int):
    warmup = min(_warmup_steps(config, total), total)
    if config.schedule == 'one_cycle' and total >= max(warmup, 2) + 1:
        # As the original notebooks: max_lr=lr, final_div_factor=500; warm-up fraction = pct_start.
        # (OneCycleLR needs >= 2 warm-up steps and one more after them; shorter runs use 'constant'.)
        pct = max(warmup, 2) / total
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=max(total, 1),
                                                   pct_start=pct, final_div_factor=500, cycle_momentum=False)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = (step - warmup) / max(1, total - warmup)
        if config.schedule == 'cosine':
            return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
        if config.schedule == 'linear':
            return max(0.0, 1 - progress)
        return 1.0

    if config.schedule not in ('one_cycle', 'cosine', 'linear', 'constant'):
        raise ValueError(f"schedule must be 'one_cycle', 'cosine', 'linear' or 'constant', got {config.schedule!r}")
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _seed_everything(seed: int) -> None:
    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


class _InterruptFlag:
    """First Ctrl-C sets a flag (the loop saves and stops at the next step); the second one aborts."""

    def __init__(self):
        self.set = False
        self.aborted = False
        self.previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread() and \
                signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self.previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def _handler(self, signum, frame):
        if self.set:
            self.aborted = True
            raise KeyboardInterrupt
        self.set = True
        logger.warning('Ctrl-C: saving a checkpoint after the current step (press again to abort without saving)')

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
        return False


# ----------------------------------------------------------------------------- evaluation
@torch.no_grad()
def evaluate(model: nn.Module, dataloader, accelerator=None, first_image_token: bool = False) -> Dict[str, float]:
    """Mean weighted loss and loss parts over ``dataloader`` (batches from :func:`collate` with weights)."""
    was_training = model.training
    model.eval()
    sums = torch.zeros(1 + 2 * len(PARTS) + 1, dtype=torch.float64)
    device = next(model.parameters()).device
    for batch in dataloader:
        loss, values = model(batch['input_ids'].to(device), return_loss=True, first_image_token=first_image_token,
                             **batch['weights'])
        b = batch['input_ids'].shape[0]
        row = [float(loss) * b]
        for part in PARTS:
            used = bool(batch['weights'][_WEIGHT_OF[part]])
            row += [float(values[part]) * b if used else 0.0, b if used else 0.0]
        row.append(b)
        sums += torch.tensor(row, dtype=torch.float64)
    if accelerator is not None:
        sums = accelerator.reduce(sums.to(accelerator.device), reduction='sum').cpu()
    model.train(was_training)
    n = float(sums[-1])
    out = {'eval_loss': float(sums[0]) / n if n else float('nan')}
    for i, part in enumerate(PARTS):
        count = float(sums[2 + 2 * i])
        out[f'eval_{part}'] = float(sums[1 + 2 * i]) / count if count else float('nan')
    return out


# ----------------------------------------------------------------------------- training
def _make_loader(dataset: EncodedDataset, batch_size: int, shuffle: bool, seed: int) -> Tuple[DataLoader, TaskBatchSampler]:
    sampler = TaskBatchSampler(dataset.tasks, batch_size, shuffle=shuffle, seed=seed)
    # Own generator: creating an iterator must not draw from the global RNG (that would shift
    # the dropout masks of a resumed run, which re-creates the iterator of its current epoch).
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=lambda items: collate(items, dataset.weights),
                        generator=torch.Generator().manual_seed(seed))
    return loader, sampler


def train(model: nn.Module, train_data: EncodedDataset, config: TrainConfig,
          eval_data: Optional[EncodedDataset] = None,
          step_callback: Optional[Callable[[TrainState, Dict[str, Any]], None]] = None) -> TrainResult:
    """Fine-tune ``model`` on ``train_data`` (an :class:`EncodedDataset` from ``prepare_dataset``).

    The model is trained in place (parameters with ``requires_grad=False``, e.g. after
    :func:`freeze`, stay fixed). Checkpoints go to ``config.out_dir/step-XXXXXX``:
    a self-describing model folder (``model.safetensors``, ``config.json``, a model card:
    ``Components.from_pretrained(folder)`` loads it alone, and so does ``config.out_dir`` or its
    ``latest``; also ``get_rudolph_model(name, checkpoint_path=folder)``); ``training_state.pt`` and
    ``rng_state_*.pt`` (plain data, loaded with ``weights_only=True``) allow a bit-exact
    resume (``config.resume``) at any step of any epoch. Runs unchanged under
    ``accelerate launch`` (DDP, FSDP). ``step_callback(state, logs)`` is called after every
    optimizer step. Ctrl-C saves a checkpoint and re-raises ``KeyboardInterrupt``; a NaN/inf
    loss raises :class:`NonFiniteLossError` without saving. The trained model comes back in eval
    mode without gradient checkpointing, ready for the tasks.
    """
    return Trainer(model, train_data, config, eval_data=eval_data, step_callback=step_callback).run()


def _check_trainable_model(model: nn.Module) -> None:
    """``ConfigError`` for a model whose weights cannot learn: quantised layers hold their weights as buffers."""
    quantised = [(name, m.method) for name, m in model.named_modules() if isinstance(m, QUANTIZED_LAYERS)]
    if quantised:
        raise ConfigError(f"cannot fine-tune a model loaded with quantize={quantised[0][1]!r} ({len(quantised)} "
                          f"quantised layers, e.g. {quantised[0][0]!r}): quantised weights are for inference. Load it without "
                          f"quantize (float32, or {setting('precision', 'bf16')} for bf16 autocast while training), "
                          f"then quantise the result")


def resolve_train_precision(precision: str, cpu: bool) -> str:
    """``'auto'`` -> ``'bf16'`` where the device computes bf16 natively, else ``'fp32'``; others unchanged."""
    if precision != 'auto':
        return precision

    native = cpu_has_native_bf16() if cpu else torch.cuda.is_bf16_supported()
    chosen = 'bf16' if native else 'fp32'
    logger.info('%s: %s (%s)', setting('precision', 'auto'), chosen, f"{'CPU' if cpu else 'CUDA'} "
                f"{'has' if native else 'has no'} native bf16")
    return chosen


class Trainer:
    """One fine-tuning run of :func:`train`: :meth:`setup`, :meth:`resume`, then :meth:`run` (steps,
    :meth:`evaluate`, :meth:`save`)."""

    def __init__(self, model: nn.Module, train_data: EncodedDataset, config: TrainConfig,
                 eval_data: Optional[EncodedDataset] = None,
                 step_callback: Optional[Callable[[TrainState, Dict[str, Any]], None]] = None):
        check_config(config)  # again: fields may have been changed after construction
        if not isinstance(train_data, EncodedDataset):
            raise TypeError(f'train_data must be an EncodedDataset (see prepare_dataset), got '
                            f'{type(train_data).__name__}')
        model = unwrap_model(model)  # the original's FP16Module (get_rudolph_model(fp16=True)): train the model in it
        _check_trainable_model(model)
        self.model, self.train_data, self.config, self.eval_data = model, train_data, config, eval_data
        self.step_callback = step_callback
        self.state = TrainState()
        self.last_checkpoint: Optional[str] = None
        self.eval_history: List[Dict[str, Any]] = []
        self.metrics_path = os.path.join(config.out_dir, 'metrics.jsonl')
        self._data_sha256: Optional[str] = None

    # ------------------------------------------------------------------ setup
    def _make_accelerator(self):
        from accelerate import Accelerator
        from accelerate.state import AcceleratorState
        from accelerate.utils import DataLoaderConfiguration

        config = self.config
        check_writable(config.out_dir)
        cpu = config.cpu or not torch.cuda.is_available()
        if config.precision == 'fp16' and cpu:
            raise ConfigError(f"{setting('precision', 'fp16')} needs a CUDA device (it trains with a gradient "
                              f"scaler); use {setting('precision', 'bf16')} or 'fp32' on CPU")
        # Accelerate keeps one process-wide state; a new precision in the same process (a notebook
        # training twice) must reset it. The process group (PartialState) is kept.
        if AcceleratorState._shared_state:
            AcceleratorState._reset_state(reset_partial_state=False)
        precision = resolve_train_precision(config.precision, cpu)
        accelerator = Accelerator(
            mixed_precision={'fp32': 'no'}.get(precision, precision), cpu=cpu,
            gradient_accumulation_steps=config.grad_accum, rng_types=[],
            # The global batch is split across processes: N devices optimise exactly like one.
            dataloader_config=DataLoaderConfiguration(split_batches=True))
        if config.batch_size % accelerator.num_processes:
            raise ConfigError(f'{setting("batch_size", config.batch_size)} (the global batch) must be divisible by '
                              f'the number of processes ({accelerator.num_processes})')
        return accelerator

    def load_resume_weights(self) -> Tuple[Optional[Dict[str, Any]], Optional[Dict[str, Any]]]:
        """Weights of ``config.resume`` into the model; returns its training and RNG state (or seeds)."""
        config = self.config
        if not config.resume:
            _seed_everything(config.seed)
            return None, None
        resume_state, weights, rng = load_resume(config.resume, self.accelerator)
        self.check_resume(resume_state)

        self.model.load_state_dict(check_state_dict(self.model, weights, 'the model being trained'), strict=False)
        return resume_state, rng

    def data_record(self) -> Dict[str, Any]:
        """The training data as the checkpoints record it: its file, rows and content fingerprint."""
        if self._data_sha256 is None:
            self._data_sha256 = self.train_data.fingerprint()
        return {'data': getattr(self.train_data, 'source', None), 'rows': len(self.train_data),
                'data_sha256': self._data_sha256}

    def check_resume(self, resume_state: Dict[str, Any]) -> None:
        """Refuse to resume with settings or data the checkpoint's state cannot continue (each one named), so
        that the model card and ``config.json`` describe the whole run."""
        differences = resume_differences(resume_state, self.config, self.data_record())
        if differences:
            raise ConfigError(
                f'{setting("resume", self.config.resume)}: the run was trained with other settings, which a resumed '
                f'run cannot change (optimizer, schedule and data position come from the checkpoint, and its model '
                f'card states them for the whole run): {"; ".join(differences)}. Resume with the settings of the run, '
                'or start a new run in another output folder')
        if not (resume_state.get('training') or {}).get('data_sha256'):
            logger.warning('%s records no fingerprint of its data (saved by an older rudolph): the data of this run '
                           'cannot be checked against it', self.config.resume)

    def _trainable_parameters(self) -> List[nn.Parameter]:
        model = self.model
        if any(p.dtype != torch.float32 for p in model.parameters() if p.requires_grad):
            logger.warning('trainable parameters are not float32; converting the model to float32 (half-precision '
                           'weights lose small updates; precision=%r sets the compute precision)',
                           self.config.precision)
            model.float()
        model.gradient_checkpointing = bool(self.config.gradient_checkpointing)
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise ConfigError('every parameter is frozen: nothing to train')
        return params

    def setup(self) -> Tuple[Optional[Dict[str, Any]], Optional[Dict[str, Any]]]:
        """Accelerator, model, loaders, optimizer and schedule; returns the state to :meth:`resume` from."""
        config = self.config
        self.accelerator = self._make_accelerator()
        if self.accelerator.is_main_process:
            remove_leftovers(config.out_dir)
        self.accelerator.wait_for_everyone()
        resume_state, rng = self.load_resume_weights()
        self.params = self._trainable_parameters()
        loader, self.sampler = _make_loader(self.train_data, config.batch_size, shuffle=True, seed=config.seed)
        steps_per_epoch = math.ceil(len(self.sampler) / config.grad_accum)
        self.total = config.max_steps if config.max_steps is not None else steps_per_epoch * config.epochs
        optimizer = _make_optimizer(self.params, config)
        scheduler = _make_scheduler(optimizer, config, self.total)
        self.model, self.optimizer, self.train_loader, self.scheduler = self.accelerator.prepare(
            self.model, optimizer, loader, scheduler)
        self.eval_loader = None
        if self.eval_data is not None:
            eval_loader, _ = _make_loader(self.eval_data, config.batch_size, shuffle=False, seed=0)
            self.eval_loader = self.accelerator.prepare(eval_loader)
        self.state = TrainState(total_steps=self.total)
        return resume_state, rng

    def resume(self, resume_state: Optional[Dict[str, Any]], rng: Optional[Dict[str, Any]]) -> None:
        """Optimizer, schedule, scaler, position and RNG state of the checkpoint (nothing for a fresh run)."""
        if resume_state is not None:
            accelerator = self.accelerator
            load_optimizer_state(accelerator, self.model, self.optimizer, resume_state['optimizer'])
            self.scheduler.scheduler.load_state_dict(resume_state['scheduler'])
            if resume_state.get('scaler') is not None and accelerator.scaler is not None:
                accelerator.scaler.load_state_dict(resume_state['scaler'])
            self.state = TrainState(step=resume_state['step'], epoch=resume_state['epoch'],
                                    batch_in_epoch=resume_state['batch_in_epoch'], total_steps=self.total,
                                    history=list(resume_state['history']))
            if rng is not None:
                set_rng_state(rng)
        if self.accelerator.is_main_process:
            # Rewrite the log so that a resumed run does not repeat the steps after its checkpoint.
            with naming_file(self.metrics_path), open(self.metrics_path, 'w', encoding='utf-8') as f:
                for entry in self.state.history:
                    f.write(json.dumps(entry) + '\n')

    # ------------------------------------------------------------------ pieces of a step
    def log(self, entry: Dict[str, Any]) -> None:
        if self.accelerator.is_main_process:
            with naming_file(self.metrics_path), open(self.metrics_path, 'a', encoding='utf-8') as f:
                f.write(json.dumps(entry) + '\n')

    def save(self, name: Optional[str] = None) -> str:
        """Checkpoint ``out_dir/name`` (default ``step-XXXXXX`` of the current step)."""
        self.optimizer.zero_grad(set_to_none=True)
        name = name or f'step-{self.state.step:06d}'
        self.last_checkpoint = save_checkpoint(self.accelerator, self.model, self.optimizer, self.scheduler,
                                               self.state, self.config, name, training=self.training_summary())
        return self.last_checkpoint

    def training_summary(self) -> Dict[str, Any]:
        """What the model card and ``config.json`` of a checkpoint say about this run."""
        from collections import Counter

        config, state = self.config, self.state
        last = state.history[-1]['loss'] if state.history else None
        return {**self.data_record(), 'tasks': dict(Counter(self.train_data.tasks)), 'steps': state.step,
                'total_steps': self.total,
                'epochs': state.epoch, 'batch_size': config.batch_size, 'grad_accum': config.grad_accum,
                'lr': config.lr, 'schedule': config.schedule, 'precision': config.precision,
                'first_image_token': config.first_image_token,
                'last_loss': round(float(last), 4) if last is not None else None,
                'eval': self.eval_history[-1] if self.eval_history else None}

    def evaluate(self) -> Dict[str, Any]:
        """Evaluate on the eval data, log and record the result."""
        result = {'step': self.state.step,
                  **evaluate(self.model, self.eval_loader, self.accelerator, self.config.first_image_token)}
        self.eval_history.append(result)
        self.log(result)
        logger.info('step %d: %s', self.state.step, ', '.join(f'{k}={v:.4f}' for k, v in result.items() if k != 'step'))
        return result

    def micro_step(self, batch: Dict[str, Any], interrupted: bool) -> torch.Tensor:
        """Forward/backward of one micro-batch (optimizer step when accumulation is complete).

        Returns the loss parts averaged over processes, and the Ctrl-C flag as the last entry.
        """
        weights = batch['weights']
        with self.accelerator.accumulate(self.model):
            loss, values = self.model(batch['input_ids'], return_loss=True,
                                      first_image_token=self.config.first_image_token, **weights)
            # A part with weight 0 is not trained (its value may be meaningless, e.g. the
            # zero image of text QA), so it is left out of the logged averages.
            row = [float(loss.detach())]
            for part in PARTS:
                used = bool(weights[_WEIGHT_OF[part]])
                row += [float(values[part]) if used else 0.0, float(used)]
            # One all-reduce per micro-step: loss parts for logging, NaN check and Ctrl-C, agreed by all ranks.
            stats = torch.tensor(row + [float(interrupted)], dtype=torch.float64)
            stats = self.accelerator.reduce(stats.to(self.accelerator.device), reduction='mean').cpu()
            if not math.isfinite(float(stats[0])):
                raise NonFiniteLossError(
                    f'loss is {float(stats[0])} at step {self.state.step + 1} (epoch {self.state.epoch}, task '
                    f'{batch["task"]!r}, parts { {p: float(values[p]) for p in PARTS} }); stopped without '
                    f'saving. Last checkpoint: {self.last_checkpoint or "none"}. Try a lower {setting("lr")}, '
                    f"{setting('precision', 'bf16')} instead of 'fp16', or check the data")
            self.accelerator.backward(loss)
            if self.accelerator.sync_gradients and self.config.clip:
                self.accelerator.clip_grad_norm_(self.params, self.config.clip)
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
        return stats

    def _entry(self, acc: torch.Tensor, micro: int) -> Dict[str, Any]:
        entry: Dict[str, Any] = {'step': self.state.step, 'epoch': self.state.epoch, 'loss': float(acc[0]) / micro,
                                 'lr': self.scheduler.get_last_lr()[0]}
        for i, part in enumerate(PARTS):
            count = float(acc[2 + 2 * i])
            entry[part] = float(acc[1 + 2 * i]) / count if count else None
        return entry

    def after_step(self, entry: Dict[str, Any], bar, interrupted: bool) -> None:
        """Log, evaluate, call back and checkpoint after an optimizer step; Ctrl-C stops here."""
        state, config = self.state, self.config
        state.history.append(entry)
        if state.step % max(1, config.log_every) == 0 or state.step == self.total:
            self.log(entry)
        bar.update(1)
        bar.set_postfix(loss=f'{entry["loss"]:.4f}', **{
            k.split('_loss')[0]: f'{entry[k]:.3f}' for k in PARTS if entry[k] is not None})
        if self.eval_loader is not None and config.eval_every and (
                state.step % config.eval_every == 0 or state.step == self.total):
            self.evaluate()
        if self.step_callback is not None:
            self.step_callback(state, entry)
        if interrupted:
            raise KeyboardInterrupt
        if config.save_every and state.step % config.save_every == 0 and state.step < self.total:
            self.save()

    # ------------------------------------------------------------------ the loop
    def _epoch(self, interrupt: '_InterruptFlag', bar) -> None:
        """Train on the rest of the current epoch (from ``batch_in_epoch``), or up to the last step."""
        state = self.state
        # The prepared loader re-sets the sampler's epoch from its own counter when it starts
        # iterating; that counter restarts at 0 in a resumed process, so set it from the state.
        self.train_loader.set_epoch(state.epoch)
        self.sampler.set_epoch(state.epoch)
        skip = state.batch_in_epoch
        # Running sums over the micro-batches of one optimizer step: loss, (part sum, part count) x 3.
        acc = torch.zeros(1 + 2 * len(PARTS), dtype=torch.float64)
        micro = 0
        for index, batch in enumerate(self.train_loader):
            if index < skip:  # resumed mid-epoch: these batches were already trained on
                continue
            stats = self.micro_step(batch, interrupt.set)
            acc += stats[:-1]
            micro += 1
            if not self.accelerator.sync_gradients:
                continue
            state.step += 1
            state.batch_in_epoch = index + 1
            entry = self._entry(acc, micro)
            acc.zero_()
            micro = 0
            self.after_step(entry, bar, float(stats[-1]) > 0)
            if state.step >= self.total:
                if index + 1 < len(self.train_loader):
                    return
                break
        state.epoch += 1
        state.batch_in_epoch = 0

    def run(self) -> TrainResult:
        """Set up, resume, train to the last step and save; see :func:`train`."""
        from tqdm.auto import tqdm

        self.resume(*self.setup())
        show = self.config.show_progress and self.accelerator.is_main_process
        bar = tqdm(total=self.total, initial=self.state.step, desc='finetune', unit='step', disable=not show,
                   dynamic_ncols=True)
        with _InterruptFlag() as interrupt:
            try:
                while self.state.step < self.total:
                    self._epoch(interrupt, bar)
            except KeyboardInterrupt:
                bar.close()
                if interrupt.aborted:
                    logger.warning('aborted at step %d without saving', self.state.step)
                    raise
                logger.warning('interrupted at step %d: saving a checkpoint before exiting', self.state.step)
                path = self.save()
                logger.warning('saved %s; continue with %s', path, setting('resume', self.config.out_dir))
                raise
        bar.close()
        if self.config.save_final:
            self.save()
        unwrapped = self.accelerator.unwrap_model(self.model)
        # handed back ready for inference: dropout off, and no gradient checkpointing (which refuses the KV cache)
        unwrapped.eval()
        unwrapped.gradient_checkpointing = False
        self.accelerator.free_memory()
        return TrainResult(model=unwrapped, state=self.state, last_checkpoint=self.last_checkpoint,
                           eval_history=self.eval_history)
