"""End to end: ``python -m rudolph.app`` on tiny-shapes in a subprocess, driven by a real headless Chromium.

Playwright drives Debian's ``chromium`` (``executable_path``; nothing is downloaded) and the page
may reach nothing but the app's own address. Screenshots go to ``test-artifacts/app/`` (or
``$RUDOLPH_TEST_ARTIFACTS``). Skips without gradio, playwright or a Chromium
(``bash scripts/install_browser.sh`` installs them).
"""
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from urllib.parse import urlparse

import pytest

from rudolph.demo import shapes as S

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHROMIUM = os.environ.get('RUDOLPH_CHROMIUM') or shutil.which('chromium') or shutil.which('chromium-browser')
ARTIFACTS = os.environ.get('RUDOLPH_TEST_ARTIFACTS') or os.path.join(ROOT, 'test-artifacts', 'app')
INSTALL = 'bash scripts/install_browser.sh'

pytest.importorskip('gradio', reason=f'the web app needs gradio (pip install "rudolph-hypermodal[app]", or {INSTALL})')
sync_api = pytest.importorskip('playwright.sync_api', reason=f'the browser test needs playwright ({INSTALL})')
if not CHROMIUM:
    pytest.skip(f'no Chromium executable (chromium not on PATH, RUDOLPH_CHROMIUM unset); {INSTALL}',
                allow_module_level=True)

TIMEOUT_MS = 180_000  # the machine may be busy: generous waits, no timings asserted


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _wait_until_serving(url: str, proc: subprocess.Popen, log_path: str, seconds: float = 240) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f'the app exited with {proc.returncode}:\n' + open(log_path, encoding='utf-8').read())
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            time.sleep(0.5)
    pytest.fail(f'the app did not answer on {url}:\n' + open(log_path, encoding='utf-8').read())


@pytest.fixture(scope='module')
def server(tmp_path_factory):
    """The app on a free localhost port (tiny-shapes, cpu), stopped after the module."""
    tmp = tmp_path_factory.mktemp('app')
    port = _free_port()
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''),
               GRADIO_ANALYTICS_ENABLED='False', HF_HUB_OFFLINE='1', GRADIO_TEMP_DIR=str(tmp / 'gradio'),
               OMP_NUM_THREADS='1')
    log_path = str(tmp / 'server.log')
    with open(log_path, 'w', encoding='utf-8') as log:
        proc = subprocess.Popen([sys.executable, '-m', 'rudolph.app', '--port', str(port), '--device', 'cpu'],
                                cwd=str(tmp), env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f'http://127.0.0.1:{port}/'
    try:
        _wait_until_serving(url, proc, log_path)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)


@pytest.fixture(scope='module')
def browser_page(server):
    """One Chromium page on the app; requests anywhere but the app are refused and recorded."""
    os.makedirs(ARTIFACTS, exist_ok=True)
    outside = []
    own = urlparse(server).netloc

    def only_the_app(route):
        if urlparse(route.request.url).netloc == own or route.request.url.startswith(('data:', 'blob:')):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=['--no-sandbox', '--disable-dev-shm-usage'])
        page = browser.new_page(viewport={'width': 1280, 'height': 900})
        page.set_default_timeout(TIMEOUT_MS)
        page.route('**/*', only_the_app)
        page.goto(server)
        page.wait_for_selector('#text2image-run')
        page.outside_requests = outside
        try:
            yield page
        finally:
            browser.close()


@pytest.fixture(scope='module')
def red_picture(tmp_path_factory):
    path = tmp_path_factory.mktemp('pictures') / 'red-circle.png'
    S.render('circle', 'red', 'big', 'centre', 'white').save(path)
    return str(path)


def _shot(page, name: str) -> None:
    page.screenshot(path=os.path.join(ARTIFACTS, f'{name}.png'), full_page=True)


def _open_tab(page, title: str) -> None:
    page.get_by_role('tab', name=title, exact=True).click()


def _upload(page, tab: str, path: str) -> None:
    page.set_input_files(f'#{tab}-image input[type=file]', path)
    page.wait_for_selector(f'#{tab}-image img')  # the preview: the upload is done


def test_generate_pictures(browser_page):
    page = browser_page
    _open_tab(page, 'Text to image')
    prompt = page.locator('#text2image-prompt textarea')
    prompt.fill('маленький синий квадрат слева на черном фоне')
    page.click('#text2image-run')
    page.wait_for_function("[...document.querySelectorAll('#text2image-gallery img')]"
                           ".filter(e => e.complete && e.naturalWidth > 0).length >= 4")
    sizes = page.eval_on_selector_all('#text2image-gallery img', 'els => els.map(e => [e.naturalWidth, e.naturalHeight])')
    assert sizes[:4] == [[64, 64]] * 4  # tiny-shapes draws 64 px pictures
    link = page.wait_for_selector('#text2image-files a[download="text2image.json"]')  # the downloads
    record = page.request.get(link.get_attribute('href')).json()
    assert record['prompt'] == 'маленький синий квадрат слева на черном фоне' and len(record['images']) == 4
    assert page.locator('#text2image-files a[download="text2image.png"]').count() == 1
    _shot(page, 'text2image')
    assert page.outside_requests == []


def test_progress_shows_and_stop_cancels(browser_page):
    page = browser_page
    _open_tab(page, 'Text to image')
    for slider, value in (('images', '16'), ('sampled', '64')):  # a long request: 8 batches of 64 steps
        page.fill(f'#text2image-{slider} input[type=number]', value)
        page.press(f'#text2image-{slider} input[type=number]', 'Enter')
    page.click('#text2image-run')
    # "images - 12.5%": the engine's progress callback, step by step
    page.wait_for_selector(r'#text2image-gallery :text-matches("images - [0-9.]+%")')
    _shot(page, 'progress')
    page.click('#text2image-stop')
    page.wait_for_selector('#text2image-gallery .progress-text', state='detached')
    assert page.locator('text=Traceback').count() == 0
    assert page.locator('#text2image-gallery >> text=Error').count() == 0  # stopped is not an error


def test_caption_names_the_colour(browser_page, red_picture):
    page = browser_page
    _open_tab(page, 'Caption')
    _upload(page, 'caption', red_picture)
    page.click('#caption-run')
    page.wait_for_function("document.querySelector('#caption-output textarea').value.length > 0")
    text = page.input_value('#caption-output textarea')
    assert S.parse_colour(text.splitlines()[0]) == 'red', text
    _shot(page, 'caption')


def test_classify_shows_the_chart(browser_page, red_picture):
    page = browser_page
    _open_tab(page, 'Classify')
    _upload(page, 'classify', red_picture)
    page.click('#classify-run')
    top = page.wait_for_selector('#classify-label [data-testid="label-output-value"]')
    assert S.parse_colour(top.inner_text()) == 'red'
    assert page.locator('#classify-label meter').count() == len(S.colour_classes())  # a bar per class
    _shot(page, 'classify')
    assert page.outside_requests == []


def test_a_bad_input_shows_the_message(browser_page):
    page = browser_page
    _open_tab(page, 'Question')
    page.click('#vqa-run')  # no picture uploaded
    page.wait_for_selector('text=no picture given')
    assert page.locator('text=Traceback').count() == 0
    _shot(page, 'error')
