"""``rudolph`` command line: generate images, caption, classify, answer questions.

Subcommands live in :data:`COMMANDS` (``name -> Command(help, add_arguments, run)``);
other modules add theirs with :func:`register` (e.g. ``rudolph demo``, ``rudolph finetune``)
and are picked up from :data:`PLUGIN_MODULES` when present.
"""
import argparse
import importlib
import json
import logging
import os
import sys
from typing import Callable, Dict, List, NamedTuple, Optional

__all__ = ['main', 'register', 'COMMANDS', 'Command']


class Command(NamedTuple):
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


COMMANDS: Dict[str, Command] = {}
#: modules that may register more subcommands on import (missing ones are skipped).
PLUGIN_MODULES = ('rudolph.demo', 'rudolph.finetune')


def register(name: str, help: str, add_arguments: Callable[[argparse.ArgumentParser], None],
             run: Callable[[argparse.Namespace], int]) -> None:
    """Add a subcommand ``rudolph NAME``; ``run(args)`` returns the exit code."""
    COMMANDS[name] = Command(help, add_arguments, run)


# ----------------------------------------------------------------------------- shared options
def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--model', default='350M', help='RuDOLPH config name (default: 350M)')
    parser.add_argument('--checkpoint', default=None, help='local pytorch_model.bin (or folder) instead of the hub')
    parser.add_argument('--vae', default=None, help='local VQGAN checkpoint instead of the hub')
    parser.add_argument('--tokenizer', default=None, help='local bpe.model instead of the hub')
    parser.add_argument('--device', default='cuda' if _cuda() else 'cpu')
    parser.add_argument('--fp16', action='store_true', help='float16 weights (CUDA only)')
    parser.add_argument('--seed', type=int, default=None)
    parser.add_argument('--bs', type=int, default=None, help='batch size')
    parser.add_argument('--quiet', action='store_true', help='no progress bars')


def _cuda() -> bool:
    try:
        import torch
        return torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        return False


def load(args: argparse.Namespace):
    """``(model, tokenizer, vae)`` from the common options (imports are lazy: startup stays fast)."""
    from rudolph.model import get_rudolph_model
    from rudolph.tokenizer import get_tokenizer
    from rudolph.vae import get_vae

    model = get_rudolph_model(args.model, pretrained=True, fp16=args.fp16, device=args.device,
                              checkpoint_path=args.checkpoint)
    tokenizer = get_tokenizer(args.tokenizer)
    vae = get_vae(path=args.vae) if args.vae else get_vae()
    return model, tokenizer, vae.to(args.device)


def _open_image(path: str):
    from PIL import Image

    if not os.path.isfile(path):
        raise SystemExit(f'error: image not found: {path}')
    return Image.open(path)


def _print_json(obj) -> None:
    json.dump(obj, sys.stdout, ensure_ascii=False, indent=2, default=float)
    sys.stdout.write('\n')


# ----------------------------------------------------------------------------- generate-images
def _images_args(p: argparse.ArgumentParser) -> None:
    p.add_argument('--text', required=True)
    p.add_argument('--images-num', type=int, default=4, help='images to keep (best by self-reranking)')
    p.add_argument('--codebooks-num', type=int, default=16, help='images to generate before reranking')
    p.add_argument('--top-k', type=int, default=768)
    p.add_argument('--top-p', type=float, default=0.99)
    p.add_argument('--temperature', type=float, default=1.0)
    p.add_argument('--out', default='rudolph_images', help='output folder for PNG files')


def _images_run(args: argparse.Namespace) -> int:
    from rudolph import pipelines, utils

    model, tokenizer, vae = load(args)
    if args.images_num > args.codebooks_num:
        raise SystemExit(f'error: --images-num ({args.images_num}) > --codebooks-num ({args.codebooks_num})')
    bs = args.bs or 8
    codebooks = pipelines.generate_codebooks(args.text, tokenizer, model, top_k=args.top_k, top_p=args.top_p,
                                             images_num=args.codebooks_num, temperature=args.temperature, bs=bs,
                                             seed=args.seed, progress=not args.quiet)
    ppl_text, _ = pipelines.self_reranking_by_text(args.text, codebooks, tokenizer, model, bs=bs)
    best = ppl_text.argsort()[:args.images_num].to(codebooks.device)
    import torch

    with torch.no_grad():
        images = utils.torch_tensors_to_pil_list(vae.decode(codebooks[best]))
    os.makedirs(args.out, exist_ok=True)
    paths = []
    for i, img in enumerate(images):
        paths.append(os.path.join(args.out, f'img_{i}.png'))
        img.save(paths[-1])
    _print_json({'text': args.text, 'images': paths, 'ppl_text': ppl_text[best.cpu()].tolist()})
    return 0


