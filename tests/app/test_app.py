"""The web app: its handlers (plain functions over the task layer, on the real tiny-shapes weights),
the model cache and device locks, the engine's progress callback, and the page and command where
gradio is installed."""
import json
import os
import shutil
import subprocess
import sys
import threading
import types
from pathlib import Path

import pytest
import torch
from fakes import write_header_only_png

from rudolph.app import handlers as H
from rudolph.cli import commands as cli
from rudolph.demo import shapes as S
from rudolph.errors import ConfigError, ImageFileError, InputError, MissingDependencyError, RudolphError
from rudolph.generation import engine
from rudolph.model.configs import MODELS, TINY_SHAPES, TINY_SHAPES_DIR

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope='module')
def cache():
    return H.ModelCache()


@pytest.fixture(scope='module')
def c(cache):
    return cache.get(TINY_SHAPES, 'cpu')


def picture(colour='red', shape='circle'):
    return S.render(shape, colour, 'big', 'centre', 'white')


class Reports:
    """A ``progress`` report that records (fraction, description)."""

    def __init__(self):
        self.calls = []

    def __call__(self, fraction, desc):
        self.calls.append((fraction, desc))

    def fractions(self, desc):
        return [f for f, d in self.calls if d == desc]


# ----------------------------------------------------------------------------- the engine's progress callback
def test_engine_progress_callback_counts_every_step(c):
    from rudolph.model.config import Layout
    from rudolph.tasks import core as tasks

    layout = Layout.from_model(c.model)
    prefix = tasks.Parts.of(c.model, c.tokenizer, c.vae).text('круг', layout.L, '<LT_T2I>')
    seen = []
    engine.generate(c.model, prefix, layout.L + layout.N2, 3, vocab=layout.image_slice, top_k=8, top_p=1.0, seed=0,
                    bs=2, progress=lambda done, total, desc: seen.append((done, total, desc)))
    steps = 2 * layout.N2  # two batches (bs=2 of 3) of 64 image tokens
    assert seen[0] == (0, steps, 'generating') and seen[-1] == (steps, steps, 'generating')
    assert [d for d, _, _ in seen] == list(range(steps + 1))


def test_engine_progress_callback_scoring_and_stop(c):
    ids = torch.randint(0, 200, (5, 12 + 64 + 12))
    seen = []
    engine.cross_entropy(c.model, ids, [engine.ScorePart(0, 11, slice(0, 268))], bs=2,
                         progress=lambda done, total, desc: seen.append((done, total)))
    assert seen == [(0, 3), (1, 3), (2, 3), (3, 3)]

    class Stop(Exception):
        pass

    def stop_at_two(done, total, desc):
        if done == 2:
            raise Stop
    with pytest.raises(Stop):  # whatever the callback raises ends the work
        engine.cross_entropy(c.model, ids, [engine.ScorePart(0, 11, slice(0, 268))], bs=1, progress=stop_at_two)


# ----------------------------------------------------------------------------- the tabs
def test_text_to_image_reranked_pictures_and_downloads(c, tmp_path):
    report = Reports()
    r = H.text_to_image(c, 'большой красный круг в центре на белом фоне', 2, 4, seed=0, progress=report,
                        out_dir=str(tmp_path))
    assert len(r.images) == 2 and all(img.size == (64, 64) for img in r.images)
    png, js = r.files
    assert png.endswith('.png') and js.endswith('.json') and os.path.dirname(png).startswith(str(tmp_path))
    from PIL import Image

    assert Image.open(png).size == (2 * 66 + 2, 66 + 2)  # the grid: 2 px of padding around each picture
    record = json.load(open(js, encoding='utf-8'))
    assert record['reranked'] and len(record['images']) == 2 and len(record['images'][0]['codes']) == 64
    assert record['top_k'] == MODELS[TINY_SHAPES].sampling['text2image']['top_k']  # the model's recommended sampling
    assert record['images'][0]['score'] <= record['images'][1]['score']
    images = report.fractions('images')  # fed from the engine, step by step
    assert images[0] == 0.0 and images[-1] == 1.0 and images == sorted(images) and len(images) > 10
    assert report.fractions('scoring')[-1] == 1.0
    # the model draws the colour asked for
    import numpy as np

    rgb = np.asarray(r.images[0]).astype(int)
    assert ((rgb[..., 0] > 150) & (rgb[..., 1] < 80) & (rgb[..., 2] < 80)).sum() > 100


