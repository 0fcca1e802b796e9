"""Job outputs: one self-contained record a line (JSONL or CSV, by the file's extension).

Records are appended a batch at a time, flushed and fsynced, so a killed run loses at most the
batch in flight. :func:`repair` cuts a torn last line (a write the kill interrupted) before a
run appends again; :func:`read_records` gives the keys already done (``--resume``);
:func:`merge` writes the parts of several processes (or a resumed file) as one file in input
order, atomically (a temporary file renamed over the output).
"""
import csv
import io
import json
import os
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from rudolph.errors import ConfigError, DataError
from rudolph.io.atomic import write_atomic_stream
from rudolph.io.paths import check_writable_folder, naming_file  # noqa: F401 (re-exported)
from rudolph.io.tables import json_text  # noqa: F401 (re-exported)

__all__ = ['Format', 'format_for', 'repair', 'read_records', 'RecordWriter', 'merge',
           'part_path', 'part_paths', 'errors_path', 'json_text', 'check_writable_folder', 'settings_path',
           'read_settings', 'write_settings', 'settings_differences']

#: one record on disk: its key, its line (ending in a newline) and its fields
Record = Tuple[str, str, Dict[str, Any]]


class Format:
    """JSONL (``csv=False``) or CSV records with the fields ``columns`` in that order."""

    def __init__(self, columns: Sequence[str], csv_: bool = False):
        self.columns, self.csv = tuple(columns), csv_

    def header(self) -> str:
        return self._csv_line(self.columns) if self.csv else ''

    def encode(self, record: Mapping[str, Any]) -> str:
        """The record's line: JSON of its fields in ``columns`` order, or a CSV row (lists as JSON text)."""
        fields = [(c, record.get(c)) for c in self.columns]
        if not self.csv:
            return json.dumps(dict(fields), ensure_ascii=False) + '\n'
        return self._csv_line(['' if v is None else v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
                               for _, v in fields])

    @staticmethod
    def _csv_line(cells: Iterable[str]) -> str:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator='\n').writerow(list(cells))
        return buffer.getvalue()

    def parse(self, path: str, text: str) -> List[Record]:
        """The records of a whole (repaired) file's ``text``; ``DataError`` for a line that is not one."""
        return self._parse_csv(path, text) if self.csv else self._parse_jsonl(path, text)

    def _parse_jsonl(self, path: str, text: str) -> List[Record]:
        records = []
        # Only '\n' ends a record: str.splitlines would also split at U+2028 and the like inside a text.
        for number, line in enumerate((part + '\n' for part in text.split('\n')[:-1]), 1):
            try:
                fields = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataError(f'{path}:{number}: not a JSON record ({error}); the file is not a job output') from None
            if not isinstance(fields, dict) or not isinstance(fields.get('key'), str):
                raise DataError(f'{path}:{number}: a job record needs a "key" string')
            records.append((fields['key'], line, fields))
        return records

    def _parse_csv(self, path: str, text: str) -> List[Record]:
        rows = list(csv.reader(io.StringIO(text, newline='')))
        if not rows:
            return []
        if tuple(rows[0]) != self.columns:
            raise DataError(f'{path}: its columns {rows[0]} are not those of this job {list(self.columns)}')
        records = []
        for number, row in enumerate(rows[1:], 2):
            if len(row) != len(self.columns):
                raise DataError(f'{path}: row {number} has {len(row)} cells, expected {len(self.columns)}')
            records.append((row[0], self._csv_line(row), dict(zip(self.columns, row))))
        return records


def format_for(path: str, columns: Sequence[str]) -> Format:
    """The format of an output path by its extension: ``.jsonl`` / ``.json`` or ``.csv``."""
    lower = path.lower()
    if lower.endswith(('.jsonl', '.json', '.ndjson')):
        return Format(columns)
    if lower.endswith('.csv'):
        return Format(columns, csv_=True)
    raise ConfigError(f'--out {path!r}: expected a .jsonl or .csv file name (the format follows the extension)')


def part_path(path: str, rank: int) -> str:
    """Where process ``rank`` of a multi-process run writes its records."""
    return f'{path}.part-{rank}'


def part_paths(path: str) -> List[str]:
    """Every existing part file of ``path`` (left by this or an earlier run), in rank order."""
    folder, name = os.path.split(os.path.abspath(path))
    prefix = f'{name}.part-'
    ranks = sorted(int(f[len(prefix):]) for f in os.listdir(folder)
                   if f.startswith(prefix) and f[len(prefix):].isdigit())
    return [part_path(path, r) for r in ranks]


