"""Devices: the device strings accepted, and where a module's weights live."""
import re
from typing import Optional

import torch

from rudolph.errors import ConfigError

__all__ = ['model_device', 'check_device', 'DEVICE_PATTERN']

#: the device strings accepted: cpu, cuda, cuda:N, mps
DEVICE_PATTERN = re.compile(r'^(cpu|cuda(:\d+)?|mps)$')


def model_device(module: torch.nn.Module) -> torch.device:
    """Device of a module's parameters (CPU for a parameter-less module)."""
    for p in module.parameters():
        return p.device
    return torch.device('cpu')


def check_device(device: Optional[str]) -> str:
    """``device`` checked (cpu, cuda, cuda:N, mps and available here); ``None``: cuda when available, else cpu."""
    if device is None:
        return 'cuda' if torch.cuda.is_available() else 'cpu'
    if not isinstance(device, str) or not DEVICE_PATTERN.match(device):
        raise ConfigError(f'device {device!r}: expected cpu, cuda, cuda:N (N a GPU index) or mps')
    if device.startswith('cuda'):
        if not torch.cuda.is_available():
            raise ConfigError(f'device {device!r}: CUDA is not available here; use cpu')
        index = int(device.split(':')[1]) if ':' in device else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(f'device {device!r}: only {torch.cuda.device_count()} CUDA device(s) here')
    if device == 'mps' and not (hasattr(torch.backends, 'mps') and torch.backends.mps.is_available()):
        raise ConfigError(f"device {device!r}: MPS is not available here; use cpu")
    return device
