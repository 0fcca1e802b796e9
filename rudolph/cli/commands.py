"""``rudolph`` command line (also ``python -m rudolph``): draw, caption, answer, classify, write.

    rudolph text2image "рисунок кота" -n 8 -o out/        # out/img_0.png ... and out/grid.png
    rudolph caption img.jpg --json --model 350M --device cuda --fp16 --seed 0
    rudolph caption img.jpg --checkpoint my_finetune/ --tokenizer bpe.model --vae vqgan.ckpt

Every command runs a task of :mod:`rudolph.tasks.core` (which handles models with and without task
tokens). Weights come from the Hugging Face cache (``HF_HUB_OFFLINE=1`` works once they are
there) or from local files. Subcommands live in :data:`COMMANDS`; those of other modules
(``demo``, ``finetune``, :data:`SUBCOMMAND_MODULES`) are imported only when run or asked for
``--help``, so ``rudolph --help`` imports no torch. A ``run`` may raise :class:`CliError` (or
``ValueError`` / ``TypeError`` / ``OSError``): :func:`main` prints the message without a
traceback and returns 1 (``rudolph --debug ...`` re-raises).
"""
import argparse
import contextlib
import importlib
import random
import signal
import sys
import threading
import warnings
from typing import Any, Callable, Dict, Iterator, List, NamedTuple, Optional

from rudolph.checks import check_classes, check_template, command_line_options
from rudolph.cli.options import (
    PART_OPTIONS,
    CliError,
    add_common,
    add_sampling,
    check_device_option,
    check_model_args,
    json_option,
    load,
    positive_int,
    text_sampling,
)
from rudolph.errors import RudolphError
from rudolph.io.paths import check_writable_folder, refuse_existing
from rudolph.io.pictures import open_image
from rudolph.io.tables import json_text
from rudolph.model.configs import DEFAULT_IMAGE_SAMPLING

__all__ = ['main', 'register', 'build_parser', 'load', 'COMMANDS', 'Command', 'CliError', 'SUBCOMMAND_MODULES',
           'json_option', 'PART_OPTIONS']


class Command(NamedTuple):
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    #: add the shared model/device/sampling options (``--model``, ``--checkpoint``, ``--json``...)
    common: bool = False
    description: Optional[str] = None
    #: its arguments live in another module, imported only when this command is the one run
    lazy: bool = False


COMMANDS: Dict[str, Command] = {}
#: subcommands defined in other modules: name -> (module with add_arguments/run, help). Imported only
#: when the parser is built, so ``import rudolph`` loads neither the demo nor the trainer.
SUBCOMMAND_MODULES = {
    'finetune': ('rudolph.finetune.cli', 'fine-tune a RuDOLPH model on your own data'),
    'demo': ('rudolph.demo.cli', 'run every task with the embedded tiny-shapes model (offline)'),
    'convert': ('rudolph.cli.hub', 'turn a published checkpoint into a self-describing safetensors model folder'),
    'push': ('rudolph.cli.hub', 'publish a saved model or fine-tune (folder) on the Hugging Face hub'),
    'embed': ('rudolph.jobs.cli_embed', 'features (pooled hidden states) of pictures or texts into a .npy'),
    'eval': ('rudolph.jobs.cli_eval', 'evaluate on an ImageFolder: zero-shot accuracy, linear probe'),
    'app': ('rudolph.app.cli', 'a web page with a tab per task (needs gradio: pip install "rudolph-hypermodal[app]")'),
}


def register(name: str, help: str, add_arguments: Callable[[argparse.ArgumentParser], None],
             run: Callable[[argparse.Namespace], int], *, common: bool = False,
             description: Optional[str] = None) -> None:
    """Add a subcommand ``rudolph NAME``; ``run(args)`` returns the exit code."""
    COMMANDS[name] = Command(help, add_arguments, run, common, description)


# ----------------------------------------------------------------------------- tasks
def _load_upscaler(args: argparse.Namespace, device: str):
    """The ``--upscale`` model (before the RuDOLPH model: a missing package or file is said first), else ``None``."""
    if args.upscale is None:
        if args.upscale_weights or args.upscale_tile:
            raise CliError('--upscale-weights / --upscale-tile need --upscale 2, 4 or 8')
        return None
    from rudolph.superres import get_realesrgan

    dtype = 'fp16' if args.fp16 else 'bf16' if args.bf16 else None
    return get_realesrgan(args.upscale, device=device, dtype=dtype, path=args.upscale_weights, tile=args.upscale_tile,
                          local_arg='--upscale-weights FILE')


