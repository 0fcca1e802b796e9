"""The page: a ``gr.Blocks`` with a model picker and a tab per task, each calling :mod:`rudolph.app.handlers`.

    from rudolph.app.ui import build_app, launch, upload_folder
    with upload_folder():  # uploads in a temporary folder of ours, removed when the app stops
        launch(build_app('tiny-shapes'), host='127.0.0.1', port=7860)

Requests are queued; the model calls share one concurrency group with one slot per device
here, and a lock per device lets one call run at a time on each. A library error
(:class:`~rudolph.errors.RudolphError`, or a ``ValueError``/``OSError`` of bad input) is shown
in the page with its message; anything else is logged with its traceback and shown as an
internal error. Each tab's Stop button cancels its request (the task stops at its next step).
"""
import contextlib
import logging
import os
import shutil
import tempfile
import threading
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

from rudolph.app import handlers as H
from rudolph.app import require_gradio
from rudolph.errors import ConfigError

__all__ = ['build_app', 'launch', 'upload_folder', 'App']

logger = logging.getLogger(__name__)

#: system fonts only: the page loads nothing from the network (Gradio's default theme fetches Google Fonts)
FONTS = (['ui-sans-serif', 'system-ui', 'sans-serif'], ['ui-monospace', 'monospace'])
#: errors shown in the page with their message (the library's own, and bad input from elsewhere)
SHOWN_ERRORS = (H.RudolphError, ValueError, TypeError, OSError, MemoryError)
#: the pictures are small (64 px on tiny-shapes): enlarge them without blurring
CSS = '#text2image-gallery img, #rerank-gallery img { image-rendering: pixelated; }'


def _gradio():
    os.environ.setdefault('GRADIO_ANALYTICS_ENABLED', 'False')  # no usage reports unless asked for
    return require_gradio()


def theme():
    """Gradio's default theme on system fonts."""
    gr = _gradio()
    return gr.themes.Default(font=FONTS[0], font_mono=FONTS[1])


class App:
    """What the page's callbacks share: the model cache, the device locks and each session's Stop flag."""

    def __init__(self, cache: Optional[H.ModelCache] = None, allow_local: Sequence[str] = (),
                 start: Optional[Sequence[Optional[str]]] = None):
        self.cache = cache or H.ModelCache()
        self.locks = H.DeviceLocks()
        #: the folders the page may load local checkpoints from (none: the checkpoint box is off)
        self.allow_local = tuple(os.path.realpath(d) for d in allow_local)
        #: the (model, checkpoint) the operator started the app on: always allowed
        self.start = tuple(start) if start else (None, None)
        self._cancels: Dict[str, threading.Event] = {}
        self._guard = threading.Lock()

    def cancel_event(self, session: str, fresh: bool = False) -> threading.Event:
        """The Stop flag of ``session`` (a new, unset one when ``fresh``: a new request starts)."""
        with self._guard:
            if fresh or session not in self._cancels:
                self._cancels[session] = threading.Event()
            return self._cancels[session]

    def stop(self, session: str) -> None:
        self.cancel_event(session).set()

    def run(self, picked: List[Any], handler: Callable[..., H.Result], args: List[Any], kwargs: Dict[str, Any],
            session: str, report: Optional[H.Report]) -> H.Result:
        """``handler(components, *args, **kwargs)`` on the picked (model, checkpoint, device, dtype), errors as gr.Error."""
        gr = _gradio()
        cancel = self.cancel_event(session, fresh=True)
        try:
            model, checkpoint, device, dtype = picked
            c = self.components(model, checkpoint, device, dtype)
            with self.locks(device or 'default'):
                return handler(c, *args, progress=report, cancel=cancel, **kwargs)
        except H.Cancelled:
            raise  # not an error: the page keeps what it showed (see _Page.wire)
        except SHOWN_ERRORS as error:
            raise gr.Error(str(error), title=type(error).__name__) from None
        except Exception as error:  # noqa: BLE001 -- shown without a traceback; logged with it
            logger.exception('internal error in %s', getattr(handler, '__name__', handler))
            raise gr.Error(f'internal error ({type(error).__name__}: {error}); the server log has the details',
                           title='Internal error') from None

    def components(self, model: str, checkpoint: Optional[str], device: str, dtype: str):
        """The picked model from the cache, after checking what the page may ask for.

        A request names a model of the list (or the one the app started on) and a local checkpoint
        only inside the ``--allow-local`` folders (or the one the app started with): the page's
        inputs reach the server unchecked by Gradio (``preprocess=False``) and may come from any client.
        """
        if model not in H.model_choices() and model != self.start[0]:
            raise ConfigError(f'unknown model {model!r}; expected one of {H.model_choices()}')
        if checkpoint and checkpoint != self.start[1]:
            checkpoint = H.allowed_checkpoint(checkpoint, self.allow_local)
        return self.cache.get(model, device, dtype, checkpoint or None)

    def describe(self, model: str, checkpoint: str, device: str, dtype: str) -> str:
        """Load the picked model now and say what it is."""
        gr = _gradio()
        try:
            c = self.components(model, checkpoint, device, dtype)
        except SHOWN_ERRORS as error:
            raise gr.Error(str(error), title=type(error).__name__) from None
        config = c.model.config
        tokens = 'with task tokens' if c.spc_tokens else 'without task tokens (pipelines convention)'
        return (f'**{c.name}** on `{device}` ({dtype or "fp32"}): {config.num_layers} layers, hidden '
                f'{config.hidden_size}, {8 * config.image_tokens_per_dim} px pictures, {tokens}')


