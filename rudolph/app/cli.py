"""``rudolph app`` (also ``python -m rudolph.app``): the web app on one model (tiny-shapes by default, offline).

    python -m rudolph.app                            # http://127.0.0.1:7860, the embedded model
    python -m rudolph.app --model 350M --device cuda --dtype fp16 --port 8080
    python -m rudolph.app --allow-local runs/        # the page may load checkpoints from inside runs/
"""
import argparse
import logging
import os
import signal
import sys
from typing import Any, List, Optional

from rudolph.app import DTYPES, require_gradio
from rudolph.cli.commands import main as cli_main
from rudolph.errors import ConfigError

__all__ = ['add_arguments', 'run', 'main']

DESCRIPTION = ('a web page with a tab per task (text to image, captioning, VQA, zero-shot classification, '
               'text, reranking) on any model; needs gradio (pip install "rudolph-hypermodal[app]")')


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``rudolph app``."""
    p.add_argument('--host', default='127.0.0.1',
                   help='address to bind (default 127.0.0.1: this machine only; 0.0.0.0 for every interface)')
    p.add_argument('--port', type=int, default=7860, help='port (default 7860)')
    p.add_argument('--share', action='store_true', help="also serve a public gradio.live link (off by default)")
    p.add_argument('--model', default='tiny-shapes', help='model to start on (default tiny-shapes, offline); '
                                                          'the page can switch')
    p.add_argument('--checkpoint', default=None, help='local weights (file or folder) of that model')
    p.add_argument('--allow-local', action='append', default=[], metavar='DIR',
                   help='let the page load local checkpoints from inside DIR (repeatable); without it the page has '
                        'no checkpoint box and loads no server path')
    p.add_argument('--device', default=None, help='cpu, cuda, cuda:N or mps (default: cuda when available)')
    p.add_argument('--dtype', default='fp32', choices=list(DTYPES),
                   help='precision (default fp32); auto: bf16 on CPUs with native bf16, fp16 on CUDA, else fp32; '
                        'int8: int8 weights, bf16 activations on CPU, fp16 on CUDA; int8-dynamic: int8 weights and '
                        'per-row int8 activations (CPU)')


def run(args: argparse.Namespace) -> int:
    """Build the page, load the model and serve until interrupted; returns 0."""

    require_gradio()  # MissingDependencyError saying what to install, before any model is loaded
    if not 0 < args.port < 65536:
        raise ConfigError(f'--port {args.port}: expected a port number in 1..65535')
    from rudolph.app.ui import build_app, launch, upload_folder

    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s: %(message)s')
    signal.signal(signal.SIGTERM, _interrupt)  # a stop by `kill` also removes the uploads
    for folder in args.allow_local:
        if not os.path.isdir(folder):
            raise ConfigError(f'--allow-local {folder!r}: expected an existing folder')
    with upload_folder():
        demo = build_app(args.model, args.device, args.dtype, args.checkpoint, allow_local=args.allow_local)
        launch(demo, host=args.host, port=args.port, share=args.share)
    return 0


def _interrupt(signum: int, frame: Any) -> None:
    """SIGTERM as Ctrl-C: Gradio closes its server and the upload folder is removed."""
    raise KeyboardInterrupt


def main(argv: Optional[List[str]] = None) -> int:
    """``python -m rudolph.app ARGV`` (the same command as ``rudolph app``)."""

    return cli_main(['app'] + list(sys.argv[1:] if argv is None else argv))
