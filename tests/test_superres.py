"""Super-resolution: ruDALL-E's Real-ESRGAN files (random weights in the published layout) through spandrel.

The files are written as ruDALL-E's ``RRDBNet`` saves them (``conv_first``, ``body.N.rdbK.convJ``,
``conv_body``, ``conv_up1/2`` (+ ``conv_up3`` for x8), ``conv_hr``, ``conv_last``; x2 reads the
pixel-unshuffled picture: 12 input channels), plain or under ``params`` / ``params_ema``, into an
offline hub cache of ``sberbank-ai/Real-ESRGAN``, so spandrel's layout detection is what loads them.
"""
import json
import sys

import pytest
import torch
from conftest import fill_hub_cache
from PIL import Image

from rudolph.cli import commands as cli
from rudolph.errors import (
    CheckpointError,
    CheckpointMismatchError,
    ConfigError,
    InputError,
    MissingDependencyError,
    UnsafeCheckpointError,
    WeightsNotFoundError,
)
from rudolph.superres import FILES, REPO_ID, RealESRGAN, get_realesrgan, resolve_scale


def rrdb_state(scale: int, feat: int = 8, blocks: int = 1, grow: int = 32, seed: int = 0) -> dict:
    """Random RRDBNet weights with the keys and shapes of ruDALL-E's ``RealESRGAN_x{scale}.pth``."""
    g = torch.Generator().manual_seed(seed)
    state = {}

    def conv(name, cin, cout, std=0.05):
        state[f'{name}.weight'] = torch.randn(cout, cin, 3, 3, generator=g) * std
        state[f'{name}.bias'] = torch.randn(cout, generator=g) * 0.01

    conv('conv_first', 3 * (4 if scale == 2 else 1), feat)
    for b in range(blocks):
        for r in (1, 2, 3):
            for j in range(1, 6):
                conv(f'body.{b}.rdb{r}.conv{j}', feat + (j - 1) * grow, grow if j < 5 else feat, std=0.2 / feat ** .5)
    for name in ['conv_body', 'conv_up1', 'conv_up2'] + (['conv_up3'] if scale == 8 else []) + ['conv_hr']:
        conv(name, feat, feat)
    conv('conv_last', feat, 3)
    return state


#: how each file is wrapped: plain, basicsr's 'params' and 'params_ema'
WRAPPERS = {'x2': lambda s: s, 'x4': lambda s: {'params': s}, 'x8': lambda s: {'params_ema': s}}


@pytest.fixture(scope='module')
def sr_cache(tmp_path_factory):
    """An offline hub cache holding small x2, x4, x8 files of sberbank-ai/Real-ESRGAN."""
    cache = tmp_path_factory.mktemp('hf-cache')
    for name, (filename, scale) in FILES.items():
        fill_hub_cache(cache, REPO_ID, filename, lambda p, s=scale, n=name: torch.save(WRAPPERS[n](rrdb_state(s)), p))
    return str(cache)


@pytest.fixture
def hub_cache(sr_cache, monkeypatch):
    """``sr_cache`` as the default Hugging Face cache, offline (what the CLI and ``dream`` read)."""
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, 'HF_HUB_CACHE', sr_cache)
    monkeypatch.setattr(constants, 'HF_HUB_OFFLINE', True)
    return sr_cache


