"""Hub downloads for every loader (model weights, tokenizer, VQGAN): cache first, one short try, a clear error.

``huggingface_hub.hf_hub_download`` retries an unreachable hub with backoff for more than a
minute before it fails; :func:`hub_download` looks in the cache first, then probes the hub once
with a short timeout and no retry, and raises :class:`~rudolph.errors.WeightsNotFoundError`
(saying which repo and file, and how to pre-download them) when the file cannot be had.
"""
import logging
import os
from typing import Optional, Union

from rudolph.errors import WeightsNotFoundError

__all__ = ['hub_download', 'weights_not_found_message', 'PROBE_TIMEOUT_S']

logger = logging.getLogger(__name__)

#: Seconds the single reachability check of the hub may take before giving up.
PROBE_TIMEOUT_S = 5.0


def weights_not_found_message(what: str, repo_id: str, filename: str, local_arg: str, reason: str,
                              cache_dir: Optional[str] = None) -> str:
    """The one "cannot get these weights" message: which file, why, how to pre-download it, or what to pass."""
    cache = f' {cache_dir!r}' if cache_dir else ''
    cache_opt = f' --cache-dir {cache_dir}' if cache_dir else ''
    return (f'{what} ({repo_id}/{filename}) is not in the Hugging Face cache{cache} and cannot be downloaded '
            f'({reason}). Pre-download it where the hub is reachable with `hf download {repo_id} {filename}'
            f'{cache_opt}` (then copy the cache or point HF_HOME at it), or pass a local file: {local_arg}')


def _endpoint() -> str:
    from huggingface_hub import constants

    # HF_ENDPOINT is read by huggingface_hub at import: read it again so later changes count.
    return (os.environ.get('HF_ENDPOINT') or constants.ENDPOINT).rstrip('/')


def _offline() -> bool:
    from huggingface_hub import constants

    flag = os.environ.get('HF_HUB_OFFLINE')
    return constants.HF_HUB_OFFLINE or (flag is not None and flag.strip().upper() in {'1', 'ON', 'YES', 'TRUE'})


def _probe(repo_id: str, filename: str, endpoint: str) -> Optional[str]:
    """``None`` when the hub answers for the file, else why not (one request, no retry)."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    url = hf_hub_url(repo_id, filename, endpoint=endpoint)
    try:
        get_hf_file_metadata(url, timeout=PROBE_TIMEOUT_S, retry_on_errors=False)
    except Exception as error:  # noqa: BLE001 -- network, HTTP and hub errors come in many types
        return f'the hub at {endpoint} did not answer: {type(error).__name__}: {str(error)[:200]}'
    return None


def hub_download(repo_id: str, filename: str, *, what: str, local_arg: str,
                 cache_dir: Union[None, str, os.PathLike] = None) -> str:
    """Local path of ``repo_id/filename``: from the cache, else downloaded if the hub answers at once.

    ``what`` names the weights in the error ("tokenizer of ruDALL-E"), ``local_arg`` the argument
    that takes a local file instead (``"path='bpe.model'"``). Raises :class:`WeightsNotFoundError`.
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    cache_dir = None if cache_dir is None else os.fspath(cache_dir)
    try:
        return hf_hub_download(repo_id=repo_id, filename=filename, cache_dir=cache_dir, local_files_only=True)
    except LocalEntryNotFoundError:
        pass
    if _offline():
        reason = 'HF_HUB_OFFLINE is set'
    else:
        endpoint = _endpoint()
        reason = _probe(repo_id, filename, endpoint)
        if reason is None:
            logger.info('downloading %s/%s from %s', repo_id, filename, endpoint)
            try:
                return hf_hub_download(repo_id=repo_id, filename=filename, cache_dir=cache_dir, endpoint=endpoint)
            except (LocalEntryNotFoundError, OSError) as error:
                reason = f'the download failed: {type(error).__name__}: {str(error)[:200]}'
    raise WeightsNotFoundError(weights_not_found_message(what, repo_id, filename, local_arg, reason, cache_dir))