# ----------------------------------------------------------------------------- output
def _emit(args: argparse.Namespace, result: Dict[str, Any], lines: List[str]) -> None:
    """The result as JSON (``--json``), else its ``lines``."""

    for line in [json_text(result)] if args.json else lines:
        print(line)


def _prepare(args: argparse.Namespace):
    """The model's :class:`rudolph.tasks.core.Parts` (and what was loaded); a fresh ``--seed`` if none is given."""
    from rudolph.tasks.core import Parts

    if args.seed is None:
        args.seed = random.SystemRandom().randrange(2 ** 31)
    loaded = load(args)
    return Parts.of_components(loaded, progress=not args.quiet), loaded


def _meta(args: argparse.Namespace, parts) -> Dict[str, Any]:
    return {'model': args.model, 'backend': parts.kind, 'seed': args.seed}


def _jobs_cli():
    """The job forms of the commands (a folder, a glob, a list or a table -> ``--out``): :mod:`rudolph.jobs.cli`."""
    return importlib.import_module('rudolph.jobs.cli')


def _job_runs():
    """The runs of the job forms (they import torch): :mod:`rudolph.jobs.commands`, imported when a job runs."""
    return importlib.import_module('rudolph.jobs.commands')


# ----------------------------------------------------------------------------- text2image
def _text2image_args(p: argparse.ArgumentParser) -> None:
    p.add_argument('text', nargs='?', default=None, help='what to draw (Russian); or --prompts FILE')
    p.add_argument('--prompts', default=None, help='a job: one prompt a line (or a JSONL/CSV with --prompt-column); '
                                                   'OUT/<stem>_<j>.png (stems from the ids) and OUT/images.jsonl')
    p.add_argument('--prompt-column', default='prompt', help="a --prompts table's prompt column (default 'prompt')")
    p.add_argument('-n', '--images-num', type=positive_int, default=4, help='images to keep (default 4)')
    p.add_argument('--codebooks-num', type=positive_int, default=None,
                   help='images to generate before keeping the best n by self-reranking (default: 2n)')
    p.add_argument('-o', '--out', default='rudolph_images', help='output folder (default rudolph_images/)')
    p.add_argument('--nrow', type=positive_int, default=4, help='images per row of the grid (default 4)')
    p.add_argument('--reencode', action='store_true',
                   help='rerank by what the decoded pictures show (decode, encode again, score the text)')
    add_sampling(p, None, None, None, "the model's recommended", fallback=DEFAULT_IMAGE_SAMPLING.kwargs())
    _jobs_cli().add_job_options(p, out=False, inputs=False)
    g = p.add_argument_group('super-resolution (needs rudolph-hypermodal[sr])')
    g.add_argument('--upscale', type=int, choices=(2, 4, 8), default=None,
                   help="upscale the saved images with ruDALL-E's Real-ESRGAN x2, x4 or x8 (sberbank-ai/Real-ESRGAN)")
    g.add_argument('--upscale-weights', default=None, metavar='FILE',
                   help='local RealESRGAN_xN.pth instead of the hub')
    g.add_argument('--upscale-tile', type=positive_int, default=None, metavar='PX',
                   help='tile side in input pixels for large pictures (default 192)')


