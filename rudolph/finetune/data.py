"""Fine-tuning data: rows -> ``[left text | image codes | right text]`` token sequences.

A *row* is a dict with any of ``image`` (a path, a PIL image or a ``[3, H, W]`` tensor in
``[0, 1]``), ``left_text``, ``right_text`` and ``task``. :func:`prepare_dataset` validates
the rows, tokenizes the texts exactly as the pipelines do, encodes every image with the
VAE once (optionally caching the codes on disk, so that later runs and epochs never touch
the VAE again) and returns an :class:`EncodedDataset` of fixed-length sequences.
"""
import hashlib
import logging
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch.utils.data import Dataset

from rudolph.checks import setting
from rudolph.errors import CheckpointError, DataError
from rudolph.finetune.batching import EncodedDataset, TaskBatchSampler, collate
from rudolph.finetune.rows import TASKS, TaskSpec, _normalise_row, infer_task, read_rows
from rudolph.io.files import safe_torch_load
from rudolph.io.pictures import open_image
from rudolph.model.config import Layout, RudolphConfig
from rudolph.model.configs import DEFAULT_SPC_TOKENS
from rudolph.tasks.sequences import text_segment
from rudolph.vae.image import preprocess_image, to_rgb

__all__ = [
    'DEFAULT_SPC_TOKENS', 'TaskSpec', 'TASKS', 'DataError', 'infer_task', 'read_rows', 'encode_task_text', 'preprocess_image',
    'ImageCodeCache', 'EncodedDataset', 'prepare_dataset', 'TaskBatchSampler', 'collate',
]

logger = logging.getLogger(__name__)

def encode_task_text(tokenizer: Any, text: str, length: int, task_token_id: Optional[int]) -> Tuple[torch.Tensor, bool]:
    """``[2, <task token>] + bpe(text) + [3]`` padded with 0 / cut to ``length``; also says whether it was cut.

    ``text`` is lower-cased and stripped first, as the pipelines do. ``task_token_id=None``
    gives the plain ``[2] + bpe(text) + [3]`` of models without task tokens.
    """
    ids, count = text_segment(tokenizer, text.lower().strip(), length, task_token_id)
    return ids, count > length