def _session(request: Any) -> str:
    return str(getattr(request, 'session_hash', None) or 'default')


def _reporter(progress: Any) -> Optional[H.Report]:
    if progress is None:
        return None
    return lambda fraction, desc: progress(fraction, desc=desc)


def _gallery(result: H.Result) -> List[Any]:
    return [(img, cap) for img, cap in zip(result.images, result.captions or [''] * len(result.images))]


def _picker(gr, model: str, device: Optional[str], dtype: Optional[str], checkpoint: Optional[str],
            allow_local: Sequence[str] = ()) -> List[Any]:
    """The model, checkpoint, device and dtype inputs (and the Load button and status line).

    The checkpoint box is off (hidden) unless the app was started with ``--allow-local`` folders.
    """
    devices = H.device_choices()
    with gr.Row():
        m = gr.Dropdown(H.model_choices(), value=model, label='model', scale=2)
        where = ', '.join(allow_local)
        ckpt = gr.Textbox(value=checkpoint or '', label=f'local checkpoint (file or folder inside {where}, optional)',
                          scale=3, placeholder='e.g. runs/caps/step-000100', visible=bool(allow_local),
                          interactive=bool(allow_local))
        dev = gr.Dropdown(devices, value=device or devices[-1 if len(devices) > 1 else 0], label='device', scale=1)
        dt = gr.Dropdown(list(H.DTYPES), value=dtype or 'fp32', label='dtype', scale=1)
        load = gr.Button('Load', scale=1)
    status = gr.Markdown()
    return [m, ckpt, dev, dt, load, status]


def _preprocessed(gr, component: Any, value: Any) -> Any:
    """``value`` as Gradio's preprocessing gives it (bounds of sliders, choices of dropdowns checked),
    except the pictures, left as uploaded files for :func:`rudolph.app.handlers.open_image`."""
    if isinstance(component, (gr.Image, gr.File)):
        return value
    return component.preprocess(value)