def _text2image_run(args: argparse.Namespace) -> int:
    from rudolph import tasks
    from rudolph.utils import codebook_image_paths, save_codebook_images

    codebooks_num = args.codebooks_num = args.codebooks_num or 2 * args.images_num
    if args.images_num > codebooks_num:
        raise CliError(f'-n/--images-num ({args.images_num}) cannot exceed --codebooks-num ({codebooks_num})')
    if args.prompts is not None:
        if args.upscale is not None:
            raise CliError('--upscale works with one text; a --prompts job saves the pictures as drawn')
        return _job_runs().run_text2image(args)
    if args.text is None:
        raise CliError('give a text to draw, or --prompts FILE')
    check_model_args(args)
    device = check_device_option(args)
    check_writable_folder(args.out)
    names, grid = codebook_image_paths(args.out, args.images_num)
    if not args.overwrite:  # before any work; the --overwrite of the job options
        refuse_existing(names + [grid])
    upscaler = _load_upscaler(args, device)
    parts, loaded = _prepare(args)
    sampling = tasks.image_sampling_for(loaded.sampling_for('text2image'), args.top_k, args.top_p, args.temperature)
    codebooks, results = tasks.best_images(parts, args.text, codebooks_num, args.images_num, sampling, args.bs or 8,
                                           seed=args.seed, reencode_codes=args.reencode)
    paths, grid_path = save_codebook_images(parts.vae, codebooks, args.out, args.nrow, args.bs or 8, upscaler,
                                            overwrite=args.overwrite)
    results = [{**row, 'path': path} for row, path in zip(results, paths)]
    result = {'text': args.text, **_meta(args, parts), 'sampling': sampling.kwargs(), 'reencode': args.reencode,
              'upscale': args.upscale, 'images': results, 'grid': grid_path}
    lines = [f"{r['path']}  ppl_text={r['ppl_text']:.2f}" for r in results] + [f'grid: {grid_path}']
    _emit(args, result, lines)
    return 0


# ----------------------------------------------------------------------------- caption
def _caption_args(p: argparse.ArgumentParser) -> None:
    p.add_argument('image', help='image file (any size and mode; centre-cropped); with --out a folder, a glob, '
                                 'a list of paths or a JSONL/CSV table')
    p.add_argument('-n', '--captions-num', type=positive_int, default=None,
                   help='captions to print (default 5; a job: 1 a picture)')
    p.add_argument('--generations-num', type=positive_int, default=32,
                   help='captions to sample before self-reranking (default 32)')
    p.add_argument('--template', default='на картинке', help="start of every caption (default 'на картинке')")
    add_sampling(p, None, None, None)
    _jobs_cli().add_job_options(p)


def _caption_run(args: argparse.Namespace) -> int:
    from rudolph import tasks

    if _jobs_cli().is_job(args, args.image):
        return _job_runs().run_caption(args)
    args.captions_num = args.captions_num or 5
    img = open_image(args.image)
    parts, _ = _prepare(args)
    rows = tasks.captioning(parts, img, args.captions_num, args.generations_num, text_sampling(args, parts, 'captions'),
                            args.bs or 16, seed=args.seed, r_template=args.template)
    captions = [{k: v if k == 'text' else int(v) if k == 'count' else float(v) for k, v in row.items()}
                for row in rows]
    result = {'image': args.image, **_meta(args, parts), 'captions': captions}
    _emit(args, result, [c['text'] for c in captions] or ['(no caption)'])
    return 0


# ----------------------------------------------------------------------------- vqa
def _vqa_args(p: argparse.ArgumentParser) -> None:
    p.add_argument('image', help='image file; with --out a folder, a glob, a list of paths or a JSONL/CSV table')
    p.add_argument('question', nargs='?', default=None, help="the question (Russian), e.g. 'что на картинке?'")
    p.add_argument('--question', dest='question_option', default=None, help='the question of a job (or the '
                                                                          'positional one)')
    p.add_argument('--question-column', default=None, help="a job's table column holding each picture's question")
    p.add_argument('-n', '--answers-num', type=positive_int, default=1, help='answers to print (default 1)')
    p.add_argument('--generations-num', type=positive_int, default=16,
                   help='answers to sample; the most frequent win (default 16)')
    add_sampling(p, None, None, None)
    _jobs_cli().add_job_options(p)


def _vqa_run(args: argparse.Namespace) -> int:
    from rudolph import tasks

    if _jobs_cli().is_job(args, args.image):
        return _job_runs().run_vqa(args)
    args.question = args.question_option if args.question is None else args.question
    if args.question is None:
        raise CliError('give the question (rudolph vqa IMAGE "QUESTION")')
    img = open_image(args.image)
    if not args.question.strip():
        raise CliError('the question is empty')
    parts, _ = _prepare(args)
    answers = tasks.vqa(parts, img, args.question, args.answers_num, args.generations_num,
                        text_sampling(args, parts, 'captions'), args.bs or 16, seed=args.seed)
    answers = [{'answer': a['answer'], 'count': int(a['count'])} for a in answers]
    result = {'image': args.image, 'question': args.question, **_meta(args, parts), 'answers': answers}
    _emit(args, result, [a['answer'] for a in answers] or ['(no answer)'])
    return 0


