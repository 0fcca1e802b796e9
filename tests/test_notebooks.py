"""The notebooks: valid, importing only what exists, and executed headless on tiny-shapes."""
import ast
import importlib
import importlib.util
import json
import os
import re
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = ('usage.ipynb', 'finetune_captioning.ipynb', 'original_usage.ipynb')


def code_cells(name: str) -> list:
    with open(os.path.join(REPO, 'jupyters', name), encoding='utf-8') as f:
        nb = json.load(f)
    assert nb['nbformat'] == 4 and nb['cells']
    return [c for c in nb['cells'] if c['cell_type'] == 'code']


@pytest.mark.parametrize('name', NOTEBOOKS)
def test_notebook_outputs_are_cleared(name):
    for cell in code_cells(name):
        assert cell.get('outputs') == [] and cell.get('execution_count') is None, ''.join(cell['source'])[:80]


@pytest.mark.parametrize('name', NOTEBOOKS)
def test_notebook_picks_the_model_first(name):
    first = ''.join(code_cells(name)[0]['source'])
    assert "MODEL = os.environ.get('RUDOLPH_MODEL', '350M')" in first
    later = '\n'.join(''.join(c['source']) for c in code_cells(name))
    assert '16384' not in later and 'DEFAULT_SPC_TOKENS' not in later  # read from the model instead


def test_usage_notebook_is_valid():
    from rudolph import pipelines
    from rudolph.api import ruDolphApi

    code = [''.join(c['source']) for c in code_cells('usage.ipynb')]
    assert len(code) >= 8
    for i, source in enumerate(code):
        compile(source, f'usage.ipynb[code cell {i}]', 'exec')
        for node in ast.walk(ast.parse(source)):  # every imported name exists
            if isinstance(node, ast.ImportFrom) and node.module.startswith('rudolph'):
                module = importlib.import_module(node.module)
                for alias in node.names:
                    assert hasattr(module, alias.name) or importlib.util.find_spec(f'{node.module}.{alias.name}'), \
                        (node.module, alias.name)
    source = '\n'.join(code)
    for name in set(re.findall(r'\bapi\.(\w+)\(', source)):
        assert hasattr(ruDolphApi, name), name
    for name in set(re.findall(r'\bpipelines\.(\w+)\(', source)):
        assert hasattr(pipelines, name), name
    for task in ('dream', 'self_reranking_by_text', 'image_captioning', 'zs_clf', 'vqa', 'generate_texts'):
        assert f'api.{task}(' in source


def test_finetune_notebook_compiles():
    cells = code_cells('finetune_captioning.ipynb')
    for cell in cells:
        source = ''.join(cell['source'])
        source = '\n'.join(line for line in source.splitlines() if not line.lstrip().startswith(('!', '%')))
        compile(source, 'finetune_captioning.ipynb', 'exec')
    assert 'rudolph.finetune' in ''.join(''.join(c['source']) for c in cells)


@pytest.mark.parametrize('name', NOTEBOOKS)
def test_notebook_runs_on_tiny_shapes(name, tmp_path, monkeypatch):
    """Every cell runs (nbclient raises CellExecutionError on the first failing one)."""
    nbformat = pytest.importorskip('nbformat')
    nbclient = pytest.importorskip('nbclient')
    pytest.importorskip('ipykernel')
    monkeypatch.setenv('RUDOLPH_MODEL', 'tiny-shapes')
    monkeypatch.setenv('RUDOLPH_NB_IMAGES', '12')
    monkeypatch.setenv('RUDOLPH_NB_EPOCHS', '1')
    monkeypatch.setenv('OMP_NUM_THREADS', '1')
    # the kernel is a fresh process: it must import this checkout, not an installed copy
    monkeypatch.setenv('PYTHONPATH', os.pathsep.join(filter(None, [REPO, os.environ.get('PYTHONPATH')])))
    # a kernel of this very interpreter, whatever 'python3' kernels the machine has installed
    spec = tmp_path / 'jupyter' / 'kernels' / 'rudolph-test'
    spec.mkdir(parents=True)
    (spec / 'kernel.json').write_text(json.dumps({
        'argv': [sys.executable, '-m', 'ipykernel_launcher', '-f', '{connection_file}'],
        'display_name': 'rudolph tests', 'language': 'python'}))
    monkeypatch.setenv('JUPYTER_PATH', str(tmp_path / 'jupyter'))
    work = tmp_path / 'work'
    work.mkdir()
    nb = nbformat.read(os.path.join(REPO, 'jupyters', name), as_version=4)
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name='rudolph-test',
                                     resources={'metadata': {'path': str(work)}})
    client.execute()
    assert all(c.get('execution_count') for c in nb.cells if c.cell_type == 'code')
    if name == 'finetune_captioning.ipynb':  # it trained and saved in the working folder
        assert list((work / 'captioning_run').glob('step-*/model.safetensors'))
