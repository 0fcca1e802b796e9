"""Reading JSONL tables: one JSON object a line, with errors that name the file and the line."""
import json
from typing import Any, Dict, Iterable, Iterator

from .errors import DataError

__all__ = ['jsonl_rows']


def jsonl_rows(lines: Iterable[str], path: str) -> Iterator[Dict[str, Any]]:
    """The JSON objects of ``lines`` (an open JSONL file called ``path``); blank lines are skipped."""
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(f'{path}:{number}: not valid JSON ({error.msg}); expected one JSON object a line') from None
        if not isinstance(row, dict):
            raise DataError(f'{path}:{number}: expected a JSON object, got {type(row).__name__}')
        yield row