# ----------------------------------------------------------------------------- images
def vae_fingerprint(vae: Any) -> str:
    """A cheap identity of the VAE weights (class, sizes, first and last parameter bytes) for the code cache."""
    h = hashlib.sha1(type(vae).__name__.encode())
    for attr in ('image_size', 'num_tokens', 'downsample_factor'):
        h.update(f'{attr}={getattr(vae, attr, None)};'.encode())
    params = list(vae.parameters()) if hasattr(vae, 'parameters') else []
    for p in params[:1] + params[-1:]:
        h.update(p.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


class ImageCodeCache:
    """VAE codes of image files, keyed by file identity (path, size, mtime), pixel size and VAE.

    Stored as one ``torch.save`` dict in ``folder/image_codes.pt``, written atomically.
    ``folder=None`` keeps the codes in memory only.
    """

    FILENAME = 'image_codes.pt'

    def __init__(self, folder: Optional[Union[str, os.PathLike]], vae: Any, image_size: int):
        self.path = os.path.join(os.fspath(folder), self.FILENAME) if folder is not None else None
        self.prefix = f'{vae_fingerprint(vae)}|{image_size}|'
        self.codes: Dict[str, torch.Tensor] = {}
        self.dirty = False
        if self.path is not None and os.path.isfile(self.path):
            self.codes = self._load(self.path)

    @staticmethod
    def _load(path: str) -> Dict[str, torch.Tensor]:
        """The cached codes, or ``{}`` with a warning naming the file if it is corrupt or not plain data."""
        try:
            codes = safe_torch_load(path, 'image-code cache', training_objects=False)
        except CheckpointError as error:  # corrupt, or tampered with (never unpickled): rebuilt either way
            logger.warning('ignoring unreadable image-code cache %s (%s); it will be rebuilt', path, error)
            return {}
        if not isinstance(codes, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in codes.items()):
            logger.warning('ignoring image-code cache %s: expected a dict of str -> tensor, got %s; it will be rebuilt',
                           path, type(codes).__name__)
            return {}
        return codes

    def key(self, path: str) -> str:
        st = os.stat(path)
        return f'{self.prefix}{os.path.realpath(path)}|{st.st_size}|{st.st_mtime_ns}'

    def get(self, key: str) -> Optional[torch.Tensor]:
        return self.codes.get(key)

    def put(self, key: str, codes: torch.Tensor) -> None:
        self.codes[key] = codes
        self.dirty = True

    def save(self) -> None:
        if self.path is None or not self.dirty:
            return
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        tmp = f'{self.path}.tmp-{os.getpid()}'
        torch.save(self.codes, tmp)
        os.replace(tmp, self.path)
        self.dirty = False


# ----------------------------------------------------------------------------- dataset
def _model_sizes(model_or_params: Any) -> Tuple[int, int, int, int, int]:
    """``(L, N, R, V, image vocab)`` of a ruDolphModel or of its constructor parameters."""
    if isinstance(model_or_params, Mapping):
        geometry = RudolphConfig.from_params(model_or_params)
    else:
        geometry = Layout.from_model(model_or_params)
    return geometry.L, geometry.N, geometry.R, geometry.V, geometry.image_vocab


def _load_image(source: Any, image_root: Optional[str]) -> Tuple[Any, Optional[str]]:
    """(PIL image or tensor, file path or None); raises FileNotFoundError / OSError for bad files."""
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if image_root is not None and not os.path.isabs(path):
            path = os.path.join(image_root, path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f'image file not found: {path!r}')
        return None, path
    return source, None


def prepare_dataset(rows: Union[str, os.PathLike, Sequence[Mapping[str, Any]], Dataset],
                    tokenizer: Any,
                    vae: Any,
                    model: Any,
                    task: Optional[str] = None,
                    image_root: Optional[Union[str, os.PathLike]] = None,
                    cache_dir: Optional[Union[str, os.PathLike]] = None,
                    missing_images: str = 'skip',
                    bad_rows: str = 'error',
                    spc_tokens: Optional[Mapping[str, int]] = None,
                    tasks: Optional[Mapping[str, TaskSpec]] = None,
                    loss_weights: Optional[Mapping[str, Optional[float]]] = None,
                    vae_batch_size: int = 16,
                    device: Union[str, torch.device, None] = None,
                    show_progress: bool = True) -> EncodedDataset:
    """Validate, tokenize and VAE-encode ``rows`` into an :class:`EncodedDataset`.

    Args:
        rows: a ``.jsonl``/``.csv`` path, a list of row dicts, or any ``Dataset`` of row dicts.
        tokenizer: has ``tokenizer.encode([text]) -> [[ids]]`` (ruDALL-E's tokenizer wrapper).
        vae: has ``get_codebook_indices(img [b,3,H,W] in [0,1]) -> [b, (H/8)^2]``, or a zero-argument
            factory returning one (called only if some row has an image); may be ``None`` when no row
            has an image.
        model: the ruDolphModel (or its constructor parameters) the data are for.
        task: task of rows without a ``task`` field; ``None`` infers it from the fields present.
        image_root: folder that relative image paths are resolved against.
        cache_dir: where VAE codes of image files are cached (``None``: not on disk).
        missing_images: ``'skip'`` (drop the row, with one counted warning) or ``'error'`` for
            image files that are missing or unreadable.
        bad_rows: ``'error'`` or ``'skip'`` for rows lacking a field their task needs (empty text,
            no text and no image, unknown task).
        spc_tokens: task-token ids (default: those of the loaded model, ``model.spc_tokens``, else
            :data:`DEFAULT_SPC_TOKENS`); ``{}`` for a model without
            task tokens (the texts are then ``[2] + bpe + [3]``).
        tasks: task definitions (default :data:`TASKS`).
        loss_weights: ``{'lt_loss_weight': w, ...}`` overriding every task's weights (``None`` entries keep them).
    """
    if missing_images not in ('skip', 'error'):
        raise ValueError(f"missing_images must be 'skip' or 'error', got {missing_images!r}")
    if bad_rows not in ('skip', 'error'):
        raise ValueError(f"bad_rows must be 'skip' or 'error', got {bad_rows!r}")
    tasks = dict(TASKS if tasks is None else tasks)
    if spc_tokens is None:  # the task tokens the model was loaded with ({} for none), else the published ones
        spc_tokens = getattr(model, 'spc_tokens', None)
    if task is not None and task not in tasks:
        raise ValueError(f'unknown task {task!r}; expected one of {sorted(tasks)} (or None to infer it per row)')
    source_name = os.fspath(rows) if isinstance(rows, (str, os.PathLike)) else None
    if source_name is not None:
        rows = read_rows(source_name)
    ctx = _Context(tokenizer, tasks, task, dict(DEFAULT_SPC_TOKENS if spc_tokens is None else spc_tokens), _model_sizes(model),
                   os.fspath(image_root) if image_root is not None else None, source_name, missing_images)
    kept, problems, missing, truncated = _tokenize_rows(rows, ctx)
    _report_problems(problems, len(rows), bad_rows, truncated, ctx)
    codes_of, kept = _encode_kept(kept, missing, vae, cache_dir, ctx, vae_batch_size, device, show_progress)
    if missing:
        logger.warning('skipped %d of %d rows whose image is missing or unreadable (first: %s)',
                       len(missing), len(rows), missing[0])
    if not kept:
        raise DataError(f'no usable rows in {source_name or "the data"} ({len(rows)} rows read)')
    return _assemble(kept, codes_of, ctx, loss_weights)


# (row index, task, left text ids, right text ids, image: (object, path) or None)
_Kept = Tuple[int, str, torch.Tensor, torch.Tensor, Any]
# (index into the kept rows, cache key or None, image tensor [3, size, size])
_Todo = Tuple[int, Optional[str], torch.Tensor]


@dataclass
class _Context:
    """What the steps of :func:`prepare_dataset` share."""
    tokenizer: Any
    tasks: Dict[str, TaskSpec]
    task: Optional[str]
    spc_tokens: Dict[str, int]
    sizes: Tuple[int, int, int, int, int]  # L, N, R, V, image vocab
    image_root: Optional[str]
    source_name: Optional[str]
    missing_images: str

    def where(self, i: int) -> str:
        return f'{self.source_name} row {i + 1}' if self.source_name else f'row {i}'

    def token_id(self, name: Optional[str]) -> Optional[int]:
        """Id of task token ``name`` (``None`` for none or a model without task tokens), checked against the vocab."""
        if name is None or not self.spc_tokens:
            return None
        if name not in self.spc_tokens:
            raise ValueError(f'task token {name!r} is not in spc_tokens {sorted(self.spc_tokens)}')
        L, _, _, V, _ = self.sizes
        value = int(self.spc_tokens[name])
        if not 0 <= value < V - L:
            raise ValueError(f'task token {name}={value} does not fit the model text vocabulary: expected an id in '
                             f'[0, {V - L}) (V={V} minus the {L} left pad positions). Pass spc_tokens={{}} for a model '
                             'without task tokens, or ids of your own added tokens')
        return value


def _validate_row(row: Any, i: int, ctx: _Context) -> Tuple[Optional[Dict[str, Any]], Optional[str], str]:
    """``(normalised row, its task, '')``, or ``(None, None, problem)`` for a row that cannot be used."""
    if not isinstance(row, Mapping):
        raise DataError(f'{ctx.where(i)}: expected a dict with image/left_text/right_text, got {type(row).__name__}')
    row = _normalise_row(row)
    for field in ('left_text', 'right_text'):
        if row.get(field) is not None and not isinstance(row[field], str):
            row[field] = str(row[field])
    if not (row.get('left_text') or '').strip() and not (row.get('right_text') or '').strip() \
            and row.get('image') is None:
        return None, None, f'{ctx.where(i)}: has neither text nor image'
    row_task = row.get('task') or ctx.task or infer_task(row)
    if row_task not in ctx.tasks:
        return None, None, f'{ctx.where(i)}: unknown task {row_task!r}; expected one of {sorted(ctx.tasks)}'
    spec = ctx.tasks[row_task]
    empty = [f for f in spec.needs if (row.get(f) is None if f == 'image' else not (row.get(f) or '').strip())]
    if empty:
        return None, None, (f'{ctx.where(i)}: task {row_task!r} needs non-empty {empty}, got '
                            f'{sorted(k for k in row if row[k] not in (None, ""))}')
    return row, row_task, ''


def _tokenize_rows(rows: Sequence[Any], ctx: _Context) -> Tuple[List[_Kept], List[str], List[str], Dict[str, int]]:
    """Pass 1: validate every row and tokenize its texts; returns kept rows, problems, missing images, cut texts."""
    L, _, R, V, _ = ctx.sizes
    problems: List[str] = []
    missing: List[str] = []
    truncated = {'left_text': 0, 'right_text': 0}
    kept: List[_Kept] = []
    for i in range(len(rows)):
        row, row_task, problem = _validate_row(rows[i], i, ctx)
        if row is None:
            problems.append(problem)
            continue
        spec = ctx.tasks[row_task]
        image_source = None
        if 'image' in spec.needs:
            try:
                image_source = _load_image(row['image'], ctx.image_root)
            except FileNotFoundError as error:
                if ctx.missing_images == 'error':
                    raise FileNotFoundError(f'{ctx.where(i)}: {error} (pass {setting("missing_images", "skip")} '
                                            'to drop such rows)') from None
                missing.append(f'{ctx.where(i)}: {error}')
                continue
        left, cut = encode_task_text(ctx.tokenizer, row.get('left_text') or '', L, ctx.token_id(spec.lt_token))
        truncated['left_text'] += cut
        right = torch.zeros(R, dtype=torch.long)
        if 'right_text' in spec.needs or (spec.rt_loss_weight and row.get('right_text')):
            right, cut = encode_task_text(ctx.tokenizer, row['right_text'], R, ctx.token_id(spec.rt_token))
            truncated['right_text'] += cut
        if int(left.max()) >= V - L or int(right.max()) >= V:
            raise DataError(f'{ctx.where(i)}: the tokenizer produced ids beyond the model text vocabulary ({V}); '
                            'tokenizer and model do not match')
        kept.append((i, row_task, left, right, image_source))
    return kept, problems, missing, truncated


def _report_problems(problems: List[str], n_rows: int, bad_rows: str, truncated: Dict[str, int],
                     ctx: _Context) -> None:
    """Raise (``bad_rows='error'``) or warn about unusable rows; warn about texts cut to the model length."""
    if problems:
        if bad_rows == 'error':
            shown = '\n  '.join(problems[:10])
            more = f'\n  ... and {len(problems) - 10} more' if len(problems) > 10 else ''
            raise DataError(f'{len(problems)} of {n_rows} rows cannot be used:\n  {shown}{more}\n'
                            f'(pass {setting("bad_rows", "skip")} to drop them)')
        logger.warning('skipped %d of %d rows that cannot be used (first: %s)', len(problems), n_rows, problems[0])
    L, _, R, _, _ = ctx.sizes
    for field, count in truncated.items():
        if count:
            logger.warning('%d %s texts were cut to %d tokens (the model length); their end (and eos) is lost',
                           count, field, L if field == 'left_text' else R)


def _image_tensors(kept: List[_Kept], missing: List[str], cache: ImageCodeCache, size: int, ctx: _Context,
                   codes_of: Dict[int, torch.Tensor]) -> Tuple[List[_Todo], List[int]]:
    """Cached codes into ``codes_of``; the other images as tensors to encode, and the rows that failed."""
    todo: List[_Todo] = []
    failed: List[int] = []
    for k, (row_index, _, _, _, (obj, path)) in ((k, item) for k, item in enumerate(kept) if item[4] is not None):
        key = cache.key(path) if path is not None else None
        hit = cache.get(key) if key is not None else None
        if hit is not None:
            codes_of[k] = hit.long()
            continue
        try:
            img = to_rgb(open_image(path)) if path is not None else obj  # every mode, as at inference
            tensor = img if torch.is_tensor(img) else preprocess_image(img, size)
        except OSError as error:
            if ctx.missing_images == 'error':
                raise OSError(f'{ctx.where(row_index)}: {error} (pass {setting("missing_images", "skip")} to '
                              'drop such rows)') from None
            missing.append(f'{ctx.where(row_index)}: {error}')
            failed.append(k)
            continue
        if tensor.shape != (3, size, size):
            raise DataError(f'{ctx.where(row_index)}: image tensor has shape {tuple(tensor.shape)}, expected '
                            f'(3, {size}, {size})')
        todo.append((k, key, tensor))
    return todo, failed


def _encode_kept(kept: List[_Kept], missing: List[str], vae: Any, cache_dir: Any, ctx: _Context, vae_batch_size: int,
                 device: Union[str, torch.device, None],
                 show_progress: bool) -> Tuple[Dict[int, torch.Tensor], List[_Kept]]:
    """Pass 2: VAE codes of the kept rows' images (cached); rows whose image failed are dropped."""
    codes_of: Dict[int, torch.Tensor] = {}
    n_images = sum(item[4] is not None for item in kept)
    if not n_images:
        return codes_of, kept
    if vae is None:
        raise ValueError(f'{n_images} rows need an image but no VAE was given')
    if callable(vae) and not hasattr(vae, 'get_codebook_indices'):
        vae = vae()  # a factory: the VAE is only loaded when some row has an image
    _, N, _, _, image_vocab = ctx.sizes
    size = N * int(getattr(vae, 'downsample_factor', 8))
    cache = ImageCodeCache(cache_dir, vae, size)
    todo, failed = _image_tensors(kept, missing, cache, size, ctx, codes_of)
    _encode_images(vae, todo, cache, codes_of, N, image_vocab, vae_batch_size, device, show_progress)
    cache.save()
    if failed:
        failed_set = set(failed)
        survivors = [k for k in range(len(kept)) if k not in failed_set]
        codes_of = {new: codes_of[old] for new, old in enumerate(survivors) if old in codes_of}
        kept = [kept[k] for k in survivors]
    return codes_of, kept


def _assemble(kept: List[_Kept], codes_of: Dict[int, torch.Tensor], ctx: _Context,
              loss_weights: Optional[Mapping[str, Optional[float]]]) -> 'EncodedDataset':
    """``[left text | image codes | right text]`` rows and the loss weights of every task."""
    L, N, R, _, _ = ctx.sizes
    N2 = N * N
    input_ids = torch.zeros(len(kept), L + N2 + R, dtype=torch.long)
    for k, (_, _, left, right, _) in enumerate(kept):
        input_ids[k, :L] = left
        if k in codes_of:
            input_ids[k, L:L + N2] = codes_of[k]
        input_ids[k, L + N2:] = right
    overrides = {k: v for k, v in (loss_weights or {}).items() if v is not None}
    weights = {name: {**spec.weights, **overrides} for name, spec in ctx.tasks.items()}
    return EncodedDataset(input_ids, [t for _, t, _, _, _ in kept], weights)


@torch.no_grad()
def _encode_images(vae: Any, todo: List[Tuple[int, Optional[str], torch.Tensor]], cache: ImageCodeCache,
                   codes_of: Dict[int, torch.Tensor], N: int, image_vocab: int, batch_size: int,
                   device: Union[str, torch.device, None], show_progress: bool) -> None:
    if not todo:
        return
    from tqdm.auto import tqdm

    if device is None:
        params = list(vae.parameters()) if hasattr(vae, 'parameters') else []
        device = params[0].device if params else 'cpu'
    bar = tqdm(total=len(todo), desc='VAE codes', unit='img', disable=not show_progress, leave=False)
    for start in range(0, len(todo), batch_size):
        chunk = todo[start:start + batch_size]
        images = torch.stack([t for _, _, t in chunk]).to(device)
        codes = vae.get_codebook_indices(images)
        if codes.dim() != 2 or codes.shape[1] != N * N:
            size = images.shape[-1]
            raise ValueError(f'the VAE turned {size}x{size} px images into codes of shape {tuple(codes.shape)}, but the '
                             f'model expects [b, {N * N}] ({N}x{N} tokens of an 8x-downsampling VAE; VAE image_size='
                             f'{getattr(vae, "image_size", "?")}). Use the VAE the model was trained with')
        if int(codes.min()) < 0 or int(codes.max()) >= image_vocab:
            raise ValueError(f'the VAE produced codes in [{int(codes.min())}, {int(codes.max())}], but the model has '
                             f'{image_vocab} image codes')
        codes = codes.to('cpu', torch.int32)
        for (k, key, _), c in zip(chunk, codes):
            codes_of[k] = c.long()
            if key is not None:
                cache.put(key, c.clone())
        bar.update(len(chunk))
    bar.close()