@pytest.mark.parametrize('name', ['x2', 'x4', 'x8'])
def test_each_scale_loads_from_the_offline_cache(sr_cache, name):
    sr = get_realesrgan(name, cache_dir=sr_cache)
    scale = FILES[name][1]
    assert isinstance(sr, RealESRGAN) and sr.scale == scale and sr.dtype == torch.float32
    ups = [m for m in sr.model.modules() if isinstance(m, torch.nn.Upsample)]
    assert len(ups) == (3 if name == 'x8' else 2)  # x8: the third upsampling layer (conv_up3) is used
    img = Image.new('RGB', (13, 10), (200, 30, 60))
    assert sr(img).size == (13 * scale, 10 * scale) and sr(img).mode == 'RGB'
    assert [i.size for i in sr([img, img.resize((6, 8))])] == [(13 * scale, 10 * scale), (6 * scale, 8 * scale)]
    x = torch.rand(2, 3, 9, 7, dtype=torch.float64)
    y = sr(x)
    assert y.shape == (2, 3, 9 * scale, 7 * scale) and y.dtype == torch.float64 and 0 <= y.min() <= y.max() <= 1
    assert sr(x[0]).shape == (3, 9 * scale, 7 * scale)
    assert torch.allclose(sr(x[1]), y[1], atol=1e-5)


def test_the_real_architecture_size_is_detected(tmp_path):
    # 23 blocks, 64 features: the published x8 file (x4 and x2 have the same trunk)
    path = tmp_path / 'RealESRGAN_x8.pth'
    torch.save(rrdb_state(8, feat=64, blocks=23), path)
    sr = get_realesrgan('x8', path=path)
    assert sum(p.numel() for p in sr.model.parameters()) == 16_734_915
    assert sr(torch.rand(1, 3, 4, 5)).shape == (1, 3, 32, 40)


@pytest.mark.parametrize('name', ['x2', 'x4'])
def test_tiling_is_seamless(sr_cache, name):
    # one block: the receptive field (17 input pixels, 34 through x2's pixel-unshuffle) fits in a 36-px overlap
    sr = get_realesrgan(name, cache_dir=sr_cache, tile=24, overlap=36)
    x = torch.rand(1, 3, 100, 76, generator=torch.Generator().manual_seed(1))
    whole = sr(x, tile=1000)
    tiled = sr(x)
    assert tiled.shape == whole.shape
    assert (tiled - whole).abs().max() < 1e-5
    # without context the tile borders show: the test can fail
    assert (sr(x, overlap=0) - whole).abs().max() > 1e-3


def test_tiles_and_batches_of_pil_images(sr_cache):
    sr = get_realesrgan('x4', cache_dir=sr_cache, tile=16, overlap=36, batch_size=1)
    img = Image.effect_noise((40, 30), 60).convert('RGB')
    assert sr(img).tobytes() == get_realesrgan('x4', cache_dir=sr_cache, tile=1000)(img).tobytes()
    # ruDALL-E's call: patches_size is the tile, padding the overlap
    assert sr.predict(img, patches_size=16, padding=36).tobytes() == sr(img).tobytes()
    assert sr.predict(img.convert('RGBA')).size == (160, 120)


def test_bf16_and_fp16_on_cpu(sr_cache):
    x = torch.rand(1, 3, 8, 8)
    ref = get_realesrgan('x4', cache_dir=sr_cache)(x)
    sr = get_realesrgan('x4', cache_dir=sr_cache, dtype='bf16')
    assert sr.dtype == torch.bfloat16
    y = sr(x)
    assert y.dtype == torch.float32 and (y - ref).abs().max() < 0.05
    with pytest.warns(UserWarning, match='float16 on CPU'):
        assert get_realesrgan('x4', cache_dir=sr_cache, fp16=True).dtype == torch.float32
    with pytest.raises(ConfigError, match='dtype'):
        get_realesrgan('x4', cache_dir=sr_cache, dtype='int8')


def test_names_and_inputs_are_checked(sr_cache):
    assert resolve_scale(4) == resolve_scale('4') == resolve_scale('X4') == 'x4'
    for bad in ('x3', 3, True, None):
        with pytest.raises(ConfigError, match='Real-ESRGAN'):
            get_realesrgan(bad, cache_dir=sr_cache)
    sr = get_realesrgan('x2', cache_dir=sr_cache)
    for bad in (torch.zeros(3, 8), torch.zeros(1, 4, 8, 8), torch.zeros(1, 3, 8, 8, dtype=torch.uint8), 'img.png'):
        with pytest.raises(InputError, match='expected'):
            sr(bad)
    with pytest.raises(ConfigError, match='overlap'):
        get_realesrgan('x2', cache_dir=sr_cache, overlap=-1)