def errors_path(path: str) -> str:
    return f'{path}.errors.jsonl'


def settings_path(out: str) -> str:
    """Where the settings record of the output ``out`` lives (the job kind and every setting that changes
    the results; a resumed run must match it)."""
    return f'{out}.settings.json'


def read_settings(path: str) -> Optional[Dict[str, Any]]:
    """The settings record of an output (its ``.settings.json``), ``None`` if there is none."""
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding='utf-8') as f:
            settings = json.load(f)
    except (OSError, ValueError) as error:
        raise DataError(f'{path}: cannot read the settings record of the output ({error}); expected the JSON '
                        'object a job writes') from None
    if not isinstance(settings, dict):
        raise DataError(f'{path}: expected a JSON object (the settings record of a job output)')
    return settings


def write_settings(path: str, settings: Mapping[str, Any]) -> None:
    """Write the settings record ``path`` atomically."""
    write_atomic_stream(path, lambda f: f.write((json_text(dict(settings)) + '\n').encode('utf-8')))


def _option(name: str) -> str:
    """The command-line option(s) that set the setting ``name``."""
    return {'job': 'the command', 'sampling': '--top-k/--top-p/--temperature', 'rerank': 'the job',
            'texts': '--texts', 'classes': '--classes'}.get(name, '--' + name.replace('_', '-'))


def settings_differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> List[str]:
    """Each setting that differs, as ``name (option): OLD in the output, NEW now`` (JSON-normalised values)."""
    old, new = json.loads(json_text(dict(old))), json.loads(json_text(dict(new)))
    return [f'{name} ({_option(name)}): {old.get(name)!r} in the output, {new.get(name)!r} now'
            for name in sorted(set(old) | set(new)) if old.get(name) != new.get(name)]


def repair(path: str) -> bool:
    """Cut a torn last line (no final newline: a write was interrupted); True if something was cut."""
    if not os.path.exists(path):
        return False
    with open(path, 'rb') as f:
        data = f.read()
    if not data or data.endswith(b'\n'):
        return False
    keep = data.rfind(b'\n') + 1
    with open(path, 'r+b') as f:
        f.truncate(keep)
        f.flush()
        os.fsync(f.fileno())
    return True


def read_records(path: str, fmt: Format) -> List[Record]:
    """The complete records of ``path`` (none if it does not exist); a torn last line is not one."""
    if not os.path.exists(path):
        return []
    with open(path, encoding='utf-8', newline='') as f:
        text = f.read()
    if text and not text.endswith('\n'):
        text = text[:text.rfind('\n') + 1]
    return fmt.parse(path, text)


class RecordWriter:
    """Appends lines to ``path`` (after ``header`` when the file is new or empty), flushed and fsynced per
    call; the file is opened at the first lines (a run without errors leaves no errors file)."""

    def __init__(self, path: str, header: str = ''):
        self.path, self.header, self._file = path, header, None

    def write(self, lines: Sequence[str]) -> None:
        if not lines:
            return
        with naming_file(self.path):  # a full disk says which file it could not write
            if self._file is None:
                self._file = open(self.path, 'a', encoding='utf-8', newline='')
                if self.header and self._file.tell() == 0:
                    lines = [self.header] + list(lines)
            self._file.write(''.join(lines))
            self._file.flush()
            os.fsync(self._file.fileno())

    def close(self) -> None:
        if self._file is not None:
            file, self._file = self._file, None
            with naming_file(self.path):  # closing flushes what a failed write left in the buffer
                file.close()

    def __enter__(self) -> 'RecordWriter':
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def merge(path: str, sources: Sequence[str], fmt: Format, order: Mapping[str, int],
          header: Optional[str] = None) -> int:
    """Write the records of ``sources`` (the first of each key wins) to ``path`` sorted by ``order``
    (keys not in it last, as found), atomically; returns the number of records."""
    seen: Dict[str, Tuple[int, int, str]] = {}
    for source in sources:
        for key, line, _ in read_records(source, fmt):
            if key not in seen:
                seen[key] = (order.get(key, len(order)), len(seen), line)
    lines = [line for _, _, line in sorted(seen.values())]
    head = fmt.header() if header is None else header
    write_atomic_stream(path, lambda f: f.write((head + ''.join(lines)).encode('utf-8')))
    return len(lines)