# ----------------------------------------------------------------------------- caption
def _caption_args(p: argparse.ArgumentParser) -> None:
    p.add_argument('--image', required=True, help='image file')
    p.add_argument('--template', default='на картинке ')
    p.add_argument('--captions-num', type=int, default=32, help='captions to sample')
    p.add_argument('--top', type=int, default=5, help='captions to print (best by self-reranking)')
    p.add_argument('--top-k', type=int, default=16)
    p.add_argument('--top-p', type=float, default=0.6)
    p.add_argument('--temperature', type=float, default=0.8)
    p.add_argument('--out', default=None, help='write the JSON result to this file too')


def _caption_run(args: argparse.Namespace) -> int:
    from rudolph import pipelines

    model, tokenizer, vae = load(args)
    img = _open_image(args.image)
    bs = args.bs or 32
    texts = pipelines.generate_captions(img, tokenizer, model, vae, template=args.template, top_k=args.top_k,
                                        top_p=args.top_p, captions_num=args.captions_num,
                                        temperature=args.temperature, bs=bs, seed=args.seed, progress=not args.quiet)
    result = []
    if texts:
        _, ppl_image = pipelines.self_reranking_by_image(texts, img, tokenizer, model, vae, bs=bs)
        result = [{'text': texts[i], 'ppl_image': round(ppl_image[i].item(), 2)}
                  for i in ppl_image.argsort()[:args.top].tolist()]
    _emit(result, args.out)
    return 0


def _emit(result, out: Optional[str]) -> None:
    _print_json(result)
    if out:
        with open(out, 'w', encoding='utf-8') as f:
            json.dump(result, f, ensure_ascii=False, indent=2, default=float)


# ----------------------------------------------------------------------------- zs-clf
def _zs_args(p: argparse.ArgumentParser) -> None:
    p.add_argument('--image', required=True)
    p.add_argument('--classes', required=True, nargs='+', help='class names')
    p.add_argument('--template', default='{}', help="right-text template, e.g. 'на картинке {}'")
    p.add_argument('--out', default=None)


def _zs_run(args: argparse.Namespace) -> int:
    from rudolph import pipelines

    model, tokenizer, vae = load(args)
    pred = pipelines.zs_clf(_open_image(args.image), args.classes, model, tokenizer, vae, bs=args.bs or 8,
                            template=args.template)
    _emit({'label': pred['label'], 'class': pred['class'],
           'scores': dict(zip(args.classes, pred['scores'].tolist()))}, args.out)
    return 0


# ----------------------------------------------------------------------------- vqa
def _vqa_args(p: argparse.ArgumentParser) -> None:
    p.add_argument('--image', required=True)
    p.add_argument('--question', required=True)
    p.add_argument('--answers-num', type=int, default=1)
    p.add_argument('--generations-num', type=int, default=16)
    p.add_argument('--out', default=None)


def _vqa_run(args: argparse.Namespace) -> int:
    from rudolph.api import ruDolphApi

    model, tokenizer, vae = load(args)
    api = ruDolphApi(model, tokenizer, vae, quite=args.quiet, bs=args.bs or 16)
    answers = api.vqa(_open_image(args.image), args.question, answers_num=args.answers_num,
                      generations_num=args.generations_num, seed=args.seed)
    _emit(answers, args.out)
    return 0


register('generate-images', 'images from a text, best ones by self-reranking', _images_args, _images_run)
register('caption', 'captions of an image', _caption_args, _caption_run)
register('zs-clf', 'zero-shot classification of an image', _zs_args, _zs_run)
register('vqa', 'answer a question about an image (task-token models)', _vqa_args, _vqa_run)


def _load_plugins() -> None:
    for name in PLUGIN_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name == name or name.startswith(f'{error.name}.'):
                continue  # plugin not installed in this version
            # The plugin exists but needs an optional extra: the other commands still work.
            logging.getLogger(__name__).warning('rudolph: %s unavailable (%s)', name, error)


def build_parser() -> argparse.ArgumentParser:
    _load_plugins()
    parser = argparse.ArgumentParser(prog='rudolph', description='RuDOLPH text-image-text transformer')
    sub = parser.add_subparsers(dest='command', metavar='COMMAND')
    sub.required = True
    for name, command in COMMANDS.items():
        p = sub.add_parser(name, help=command.help, description=command.help)
        if name in ('generate-images', 'caption', 'zs-clf', 'vqa'):
            _add_common(p)
        command.add_arguments(p)
        p.set_defaults(_run=command.run)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args._run(args) or 0)


if __name__ == '__main__':  # pragma: no cover
    sys.exit(main())