def test_missing_weights_offline_name_the_file(tmp_path):
    with pytest.raises(WeightsNotFoundError) as error:
        get_realesrgan('x4', cache_dir=tmp_path / 'empty')
    message = str(error.value)
    for needle in (REPO_ID, 'RealESRGAN_x4.pth', 'hf download', "path='RealESRGAN_x4.pth'", 'HF_HUB_OFFLINE'):
        assert needle in message


def test_missing_spandrel_says_what_to_install(sr_cache, monkeypatch):
    monkeypatch.setitem(sys.modules, 'spandrel', None)  # as if not installed: `import spandrel` raises ImportError
    with pytest.raises(MissingDependencyError, match=r"pip install 'rudolph-hypermodal\[sr\]'"):
        get_realesrgan('x4', cache_dir=sr_cache)


def test_wrong_or_foreign_files_are_refused(tmp_path):
    x4 = tmp_path / 'x4.pth'
    torch.save(rrdb_state(4), x4)
    with pytest.raises(CheckpointMismatchError, match=r'a x4 RRDBNet; expected x2'):
        get_realesrgan('x2', path=x4)
    foreign = tmp_path / 'foreign.pth'
    torch.save({'linear.weight': torch.zeros(2, 2)}, foreign)
    with pytest.raises(CheckpointError, match='not a Real-ESRGAN'):
        get_realesrgan('x4', path=foreign)
    nan = rrdb_state(4)
    nan['conv_hr.weight'][0, 0, 0, 0] = float('nan')
    torch.save(nan, tmp_path / 'nan.pth')
    with pytest.raises(CheckpointError, match='conv_hr.weight'):
        get_realesrgan('x4', path=tmp_path / 'nan.pth')
    evil = tmp_path / 'evil.pth'
    torch.save({'params': {'x': Image.new('RGB', (1, 1))}}, evil)  # any pickled object: refused, never run
    with pytest.raises(UnsafeCheckpointError):
        get_realesrgan('x4', path=evil)


# ----------------------------------------------------------------------------- CLI and dream
TINY = ['--model', 'tiny-shapes', '--device', 'cpu', '--seed', '0', '--json', '--quiet']


@pytest.mark.parametrize('scale', [2, 4, 8])
def test_cli_text2image_upscale(hub_cache, tmp_path, capsys, scale):
    out = tmp_path / f'x{scale}'
    assert cli.main(['text2image', 'красный круг', '-n', '2', '--codebooks-num', '2', '-o', str(out),
                     '--upscale', str(scale)] + TINY) == 0
    res = json.loads(capsys.readouterr().out)
    assert res['upscale'] == scale and len(res['images']) == 2
    for row in res['images']:
        with Image.open(row['path']) as img:
            assert img.size == (64 * scale, 64 * scale)
    with Image.open(res['grid']) as grid:  # two pictures in a row, 2 px of border around each
        assert grid.size == (2 * (64 * scale + 2) + 2, 64 * scale + 4)


def test_cli_upscale_problems_come_before_the_model(tmp_path, capsys, monkeypatch):
    argv = ['text2image', 'кот', '-o', str(tmp_path / 'o'), '--upscale', '4', '--model', 'tiny-shapes',
            '--checkpoint', str(tmp_path / 'none.bin')]
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, 'HF_HUB_CACHE', str(tmp_path / 'empty'))
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert 'RealESRGAN_x4.pth' in err and '--upscale-weights' in err and 'none.bin' not in err
    monkeypatch.setitem(sys.modules, 'spandrel', None)
    assert cli.main(argv) == 1
    assert 'rudolph-hypermodal[sr]' in capsys.readouterr().err
    assert cli.main(argv[:4] + ['--upscale-tile', '64'] + argv[6:]) == 1  # the options of --upscale without it
    assert '--upscale-weights / --upscale-tile need --upscale' in capsys.readouterr().err


