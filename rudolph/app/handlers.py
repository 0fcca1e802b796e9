"""The web app's work as plain functions over :mod:`rudolph.tasks.core` and :class:`~rudolph.pretrained.components.Components`.

One function per tab (:func:`text_to_image`, :func:`caption`, :func:`vqa`, :func:`classify`,
:func:`generate_text`, :func:`rerank_images`); each returns a :class:`Result` (pictures, text,
the JSON record, the files to download). None of them imports gradio, so they are tested and
usable without it. :class:`ModelCache` loads each (model, checkpoint, device, dtype) once and
shares it; :class:`DeviceLocks` lets one model call run at a time per device. ``progress``
(``fraction, description``) is fed from the engine's progress callback; setting ``cancel``
(a :class:`threading.Event`) stops a running task at its next step with :class:`Cancelled`.
"""
import json
import logging
import os
import tempfile
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from rudolph import superres
from rudolph.app import DTYPES
from rudolph.demo import shapes
from rudolph.errors import Cancelled, ConfigError, ImageFileError, InputError, RudolphError  # noqa: F401 (Cancelled: re-exported)
from rudolph.image_prompts import ImagePrompts
from rudolph.io.atomic import write_atomic
from rudolph.io.paths import is_inside
from rudolph.io.pictures import open_image as open_picture_file
from rudolph.model.configs import DEFAULT_IMAGE_SAMPLING, MODELS, TINY_SHAPES
from rudolph.model.device import check_device
from rudolph.pretrained.components import Components
from rudolph.tasks import core as tasks
from rudolph.tasks.core import SamplingConfig, text_sampling_for

__all__ = ['Result', 'Cancelled', 'ModelCache', 'DeviceLocks', 'DTYPES', 'MAX_UPLOAD', 'BANDS',
           'model_choices', 'device_choices', 'defaults_for', 'progress_callback', 'parse_classes', 'open_image',
           'allowed_checkpoint', 'REFUSED_CHECKPOINT',
           'upscale_available', 'text_to_image', 'caption', 'vqa', 'classify', 'generate_text', 'rerank_images']

logger = logging.getLogger(__name__)

#: the precisions offered: dtype names that :func:`rudolph.model.get_rudolph_model` takes (``auto``: per
#: device, as the rest of the CLI), and the weight formats ``int8`` (``quantize='int8'``: int8 weights, bf16
#: activations on CPU, fp16 on CUDA) and ``int8-dynamic`` (CPU)
#: the largest upload the page accepts (pictures: a few megabytes at most; the model sees a few hundred px)
MAX_UPLOAD = '20mb'
#: the bands of an image prompt, in ImagePrompts' order
BANDS = ('up', 'down', 'left', 'right')

Report = Callable[[float, str], None]


