"""Where a module's weights live, and the devices a model may be put on."""
import re
from typing import List, Union

import torch

from rudolph.errors import ConfigError

__all__ = ['model_device', 'check_device', 'available_devices', 'DEVICE_PATTERN']

#: the device strings accepted: cpu, cuda, cuda:N, mps
DEVICE_PATTERN = re.compile(r'^(cpu|cuda(:\d+)?|mps)$')


def model_device(module: torch.nn.Module) -> torch.device:
    """Device of a module's parameters (CPU for a parameter-less module)."""
    for p in module.parameters():
        return p.device
    return torch.device('cpu')


def available_devices() -> List[str]:
    """The devices of this machine, as :func:`check_device` accepts them (cpu first)."""
    found = ['cpu'] + [f'cuda:{i}' for i in range(torch.cuda.device_count() if torch.cuda.is_available() else 0)]
    if hasattr(torch.backends, 'mps') and torch.backends.mps.is_available():
        found.append('mps')
    return found


def check_device(device: Union[None, str, torch.device]) -> str:
    """``device`` checked (cpu, cuda, cuda:N, mps and present here); ``None``: cuda when available, else cpu.

    A device that does not exist is a :class:`ConfigError` naming it and the devices there are,
    rather than torch's error at the first tensor moved there.
    """
    if device is None:
        return 'cuda' if torch.cuda.is_available() else 'cpu'
    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str) or not DEVICE_PATTERN.match(device):
        raise ConfigError(f'device {device!r}: expected cpu, cuda, cuda:N (N a GPU index) or mps')
    there = ', '.join(available_devices())
    if device.startswith('cuda'):
        if not torch.cuda.is_available():
            raise ConfigError(f'device {device!r}: CUDA is not available here; devices here: {there}')
        index = int(device.split(':')[1]) if ':' in device else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(f'device {device!r}: only {torch.cuda.device_count()} CUDA device(s) here '
                              f'(devices here: {there})')
    if device == 'mps' and 'mps' not in there:
        raise ConfigError(f'device {device!r}: MPS is not available here; devices here: {there}')
    return device

