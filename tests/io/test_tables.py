"""rudolph.io.tables: JSONL rows with errors naming file:line, and the one JSON writer."""
import json

import numpy as np
import pytest
import torch

from rudolph.errors import DataError, InputError
from rudolph.io.tables import json_object, json_text, jsonl_rows


def test_jsonl_rows_yields_the_objects_and_skips_blank_lines():
    lines = ['{"text": "кот", "n": 1}\n', '\n', '   \n', '{"text": "dog"}']
    assert list(jsonl_rows(lines, 'train.jsonl')) == [{'text': 'кот', 'n': 1}, {'text': 'dog'}]


def test_jsonl_rows_of_an_open_file(tmp_path):
    path = tmp_path / 'rows.jsonl'
    path.write_text('{"a": 1}\n{"a": 2}\n', encoding='utf-8')
    with open(path, encoding='utf-8') as f:
        assert [row['a'] for row in jsonl_rows(f, str(path))] == [1, 2]


def test_jsonl_rows_names_the_file_and_the_line_counting_blank_lines():
    lines = ['{"a": 1}', '', '{"a": 2', '{"a": 3}']
    rows = jsonl_rows(lines, 'data/train.jsonl')
    assert next(rows) == {'a': 1}  # rows before the bad line come out first
    with pytest.raises(DataError) as info:
        next(rows)
    message = str(info.value)
    assert message.startswith('data/train.jsonl:3: not valid JSON')
    assert 'one JSON object a line' in message


@pytest.mark.parametrize('line, kind', [('[1, 2]', 'list'), ('"text"', 'str'), ('3', 'int'), ('null', 'NoneType')])
def test_jsonl_rows_refuses_a_line_that_is_not_an_object(line, kind):
    with pytest.raises(DataError) as info:
        list(jsonl_rows(['{}', line], 'rows.jsonl'))
    assert str(info.value) == f'rows.jsonl:2: expected a JSON object, got {kind}'


def test_data_errors_are_value_errors():
    with pytest.raises(ValueError):
        list(jsonl_rows(['nope'], 'rows.jsonl'))
    assert issubclass(DataError, InputError)


def test_json_object_returns_the_object():
    assert json_object('{"a": [1, 2], "b": null}', '--params') == {'a': [1, 2], 'b': None}


def test_json_object_errors_start_with_where_and_say_what_was_expected():
    with pytest.raises(DataError) as info:
        json_object('{a: 1}', '--sampling', 'a JSON object of sampling options')
    message = str(info.value)
    assert message.startswith('--sampling: not valid JSON (')
    assert message.endswith('expected a JSON object of sampling options')
    with pytest.raises(DataError, match=r'^--sampling: expected a JSON object, got list$'):
        json_object('[]', '--sampling')


def test_json_text_is_indented_and_keeps_non_ascii():
    text = json_text({'caption': 'ёлка 🎄', 'n': 2})
    assert 'ёлка 🎄' in text and '\\u' not in text
    assert text == '{\n  "caption": "ёлка 🎄",\n  "n": 2\n}'


def test_json_text_writes_numpy_arrays_and_scalars_as_lists_and_numbers():
    obj = {'array': np.arange(6, dtype=np.int64).reshape(2, 3), 'f32': np.float32(1.5), 'i64': np.int64(7),
           'b': np.bool_(True), 'f64': np.float64(0.25), 'nested': [np.array([0.5], dtype=np.float16)]}
    back = json.loads(json_text(obj))
    assert back == {'array': [[0, 1, 2], [3, 4, 5]], 'f32': 1.5, 'i64': 7, 'b': True, 'f64': 0.25, 'nested': [[0.5]]}
    assert isinstance(back['i64'], int) and isinstance(back['f32'], float)


def test_json_text_writes_torch_tensors_as_lists_and_numbers():
    back = json.loads(json_text({'t': torch.tensor([[1, 2]]), 's': torch.tensor(3.0)}))
    assert back == {'t': [[1, 2]], 's': 3.0}


def test_json_text_refuses_other_objects_naming_their_type():
    class Opaque:
        pass

    with pytest.raises(TypeError, match='Opaque is not JSON serialisable'):
        json_text({'x': Opaque()})