@dataclass
class Result:
    """What a tab shows: ``images`` (PIL, with ``captions``), ``text``, ``label`` (class -> probability),
    ``record`` (the JSON saved) and ``files`` (paths to download: the PNG grid, the JSON)."""
    record: Dict[str, Any]
    images: List[Any] = field(default_factory=list)
    captions: List[str] = field(default_factory=list)
    text: str = ''
    label: Dict[str, float] = field(default_factory=dict)
    files: List[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- models
def model_choices() -> List[str]:
    """The registry's model names, the embedded tiny-shapes first."""

    return [TINY_SHAPES] + [name for name in MODELS if name != TINY_SHAPES]


def device_choices() -> List[str]:
    """The devices usable here: cpu, then each CUDA device, then mps."""
    import torch

    devices = ['cpu'] + [f'cuda:{i}' for i in range(torch.cuda.device_count())]
    if hasattr(torch.backends, 'mps') and torch.backends.mps.is_available():
        devices.append('mps')
    return devices


def _check_dtype(dtype: Optional[str]) -> Optional[str]:
    if dtype in (None, '', 'fp32'):
        return None  # the model's own float32 weights
    if dtype not in DTYPES:
        raise ConfigError(f'dtype {dtype!r}: expected one of {list(DTYPES)}')
    return dtype


#: the one answer for every local checkpoint the page may not load: missing, a file or a folder, inside
#: the allowed folders or not, it says the same, so that the box tells nothing about the server's files
REFUSED_CHECKPOINT = ('this local checkpoint cannot be loaded: the app loads only checkpoints that exist inside '
                      'the folders it was started with (rudolph app --allow-local DIR)')


def allowed_checkpoint(checkpoint: Optional[str], allowed: Sequence[str]) -> Optional[str]:
    """The page's local checkpoint (``None`` when empty) if it exists inside one of the ``allowed`` folders
    (links followed); else the :class:`ConfigError` :data:`REFUSED_CHECKPOINT`, whatever the reason."""
    if checkpoint is None or (isinstance(checkpoint, str) and not checkpoint.strip()):
        return None
    if not isinstance(checkpoint, str):
        raise ConfigError(REFUSED_CHECKPOINT)
    path = os.path.abspath(os.path.expanduser(checkpoint.strip()))
    if not os.path.exists(path) or not any(is_inside(path, folder) for folder in allowed):
        raise ConfigError(REFUSED_CHECKPOINT)
    return path


class ModelCache:
    """Loaded :class:`Components` by (model, checkpoint, device, dtype): each is loaded once and shared.

    ``loader`` is :meth:`Components.from_pretrained` (its keyword arguments ``device``,
    ``dtype``, ``checkpoint``); two requests for the same key wait for one load.
    """

    def __init__(self, loader: Optional[Callable[..., Any]] = None):
        self._loader = loader
        self._items: Dict[Tuple, Any] = {}
        self._locks: Dict[Tuple, threading.Lock] = {}
        self._guard = threading.Lock()

    @staticmethod
    def key(model: str, device: Optional[str] = None, dtype: Optional[str] = None,
            checkpoint: Optional[str] = None) -> Tuple:
        """The cache key: the model, its checkpoint folder (or None), the checked device and dtype."""

        if not isinstance(model, str) or not model.strip():
            raise ConfigError(f'model {model!r}: expected one of {model_choices()}')
        checkpoint = os.path.abspath(os.path.expanduser(checkpoint.strip())) if checkpoint and checkpoint.strip() else None
        return model.strip(), checkpoint, check_device(device or None), _check_dtype(dtype)

    def get(self, model: str, device: Optional[str] = None, dtype: Optional[str] = None,
            checkpoint: Optional[str] = None):
        """The components of ``model`` on ``device`` in ``dtype`` (loaded on first use)."""
        key = self.key(model, device, dtype, checkpoint)
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._items:
                self._items[key] = self._load(*key)
            return self._items[key]

    def _load(self, model: str, checkpoint: Optional[str], device: str, dtype: Optional[str]):

        loader = self._loader or Components.from_pretrained
        logger.info('loading %s (checkpoint %s) on %s, dtype %s', model, checkpoint, device, dtype or 'fp32')
        quantized = dtype in ('int8', 'int8-dynamic')
        precision = dict(dtype=None, quantize=dtype) if quantized else dict(dtype=dtype)
        return loader(model, device=device, checkpoint=checkpoint, **precision)

    def loaded(self) -> List[Tuple]:
        """The keys loaded so far."""
        with self._guard:
            return list(self._items)


class DeviceLocks:
    """One lock per device, so one model call runs at a time on each device."""

    def __init__(self):
        self._locks: Dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def __call__(self, device: Any) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(str(device), threading.Lock())


def defaults_for(model: str) -> Dict[str, Any]:
    """The values a tab starts with for ``model``: its recommended sampling and fitting example inputs."""

    spec = MODELS.get(model)
    sampling = dict((spec.sampling.get('text2image') if spec is not None else None) or DEFAULT_IMAGE_SAMPLING.kwargs())
    if model == TINY_SHAPES:

        # reranking by the decoded pictures: what the demo and the README's measurements use
        return {'sampling': sampling, 'reencode': True, 'prompt': 'большой красный круг слева на белом фоне',
                'caption_template': 'на картинке', 'question': shapes.VQA_COLOUR,
                'classes': ', '.join(shapes.colour_classes()), 'class_template': 'цвет фигуры: {}',
                'text_template': 'на картинке', 'image_side': shapes.IMAGE_SIZE}
    side = 8 * spec.config.image_tokens_per_dim if spec is not None else None
    return {'sampling': sampling, 'reencode': False, 'prompt': 'рисунок кота', 'caption_template': 'на картинке',
            'question': 'что на картинке?', 'classes': 'кошка, собака, лошадь', 'class_template': 'на картинке {}',
            'text_template': 'на картинке', 'image_side': side}


# ----------------------------------------------------------------------------- inputs and outputs
def progress_callback(report: Optional[Report], cancel: Optional[threading.Event]):
    """An engine progress callback (``done, total, desc``) that reports ``done / total`` and stops on ``cancel``."""
    def callback(done: int, total: int, desc: str) -> None:
        if cancel is not None and cancel.is_set():
            raise Cancelled('stopped by the user')
        if report is not None:
            report(done / total if total else 1.0, desc)
    return callback


def _parts(c, report: Optional[Report], cancel: Optional[threading.Event]):

    return tasks.Parts.of_components(c, progress=progress_callback(report, cancel))


def open_image(image: Any, name: str = 'image'):
    """A PIL picture from a PIL image, a numpy array or a file path; ``InputError`` naming ``name`` otherwise."""
    from PIL import Image


    if image is None:
        raise InputError(f'{name}: no picture given; upload one first')
    if isinstance(image, Image.Image):
        return image
    path = _upload_path(image)
    if isinstance(path, (str, os.PathLike)):
        try:
            return open_picture_file(path)
        except ImageFileError as error:
            raise ImageFileError(f'{name}: {error}') from None
    try:
        import numpy as np

        return Image.fromarray(np.asarray(image))
    except (TypeError, ValueError) as error:
        raise InputError(f'{name}: expected a picture, got {type(image).__name__} ({error})') from None


def _upload_path(image: Any) -> Any:
    """The file of an upload: Gradio's file payload (``{'path': ...}``, the page's pictures reach the
    handlers undecoded), a tempfile-like object (``.name``) or a path; anything else as it is."""
    if isinstance(image, Mapping):
        if not image.get('path'):
            raise InputError(f'expected an uploaded picture file, got {sorted(image)}')
        return image['path']
    return getattr(image, 'name', image)


def parse_classes(classes: Any) -> List[str]:
    """Class names from a list or a text of names separated by commas or new lines (blanks dropped)."""
    if isinstance(classes, str):
        classes = classes.replace('\n', ',').split(',')
    names = [str(c).strip() for c in (classes or []) if str(c).strip()]
    if not names:
        raise InputError(f'classes {classes!r}: expected at least one class name (separated by commas)')
    return names


def _save(record: Dict[str, Any], stem: str, out_dir: Optional[str], grid=None) -> List[str]:
    """``STEM.json`` (and ``STEM.png``, the grid) in a fresh folder under ``out_dir`` (default: the temp dir)."""
    folder = tempfile.mkdtemp(prefix='rudolph-app-', dir=out_dir)
    files = []
    if grid is not None:
        files.append(write_atomic(os.path.join(folder, f'{stem}.png'), lambda p: grid.save(p, format='PNG')))

    def dump(p: str) -> None:
        with open(p, 'w', encoding='utf-8') as f:
            json.dump(record, f, ensure_ascii=False, indent=2)
    files.append(write_atomic(os.path.join(folder, f'{stem}.json'), dump))
    return files


def grid_of(images: Sequence[Any], ncol: int = 4, pad: int = 2):
    """The pictures in rows of ``ncol`` with ``pad`` px of black between them (the CLI's grid layout)."""
    from PIL import Image

    w, h = images[0].size
    ncol = min(ncol, len(images))
    nrows = (len(images) + ncol - 1) // ncol
    grid = Image.new('RGB', (ncol * (w + pad) + pad, nrows * (h + pad) + pad), 'black')
    for i, img in enumerate(images):
        grid.paste(img.convert('RGB'), ((i % ncol) * (w + pad) + pad, (i // ncol) * (h + pad) + pad))
    return grid


def _sampling(defaults: Dict[str, Any], top_k, top_p, temperature):

    return SamplingConfig(int(defaults['top_k'] if top_k is None else top_k),
                          float(defaults['top_p'] if top_p is None else top_p),
                          float(defaults.get('temperature', 1.0) if temperature is None else temperature))


def _text_sampling(parts, task: str, top_k, top_p, temperature):

    return text_sampling_for(parts.reference, task, None if top_k is None else int(top_k),
                             None if top_p is None else float(top_p),
                             None if temperature is None else float(temperature))


def _seed(seed: Any) -> Optional[int]:
    if seed is None or seed == '':
        return None
    try:
        return int(seed)
    except (TypeError, ValueError):
        raise InputError(f'seed {seed!r}: expected an integer (or empty for a random one)') from None


def _count(name: str, value: Any) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if number <= 0 or number != value and not isinstance(value, str):
        raise InputError(f'{name} {value!r}: expected a positive integer')
    return number


# ----------------------------------------------------------------------------- super-resolution
_UPSCALERS: Dict[str, Any] = {}


def _upscaler(device: str):
    """Real-ESRGAN x2 of :mod:`rudolph.superres` on ``device``, or None when spandrel or the weights are missing."""
    if device not in _UPSCALERS:
        try:
            _UPSCALERS[device] = superres.get_realesrgan('x2', device=device)
        except (ImportError, RudolphError, OSError, ValueError, TypeError) as error:
            logger.info('upscaling not offered: %s', error)
            _UPSCALERS[device] = None
    return _UPSCALERS[device]


def upscale_available(device: str = 'cpu') -> bool:
    """Whether super-resolution can run here (spandrel is installed and the Real-ESRGAN weights load)."""
    return _upscaler(device) is not None


def _upscale(images: List[Any], device: str) -> List[Any]:
    import numpy as np
    from PIL import Image

    model = _upscaler(device)
    if model is None:
        raise ConfigError('upscaling needs rudolph.superres and its Real-ESRGAN weights, which are not available here')

    if hasattr(superres, 'super_resolution'):
        return list(superres.super_resolution(images, model))
    return [Image.fromarray(np.asarray(model.predict(np.asarray(img.convert('RGB'))))) for img in images]


# ----------------------------------------------------------------------------- the tabs
def _image_prompts(c, parts, image: Any, bands: Optional[Dict[str, int]]):
    """ImagePrompts keeping ``bands`` (tokens per side) of ``image``, or None when no band is kept."""
    bands = {side: int((bands or {}).get(side) or 0) for side in BANDS}
    if image is None or not any(bands.values()):
        return None

    side = 8 * parts.layout.N
    return ImagePrompts(open_image(image, 'image prompt'), bands, c.vae, parts.device, crop_first=True, image_size=side)


def text_to_image(c, prompt: str, images_num: int = 4, codebooks_num: int = 8, *, top_k=None, top_p=None,
                  temperature=None, seed=None, rerank: bool = True, reencode: bool = False, prompt_image=None,
                  bands: Optional[Dict[str, int]] = None, upscale: bool = False, bs: int = 8,
                  progress: Optional[Report] = None, cancel: Optional[threading.Event] = None,
                  out_dir: Optional[str] = None) -> Result:
    """``images_num`` pictures for ``prompt``: with ``rerank`` the best of ``codebooks_num`` samples.

    Sampling defaults to the model's recommended settings; ``prompt_image`` with ``bands``
    (``{'up': tokens, ...}``) keeps those bands of a picture; ``upscale`` needs super-resolution.
    """

    images_num, codebooks_num, bs = _count('images_num', images_num), _count('codebooks_num', codebooks_num), _count('bs', bs)
    if rerank and codebooks_num < images_num:
        raise InputError(f'codebooks_num {codebooks_num} < images_num {images_num}: the pictures shown are the best '
                         'of those sampled')
    parts = _parts(c, progress, cancel)
    sampling = _sampling(c.sampling_for('text2image') or DEFAULT_IMAGE_SAMPLING.kwargs(), top_k, top_p, temperature)
    prompts = _image_prompts(c, parts, prompt_image, bands)
    codes, rows = tasks.best_images(parts, prompt, codebooks_num, images_num, sampling, bs, seed=_seed(seed),
                                    reencode_codes=reencode and not parts.reference, rerank=rerank,
                                    image_prompts=prompts)
    images = [img for batch in tasks.decode_images(c.vae, codes, bs) for img in batch]
    if upscale:
        images = _upscale(images, str(parts.device))
    record = {'task': 'text2image', 'model': c.name, 'prompt': prompt, 'seed': _seed(seed), **sampling.kwargs(),
              'reranked': bool(rerank), 'images': [{**r, 'codes': code.tolist()} for r, code in zip(rows, codes.cpu())]}
    captions = [f"#{i + 1}" + (f" ppl {r['ppl_text']:.2f}" if 'ppl_text' in r else '') for i, r in enumerate(rows)]
    return Result(record, images=images, captions=captions, files=_save(record, 'text2image', out_dir, grid_of(images)))


def caption(c, image, captions_num: int = 3, generations_num: int = 16, template: str = 'на картинке', *,
            top_k=None, top_p=None, temperature=None, seed=None, bs: int = 16, progress: Optional[Report] = None,
            cancel: Optional[threading.Event] = None, out_dir: Optional[str] = None) -> Result:
    """The ``captions_num`` best of ``generations_num`` captions of ``image`` (starting with ``template``)."""

    img = open_image(image)
    parts = _parts(c, progress, cancel)
    rows = tasks.captioning(parts, img, _count('captions_num', captions_num), _count('generations_num', generations_num),
                            _text_sampling(parts, 'captions', top_k, top_p, temperature), _count('bs', bs),
                            seed=_seed(seed), r_template=template or '')
    rows = [{k: v if k == 'text' else int(v) if k == 'count' else float(v) for k, v in row.items()} for row in rows]
    record = {'task': 'caption', 'model': c.name, 'template': template, 'seed': _seed(seed), 'captions': rows}
    text = '\n'.join(r['text'] for r in rows) or '(no caption)'
    return Result(record, text=text, files=_save(record, 'caption', out_dir))


def vqa(c, image, question: str, answers_num: int = 3, generations_num: int = 16, *, top_k=None, top_p=None,
        temperature=None, seed=None, bs: int = 16, progress: Optional[Report] = None,
        cancel: Optional[threading.Event] = None, out_dir: Optional[str] = None) -> Result:
    """The answers to ``question`` about ``image``, most frequent first."""

    img = open_image(image)
    parts = _parts(c, progress, cancel)
    answers = tasks.vqa(parts, img, question, _count('answers_num', answers_num),
                        _count('generations_num', generations_num),
                        _text_sampling(parts, 'captions', top_k, top_p, temperature), _count('bs', bs), seed=_seed(seed))
    answers = [{'answer': a['answer'], 'count': int(a['count'])} for a in answers]
    record = {'task': 'vqa', 'model': c.name, 'question': question, 'seed': _seed(seed), 'answers': answers}
    text = '\n'.join(f"{a['answer']} ({a['count']})" for a in answers) or '(no answer)'
    return Result(record, text=text, files=_save(record, 'vqa', out_dir))


def classify(c, image, classes: Any, template: str = '{}', *, bs: int = 16, progress: Optional[Report] = None,
             cancel: Optional[threading.Event] = None, out_dir: Optional[str] = None) -> Result:
    """Zero-shot probabilities of ``classes`` for ``image`` (softmax of minus each class's log-perplexity)."""

    img = open_image(image)
    names = parse_classes(classes)
    parts = _parts(c, progress, cancel)
    pred = tasks.zero_shot(parts, img, names, template or '{}', _count('bs', bs))
    probs = tasks.class_probabilities(pred['ppl']).tolist()
    label = dict(zip(names, probs))
    record = {'task': 'classify', 'model': c.name, 'template': template, 'class': pred['class'],
              'tie': pred['tie'], 'ties': list(pred['ties']), 'probabilities': label,
              'perplexities': dict(zip(names, pred['ppl'].tolist()))}
    return Result(record, text=tasks.prediction_text(pred), label=label, files=_save(record, 'classify', out_dir))


def generate_text(c, template: str, texts_num: int = 4, *, top_k=None, top_p=None, temperature=None, seed=None,
                  bs: int = 16, progress: Optional[Report] = None, cancel: Optional[threading.Event] = None,
                  out_dir: Optional[str] = None) -> Result:
    """Texts continuing ``template``, least perplexing first."""

    parts = _parts(c, progress, cancel)
    rows = tasks.texts(parts, template, _count('texts_num', texts_num),
                       _text_sampling(parts, 'texts', top_k, top_p, temperature), _count('bs', bs), seed=_seed(seed))
    rows = [{k: v if k == 'text' else float(v) if k == 'ppl' else int(v) for k, v in r.items()} for r in rows]
    record = {'task': 'text', 'model': c.name, 'template': template, 'seed': _seed(seed), 'texts': rows}
    text = '\n'.join(r['text'] for r in rows) or '(no text)'
    return Result(record, text=text, files=_save(record, 'text', out_dir))


def _upload_name(image: Any) -> str:
    """The name the user gave an uploaded file (Gradio keeps it as ``orig_name``), else its file name."""
    if isinstance(image, Mapping) and image.get('orig_name'):
        return os.path.basename(str(image['orig_name']))
    return os.path.basename(str(_upload_path(image)))


def rerank_images(c, text: str, images: Sequence[Any], *, bs: int = 8, progress: Optional[Report] = None,
                  cancel: Optional[threading.Event] = None, out_dir: Optional[str] = None) -> Result:
    """Uploaded ``images`` ordered by how well ``text`` describes them (best first)."""
    import torch


    if not images:
        raise InputError('images: no pictures given; upload at least one')
    pictures = [open_image(img, f'images[{i}]') for i, img in enumerate(images)]
    names = [_upload_name(img) if not hasattr(img, 'size') else f'image {i + 1}' for i, img in enumerate(images)]
    parts = _parts(c, progress, cancel)
    codes = torch.stack([parts.image(img) for img in pictures])
    best, rows = tasks.rank_images(parts, text, codes, len(pictures), _count('bs', bs))
    ranked = [{'name': names[i], 'rank': r + 1, **row} for r, (i, row) in enumerate(zip(best, rows))]
    record = {'task': 'rerank', 'model': c.name, 'text': text, 'images': ranked}
    shown = [pictures[i] for i in best]
    captions = [f"#{r['rank']} {r['name']} (ppl {r['ppl_text']:.2f})" for r in ranked]
    side = 8 * parts.layout.N
    grid = grid_of([img.convert('RGB').resize((side, side)) for img in shown])
    return Result(record, images=shown, captions=captions, files=_save(record, 'rerank', out_dir, grid))