# ----------------------------------------------------------------------------- classify
def _classify_args(p: argparse.ArgumentParser) -> None:
    p.add_argument('image', help='image file; with --out a folder, a glob, a list of paths or a JSONL/CSV table')
    p.add_argument('--classes', required=True, nargs='+', metavar='CLASS', help='class names (Russian), at least one')
    p.add_argument('--template', default='{}', help="right text for each class, with {} for its name, "
                                                    "e.g. 'на картинке {}' (default '{}')")
    _jobs_cli().add_job_options(p)


def _classify_run(args: argparse.Namespace) -> int:
    from rudolph import tasks

    if _jobs_cli().is_job(args, args.image):
        return _job_runs().run_classify(args)
    img = open_image(args.image)
    check_classes(args.classes)
    check_template('--template', args.template)
    parts, _ = _prepare(args)
    pred = tasks.zero_shot(parts, img, args.classes, args.template, args.bs or 16)
    ppl = pred['ppl']
    probs = tasks.class_probabilities(ppl).tolist()
    names, label = list(args.classes), int(pred['label'])
    result = {'image': args.image, **_meta(args, parts), 'class': pred['class'], 'label': label,
              'probabilities': dict(zip(names, probs)), 'perplexities': dict(zip(names, ppl.tolist())),
              'scores': dict(zip(names, pred['scores'].tolist())), 'tie': pred['tie'], 'ties': pred['ties']}
    order = sorted(range(len(names)), key=lambda i: -probs[i])
    lines = [tasks.prediction_text(pred), '  probability (higher is better)  class'] + [
        f'  {probs[i]:>30.4f}  {names[i]}' for i in order]
    _emit(args, result, lines)
    return 0


# ----------------------------------------------------------------------------- text
def _text_args(p: argparse.ArgumentParser) -> None:
    p.add_argument('prompt', nargs='?', default='', help='start of the text (Russian); may be empty')
    p.add_argument('-n', '--texts-num', type=positive_int, default=5, help='texts to print (default 5)')
    p.add_argument('--generations-num', type=positive_int, default=32,
                   help='texts to sample; the least perplexing are printed (default 32)')
    add_sampling(p, None, None, None)


def _text_run(args: argparse.Namespace) -> int:
    from rudolph import tasks

    parts, _ = _prepare(args)
    rows = tasks.texts(parts, args.prompt, args.generations_num, text_sampling(args, parts, 'texts'), args.bs or 16,
                       seed=args.seed)
    texts = [{**row, 'ppl': float(row['ppl'])} for row in rows][:args.texts_num]
    result = {'prompt': args.prompt, **_meta(args, parts), 'texts': texts}
    _emit(args, result, [t['text'] for t in texts] or ['(no text)'])
    return 0


#: the examples use the default --model (350M, downloaded on first use); the embedded model needs no network
OFFLINE_HINT = ' (the default --model 350M is downloaded from the hub on first use; --model tiny-shapes works offline)'


register('text2image', 'draw images for a text; the best by self-reranking are saved as PNG files and a grid',
         _text2image_args, _text2image_run, common=True,
         description='Draw images for a text: rudolph text2image "рисунок кота" -n 8 -o out/' + OFFLINE_HINT)
register('caption', 'caption an image', _caption_args, _caption_run, common=True,
         description='Caption an image: rudolph caption img.jpg' + OFFLINE_HINT)
register('vqa', 'answer a question about an image', _vqa_args, _vqa_run, common=True,
         description='Answer a question about an image: rudolph vqa img.jpg "что на картинке?"' + OFFLINE_HINT)
register('classify', 'zero-shot classification of an image', _classify_args, _classify_run, common=True,
         description='Zero-shot classification: rudolph classify img.jpg --classes кошка собака' + OFFLINE_HINT)
register('text', 'write texts continuing a prompt', _text_args, _text_run, common=True,
         description='Write texts: rudolph text "красивый пейзаж"' + OFFLINE_HINT)


# ----------------------------------------------------------------------------- entry point
def _lazy_command(module_name: str, help: str) -> Command:
    """A command of another module, imported only when its arguments are needed (keeps ``--help`` fast)."""
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        importlib.import_module(module_name).add_arguments(parser)

    def run(args: argparse.Namespace) -> int:
        return importlib.import_module(module_name).run(args)

    return Command(help, add_arguments, run, lazy=True)