def test_cli_upscale_weights_option(tmp_path, capsys):
    path = tmp_path / 'mine.pth'
    torch.save(rrdb_state(2), path)
    assert cli.main(['text2image', 'кот', '-n', '1', '--codebooks-num', '1', '-o', str(tmp_path / 'o'),
                     '--upscale', '2', '--upscale-weights', str(path), '--upscale-tile', '16'] + TINY) == 0
    with Image.open(json.loads(capsys.readouterr().out)['images'][0]['path']) as img:
        assert img.size == (128, 128)


@pytest.fixture(scope='module')
def tiny_api():
    from rudolph.api import ruDolphApi
    from rudolph.demo import load_bundle

    bundle = load_bundle('tiny-shapes')
    return ruDolphApi(bundle.model, bundle.tokenizer, bundle.vae, quite=True)


def test_dream_upscale(tiny_api, hub_cache):
    kwargs = dict(images_num=2, codebooks_num=2, seed=0, top_k=64)
    plain, plain_scores = tiny_api.dream('синий квадрат', **kwargs)
    big, scores = tiny_api.dream('синий квадрат', upscale=4, **kwargs)
    assert [i.size for i in plain] == [(64, 64)] * 2 and [i.size for i in big] == [(256, 256)] * 2
    assert [s['score'] for s in scores] == [s['score'] for s in plain_scores]
    assert tiny_api._upscalers['x4'] is tiny_api._upscaler('x4')  # loaded once per api
    sr = get_realesrgan('x2', cache_dir=hub_cache)
    assert [i.size for i in tiny_api.dream('синий квадрат', upscale=sr, **kwargs)[0]] == [(128, 128)] * 2
    with pytest.raises(ConfigError, match='Real-ESRGAN'):
        tiny_api.dream('синий квадрат', upscale=3, **kwargs)


def test_readme_snippet(tiny_api, hub_cache, tmp_path, monkeypatch):
    """The docs' super-resolution snippet (a ```py block: it needs these weights) runs on tiny-shapes.

    tests/test_readme.py runs the other snippets of the docs pages and lists this one as run here."""
    import os
    import re
    import warnings

    from rudolph.demo.shapes import render

    page = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'docs', 'superres.md')
    with open(page, encoding='utf-8') as f:
        source = re.search(r'^```py\n(.*?)^```', f.read(), flags=re.M | re.S).group(1)
    if not torch.cuda.is_available():
        source = source.replace("'cuda'", "'cpu'")
    pil_img = render('circle', 'red', 'big', 'centre', 'white')
    namespace = {'pil_img': pil_img, 'images_tensor': torch.rand(2, 3, 16, 16), 'api': tiny_api}
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # fp16 on CPU: the documented warning
        exec(compile(source, 'docs/superres.md[Super-resolution]', 'exec'), namespace)
    assert namespace['big'].size == (4 * pil_img.size[0], 4 * pil_img.size[1])
    assert namespace['big_batch'].shape == (2, 3, 64, 64)
    assert [i.size for i in namespace['images']] == [(256, 256)] * 2


def test_cached_realesrgan_passes_callables_and_checks_the_scale():
    from rudolph.errors import ConfigError
    from rudolph.superres import cached_realesrgan

    cache = {}

    def fake(x):
        return x

    assert cached_realesrgan(cache, None, 'cpu') is None and cached_realesrgan(cache, fake, 'cpu') is fake
    cache['x4'] = fake  # a loaded one is kept: no second load
    assert cached_realesrgan(cache, 4, 'cpu') is fake and cached_realesrgan(cache, 'x4', 'cpu') is fake
    with pytest.raises(ConfigError, match='unknown Real-ESRGAN'):
        cached_realesrgan(cache, 3, 'cpu')