def test_text_to_image_without_reranking_and_same_seed(c, tmp_path):
    a = H.text_to_image(c, 'маленький синий квадрат слева на черном фоне', 3, 1, rerank=False, seed=5,
                        out_dir=str(tmp_path))
    b = H.text_to_image(c, 'маленький синий квадрат слева на черном фоне', 3, 1, rerank=False, seed=5,
                        out_dir=str(tmp_path))
    assert len(a.images) == 3 and not a.record['reranked']
    assert [i['codes'] for i in a.record['images']] == [i['codes'] for i in b.record['images']]
    with pytest.raises(InputError, match='codebooks_num 2 < images_num 3'):
        H.text_to_image(c, 'круг', 3, 2, out_dir=str(tmp_path))


def test_text_to_image_keeps_the_bands_of_an_image_prompt(c, tmp_path):
    from rudolph.image_prompts import ImagePrompts

    img = picture('green', 'square')
    r = H.text_to_image(c, 'большой зеленый квадрат в центре на белом фоне', 2, 2, rerank=False, seed=1,
                        prompt_image=img, bands={'up': 2, 'left': 1}, out_dir=str(tmp_path))
    want = ImagePrompts(img, {'up': 2, 'down': 0, 'left': 1, 'right': 0}, c.vae, 'cpu', crop_first=True,
                        image_size=64)
    grid = torch.tensor(r.record['images'][0]['codes']).view(8, 8)
    codes = want.image_prompts.view(8, 8)
    assert torch.equal(grid[:2], codes[:2]) and torch.equal(grid[:, :1], codes[:, :1])


def test_caption_vqa_and_classify_name_the_colour(c, tmp_path):
    for colour in ('red', 'blue'):
        img = picture(colour)
        cap = H.caption(c, img, 2, 8, seed=0, out_dir=str(tmp_path))
        assert S.parse_colour(cap.text.splitlines()[0]) == colour, cap.text
        assert json.load(open(cap.files[-1], encoding='utf-8'))['captions'][0]['text'] == cap.text.splitlines()[0]
        answer = H.vqa(c, img, S.VQA_COLOUR, seed=0, out_dir=str(tmp_path))
        assert S.parse_colour(answer.record['answers'][0]['answer']) == colour
        result = H.classify(c, img, ', '.join(S.colour_classes()), 'цвет фигуры: {}', out_dir=str(tmp_path))
        assert S.parse_colour(result.text) == colour
        assert max(result.label, key=result.label.get) == result.text
        assert sum(result.label.values()) == pytest.approx(1.0)


def test_classify_shows_a_tie_as_a_tie(c):
    with pytest.warns(UserWarning, match='unknown tokens'):
        result = H.classify(c, picture(), 'abc, xyz')  # unspellable classes: the same text for both
    assert result.record['tie'] is True and result.text.startswith('tie: 2 classes score alike (abc, xyz)')


def test_caption_reads_an_uploaded_file(c, tmp_path):
    path = tmp_path / 'up.png'
    picture('yellow', 'ring').save(path)
    assert S.parse_colour(H.caption(c, str(path), 1, 8, seed=0, out_dir=str(tmp_path)).text) == 'yellow'


def test_generate_text_and_rerank_images(c, tmp_path):
    t = H.generate_text(c, 'на картинке', 3, seed=0, out_dir=str(tmp_path))
    assert t.text and t.record['texts'] and all(set(row) == {'text', 'ppl', 'count'} for row in t.record['texts'])
    paths = []
    for i, colour in enumerate(('blue', 'red', 'green')):
        paths.append(str(tmp_path / f'{colour}.png'))
        picture(colour).save(paths[-1])
    r = H.rerank_images(c, 'большой красный круг в центре на белом фоне', paths, out_dir=str(tmp_path))
    assert [row['name'] for row in r.record['images']][0] == 'red.png'
    assert [row['rank'] for row in r.record['images']] == [1, 2, 3] and len(r.images) == 3
    assert r.files[0].endswith('.png')


