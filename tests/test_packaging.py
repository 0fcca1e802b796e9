"""Packaging: the pyproject metadata, and the built sdist and wheel (slow: builds them with scripts/build_dist.sh)."""
import glob
import os
import re
import subprocess
import sys
import zipfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIST_NAME = 'rudolph-hypermodal'
PYTHONS = ('3.10', '3.11', '3.12', '3.13')


def pyproject() -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: tomli (a dependency of `build`, in the test extra)
        import tomli as tomllib
    with open(os.path.join(REPO, 'pyproject.toml'), 'rb') as f:
        return tomllib.load(f)


def weight_files() -> set:
    """Every file of the embedded model(s) under rudolph/demo/weights, relative to rudolph/."""
    root = os.path.join(REPO, 'rudolph')
    return {os.path.relpath(p, root) for p in glob.glob(os.path.join(root, 'demo', 'weights', '**', '*'),
                                                        recursive=True) if os.path.isfile(p)}


def test_distribution_metadata():
    import rudolph
    from rudolph.superres import INSTALL_HINT

    meta = pyproject()
    project = meta['project']
    assert project['name'] == DIST_NAME and project['requires-python'] == '>=3.10'
    assert project['readme'] == 'README.md' and project['license'] == 'Apache-2.0'
    for version in PYTHONS:
        assert f'Programming Language :: Python :: {version}' in project['classifiers']
    assert set(project['optional-dependencies']) >= {'finetune', 'sr', 'app', 'test'}
    assert any(dep.startswith('spandrel') for dep in project['optional-dependencies']['sr'])
    assert project['scripts'] == {'rudolph': 'rudolph.cli.commands:main'}
    assert meta['tool']['setuptools']['dynamic']['version'] == {'attr': 'rudolph.__version__'}
    assert re.fullmatch(r'\d+\.\d+\.\d+([ab]|rc)?\d*', rudolph.__version__)
    assert f"{DIST_NAME}[sr]" in INSTALL_HINT
    # the package-data globs take every file of the embedded model
    root = os.path.join(REPO, 'rudolph')
    matched = {os.path.relpath(p, root) for pattern in meta['tool']['setuptools']['package-data']['rudolph']
               for p in glob.glob(os.path.join(root, pattern), recursive=True) if os.path.isfile(p)}
    assert weight_files() and weight_files() <= matched


def test_install_hints_name_our_distribution():
    """Installing the extra of PyPI's `rudolph` would install the original package, not this one."""
    wrong = re.compile(r"""pip install ['"]?rudolph(?!-hypermodal)\b""")
    offenders = []
    for root, _, files in os.walk(REPO):
        if any(part.startswith('.') for part in os.path.relpath(root, REPO).split(os.sep)):
            continue  # .venv, .git
        for name in files:
            if name.endswith(('.py', '.md', '.toml', '.ipynb', '.txt')):
                with open(os.path.join(root, name), encoding='utf-8', errors='replace') as f:
                    offenders += [f'{name}: {m.group(0)}' for m in wrong.finditer(f.read())]
    assert offenders == []


def _tools_missing() -> str:
    import importlib.util

    return ', '.join(m for m in ('build', 'twine', 'setuptools') if importlib.util.find_spec(m) is None)


@pytest.fixture(scope='module')
def dist(tmp_path_factory):
    """The sdist and the wheel built from this tree (no build isolation: nothing is downloaded)."""
    if os.environ.get('CI') != 'true' and _tools_missing():
        pytest.skip(f'needs build, twine and setuptools (the test extra): {_tools_missing()} missing')
    out = tmp_path_factory.mktemp('dist')
    done = subprocess.run(['bash', os.path.join(REPO, 'scripts', 'build_dist.sh'), str(out)], capture_output=True,
                          text=True, timeout=600, env=dict(os.environ, PATH=os.path.dirname(sys.executable) +
                                                           os.pathsep + os.environ.get('PATH', '')))
    assert done.returncode == 0, done.stdout + done.stderr
    assert 'PASSED' in done.stdout  # twine check --strict
    wheels = glob.glob(str(out / '*.whl'))
    sdists = glob.glob(str(out / '*.tar.gz'))
    assert len(wheels) == len(sdists) == 1
    return wheels[0], sdists[0]


@pytest.mark.slow
def test_wheel_has_the_package_and_its_model_only(dist):
    wheel, _ = dist
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        metadata = zf.read(next(n for n in names if n.endswith('.dist-info/METADATA'))).decode()
        entry_points = zf.read(next(n for n in names if n.endswith('.dist-info/entry_points.txt'))).decode()
    assert {f'rudolph/{p}'.replace(os.sep, '/') for p in weight_files()} <= names
    sources = {os.path.relpath(p, REPO).replace(os.sep, '/')
               for p in glob.glob(os.path.join(REPO, 'rudolph', '**', '*.py'), recursive=True)}
    assert sources <= names
    tops = {n.split('/', 1)[0] for n in names}
    assert tops == {'rudolph', f'{DIST_NAME.replace("-", "_")}-{_version()}.dist-info'}, tops
    for needle in (f'Name: {DIST_NAME}', 'Requires-Python: >=3.10', 'Provides-Extra: sr', 'Provides-Extra: app',
                   'Provides-Extra: finetune', 'Description-Content-Type: text/markdown', 'License-Expression: '
                   'Apache-2.0', '## Two commands'):
        assert needle in metadata, needle
    assert 'rudolph = rudolph.cli.commands:main' in entry_points


@pytest.mark.slow
def test_the_readme_states_the_wheel_size(dist):
    """The README and the packaging page (docs/development.md) state the wheel's size: both within 10%."""
    wheel, _ = dist
    size = os.path.getsize(wheel) / 1e6
    for page in ('README.md', os.path.join('docs', 'development.md')):
        with open(os.path.join(REPO, page), encoding='utf-8') as f:
            stated = re.search(r'the wheel\s+\(`([^`]+)`\)\s+is\s+([\d.]+) MB', f.read(), flags=re.I)
        assert stated, f'{page}: "the wheel (`...whl`) is N MB"'
        assert stated.group(1) == os.path.basename(wheel), (page, stated.group(1), wheel)
        assert abs(float(stated.group(2)) - size) <= 0.1 * size, (page, stated.group(2), size)


@pytest.mark.slow
def test_sdist_carries_the_tests(dist):
    import tarfile

    _, sdist = dist
    with tarfile.open(sdist) as tf:
        names = {n.split('/', 1)[1] for n in tf.getnames() if '/' in n}
    assert {'pyproject.toml', 'README.md', 'LICENSE', 'tests/conftest.py', 'tests/test_packaging.py',
            'scripts/build_dist.sh'} <= names
    assert not any(n.startswith('.ci/') or '__pycache__' in n for n in names)


def _version() -> str:
    import rudolph

    return rudolph.__version__
