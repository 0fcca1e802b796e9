"""ruDALL-E's Gumbel VQGAN image tokenizer (plain PyTorch) and its loaders.

``get_vae()`` keeps ruDALL-E's call ``get_vae(pretrained=True, dwt=False, cache_dir=...)``:

* ``get_vae()`` / ``get_vae(dwt=True)``: download the published checkpoint from
  ``sberbank-ai/rudalle-utils`` through ``huggingface_hub`` (``cache_dir=None``: the
  standard Hugging Face cache) and load it;
* ``get_vae(path='vqgan.ckpt')``: load a local checkpoint in the published format;
* ``get_vae(name='tiny-shapes')``: a model registered in :data:`NAMED_VAES`;
* ``get_vae(pretrained=False)``: random weights.

``config`` (a :class:`VQGanConfig` or a dict of overrides of ruDALL-E's defaults)
selects the architecture; a checkpoint that does not fit it is an error
(:class:`CheckpointMismatchError`), and so is a file that cannot be read at all
(:class:`CorruptCheckpointError`: empty, truncated, not a ``torch.save`` file).
"""
import os
from typing import Any, Dict, Mapping, Optional, Tuple, Union

from ..model.configs import MODELS
from .dwt import DWTInverse
from .image import preprocess_image
from .model import (CheckpointMismatchError, CorruptCheckpointError, DecoderDWT, GumbelQuantize, GumbelVQ,
                    VQGanConfig, VQGanGumbelVAE, read_checkpoint_state_dict)

__all__ = [
    'get_vae', 'NAMED_VAES', 'HF_REPO_ID', 'HF_FILENAMES', 'VQGanGumbelVAE', 'VQGanConfig', 'GumbelVQ',
    'GumbelQuantize', 'DecoderDWT', 'DWTInverse', 'CheckpointMismatchError', 'CorruptCheckpointError',
    'read_checkpoint_state_dict', 'preprocess_image',
]

HF_REPO_ID = 'sberbank-ai/rudalle-utils'
HF_FILENAMES = {False: 'vqgan.gumbelf8-sber.model.ckpt', True: 'vqgan.gumbelf8-sber-dwt.model.ckpt'}

ConfigLike = Union[None, VQGanConfig, Mapping[str, Any]]

#: name -> (local checkpoint path, config) of the VQGANs shipped in the package (the embedded
#: models' entries in ``MODELS``); ``get_vae(name=...)`` looks names up here.
NAMED_VAES: Dict[str, Tuple[str, ConfigLike]] = {name: (spec['vae_path'], spec.get('vae_config'))
                                                 for name, spec in MODELS.items() if spec.get('vae_path')}


def get_vae(pretrained: bool = True, dwt: bool = False, cache_dir: Optional[str] = None, *,
            path: Optional[Union[str, os.PathLike]] = None, name: Optional[str] = None,
            config: ConfigLike = None) -> VQGanGumbelVAE:
    """Build ruDALL-E's VQGAN and load its weights; returns it in eval mode on CPU.

    Args:
        pretrained: load weights (from ``path``, ``name`` or the Hugging Face hub);
            ``False`` gives random weights and must not be combined with ``path``/``name``.
        dwt: the wavelet-decoder variant (decodes to twice the image size).
        cache_dir: Hugging Face cache folder for the download (``None``: the default cache).
        path: a local checkpoint file in the published format instead of the download.
        name: a key of :data:`NAMED_VAES`, giving both the checkpoint path and the config.
        config: architecture overrides (default: ruDALL-E's f8 / 8192-code VQGAN).
    """
    if isinstance(pretrained, str):  # get_vae('tiny-shapes'): a registered name
        pretrained, name = True, pretrained if name is None else name
    if name is not None:
        if path is not None or config is not None:
            raise ValueError(f'name={name!r} already gives the checkpoint path and the config; '
                             f'expected path=None and config=None, got path={path!r}, config={config!r}')
        if name not in NAMED_VAES:
            raise KeyError(f'unknown VAE name {name!r}; expected one of {sorted(NAMED_VAES)}')
        path, config = NAMED_VAES[name]
    if not pretrained and path is not None:
        raise ValueError(f'pretrained=False builds random weights, but a checkpoint was given ({path!r})')

    vae = VQGanGumbelVAE(config=config, dwt=dwt)
    if pretrained:
        if path is None:
            from huggingface_hub import hf_hub_download
            path = hf_hub_download(repo_id=HF_REPO_ID, filename=HF_FILENAMES[bool(dwt)], cache_dir=cache_dir)
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f'VAE checkpoint not found: {path}')
        vae.load_checkpoint(path)
    return vae.eval()