def test_bad_inputs_are_library_errors_with_messages(c, tmp_path):
    with pytest.raises(InputError, match='no picture given'):
        H.caption(c, None)
    bad = tmp_path / 'not-a-picture.png'
    bad.write_text('hello')
    with pytest.raises(InputError, match="not-a-picture.png"):
        H.classify(c, str(bad), 'красный')
    with pytest.raises(InputError, match='at least one class'):
        H.classify(c, picture(), ' , \n')
    with pytest.raises(InputError, match='seed'):
        H.caption(c, picture(), seed='abc')
    with pytest.raises(InputError, match='images_num 0: expected a positive integer'):
        H.text_to_image(c, 'круг', 0, 4)
    with pytest.raises(InputError, match='captions_num 2.5'):
        H.caption(c, picture(), 2.5)
    with pytest.raises(InputError, match='no pictures'):
        H.rerank_images(c, 'круг', [])
    with pytest.raises(RudolphError, match='question'):
        H.vqa(c, picture(), '   ')
    assert H.parse_classes('красный, синий\nзеленый,') == ['красный', 'синий', 'зеленый']


def test_cancel_stops_a_running_task(c, tmp_path):
    cancel = threading.Event()
    steps = []

    def report(fraction, desc):
        steps.append(fraction)
        if len(steps) == 3:
            cancel.set()  # the user presses Stop during the generation
    with pytest.raises(H.Cancelled):
        H.text_to_image(c, 'круг', 4, 8, progress=report, cancel=cancel, out_dir=str(tmp_path))
    assert len(steps) == 3  # stopped at the next step, long before the 8 x 64 steps
    assert not os.listdir(tmp_path)  # nothing half-written


# ----------------------------------------------------------------------------- upscaling
def test_upscale_offered_only_when_super_resolution_is_there(c, tmp_path, monkeypatch):
    def missing(name, device='cpu'):  # what get_realesrgan raises without spandrel
        raise MissingDependencyError('super-resolution needs spandrel')
    monkeypatch.setattr(H, '_UPSCALERS', {})
    monkeypatch.setattr(H.superres, 'get_realesrgan', missing)
    assert not H.upscale_available('cpu')
    with pytest.raises(ConfigError, match='upscaling needs rudolph.superres'):
        H.text_to_image(c, 'круг', 1, 1, upscale=True, out_dir=str(tmp_path))

    class X2:
        def predict(self, array):
            return array.repeat(2, axis=0).repeat(2, axis=1)
    fake = types.ModuleType('rudolph.superres')
    fake.get_realesrgan = lambda name, device='cpu': X2()
    monkeypatch.setattr(H, '_UPSCALERS', {})
    monkeypatch.setattr(H, 'superres', fake)
    assert H.upscale_available('cpu')
    r = H.text_to_image(c, 'круг', 1, 1, upscale=True, out_dir=str(tmp_path))
    assert r.images[0].size == (128, 128)


