"""JSON: reading JSONL tables (one JSON object a line, with errors that name the file and the line), and
the one way results are written as JSON text."""
import json
from typing import Any, Dict, Iterable, Iterator

from rudolph.errors import DataError

__all__ = ['jsonl_rows', 'json_object', 'json_text']


def jsonl_rows(lines: Iterable[str], path: str) -> Iterator[Dict[str, Any]]:
    """The JSON objects of ``lines`` (an open JSONL file called ``path``); blank lines are skipped."""
    for number, line in enumerate(lines, 1):
        if line.strip():
            yield json_object(line, f'{path}:{number}', 'one JSON object a line')


def json_object(text: str, where: str, expected: str = 'a JSON object') -> Dict[str, Any]:
    """The JSON object ``text``; else a ``DataError`` starting with ``where`` (a file and line, an option)."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as error:
        raise DataError(f'{where}: not valid JSON ({error.msg}); expected {expected}') from None
    if not isinstance(obj, dict):
        raise DataError(f'{where}: expected a JSON object, got {type(obj).__name__}')
    return obj


def json_text(obj: Any) -> str:
    """``obj`` as indented JSON (non-ASCII kept; numpy / torch scalars and arrays as lists)."""
    return json.dumps(obj, ensure_ascii=False, indent=2, default=_json_default)


def _json_default(obj: Any) -> Any:
    if hasattr(obj, 'tolist'):
        return obj.tolist()
    raise TypeError(f'{type(obj).__name__} is not JSON serialisable')
