"""The RuDOLPH web app as a Hugging Face Space runs it: ``python app.py`` (or Gradio's loader, which reads ``demo``).

The Space needs this repository as is (``rudolph/`` next to this file) plus a
``requirements.txt`` holding the single line ``.`` (this package); Gradio comes with the Space's SDK. It starts on the embedded tiny-shapes
model (no download). Settings come from the environment: ``RUDOLPH_MODEL`` (a model of
``rudolph.model.configs.MODELS``), ``RUDOLPH_DEVICE``, ``RUDOLPH_DTYPE`` (fp32, bf16, fp16);
the address from Gradio's own ``GRADIO_SERVER_NAME`` / ``GRADIO_SERVER_PORT`` (a Space sets them).
"""
import os

from rudolph.app.ui import build_app, launch

demo = build_app(os.environ.get('RUDOLPH_MODEL', 'tiny-shapes'), os.environ.get('RUDOLPH_DEVICE') or None,
                 os.environ.get('RUDOLPH_DTYPE', 'fp32'))

if __name__ == '__main__':
    launch(demo, host=os.environ.get('GRADIO_SERVER_NAME', '127.0.0.1'),
           port=int(os.environ['GRADIO_SERVER_PORT']) if os.environ.get('GRADIO_SERVER_PORT') else None)
