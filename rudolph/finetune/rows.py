"""Fine-tuning rows: the tasks and their layouts, and reading rows from JSONL / CSV files."""
import csv
import logging
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from rudolph.errors import DataError
from rudolph.io.tables import jsonl_rows

__all__ = ['TaskSpec', 'TASKS', 'infer_task', 'read_rows']

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TaskSpec:
    """How a task lays out a sample and weights the three loss parts.

    ``needs``: the row fields that must be present and non-empty (``image``, ``left_text``,
    ``right_text``). Parts a task does not use are filled with pads (text) or zeros (image)
    and get weight 0, as the original text-QA notebook does for its image positions.
    """
    name: str
    needs: Tuple[str, ...]
    lt_token: Optional[str]
    rt_token: Optional[str]
    lt_loss_weight: float
    img_loss_weight: float
    rt_loss_weight: float

    @property
    def weights(self) -> Dict[str, float]:
        return dict(lt_loss_weight=self.lt_loss_weight, img_loss_weight=self.img_loss_weight,
                    rt_loss_weight=self.rt_loss_weight)


#: Built-in tasks; add your own (with your own task tokens) by passing ``tasks=`` to :func:`prepare_dataset`.
TASKS: Dict[str, TaskSpec] = {
    # text -> image: caption on the left, loss on the image codes.
    't2i': TaskSpec('t2i', ('left_text', 'image'), '<LT_T2I>', None, 0.0, 1.0, 0.0),
    # image -> text (captioning): loss on the right text; an optional left prompt is kept.
    'i2t': TaskSpec('i2t', ('image', 'right_text'), '<LT_I2T>', '<RT_I2T>', 0.0, 0.0, 1.0),
    # visual QA: question on the left, answer on the right after the image.
    'vqa': TaskSpec('vqa', ('left_text', 'image', 'right_text'), '<LT_I2T>', '<RT_I2T>', 0.0, 0.0, 1.0),
    # text -> text: language modelling on the left text (how RuDOLPH was pre-trained on texts).
    't2t': TaskSpec('t2t', ('left_text',), '<LT_T2T>', None, 1.0, 0.0, 0.0),
    # text QA: context+question left, zero image, answer right (the original 2.7B QA notebook).
    'tqa': TaskSpec('tqa', ('left_text', 'right_text'), '<LT_TQA>', '<RT_TQA>', 1.0, 0.0, 1.0),
}

_FIELD_ALIASES = {'left': 'left_text', 'right': 'right_text', 'image_path': 'image'}


def infer_task(row: Mapping[str, Any]) -> str:
    """The built-in task that fits the fields present in ``row``."""
    has_image = row.get('image') is not None
    left, right = bool(row.get('left_text')), bool(row.get('right_text'))
    if has_image:
        if right:
            return 'vqa' if left else 'i2t'
        return 't2i'
    return 'tqa' if right else 't2t'


# ----------------------------------------------------------------------------- reading rows
def read_rows(path: Union[str, os.PathLike]) -> List[Dict[str, Any]]:
    """Rows of a ``.jsonl`` (one JSON object a line) or ``.csv`` (with a header) file.

    Recognised fields: ``image`` (path, relative to an ``image_root``), ``left_text``,
    ``right_text``, ``task`` (aliases ``left``, ``right``, ``image_path``). Empty CSV cells
    count as absent.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'data file not found: {path!r} (expected a .jsonl or .csv file)')
    ext = os.path.splitext(path)[1].lower()
    rows: List[Dict[str, Any]] = []
    if ext in ('.jsonl', '.json'):
        with open(path, encoding='utf-8') as f:
            rows.extend(jsonl_rows(f, path))
    elif ext in ('.csv', '.tsv'):
        with open(path, encoding='utf-8', newline='') as f:
            reader = csv.DictReader(f, delimiter='\t' if ext == '.tsv' else ',')
            _check_columns(path, reader.fieldnames or [])
            for row in reader:
                rows.append({k: v for k, v in row.items() if k is not None and v not in (None, '')})
    else:
        raise DataError(f'unsupported data file {path!r}: expected a .jsonl or .csv file')
    return [_normalise_row(row) for row in rows]


_COLUMNS = ('image', 'left_text', 'right_text', 'task')


def _check_columns(path: str, found: Sequence[str]) -> None:
    """A CSV header must name at least one known column; unknown columns are ignored with a warning."""
    names = [_FIELD_ALIASES.get(c, c) for c in found]
    unknown = [c for c, n in zip(found, names) if n not in _COLUMNS]
    if not any(n in _COLUMNS for n in names):
        raise DataError(f'{path}: no usable columns; expected a header with some of {list(_COLUMNS)} '
                        f'(aliases {sorted(_FIELD_ALIASES)}), found {list(found)}')
    if unknown:
        logger.warning('%s: ignoring unknown columns %s (expected some of %s)', path, unknown, list(_COLUMNS))


def _normalise_row(row: Mapping[str, Any]) -> Dict[str, Any]:
    return {_FIELD_ALIASES.get(k, k): v for k, v in row.items()}


# ----------------------------------------------------------------------------- text