# ----------------------------------------------------------------------------- models, devices
def test_model_cache_loads_once_per_model_device_dtype(cache, c):
    assert cache.get(TINY_SHAPES, 'cpu', 'fp32') is c and cache.get(TINY_SHAPES, 'cpu', None) is c
    bf16 = cache.get(TINY_SHAPES, 'cpu', 'bf16')
    assert bf16 is not c and next(bf16.model.parameters()).dtype == torch.bfloat16
    assert cache.get(TINY_SHAPES, 'cpu', 'bf16') is bf16
    calls = []
    counting = H.ModelCache(loader=lambda *a, **k: calls.append((a, k)) or object())
    threads = [threading.Thread(target=counting.get, args=('tiny-shapes', 'cpu', 'fp16')) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == [(('tiny-shapes',), dict(device='cpu', dtype='fp16', checkpoint=None))]
    with pytest.raises(ConfigError, match="dtype 'int3'"):
        counting.get('tiny-shapes', 'cpu', 'int3')
    with pytest.raises(ConfigError, match='device'):
        counting.get('tiny-shapes', 'tpu')


def test_model_cache_loads_a_local_checkpoint_folder(tmp_path):
    folder = tmp_path / 'step-000001'
    folder.mkdir()
    import shutil

    shutil.copy(MODELS[TINY_SHAPES].local_path, folder / 'pytorch_model.bin')
    got = H.ModelCache().get(TINY_SHAPES, 'cpu', checkpoint=str(folder))
    assert got.name == TINY_SHAPES and got.spc_tokens
    with pytest.raises(FileNotFoundError, match='nowhere'):
        H.ModelCache().get(TINY_SHAPES, 'cpu', checkpoint=str(tmp_path / 'nowhere'))


def test_defaults_follow_the_model():
    tiny = H.defaults_for(TINY_SHAPES)
    assert tiny['sampling'] == dict(MODELS[TINY_SHAPES].sampling['text2image']) and tiny['image_side'] == 64
    assert S.parse_colour(tiny['prompt']) and tiny['classes'].split(', ') == S.colour_classes()
    big = H.defaults_for('350M')
    assert big['sampling'] == H.DEFAULT_IMAGE_SAMPLING.kwargs() and big['image_side'] == 128
    assert H.model_choices()[0] == TINY_SHAPES and set(H.model_choices()) == set(MODELS)
    assert H.device_choices()[0] == 'cpu'


# ----------------------------------------------------------------------------- the page (needs gradio)
def _gradio():
    os.environ.setdefault('GRADIO_ANALYTICS_ENABLED', 'False')
    return pytest.importorskip('gradio', reason='the page needs gradio: pip install "rudolph-hypermodal[app]"')


def test_page_has_a_tab_per_task_and_shares_the_model(cache, c):
    gr = _gradio()
    from rudolph.app.ui import TABS, build_app

    demo = build_app(TINY_SHAPES, 'cpu', cache=cache)
    assert demo.rudolph_app.cache is cache and cache.get(TINY_SHAPES, 'cpu') is c
    tabs = [b for b in demo.blocks.values() if isinstance(b, gr.Tab)]
    assert [t.label for t in tabs] == [title for title, _ in TABS]
    runs = [d for d in demo.fns.values() if d.name == 'fn']
    assert len(runs) == len(TABS)
    assert all(d.concurrency_id == 'model' and d.concurrency_limit == len(H.device_choices()) for d in runs)
    deps = demo.get_config_file()['dependencies']
    by_name = {d['api_name']: d for d in deps}
    for _, name in TABS:  # each tab's Stop button sets the session's flag and cancels its Run event
        stop_target = by_name[f'{name}_stop']['targets']
        assert any(d['targets'] == stop_target and d['cancels'] == [by_name[name]['id']] for d in deps), name


def test_uploads_go_to_a_folder_of_ours_removed_after_and_are_limited_in_size(cache):
    gr = _gradio()
    from rudolph.app.ui import build_app, launch, upload_folder

    before = os.environ.get('GRADIO_TEMP_DIR')
    with upload_folder() as folder:
        assert os.environ['GRADIO_TEMP_DIR'] == folder and os.path.isdir(folder)
        demo = build_app(TINY_SHAPES, 'cpu', cache=cache)
        pictures = [b for b in demo.blocks.values() if isinstance(b, gr.Image)]
        assert pictures and all(b.GRADIO_CACHE == folder for b in pictures)
        (Path(folder) / 'upload.png').write_bytes(b'x')
    assert not os.path.exists(folder) and os.environ.get('GRADIO_TEMP_DIR') == before
    given = {}

    class Page:  # what launch hands to Gradio
        def launch(self, server_name=None, server_port=None, share=False, show_error=True, max_file_size=None):
            given.update(max_file_size=max_file_size, share=share)
    launch(Page())
    assert given == {'max_file_size': H.MAX_UPLOAD, 'share': False}
    assert gr.utils._parse_file_size(H.MAX_UPLOAD) == 20 * 1024 * 1024


def test_pictures_reach_the_library_reader_undecoded(cache, tmp_path):
    gr = _gradio()
    from rudolph.app.ui import build_app

    demo = build_app(TINY_SHAPES, 'cpu', cache=cache)
    assert all(d.preprocess is False for d in demo.fns.values() if d.name == 'fn')  # not Gradio's decoder
    write_header_only_png(tmp_path / 'bomb.png', 20_000, 20_000)
    payload = {'path': str(tmp_path / 'bomb.png'), 'orig_name': 'bomb.png', 'meta': {'_type': 'gradio.FileData'}}
    with pytest.raises(ImageFileError, match='megapixels are refused'):
        H.caption(cache.get(TINY_SHAPES, 'cpu'), payload)
    caption = next(d.fn for d in demo.fns.values() if d.name == 'fn' and d.api_name == 'caption')
    request = types.SimpleNamespace(session_hash='s')
    with pytest.raises(gr.Error, match='megapixels are refused'):  # through the page's own callback
        caption(request, None, TINY_SHAPES, '', 'cpu', 'fp32', payload, 1, 1, '', 0)
    with pytest.raises(gr.Error, match='1000'):  # the other inputs are still checked as Gradio would
        caption(request, None, TINY_SHAPES, '', 'cpu', 'fp32', payload, 1000, 1, '', 0)
    picture().save(tmp_path / 'ok.png')
    ok = {'path': str(tmp_path / 'ok.png'), 'orig_name': 'mine.png'}
    assert H.rerank_images(cache.get(TINY_SHAPES, 'cpu'), 'круг', [ok]).record['images'][0]['name'] == 'mine.png'


def test_page_shows_library_errors_as_messages(cache, caplog):
    gr = _gradio()
    from rudolph.app.ui import App

    app = App(cache)
    picked = [TINY_SHAPES, '', 'cpu', 'fp32']
    with pytest.raises(gr.Error) as shown:
        app.run(picked, H.caption, [None], {}, 'session', None)
    assert 'no picture given' in shown.value.message and 'Traceback' not in shown.value.message
    with pytest.raises(gr.Error, match='unknown model'):
        app.run(['no-such-model', '', 'cpu', 'fp32'], H.caption, [picture()], {}, 'session', None)

    def broken(c, **kwargs):
        raise KeyError('oops')
    with pytest.raises(gr.Error) as shown:
        app.run(picked, broken, [], {}, 'session', None)
    assert shown.value.message.startswith('internal error (KeyError') and 'server log' in shown.value.message
    assert 'Traceback' in caplog.text or any(r.exc_info for r in caplog.records)


def test_the_checkpoint_box_loads_only_from_the_allowed_folders_and_refuses_alike(cache, tmp_path):
    gr = _gradio()
    from rudolph.app.ui import App, build_app

    allowed, outside = tmp_path / 'runs', tmp_path / 'elsewhere'
    for folder in (allowed / 'step-1', outside):
        folder.mkdir(parents=True)
        shutil.copyfile(os.path.join(TINY_SHAPES_DIR, 'model.safetensors'), folder / 'model.safetensors')
    (tmp_path / 'notes.txt').write_text('x')
    os.symlink(outside, allowed / 'link')
    refused = [str(outside), str(tmp_path / 'notes.txt'), str(tmp_path / 'missing'), '/etc',
               str(allowed / 'missing'), str(allowed / '..' / 'elsewhere'), str(allowed / 'link')]
    for app in (App(cache), App(cache, [str(allowed)])):  # off, then on for runs/ only
        messages = set()
        for path in refused:
            with pytest.raises(gr.Error) as shown:
                app.run([TINY_SHAPES, path, 'cpu', 'fp32'], H.caption, [picture()], {}, 's', None)
            messages.add(shown.value.message)
        assert messages == {H.REFUSED_CHECKPOINT}  # one answer, whatever the path is
    loaded = app.run([TINY_SHAPES, str(allowed / 'step-1'), 'cpu', 'fp32'], H.caption, [picture()], {}, 's', None)
    assert loaded.text
    with pytest.raises(gr.Error, match='unknown model'):  # a path as the model is no way around it
        app.run([str(outside), '', 'cpu', 'fp32'], H.caption, [picture()], {}, 's', None)
    boxes = [b for b in build_app(TINY_SHAPES, 'cpu', cache=cache).blocks.values() if isinstance(b, gr.Textbox)]
    assert not [b for b in boxes if 'checkpoint' in str(b.label) and b.visible]
    assert cli.build_parser(['app']).parse_args(['app', '--allow-local', 'a', '--allow-local', 'b']).allow_local == [
        'a', 'b']


def test_one_model_call_at_a_time_per_device(cache):
    _gradio()
    from rudolph.app.ui import App

    app = App(cache)
    inside, release, entered = [], threading.Event(), threading.Event()

    def slow(c, name, **kwargs):
        inside.append(name)
        entered.set()
        release.wait(30)
        return name
    picked = [TINY_SHAPES, '', 'cpu', 'fp32']
    first = threading.Thread(target=app.run, args=(picked, slow, ['a'], {}, 's1', None))
    second = threading.Thread(target=app.run, args=(picked, slow, ['b'], {}, 's2', None))
    first.start()
    assert entered.wait(30)
    second.start()
    second.join(0.5)
    assert inside == ['a']  # the second request waits for the device
    release.set()
    first.join(30)
    second.join(30)
    assert inside == ['a', 'b']


def test_stop_sets_the_session_flag(cache):
    _gradio()
    from rudolph.app.ui import App

    app = App(cache)
    flag = app.cancel_event('s1', fresh=True)
    app.stop('s1')
    assert flag.is_set() and not app.cancel_event('s2').is_set()
    assert not app.cancel_event('s1', fresh=True).is_set()  # a new request starts unstopped


# ----------------------------------------------------------------------------- the command
def test_app_command_options(capsys):
    with pytest.raises(SystemExit):
        cli.main(['app', '--help'])
    out = capsys.readouterr().out
    for option in ('--host', '--port', '--share', '--model', '--device', '--dtype', '--checkpoint'):
        assert option in out
    args = cli.build_parser(['app']).parse_args(['app'])
    assert (args.host, args.share, args.model, args.dtype) == ('127.0.0.1', False, 'tiny-shapes', 'fp32')
    assert 'auto:' in out and cli.build_parser(['app']).parse_args(['app', '--dtype', 'auto']).dtype == 'auto'


def test_app_without_gradio_says_what_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, 'gradio', None)  # as if it were not installed
    with pytest.raises(MissingDependencyError, match=r"pip install 'rudolph-hypermodal\[app\]'"):
        from rudolph.app import require_gradio
        require_gradio()
    assert cli.main(['app', '--port', '7']) == 1
    err = capsys.readouterr().err
    assert "pip install 'rudolph-hypermodal[app]'" in err and 'Traceback' not in err