class _Page:
    """Builds the tabs into an open ``gr.Blocks`` and wires each Run/Stop pair to the shared :class:`App`."""

    def __init__(self, gr, app: App, picked: List[Any], defaults: Dict[str, Any], device: str):
        self.gr, self.app, self.picked, self.defaults, self.device = gr, app, picked, defaults, device
        self.slots = max(1, len(H.device_choices()))  # one running model call per device (the locks enforce it)
        self.model_updates: List[Callable[[Dict[str, Any]], Dict[Any, Any]]] = []

    def buttons(self, name: str) -> None:
        """The tab's Run (labelled ``name``) and Stop buttons, wired by :meth:`wire`."""
        with self.gr.Row():
            self.run = self.gr.Button(name, variant='primary', elem_id=f'{self.tab}-run')
            self.stop = self.gr.Button('Stop', variant='stop', elem_id=f'{self.tab}-stop')

    def wire(self, inputs: List[Any], outputs: List[Any], call: Callable[..., Any]) -> None:
        """Run passes the picker and ``inputs`` to ``call`` -> (handler, args, kwargs, shape); Stop cancels it."""
        gr, app, run, stop = self.gr, self.app, self.run, self.stop

        components = self.picked + inputs

        def fn(request: gr.Request, progress=gr.Progress(), *values):
            values = [_preprocessed(gr, c, v) for c, v in zip(components, values)]
            handler, args, kwargs, shape = call(*values[4:])
            try:
                return shape(app.run(list(values[:4]), handler, args, kwargs, _session(request), _reporter(progress)))
            except H.Cancelled:
                gr.Info('Stopped.')
                return tuple(gr.skip() for _ in outputs)

        def halt(request: gr.Request) -> None:
            app.stop(_session(request))

        # preprocess=False: uploads reach the handlers as files, undecoded, so that the library's one
        # picture reader (size limit, clear errors) opens them, not Gradio's; fn preprocesses the rest
        event = run.click(fn, inputs=components, outputs=outputs, concurrency_id='model',
                          concurrency_limit=self.slots, api_name=self.tab, preprocess=False)
        stop.click(halt, inputs=None, outputs=None, cancels=[event], queue=False, api_name=f'{self.tab}_stop')

    def downloads(self):
        return self.gr.File(label='download (PNG grid, JSON)', file_count='multiple', elem_id=f'{self.tab}-files')

    def seed(self):
        return self.gr.Number(value=0, precision=0, label='seed (empty: random)')

    def text2image(self) -> None:
        gr, d = self.gr, self.defaults
        self.tab = 'text2image'
        side = d['image_side'] or 256
        prompt = gr.Textbox(value=d['prompt'], label='prompt', elem_id='text2image-prompt')
        with gr.Row():
            images_num = gr.Slider(1, 16, value=4, step=1, label='images', elem_id='text2image-images')
            codebooks_num = gr.Slider(1, 64, value=8, step=1, label='sampled (the best are shown)',
                                      elem_id='text2image-sampled')
            rerank = gr.Checkbox(True, label='rerank by the text')
            reencode = gr.Checkbox(d['reencode'], label='rerank by the decoded pictures')
            upscale = gr.Checkbox(False, label='upscale x2 (Real-ESRGAN)', visible=H.upscale_available(self.device))
        with gr.Accordion('sampling (the model\'s recommended defaults)', open=False):
            with gr.Row():
                top_k = gr.Number(d['sampling']['top_k'], precision=0, label='top_k')
                top_p = gr.Number(d['sampling']['top_p'], label='top_p')
                temperature = gr.Number(d['sampling'].get('temperature', 1.0), label='temperature')
                seed = self.seed()
        with gr.Accordion('image prompt: keep bands of a picture', open=False):
            with gr.Row():
                prompt_image = gr.Image(type='filepath', label='picture', height=192)
                bands = [gr.Slider(0, side // 8, value=0, step=1, label=f'{b} (tokens of 8 px)') for b in H.BANDS]
        self.model_updates.append(lambda new: {top_k: gr.update(value=new['sampling']['top_k']),
                                               top_p: gr.update(value=new['sampling']['top_p']),
                                               temperature: gr.update(value=new['sampling'].get('temperature', 1.0)),
                                               prompt: gr.update(value=new['prompt']),
                                               reencode: gr.update(value=new['reencode']),
                                               **{b: gr.update(maximum=(new['image_side'] or 256) // 8, value=0)
                                                  for b in bands}})
        self.buttons('Generate')
        gallery = gr.Gallery(label='images', columns=4, elem_id='text2image-gallery', object_fit='contain', height='auto')
        files = self.downloads()

        def call(text, n, m, rr, re, up, k, p, t, s, img, *widths):
            kwargs = dict(top_k=k, top_p=p, temperature=t, seed=s, rerank=rr, reencode=re, upscale=up,
                          prompt_image=img, bands=dict(zip(H.BANDS, widths)))
            return H.text_to_image, [text, n, m], kwargs, lambda r: (_gallery(r), r.files)
        self.wire([prompt, images_num, codebooks_num, rerank, reencode, upscale, top_k, top_p,
                               temperature, seed, prompt_image, *bands], [gallery, files], call)


    def picture(self, label: str = 'picture'):
        return self.gr.Image(type='filepath', label=label, height=192, elem_id=f'{self.tab}-image')

    def caption(self) -> None:
        gr, d = self.gr, self.defaults
        self.tab = 'caption'
        with gr.Row():
            image = self.picture()
            with gr.Column():
                captions_num = gr.Slider(1, 10, value=3, step=1, label='captions')
                generations_num = gr.Slider(1, 64, value=16, step=1, label='sampled (the best are shown)')
                template = gr.Textbox(value=d['caption_template'], label='start of every caption')
                seed = self.seed()
        self.buttons('Caption')
        out = gr.Textbox(label='captions, best first', lines=3, elem_id='caption-output')
        files = self.downloads()
        self.wire([image, captions_num, generations_num, template, seed], [out, files],
                  lambda img, n, g, t, s: (H.caption, [img, n, g, t], dict(seed=s), lambda r: (r.text, r.files)))

    def vqa(self) -> None:
        gr, d = self.gr, self.defaults
        self.tab = 'vqa'
        with gr.Row():
            image = self.picture()
            with gr.Column():
                question = gr.Textbox(value=d['question'], label='question')
                answers_num = gr.Slider(1, 10, value=3, step=1, label='answers')
                generations_num = gr.Slider(1, 64, value=16, step=1, label='sampled')
                seed = self.seed()
        self.buttons('Answer')
        out = gr.Textbox(label='answers (how many samples gave each)', lines=3, elem_id='vqa-output')
        files = self.downloads()
        self.model_updates.append(lambda new: {question: gr.update(value=new['question'])})
        self.wire([image, question, answers_num, generations_num, seed], [out, files],
                  lambda img, q, n, g, s: (H.vqa, [img, q, n, g], dict(seed=s), lambda r: (r.text, r.files)))

    def classify(self) -> None:
        gr, d = self.gr, self.defaults
        self.tab = 'classify'
        with gr.Row():
            image = self.picture()
            with gr.Column():
                classes = gr.Textbox(value=d['classes'], label='classes (separated by commas)')
                template = gr.Textbox(value=d['class_template'], label='template ({} is the class)')
        self.buttons('Classify')
        label = gr.Label(label='probabilities', num_top_classes=20, elem_id='classify-label')
        files = self.downloads()
        self.model_updates.append(lambda new: {classes: gr.update(value=new['classes']),
                                               template: gr.update(value=new['class_template'])})
        self.wire([image, classes, template], [label, files],
                  lambda img, cls, t: (H.classify, [img, cls, t], {}, lambda r: (r.label, r.files)))

    def text(self) -> None:
        gr, d = self.gr, self.defaults
        self.tab = 'text'
        with gr.Row():
            template = gr.Textbox(value=d['text_template'], label='beginning of the text', scale=3)
            texts_num = gr.Slider(1, 16, value=4, step=1, label='texts')
            seed = self.seed()
        self.buttons('Write')
        out = gr.Textbox(label='texts, least perplexing first', lines=4, elem_id='text-output')
        files = self.downloads()
        self.wire([template, texts_num, seed], [out, files],
                  lambda t, n, s: (H.generate_text, [t, n], dict(seed=s), lambda r: (r.text, r.files)))

    def rerank(self) -> None:
        gr, d = self.gr, self.defaults
        self.tab = 'rerank'
        text = gr.Textbox(value=d['prompt'], label='text the pictures are ranked by')
        uploads = gr.File(file_count='multiple', file_types=['image'], label='pictures', elem_id='rerank-files-in')
        self.buttons('Rerank')
        gallery = gr.Gallery(label='best first', columns=4, elem_id='rerank-gallery', object_fit='contain', height='auto')
        files = self.downloads()
        self.wire([text, uploads], [gallery, files],
                  lambda t, imgs: (H.rerank_images, [t, imgs or []], {}, lambda r: (_gallery(r), r.files)))


TABS = (('Text to image', 'text2image'), ('Caption', 'caption'), ('Question', 'vqa'),
        ('Classify', 'classify'), ('Text', 'text'), ('Rerank pictures', 'rerank'))


def build_app(model: str = 'tiny-shapes', device: Optional[str] = None, dtype: Optional[str] = 'fp32',
              checkpoint: Optional[str] = None, cache: Optional[H.ModelCache] = None, preload: bool = True,
              allow_local: Sequence[str] = ()):
    """The page (a ``gr.Blocks``, queued) on ``model``; ``preload`` loads the model before the page is served.

    ``device=None`` picks the first CUDA device when there is one. A bad model, device or
    dtype is a :class:`~rudolph.errors.ConfigError` (or ``WeightsNotFoundError``) before anything starts.
    ``allow_local``: the folders the page may load local checkpoints from (none: no checkpoint box).
    """
    gr = _gradio()
    device = H.ModelCache.key(model, device, dtype, checkpoint)[2]  # checked (and None resolved) now
    device = 'cuda:0' if device == 'cuda' else device
    app = App(cache, allow_local, (model, checkpoint))
    if preload:
        app.cache.get(model, device, dtype, checkpoint)
    with gr.Blocks(title='RuDOLPH', analytics_enabled=False) as demo:
        gr.Markdown('## RuDOLPH: text, pictures and text again\nOne model for drawing, captioning, answering, '
                    'classifying, writing and ranking pictures. Each tab runs one task of `rudolph.tasks.core`.')
        *picked, load, status = _picker(gr, model, device, dtype, checkpoint, app.allow_local)
        page = _Page(gr, app, picked, H.defaults_for(model), device)
        for title, name in TABS:
            with gr.Tab(title, id=name):
                getattr(page, name)()
        load.click(app.describe, inputs=picked, outputs=status, concurrency_id='model', api_name='load')
        demo.load(app.describe, inputs=picked, outputs=status, api_name=False)
        _on_model_change(gr, page, picked[0])
    demo.queue(default_concurrency_limit=page.slots)
    demo.rudolph_app = app  # the shared state, for whoever embeds the page
    return demo


def _on_model_change(gr, page: _Page, model_input) -> None:
    """Picking another model resets the sampling and the example inputs to that model's."""
    targets = []
    for update in page.model_updates:
        targets += list(update(H.defaults_for('tiny-shapes')))

    def change(model: str):
        new = H.defaults_for(model)
        values: Dict[Any, Any] = {}
        for update in page.model_updates:
            values.update(update(new))
        return values
    model_input.change(change, inputs=model_input, outputs=targets, queue=False, api_name=False)


@contextlib.contextmanager
def upload_folder() -> Iterator[str]:
    """A temporary folder of ours for Gradio's uploads while the page is built and served, removed after.

    Gradio keeps uploads in ``GRADIO_TEMP_DIR`` (by default a shared ``/tmp/gradio`` that outlives
    the app); build the page inside this block so that its components and server use the folder.
    """
    folder = tempfile.mkdtemp(prefix='rudolph-app-uploads-')
    before = os.environ.get('GRADIO_TEMP_DIR')
    os.environ['GRADIO_TEMP_DIR'] = folder
    try:
        yield folder
    finally:
        if before is None:
            os.environ.pop('GRADIO_TEMP_DIR', None)
        else:
            os.environ['GRADIO_TEMP_DIR'] = before
        shutil.rmtree(folder, ignore_errors=True)


def launch(demo, host: str = '127.0.0.1', port: Optional[int] = None, share: bool = False, **kwargs):
    """Serve ``demo`` (bound to ``host``, 127.0.0.1 unless asked; no public link unless ``share``;
    uploads up to :data:`rudolph.app.handlers.MAX_UPLOAD`)."""
    import inspect

    options = dict(server_name=host, server_port=port, share=share, show_error=False, **kwargs)
    if 'max_file_size' in inspect.signature(demo.launch).parameters:
        options.setdefault('max_file_size', H.MAX_UPLOAD)
    if 'theme' in inspect.signature(demo.launch).parameters:  # Gradio >= 6 takes the theme here
        options.setdefault('theme', theme())
        options.setdefault('css', CSS)
    if 'ssr_mode' in inspect.signature(demo.launch).parameters:
        options.setdefault('ssr_mode', False)  # server-side rendering would start a Node process
    return demo.launch(**options)
