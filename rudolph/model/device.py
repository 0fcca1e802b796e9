"""Where a module's weights live."""
import torch

__all__ = ['model_device']


def model_device(module: torch.nn.Module) -> torch.device:
    """Device of a module's parameters (CPU for a parameter-less module)."""
    for p in module.parameters():
        return p.device
    return torch.device('cpu')
