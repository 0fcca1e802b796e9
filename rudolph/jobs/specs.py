"""The jobs: each turns a batch of inputs into output records with one call of :mod:`rudolph.tasks.batched`.

A job names its output ``columns`` (the record's fields, in order), the picture size its
inputs are decoded to (``None``: no pictures), and whether each input needs a text. Records
hold the key and path, the outputs and their scores, and the seed of generative jobs, so every
line can be read (and reproduced) on its own.
"""
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence

from rudolph.io.atomic import write_atomic_stream
from rudolph.io.paths import file_stems
from rudolph.jobs.features import ROWS_SUFFIX, index_path, npy_of, remove_features, restore_rows, write_features
from rudolph.jobs.inputs import Item
from rudolph.jobs.output import settings_path
from rudolph.tasks.batched import (
    caption_batch,
    classify_batch,
    embed_image_batch,
    embed_text_batch,
    text2image_batch,
    vqa_batch,
)
from rudolph.utils import torch_tensors_to_pil_list

__all__ = ['Job', 'CaptionJob', 'VqaJob', 'ClassifyJob', 'EmbedJob', 'Text2ImageJob', 'image_px']


def image_px(parts) -> int:
    """The picture size the model's image part encodes (``N`` tokens a side, 8 px each)."""
    return parts.layout.N * 8


def _plain(value: Any) -> Any:
    """A setting as JSON can store it (a sampling config as its ``top_k`` / ``top_p`` / ``temperature``)."""
    return value.kwargs() if hasattr(value, 'kwargs') else value


def _floats(values) -> List[float]:
    return [float(v) for v in values]


class Job:
    """A batched task over :class:`~rudolph.jobs.inputs.Item` rows (see the module)."""
    name = 'job'
    columns: Sequence[str] = ('key', 'path')
    needs_text = False
    #: ``None`` for jobs whose result depends on no randomness
    seed: Optional[int] = None

    def __init__(self, parts):
        self.parts = parts

    @property
    def image_size(self) -> Optional[int]:
        return image_px(self.parts)

    def result_settings(self) -> Dict[str, Any]:
        """Every setting of this job that changes its records (what a resumed run must share)."""
        return {}

    def settings_record(self) -> Dict[str, Any]:
        """The job's kind, its columns and :meth:`result_settings`, as stored beside its output."""
        return {'job': self.name, 'columns': list(self.columns),
                **{k: _plain(v) for k, v in self.result_settings().items()}}

    def settings_path(self, out: str) -> str:
        """Where the settings record of the output ``out`` is kept."""
        return settings_path(out)

    def output_files(self, out: str) -> List[str]:
        """The files this job leaves for the output ``out`` (an earlier run's mean ``out`` exists)."""
        return [out]

    def run(self, items: Sequence[Item], images: Sequence[Any]) -> List[Dict[str, Any]]:
        """One record per item (``images[i]`` the picture of ``items[i]``, ``None`` for jobs without)."""
        raise NotImplementedError

    def prepare(self, out: str, resume: bool, overwrite: bool) -> None:
        """Called on the main process before the done records are read (e.g. to restore them)."""

    def finish(self, out: str, items: Sequence[Item]) -> None:
        """Called on the main process once every record is in ``out``."""


class CaptionJob(Job):
    name = 'caption'
    columns = ('key', 'path', 'captions', 'scores', 'seed')

    def __init__(self, parts, *, seed: int = 0, captions_num: int = 1, template: str = '', sampling=None,
                 generations_num: Optional[int] = None):
        super().__init__(parts)
        self.seed, self.settings = seed, dict(captions_num=captions_num, template=template, sampling=sampling,
                                              generations_num=generations_num)

    def result_settings(self):
        return {'seed': self.seed, **self.settings}

    def run(self, items, images):

        results = caption_batch(self.parts, images, [i.key for i in items], seed=self.seed, **self.settings)
        return [dict(key=i.key, path=i.path, captions=list(r['captions']), scores=_floats(r['scores']),
                     seed=self.seed) for i, r in zip(items, results)]


class VqaJob(Job):
    name = 'vqa'
    columns = ('key', 'path', 'question', 'answers', 'scores', 'seed')
    needs_text = True

    def __init__(self, parts, *, seed: int = 0, answers_num: int = 1, sampling=None):
        super().__init__(parts)
        self.seed, self.settings = seed, dict(answers_num=answers_num, sampling=sampling)

    def result_settings(self):
        return {'seed': self.seed, **self.settings}

    def run(self, items, images):

        questions = [i.text.strip() for i in items]
        results = vqa_batch(self.parts, images, questions, [i.key for i in items], seed=self.seed, **self.settings)
        return [dict(key=i.key, path=i.path, question=q, answers=list(r['answers']), scores=_floats(r['scores']),
                     seed=self.seed) for i, q, r in zip(items, questions, results)]