def test_python_m_rudolph_app_help_imports_no_gradio(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))
    code = ('import sys, runpy; sys.argv = ["rudolph.app", "--help"]\n'
            'try:\n    runpy.run_module("rudolph.app", run_name="__main__")\n'
            'except SystemExit:\n    pass\n'
            'print("gradio" in sys.modules, "torch" in sys.modules)')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=env, cwd=str(tmp_path),
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert '--host' in out.stdout and out.stdout.strip().endswith('False False')


def test_space_entry_builds_the_page_on_tiny_shapes(monkeypatch):
    gr = _gradio()
    import runpy

    monkeypatch.delenv('RUDOLPH_MODEL', raising=False)
    space = runpy.run_path(os.path.join(ROOT, 'app.py'), run_name='space')  # what a Space imports; no server
    assert isinstance(space['demo'], gr.Blocks)
    assert space['demo'].rudolph_app.cache.loaded()[0][:1] == (TINY_SHAPES,)


def test_picking_another_model_resets_the_sampling_to_its_own(cache):
    _gradio()
    from rudolph.app.ui import build_app

    demo = build_app(TINY_SHAPES, 'cpu', cache=cache)
    change = next(d for d in demo.fns.values() if d.name == 'change')
    updates = change.fn('350M')  # nothing is loaded: the defaults come from the registry
    values = {getattr(block, 'label', None): u.get('value') for block, u in updates.items()}
    assert (values['top_k'], values['top_p'], values['temperature']) == (768, 0.99, 1.0)
    assert values['prompt'] == 'рисунок кота' and values['rerank by the decoded pictures'] is False
    back = {getattr(b, 'label', None): u.get('value') for b, u in change.fn(TINY_SHAPES).items()}
    assert back['top_k'] == MODELS[TINY_SHAPES].sampling['text2image']['top_k'] and back['classes (separated by commas)'].startswith('крас')


