"""ruDALL-E's Gumbel VQGAN image tokenizer (plain PyTorch) and its loaders.

``get_vae()`` keeps ruDALL-E's call ``get_vae(pretrained=True, dwt=False, cache_dir=...)``:

* ``get_vae()`` / ``get_vae(dwt=True)``: download the published checkpoint from
  ``sberbank-ai/rudalle-utils`` through ``huggingface_hub`` (``cache_dir=None``: the
  standard Hugging Face cache) and load it;
* ``get_vae(path='vqgan.ckpt')``: load a local checkpoint in the published format, or a
  ``.safetensors`` state dict (whose header may record the architecture: then no ``config`` is needed);
* ``get_vae(name='tiny-shapes')`` / ``get_vae('350M')``: a model of ``MODELS`` (the embedded ones
  load their packaged VQGAN, registered in :data:`NAMED_VAES`; the published ones ruDALL-E's);
* ``get_vae(pretrained=False)``: random weights.

``config`` (a :class:`VQGanConfig` or a dict of overrides of ruDALL-E's defaults)
selects the architecture; a checkpoint that does not fit it is an error
(:class:`CheckpointMismatchError`), and so is a file that cannot be read at all
(:class:`CorruptCheckpointError`: empty, truncated, not a ``torch.save`` file).
"""
import os
from typing import Any, Dict, Mapping, Optional, Tuple, Union

from rudolph.errors import ConfigError, RudolphError, WeightsNotFoundError
from rudolph.io.hub import hub_download
from rudolph.io.safetensors import is_safetensors, read_safetensors_metadata
from rudolph.model.configs import MODELS
from rudolph.vae.dwt import DWTInverse
from rudolph.vae.image import preprocess_image
from rudolph.vae.model import (
    CheckpointMismatchError,
    CorruptCheckpointError,
    DecoderDWT,
    GumbelQuantize,
    GumbelVQ,
    VQGanConfig,
    VQGanGumbelVAE,
    read_checkpoint_state_dict,
)

__all__ = [
    'get_vae', 'NAMED_VAES', 'HF_REPO_ID', 'HF_FILENAMES', 'VQGanGumbelVAE', 'VQGanConfig', 'GumbelVQ',
    'GumbelQuantize', 'DecoderDWT', 'DWTInverse', 'CheckpointMismatchError', 'CorruptCheckpointError',
    'read_checkpoint_state_dict', 'preprocess_image',
]

HF_REPO_ID = 'sberbank-ai/rudalle-utils'
HF_FILENAMES = {False: 'vqgan.gumbelf8-sber.model.ckpt', True: 'vqgan.gumbelf8-sber-dwt.model.ckpt'}



class UnknownNameError(ConfigError, KeyError):
    """A VAE name that is neither a packaged VQGAN nor a model of ``MODELS`` (a ``KeyError`` as before)."""

    def __str__(self) -> str:  # KeyError would show the message quoted
        return RudolphError.__str__(self)


ConfigLike = Union[None, VQGanConfig, Mapping[str, Any]]

#: name -> (local checkpoint path, config) of the VQGANs shipped in the package (the embedded
#: models' entries in ``MODELS``); ``get_vae(name=...)`` looks names up here.
NAMED_VAES: Dict[str, Tuple[str, ConfigLike]] = {name: (spec['vae_path'], spec.get('vae_config'))
                                                 for name, spec in MODELS.items() if spec.get('vae_path')}


def _named(name: str, path: Any, config: ConfigLike) -> Tuple[Optional[str], ConfigLike]:
    """(checkpoint path or ``None`` for the hub VQGAN, config) of a name of NAMED_VAES or MODELS."""
    if path is not None or config is not None:
        raise ConfigError(f'name={name!r} already gives the checkpoint path and the config; '
                          f'expected path=None and config=None, got path={path!r}, config={config!r}')
    if name in NAMED_VAES:
        return NAMED_VAES[name]
    if name in MODELS:  # a published RuDOLPH: ruDALL-E's VQGAN from the hub
        return None, None
    raise UnknownNameError(f'unknown VAE name {name!r}; expected one of {sorted(set(NAMED_VAES) | set(MODELS))}')


def _stored_config(path: str, dwt: bool) -> Tuple[ConfigLike, bool]:
    """The architecture a safetensors VQGAN file records (``save_pretrained`` writes it), else the defaults."""
    import json


    if not is_safetensors(path):
        return None, dwt
    meta = read_safetensors_metadata(path)
    config = json.loads(meta['vqgan_config']) if meta.get('vqgan_config') else None
    return config, json.loads(meta['dwt']) if 'dwt' in meta else dwt


def get_vae(pretrained: bool = True, dwt: bool = False, cache_dir: Optional[str] = None, *,
            path: Optional[Union[str, os.PathLike]] = None, name: Optional[str] = None,
            config: ConfigLike = None) -> VQGanGumbelVAE:
    """Build ruDALL-E's VQGAN and load its weights; returns it in eval mode on CPU.

    Args:
        pretrained: load weights (from ``path``, ``name`` or the Hugging Face hub);
            ``False`` gives random weights and must not be combined with ``path``/``name``.
            A string is taken as ``name`` (``get_vae('tiny-shapes')``, ``get_vae('350M')``).
        dwt: the wavelet-decoder variant (decodes to twice the image size).
        cache_dir: Hugging Face cache folder for the download (``None``: the default cache).
        path: a local checkpoint file in the published format instead of the download.
        name: a key of :data:`NAMED_VAES` (checkpoint path and config) or of ``MODELS``:
            the embedded models load their packaged VQGAN, the published ones ruDALL-E's.
        config: architecture overrides (default: ruDALL-E's f8 / 8192-code VQGAN).

    The hub download looks in the cache first and tries the hub once, briefly; when neither
    has the file it raises :class:`~rudolph.errors.WeightsNotFoundError` saying how to get it.
    """
    if isinstance(pretrained, str):  # get_vae('tiny-shapes'): a registered name
        pretrained, name = True, pretrained if name is None else name
    if name is not None:
        path, config = _named(name, path, config)
    if not pretrained and path is not None:
        raise ConfigError(f'pretrained=False builds random weights, but a checkpoint was given ({path!r})')

    if pretrained:  # the file first: a missing one fails before the model is built
        if path is None:
            path = hub_download(HF_REPO_ID, HF_FILENAMES[bool(dwt)], cache_dir=cache_dir,
                                what=f"ruDALL-E's VQGAN{' (DWT)' if dwt else ''}",
                                local_arg="get_vae(path='path/to/vqgan.ckpt')")
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise WeightsNotFoundError(f'VAE checkpoint not found: {path!r} (expected a torch.save file holding '
                                       f'{{"state_dict": ...}})')
    if pretrained and config is None:
        config, dwt = _stored_config(path, dwt)
    vae = VQGanGumbelVAE(config=config, dwt=dwt)
    if pretrained:
        vae.load_checkpoint(path)
    return vae.eval()