COMMANDS.update((name, _lazy_command(module, help)) for name, (module, help) in SUBCOMMAND_MODULES.items()
                if name not in COMMANDS)


def _selected(argv: List[str]) -> Optional[str]:
    """The subcommand named in ``argv`` (the first word that is not an option), if any."""
    return next((a for a in argv if not a.startswith('-')), None)


def build_parser(argv: Optional[List[str]] = None) -> argparse.ArgumentParser:
    """The ``rudolph`` parser. Given the ``argv`` to parse, lazy commands other than the one it names
    get no arguments (their modules, and torch, are not imported)."""
    selected = None if argv is None else _selected(argv)
    parser = argparse.ArgumentParser(
        prog='rudolph', description='RuDOLPH, the Russian text-image-text transformer: draw, caption, answer, '
                                    'classify and write from the command line.',
        epilog='examples:\n'
               '  rudolph text2image "рисунок кота" -n 8 -o out/\n'
               '  rudolph caption img.jpg\n'
               '  rudolph vqa img.jpg "что на картинке?"\n'
               '  rudolph classify img.jpg --classes кошка собака\n'
               '  rudolph text "красивый пейзаж"\n'
               '  rudolph caption photos/ --out captions.jsonl     # a job: a folder, a glob, a list or a table\n'
               f'{OFFLINE_HINT.strip()}\n'
               'Run "rudolph COMMAND --help" for the options of a command.',
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--debug', action='store_true', help='show full tracebacks on errors')
    sub = parser.add_subparsers(dest='command', metavar='COMMAND')
    sub.required = True
    for name, command in COMMANDS.items():
        p = sub.add_parser(name, help=command.help, description=command.description or command.help)
        if not command.lazy or argv is None or name == selected:
            command.add_arguments(p)
        if command.common:
            add_common(p)
        p.set_defaults(_run=command.run)
    return parser


def _summarise_warnings(caught: List[warnings.WarningMessage]) -> None:
    """One line for all the warnings of a run (e.g. one per generated text that was cut).

    ``--quiet`` hides progress only: a warning says the result may not be what was asked for.
    """
    if not caught:
        return
    first = str(caught[0].message)
    if len(caught) == 1:
        print(f'rudolph: warning: {first}', file=sys.stderr)
        return
    print(f'rudolph: warning: {len(caught)} warnings, the first: {first}', file=sys.stderr)


class Terminated(KeyboardInterrupt):
    """``SIGTERM`` (a job scheduler, ``kill``, a container stop), raised where the program is, as Ctrl-C's
    ``KeyboardInterrupt``: the command stops the same clean way (outputs complete up to the last batch)."""


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """Within the block, ``SIGTERM`` raises :class:`Terminated` (signal handlers live in the main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run_command(args: argparse.Namespace) -> int:
    """``args._run(args)`` with its warnings gathered into one summary (also under ``--quiet``)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        try:
            with command_line_options():  # messages name the options the user can change (--bs, --bad-rows)
                return int(args._run(args) or 0)
        finally:
            _summarise_warnings(list(caught))


def main(argv: Optional[List[str]] = None) -> int:
    """Run ``rudolph ARGV``; returns the exit code (0 ok, 1 error, 2 bad usage, 130 Ctrl-C, 143 ``SIGTERM``)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv).parse_args(argv)
    try:
        with _terminate_as_interrupt():
            return _run_command(args)
    except KeyboardInterrupt as stop:
        if args.debug:
            raise
        print('rudolph: interrupted', file=sys.stderr)
        return 128 + (signal.SIGTERM if isinstance(stop, Terminated) else signal.SIGINT)
    except (RudolphError, ValueError, TypeError, OSError) as error:  # ResourceError is a MemoryError
        if args.debug:
            raise
        print(f'rudolph {args.command}: error: {error}', file=sys.stderr)
        return 1
    except RuntimeError as error:
        if args.debug or 'out of memory' not in str(error):
            raise
        print(f'rudolph {args.command}: error: out of memory; try a smaller --bs, --fp16/--bf16 or --device cpu '
              f'({str(error).splitlines()[0]})', file=sys.stderr)
        return 1


if __name__ == '__main__':  # pragma: no cover
    sys.exit(main())
