"""The engine's memory estimate: a call that would not fit is refused before allocating, naming the
largest ``bs`` that does."""
import contextlib
import os
from dataclasses import dataclass
from typing import Iterator, Optional, Union

import torch

from rudolph.checks import command_line_options, setting
from rudolph.errors import ResourceError

__all__ = ['MemoryNeed', 'memory_need', 'available_memory', 'check_memory', 'bs_option']


# Float32 temporaries per sampled logit: the logits, the filtered copy, sort values and int64
# indices, softmax, cumsum, masks and the final probabilities.
_LOGIT_BYTES = 40
# Activations of one forward pass per position, in units of hidden_size elements (residual,
# attention projections and the 4x MLP), so a batch's transient tensors are counted too.
_ACTIVATION_WIDTH = 12

@contextlib.contextmanager
def bs_option(name: str) -> Iterator[None]:
    """Within the block, memory messages name the batch size ``--bs`` (``name`` starting with ``-``; kept for
    callers of earlier versions: :func:`rudolph.checks.command_line_options` is the one switch)."""
    with command_line_options() if name.startswith('-') else contextlib.nullcontext():
        yield


def _bs(value: Optional[int] = None) -> str:
    """The batch size option, with ``value`` in its caller's form (``bs=3`` or ``--bs 3``)."""
    return setting('bs') if value is None else setting('bs', value)


@dataclass(frozen=True)
class MemoryNeed:
    """Bytes an engine call needs: ``fixed`` whatever ``bs`` is, plus ``per_row`` for each batch row."""

    fixed: int
    per_row: int

    def total(self, bs: int) -> int:
        return self.fixed + self.per_row * bs

    def largest_bs(self, available: int) -> int:
        """The largest batch that fits in ``available`` bytes (0: not even one row)."""
        return max(0, (available - self.fixed) // max(self.per_row, 1))


def memory_need(model, length: int, *, logit_positions: int, n_vocab: int, held_bytes: int, branches: int = 1,
                full_attention: bool = False, forward_positions: Optional[int] = None) -> MemoryNeed:
    """Estimated memory of one batch of ``generate`` or ``cross_entropy`` (the one estimate of both).

    Per row and branch: the preallocated KV cache ``2 x layers x length x hidden x dtype``, the
    activations of a forward pass over ``forward_positions`` positions (default ``length``; with
    ``full_attention``, i.e. no cache, the ``heads x length^2`` attention scores too) and the
    float32 logits of ``logit_positions`` positions over ``n_vocab`` classes. Fixed: ``held_bytes``
    (the results kept until the end) and the batch-1 prefix caches.
    """
    size = next(model.parameters()).element_size()
    layers, hidden, heads = model.num_layers, model.hidden_size, model.num_attention_heads
    cache = 2 * layers * length * hidden * size
    width = length if forward_positions is None else forward_positions
    activations = _ACTIVATION_WIDTH * width * hidden * size + (heads * length * length * size if full_attention else 0)
    prefix = _ACTIVATION_WIDTH * length * hidden * size  # the batch-1 prefix pass
    per_row = branches * (cache + activations + logit_positions * n_vocab * _LOGIT_BYTES) + length * 8
    return MemoryNeed(fixed=held_bytes + branches * (cache + prefix), per_row=per_row)


def available_memory(device: Union[str, torch.device]) -> Optional[int]:
    """Bytes that can still be allocated on ``device`` (``None``: unknown, then nothing is checked).

    CPU: ``MemAvailable`` of ``/proc/meminfo`` (Linux), else the free physical pages of
    ``os.sysconf``; CUDA: the driver's free memory plus what PyTorch's allocator holds unused.
    """
    device = torch.device(device)
    if device.type == 'cuda':
        free, _ = torch.cuda.mem_get_info(device)
        return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
    if device.type != 'cpu':
        return None
    try:
        with open('/proc/meminfo', encoding='ascii') as f:
            for line in f:
                if line.startswith('MemAvailable:'):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf('SC_AVPHYS_PAGES')) * int(os.sysconf('SC_PAGE_SIZE'))
    except (AttributeError, OSError, ValueError):
        return None


def _gib(n: int) -> str:
    return f'{n / 2 ** 30:.2f} GiB'


def check_memory(need: MemoryNeed, bs: int, device: Union[str, torch.device], what: str, count: str, *,
                 batch_chosen: bool = True) -> None:
    """``ResourceError`` before allocating if a batch of ``bs`` rows would not fit (gives the largest ``bs`` that does).

    ``count`` names the number of results (e.g. ``'num=100000'``) for the message; the batch size
    is spelled as :func:`bs_option` says (the CLI: ``--bs``). ``batch_chosen=False``: the task fixes
    ``bs`` (e.g. one picture and all its classes), so the message suggests no batch size.
    """
    available = available_memory(device)
    if available is None or need.total(bs) <= available:
        return
    where = f'{_gib(available)} of {torch.device(device).type} memory is available'
    if not batch_chosen:  # the task fixes the rows alive at once (a prefix and all its candidates)
        raise ResourceError(f'{what} needs about {_gib(need.total(bs))} for {count} ({bs} rows at once, whatever '
                            f'the batch size) but {where}; score fewer candidates per call, or use a smaller model '
                            f'or a lower precision')
    best = need.largest_bs(available)
    if best >= 1:
        raise ResourceError(f'{what} with {_bs(bs)} needs about {_gib(need.total(bs))} but {where}; the largest '
                            f'{_bs()} that fits is {best} (pass {_bs(best)} or less)')
    raise ResourceError(f'{what} needs about {_gib(need.total(1))} even with {_bs(1)} ({count}: the results alone '
                        f'take {_gib(need.fixed)}) but {where}; ask for fewer results per call')