class ClassifyJob(Job):
    name = 'classify'
    columns = ('key', 'path', 'label', 'probs', 'ties')

    def __init__(self, parts, classes: Sequence[str], template: Optional[str] = None):
        super().__init__(parts)
        self.classes, self.template = list(classes), template

    def result_settings(self):
        return {'classes': self.classes, 'template': self.template}

    def run(self, items, images):

        results = classify_batch(self.parts, images, self.classes, template=self.template)
        return [dict(key=i.key, path=i.path, label=self._label(r['label']),
                     probs={c: float(r['probs'][c]) for c in self.classes}, ties=list(r['ties']))
                for i, r in zip(items, results)]

    def _label(self, label) -> str:
        return self.classes[label] if isinstance(label, int) else str(label)


def _features_file(out: str) -> str:
    """The ``.npy`` whose rows file is ``out`` (``out`` itself when it is not a rows file)."""
    return npy_of(out) if out.endswith(ROWS_SUFFIX) else out


class EmbedJob(Job):
    """Pooled hidden states of each picture (or each text when ``texts``); see :mod:`rudolph.jobs.features`."""
    name = 'embed'
    columns = ('key', 'path', 'embedding')

    def __init__(self, parts, *, layer: int = -1, pooling: str = 'mean', texts: bool = False):
        super().__init__(parts)
        self.layer, self.pooling, self.texts = layer, pooling, texts
        self.needs_text = texts
        self.columns = ('key', 'text', 'embedding') if texts else ('key', 'path', 'embedding')

    @property
    def image_size(self) -> Optional[int]:
        return None if self.texts else image_px(self.parts)

    def result_settings(self):
        return {'layer': self.layer, 'pooling': self.pooling, 'texts': self.texts}

    def settings_path(self, out):
        return settings_path(_features_file(out))

    def output_files(self, out):
        return [out, _features_file(out), index_path(_features_file(out))]

    def run(self, items, images):

        if self.texts:
            features = embed_text_batch(self.parts, [i.text for i in items], layer=self.layer, pooling=self.pooling)
        else:
            features = embed_image_batch(self.parts, images, layer=self.layer, pooling=self.pooling)
        rows = features.detach().float().cpu().tolist()
        return [dict(key=i.key, path=i.path, text=i.text, embedding=row) for i, row in zip(items, rows)]

    def prepare(self, out, resume, overwrite):

        if overwrite:
            remove_features(out)
        if resume:
            restore_rows(out, self.columns)

    def finish(self, out, items):

        write_features(out, self.columns)


class Text2ImageJob(Job):
    """Pictures for each prompt, saved as ``DIR/<stem>_<j>.png`` (best first) before the record is written;
    ``stems`` maps every key of the run to its file stem (:func:`rudolph.io.paths.file_stems` of all keys, so
    no two prompts share a file)."""
    name = 'text2image'
    columns = ('key', 'prompt', 'images', 'scores', 'seed')
    needs_text = True

    def __init__(self, parts, out_dir: str, *, seed: int = 0, images_num: int = 1, sampling=None,
                 rerank: bool = True, codebooks_num: Optional[int] = None, stems: Optional[Mapping[str, str]] = None):
        super().__init__(parts)
        self.out_dir, self.seed, self.stems = out_dir, seed, dict(stems or {})
        self.settings = dict(images_num=images_num, sampling=sampling, rerank=rerank, codebooks_num=codebooks_num)

    def result_settings(self):
        return {'seed': self.seed, **self.settings}

    @property
    def image_size(self) -> Optional[int]:
        return None

    def run(self, items, images):

        results = text2image_batch(self.parts, [i.text for i in items], [i.key for i in items], seed=self.seed,
                                   **self.settings)
        return [dict(key=i.key, prompt=i.text, images=self._save(i.key, r['codebooks']), scores=_floats(r['scores']),
                     seed=self.seed) for i, r in zip(items, results)]

    def _save(self, key: str, codebooks) -> List[str]:
        import torch


        with torch.no_grad():
            pictures = torch_tensors_to_pil_list(self.parts.vae.decode(codebooks.to(self.parts.device)))
        names = []
        stem = self.stems.get(key) or file_stems([key])[key]
        for j, picture in enumerate(pictures):
            names.append(f'{stem}_{j}.png')
            write_atomic_stream(os.path.join(self.out_dir, names[-1]), lambda f, p=picture: p.save(f, format='PNG'))
        return names
