"""What a fine-tuning run is told (``TrainConfig``, checked when made) and where it stands (``TrainState``)."""
import math
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from torch import nn

from rudolph.checks import setting
from rudolph.errors import ConfigError, RudolphError

__all__ = ['TrainConfig', 'TrainState', 'TrainResult', 'NonFiniteLossError', 'check_config']


class NonFiniteLossError(RudolphError, RuntimeError):
    """The training loss became NaN or infinite; training stopped without writing a checkpoint."""


@dataclass
class TrainConfig:
    """Fine-tuning settings (the CLI flags of ``rudolph finetune`` map onto these fields).

    ``batch_size`` is the *global* batch of one forward pass, split evenly across processes,
    so the same settings give the same optimisation on 1 or N devices; one optimizer step
    uses ``batch_size * grad_accum`` samples. ``warmup`` is a fraction of all steps (< 1)
    or a number of steps (>= 1). ``first_image_token`` also trains the first image token
    (see :meth:`rudolph.model.ruDolphModel.loss`; off by default, as the published loss).
    ``keep_last``: how many of the newest ``step-*`` checkpoints to keep (``None`` or ``0``:
    keep all; the newest complete checkpoint is never deleted). Values that cannot work
    (``max_steps=0``, ``lr=-1``, ``keep_last=-1``, ...) raise :class:`~rudolph.errors.ConfigError`.
    """
    out_dir: str
    epochs: int = 1
    max_steps: Optional[int] = None
    batch_size: int = 4
    grad_accum: int = 1
    lr: float = 2e-5
    weight_decay: float = 0.0
    warmup: float = 0.1
    schedule: str = 'one_cycle'  # 'one_cycle' (as the original notebooks), 'cosine', 'linear', 'constant'
    clip: Optional[float] = 1.0
    optimizer: str = 'adamw'  # or 'adam8bit' (bitsandbytes)
    # 'fp32', 'bf16' or 'fp16' (autocast; fp16 with a grad scaler, CUDA only); 'auto': bf16 autocast where the
    # device computes bf16 natively (CUDA with bf16, CPUs with AVX512-BF16/AMX), else fp32
    precision: str = 'fp32'
    gradient_checkpointing: bool = False
    eval_every: Optional[int] = None
    save_every: Optional[int] = None
    save_final: bool = True
    keep_last: Optional[int] = None
    seed: int = 0
    resume: Optional[str] = None
    cpu: bool = False
    show_progress: bool = True
    log_every: int = 1
    first_image_token: bool = False

    def __post_init__(self) -> None:
        check_config(self)


_CHOICES = {'schedule': ('one_cycle', 'cosine', 'linear', 'constant'), 'optimizer': ('adamw', 'adam8bit'),
            'precision': ('fp32', 'bf16', 'fp16', 'auto')}
# field: (smallest allowed value, may be None, integer only)
_BOUNDS = {'epochs': (1, False, True), 'max_steps': (1, True, True), 'batch_size': (1, False, True),
           'grad_accum': (1, False, True), 'weight_decay': (0, False, False), 'warmup': (0, False, False),
           'eval_every': (1, True, True), 'save_every': (1, True, True), 'keep_last': (0, True, True),
           'log_every': (1, False, True), 'seed': (-2 ** 63, False, True)}


def check_config(config: 'TrainConfig') -> None:
    """Reject settings that cannot work, naming the value and what was expected."""
    if not isinstance(config.out_dir, (str, os.PathLike)) or not os.fspath(config.out_dir):
        raise ConfigError(f'{setting("out_dir")} must be a folder path, got {config.out_dir!r}')
    for name, choices in _CHOICES.items():
        if getattr(config, name) not in choices:
            raise ConfigError(f'{setting(name)} must be one of {list(choices)}, got {getattr(config, name)!r}')
    for name, (low, optional, integer) in _BOUNDS.items():
        value = getattr(config, name)
        if value is None and optional:
            continue
        kind = int if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kind) or not math.isfinite(value) or value < low:
            what = 'an int' if integer else 'a number'
            extra = ' or None' if optional else ''
            meaning = ' (0 or None: keep all)' if name == 'keep_last' else ''
            raise ConfigError(f'{setting(name)} must be {what} >= {low}{extra}{meaning}, got {value!r}')
    if isinstance(config.lr, bool) or not isinstance(config.lr, (int, float)) or not math.isfinite(config.lr) \
            or config.lr <= 0:
        raise ConfigError(f'{setting("lr")} must be a finite number > 0, got {config.lr!r}')
    if config.clip is not None and (isinstance(config.clip, bool) or not isinstance(config.clip, (int, float))
                                    or not math.isfinite(config.clip) or config.clip <= 0):
        raise ConfigError(f'{setting("clip")} must be a number > 0 or None (no clipping), got {config.clip!r}')


@dataclass
class TrainState:
    """Where training stands: optimizer steps done, epoch, batches of that epoch consumed."""
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    total_steps: int = 0
    history: List[Dict[str, Any]] = field(default_factory=list)


@dataclass
class TrainResult:
    model: nn.Module
    state: TrainState
    last_checkpoint: Optional[str]
    eval_history: List[Dict[str, Any]]

    @property
    def history(self) -> List[Dict[str, Any]]:
        return self.state.history


# ----------------------------------------------------------------------------- filesystem