def test_the_int8_precision_loads_int8_weights_and_serves_tasks(cache, tmp_path):
    from rudolph.model.quant import Int8Linear

    c8 = cache.get(TINY_SHAPES, 'cpu', 'int8')
    assert c8 is cache.get(TINY_SHAPES, 'cpu', 'int8') and c8 is not cache.get(TINY_SHAPES, 'cpu', 'bf16')
    assert any(isinstance(m, Int8Linear) for m in c8.model.modules()) and c8.model.dtype == torch.bfloat16
    result = H.classify(c8, picture('red'), ', '.join(S.colour_classes()), 'цвет фигуры: {}', out_dir=str(tmp_path))
    assert S.parse_colour(result.text) == 'red' and sum(result.label.values()) == pytest.approx(1.0)
    calls = []
    H.ModelCache(loader=lambda *a, **k: calls.append((a, k)) or object()).get('tiny-shapes', 'cpu', 'int8')
    H.ModelCache(loader=lambda *a, **k: calls.append((a, k)) or object()).get('tiny-shapes', 'cpu', 'int8-dynamic')
    assert calls == [(('tiny-shapes',), dict(device='cpu', dtype=None, quantize=q, checkpoint=None))
                     for q in ('int8', 'int8-dynamic')]
    dynamic = cache.get(TINY_SHAPES, 'cpu', 'int8-dynamic')
    assert {m.method for m in dynamic.model.modules() if isinstance(m, Int8Linear)} == {'int8-dynamic'}
