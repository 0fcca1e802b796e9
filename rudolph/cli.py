"""``rudolph`` command line (also ``python -m rudolph``): draw, caption, answer, classify, write.

Examples::

    rudolph text2image "рисунок кота" -n 8 -o out/        # out/img_0.png ... and out/grid.png
    rudolph caption img.jpg
    rudolph vqa img.jpg "что на картинке?"
    rudolph classify img.jpg --classes кошка собака --template "на картинке {}"
    rudolph text "красивый пейзаж"
    rudolph caption img.jpg --json --model 350M --device cuda --fp16 --seed 0
    rudolph caption img.jpg --checkpoint my_finetune/ --tokenizer bpe.model --vae vqgan.ckpt

Models with task tokens (``350M``, ``1.3B``, ``2.7B``...) run through :class:`rudolph.api.ruDolphApi`;
``350M_v1`` (no task tokens) through :mod:`rudolph.pipelines`. Weights come from the Hugging Face
cache (``HF_HUB_OFFLINE=1`` works once they are there) or from local files.

Subcommands live in :data:`COMMANDS` (``name -> Command(help, add_arguments, run)``); those of
other modules (``rudolph demo``, ``rudolph finetune``) are named in :data:`SUBCOMMAND_MODULES`
and imported when the parser is built. A command's ``run`` may raise :class:`CliError` (or
``ValueError`` / ``TypeError`` / ``OSError``): :func:`main` prints the message, without a
traceback, and returns 1 (``rudolph --debug ...`` re-raises instead).
"""
import argparse
import importlib
import json
import logging
import os
import random
import sys
from typing import Any, Callable, Dict, List, NamedTuple, Optional

from .errors import RudolphError

__all__ = ['main', 'register', 'build_parser', 'load', 'COMMANDS', 'Command', 'CliError', 'SUBCOMMAND_MODULES']


class CliError(RudolphError):
    """A problem the user can fix (missing weights, bad option): printed without a traceback."""


class Command(NamedTuple):
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    #: add the shared model/device/sampling options (``--model``, ``--checkpoint``, ``--json``...)
    common: bool = False
    description: Optional[str] = None


COMMANDS: Dict[str, Command] = {}
#: subcommands defined in other modules: name -> (module with add_arguments/run, help). Imported only
#: when the parser is built, so ``import rudolph`` loads neither the demo nor the trainer.
SUBCOMMAND_MODULES = {
    'finetune': ('rudolph.finetune.cli', 'fine-tune a RuDOLPH model on your own data'),
    'demo': ('rudolph.demo.cli', 'run every task with the embedded tiny-shapes model (offline)'),
}


def register(name: str, help: str, add_arguments: Callable[[argparse.ArgumentParser], None],
             run: Callable[[argparse.Namespace], int], *, common: bool = False,
             description: Optional[str] = None) -> None:
    """Add a subcommand ``rudolph NAME``; ``run(args)`` returns the exit code."""
    COMMANDS[name] = Command(help, add_arguments, run, common, description)


# ----------------------------------------------------------------------------- argument types
def _number(cast: Callable[[str], Any], valid: Callable[[Any], bool], expected: str) -> Callable[[str], Any]:
    """An argparse ``type=``: ``cast`` the text, then reject values outside ``valid`` naming ``expected``."""
    def parse(value: str):
        try:
            number = cast(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f'expected {expected}, got {value!r}') from None
        if not valid(number):
            raise argparse.ArgumentTypeError(f'expected {expected}, got {value!r}')
        return number
    return parse


_positive_int = _number(int, lambda n: n >= 1, 'a positive integer')
_top_k = _number(int, lambda n: n >= 0, 'an integer >= 0 (0: no top-k filter)')
_top_p = _number(float, lambda x: 0.0 < x <= 1.0, 'a number in (0, 1] (1: no nucleus filter)')
_temperature = _number(float, lambda x: 0.0 < x < float('inf'), 'a finite number > 0')


def _sampling(p: argparse.ArgumentParser, top_k: Optional[int], top_p: Optional[float],
              temperature: Optional[float]) -> None:
    def default(value) -> str:
        return 'per model kind' if value is None else str(value)

    g = p.add_argument_group('sampling')
    g.add_argument('--top-k', type=_top_k, default=top_k,
                   help=f'keep the k most likely tokens (0: all; default {default(top_k)})')
    g.add_argument('--top-p', type=_top_p, default=top_p, help=f'nucleus filter in (0, 1] (default {default(top_p)})')
    g.add_argument('--temperature', type=_temperature, default=temperature,
                   help=f'> 0 (default {default(temperature)})')


# ----------------------------------------------------------------------------- shared options
def _add_common(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group('model and weights')
    g.add_argument('--model', default='350M',
                   help='RuDOLPH config: 350M (default), 1.3B, 2.7B, 2.7B_fbc2, 350M_v1, tiny-shapes, ... '
                        '(a key of rudolph.MODELS)')
    g.add_argument('--checkpoint', default=None, help='local pytorch_model.bin (or its folder) instead of the hub')
    g.add_argument('--config', default=None,
                   help='JSON file (or JSON text) of model constructor params, for a --checkpoint whose '
                        'architecture is not a registered --model')
    g.add_argument('--tokenizer', default=None, help='local YTTM bpe.model (or a registered tokenizer name) '
                                                     'instead of the hub')
    g.add_argument('--vae', default=None, help='local VQGAN checkpoint (or a registered VAE name) instead of the hub')
    g.add_argument('--vae-config', default=None,
                   help='JSON file (or JSON text) of VQGAN config overrides for a --vae of another architecture')
    g = parser.add_argument_group('running')
    g.add_argument('--device', default=None, help='cpu, cuda, cuda:1, ... (default: cuda when available)')
    precision = g.add_mutually_exclusive_group()
    precision.add_argument('--fp16', action='store_true', help='float16 weights (CUDA; on CPU the model stays float32)')
    precision.add_argument('--bf16', action='store_true', help='bfloat16 weights (CUDA or CPU)')
    g.add_argument('--seed', type=int, default=None, help='random seed (default: a fresh one, printed in --json)')
    g.add_argument('--bs', type=_positive_int, default=None, help='batch size (default: per command)')
    g.add_argument('--json', action='store_true', help='print the result as JSON')
    g.add_argument('--quiet', action='store_true', help='no progress bars')


def _json_arg(value: str, option: str) -> Dict[str, Any]:
    """A JSON object from a file path or from the option text itself."""
    text = value
    if os.path.isfile(value):
        with open(value, encoding='utf-8') as f:
            text = f.read()
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as error:
        raise CliError(f'{option} must be a JSON object or a file holding one, got {value!r} ({error})') from None
    if not isinstance(obj, dict):
        raise CliError(f'{option} must be a JSON object, got {type(obj).__name__}')
    return obj


def _default_device() -> str:
    import torch

    return 'cuda' if torch.cuda.is_available() else 'cpu'


def _missing(what: str, repo: Optional[str], filename: Optional[str], option: str, error: BaseException) -> str:
    """The message for weights that could not be found or fetched."""
    if repo is None:
        return f'{what}: {error}. Pass {option} PATH to a local file.'
    offline = os.environ.get('HF_HUB_OFFLINE', '').strip().lower() in ('1', 'true', 'yes', 'on')
    why = 'HF_HUB_OFFLINE is set' if offline else f'{type(error).__name__}'
    return (f'{what} weights are not available: file {filename!r} of the hub repo {repo!r} is not in the '
            f'Hugging Face cache and could not be downloaded ({why}).\n'
            f'  Pre-download it where the hub is reachable:  huggingface-cli download {repo} {filename}\n'
            f'  or pass {option} PATH to a local copy.')


class Loaded(NamedTuple):
    model: Any
    tokenizer: Any
    vae: Any
    spc_tokens: Optional[Dict[str, int]]
    name: str


def load(args: argparse.Namespace) -> Loaded:
    """Model, tokenizer and VAE from the common options; every missing file is reported at once.

    Paths are resolved first (cheap: the hub cache or local files) and only then loaded.
    """
    import torch

    from rudolph import tokenizer as tokenizer_module
    from rudolph import vae as vae_module
    from rudolph.model import MODELS, get_rudolph_model
    from rudolph.model.loading import resolve_checkpoint

    name = args.model
    params = _json_arg(args.config, '--config') if args.config else None
    if params is not None and not args.checkpoint:
        raise CliError('--config describes the architecture of a local --checkpoint; pass --checkpoint too')
    if params is None and name not in MODELS:
        raise CliError(f'unknown --model {name!r}; expected one of {sorted(MODELS)} '
                       '(or --config params.json with a --checkpoint)')
    entry = MODELS.get(name, {}) if params is None else {}
    device = args.device or _default_device()
    if device.startswith('cuda') and not torch.cuda.is_available():
        raise CliError(f'--device {device}: CUDA is not available here; use --device cpu')
    vae_config = _json_arg(args.vae_config, '--vae-config') if args.vae_config else None

    problems: List[str] = []
    model_path = tokenizer_path = vae_path = None
    try:
        model_path = resolve_checkpoint(name if params is None else '', args.checkpoint)
    except OSError as error:
        problems.append(f'cannot load --checkpoint: {error}' if args.checkpoint else
                        _missing(f'RuDOLPH {name}', entry.get('repo_id'), entry.get('filename'), '--checkpoint', error))

    tok_arg = args.tokenizer or (name if name in tokenizer_module.NAMED_TOKENIZERS else None)
    try:
        if tok_arg is None:
            from huggingface_hub import hf_hub_download
            tokenizer_path = hf_hub_download(repo_id=tokenizer_module.HF_REPO_ID, filename=tokenizer_module.HF_FILENAME)
        else:
            tokenizer_path = tokenizer_module.NAMED_TOKENIZERS.get(tok_arg, tok_arg)
            if not os.path.isfile(tokenizer_path):
                raise FileNotFoundError(f'no such file: {tokenizer_path!r}')
    except OSError as error:
        problems.append(f'cannot load --tokenizer: {error}' if tok_arg else
                        _missing('the tokenizer', tokenizer_module.HF_REPO_ID, tokenizer_module.HF_FILENAME,
                                 '--tokenizer', error))

    vae_arg = args.vae or (name if name in vae_module.NAMED_VAES and vae_config is None else None)
    try:
        if vae_arg is None:
            from huggingface_hub import hf_hub_download
            vae_path = hf_hub_download(repo_id=vae_module.HF_REPO_ID, filename=vae_module.HF_FILENAMES[False])
        elif vae_arg in vae_module.NAMED_VAES and vae_config is None:
            vae_path, vae_config = vae_module.NAMED_VAES[vae_arg]
        else:
            vae_path = vae_arg
        if not os.path.isfile(vae_path):
            raise FileNotFoundError(f'no such file: {vae_path!r}')
    except OSError as error:
        problems.append(f'cannot load --vae: {error}' if vae_arg else
                        _missing('the VQGAN', vae_module.HF_REPO_ID, vae_module.HF_FILENAMES[False], '--vae', error))
    if problems:
        raise CliError('\n'.join(problems))

    try:
        tokenizer = tokenizer_module.get_tokenizer(tokenizer_path)
    except (OSError, ValueError) as error:
        raise CliError(f'cannot read the tokenizer {tokenizer_path!r}: {error}') from None
    try:
        vae = vae_module.get_vae(path=vae_path, config=vae_config).to(device)
    except (OSError, ValueError, RuntimeError) as error:
        raise CliError(f'cannot load the VQGAN {vae_path!r}: {error}' +
                       ('' if vae_config else ' (pass --vae-config for a VQGAN of another architecture)')) from None
    dtype = torch.bfloat16 if args.bf16 else None
    key = name
    if params is not None:  # an unregistered architecture: a temporary MODELS entry for the loader
        key = f'{name} (--config)'
        MODELS[key] = dict(hf_version='v3', description='from --config', model_params=params, repo_id=None,
                           filename=os.path.basename(model_path))
    try:
        model = get_rudolph_model(key, fp16=args.fp16, dtype=dtype, device=device, checkpoint_path=model_path)
    except (OSError, ValueError, RuntimeError, TypeError) as error:
        raise CliError(f'cannot load RuDOLPH {name} from {model_path!r}: {error}') from None
    finally:
        if params is not None:
            MODELS.pop(key, None)
    return Loaded(model, tokenizer, vae, entry.get('spc_tokens'), name)


# ----------------------------------------------------------------------------- backends
class _Backend:
    """One task interface over ``ruDolphApi`` (task-token models) or ``rudolph.pipelines`` (350M v1)."""

    def __init__(self, loaded: Loaded, args: argparse.Namespace):
        self.model, self.tokenizer, self.vae = loaded.model, loaded.tokenizer, loaded.vae
        self.progress = not args.quiet
        self.task_tokens = bool(self.model.get_param('text_special_tokens'))
        if self.task_tokens:
            from rudolph.api import ruDolphApi

            self.api = ruDolphApi(self.model, self.tokenizer, self.vae, spc_tokens=loaded.spc_tokens,
                                  quite=args.quiet)

    @property
    def kind(self) -> str:
        return 'ruDolphApi' if self.task_tokens else 'pipelines'


def _images(backend: _Backend, text: str, n: int, codebooks_num: int, args) -> List[Dict[str, Any]]:
    import torch

    from rudolph import pipelines, utils

    bs = args.bs or 8
    if backend.task_tokens:
        images, scores = backend.api.dream(text, images_num=n, codebooks_num=codebooks_num, top_k=args.top_k,
                                           top_p=args.top_p, temperature=args.temperature, bs=bs, seed=args.seed)
        return [dict(image=img, ppl_text=float(s['ppl_txt']), ppl_image=float(s['ppl_img']), score=float(s['score']))
                for img, s in zip(images, scores)]
    codebooks = pipelines.generate_codebooks(text, backend.tokenizer, backend.model, top_k=args.top_k, top_p=args.top_p,
                                             images_num=codebooks_num, temperature=args.temperature, bs=bs,
                                             seed=args.seed, progress=backend.progress)
    ppl_text, ppl_image = pipelines.self_reranking_by_text(text, codebooks, backend.tokenizer, backend.model, bs=bs)
    best = ppl_text.argsort()[:n].tolist()
    with torch.no_grad():
        images = utils.torch_tensors_to_pil_list(backend.vae.decode(codebooks[best]))
    return [dict(image=img, ppl_text=float(ppl_text[i]), ppl_image=float(ppl_image[i])) for img, i in zip(images, best)]


# ----------------------------------------------------------------------------- output
def _print_json(obj) -> None:
    json.dump(obj, sys.stdout, ensure_ascii=False, indent=2, default=_json_default)
    sys.stdout.write('\n')


def _json_default(obj):
    if hasattr(obj, 'tolist'):  # numpy / torch scalars and arrays
        return obj.tolist()
    raise TypeError(f'{type(obj).__name__} is not JSON serialisable')


def _emit(args: argparse.Namespace, result: Dict[str, Any], lines: List[str]) -> None:
    if args.json:
        _print_json(result)
    else:
        for line in lines:
            print(line)


def _open_image(path: str):
    from PIL import Image, UnidentifiedImageError

    if not os.path.isfile(path):
        raise CliError(f'image not found: {path}')
    try:
        img = Image.open(path)
        img.load()
    except (UnidentifiedImageError, OSError) as error:
        raise CliError(f'cannot read the image {path}: {error}') from None
    return img


def _prepare(args: argparse.Namespace) -> _Backend:
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(2 ** 31)
    return _Backend(load(args), args)


def _meta(args: argparse.Namespace, backend: _Backend) -> Dict[str, Any]:
    return {'model': args.model, 'backend': backend.kind, 'seed': args.seed}


# ----------------------------------------------------------------------------- text2image
def _text2image_args(p: argparse.ArgumentParser) -> None:
    p.add_argument('text', help='what to draw (Russian)')
    p.add_argument('-n', '--images-num', type=_positive_int, default=4, help='images to keep (default 4)')
    p.add_argument('--codebooks-num', type=_positive_int, default=None,
                   help='images to generate before keeping the best n by self-reranking (default: 2n)')
    p.add_argument('-o', '--out', default='rudolph_images', help='output folder (default rudolph_images/)')
    p.add_argument('--nrow', type=_positive_int, default=4, help='images per row of the grid (default 4)')
    _sampling(p, 768, 0.99, 1.0)


def _text2image_run(args: argparse.Namespace) -> int:
    from rudolph import pipelines, utils

    codebooks_num = args.codebooks_num or 2 * args.images_num
    if args.images_num > codebooks_num:
        raise CliError(f'-n/--images-num ({args.images_num}) cannot exceed --codebooks-num ({codebooks_num})')
    backend = _prepare(args)
    results = _images(backend, args.text, args.images_num, codebooks_num, args)
    os.makedirs(args.out, exist_ok=True)
    for i, r in enumerate(results):
        r['path'] = os.path.join(args.out, f'img_{i}.png')
        r.pop('image').save(r['path'])
    from PIL import Image

    pil = [Image.open(r['path']) for r in results]
    grid = pipelines._make_grid(utils.pil_list_to_torch_tensors(pil), args.nrow)
    grid_path = os.path.join(args.out, 'grid.png')
    Image.fromarray(grid.permute(1, 2, 0).numpy()).save(grid_path)
    result = {'text': args.text, **_meta(args, backend), 'images': results, 'grid': grid_path}
    lines = [f"{r['path']}  ppl_text={r['ppl_text']:.2f}" for r in results] + [f'grid: {grid_path}']
    _emit(args, result, lines)
    return 0


# ----------------------------------------------------------------------------- caption
def _caption_args(p: argparse.ArgumentParser) -> None:
    p.add_argument('image', help='image file (any size and mode; centre-cropped)')
    p.add_argument('-n', '--captions-num', type=_positive_int, default=5, help='captions to print (default 5)')
    p.add_argument('--generations-num', type=_positive_int, default=32,
                   help='captions to sample before self-reranking (default 32)')
    p.add_argument('--template', default='на картинке', help="start of every caption (default 'на картинке')")
    _sampling(p, None, None, None)


def _caption_run(args: argparse.Namespace) -> int:
    from rudolph import pipelines

    img = _open_image(args.image)
    backend = _prepare(args)
    bs = args.bs or 16
    if backend.task_tokens:
        caps = backend.api.image_captioning(img, r_template=args.template, captions_num=args.captions_num,
                                            generations_num=args.generations_num, seed=args.seed, bs=bs,
                                            top_k=args.top_k, top_p=args.top_p, temperature=args.temperature)
        captions = [{'text': c['text'], 'score': float(c['score']), 'count': int(c['count']),
                     'ppl_text': float(c['ppl_txt']), 'ppl_image': float(c['ppl_img'])} for c in caps]
    else:
        texts = pipelines.generate_captions(img, backend.tokenizer, backend.model, backend.vae, template=args.template,
                                            top_k=32 if args.top_k is None else args.top_k,
                                            top_p=0.6 if args.top_p is None else args.top_p,
                                            temperature=args.temperature or 1.0, captions_num=args.generations_num,
                                            bs=bs, seed=args.seed, progress=backend.progress)
        captions = []
        if texts:
            ppl_text, ppl_image = pipelines.self_reranking_by_image(texts, img, backend.tokenizer, backend.model,
                                                                    backend.vae, bs=bs)
            captions = [{'text': texts[i], 'score': float(ppl_image[i]), 'ppl_text': float(ppl_text[i]),
                         'ppl_image': float(ppl_image[i])} for i in ppl_image.argsort()[:args.captions_num].tolist()]
    result = {'image': args.image, **_meta(args, backend), 'captions': captions}
    _emit(args, result, [c['text'] for c in captions] or ['(no caption)'])
    return 0


# ----------------------------------------------------------------------------- vqa
def _vqa_args(p: argparse.ArgumentParser) -> None:
    p.add_argument('image', help='image file')
    p.add_argument('question', help="the question (Russian), e.g. 'что на картинке?'")
    p.add_argument('-n', '--answers-num', type=_positive_int, default=1, help='answers to print (default 1)')
    p.add_argument('--generations-num', type=_positive_int, default=16,
                   help='answers to sample; the most frequent win (default 16)')
    _sampling(p, None, None, None)


def _vqa_run(args: argparse.Namespace) -> int:
    from rudolph import pipelines
    from rudolph.api import VQA_TEMPLATE

    img = _open_image(args.image)
    if not args.question.strip():
        raise CliError('the question is empty')
    backend = _prepare(args)
    bs = args.bs or 16
    if backend.task_tokens:
        answers = backend.api.vqa(img, args.question, answers_num=args.answers_num,
                                  generations_num=args.generations_num, seed=args.seed, bs=bs, top_k=args.top_k,
                                  top_p=args.top_p, temperature=args.temperature)
    else:  # no task tokens: continue the same right-text prompt as a caption
        prompt = VQA_TEMPLATE.format(question=args.question.strip()).lower()
        texts = pipelines.generate_captions(img, backend.tokenizer, backend.model, backend.vae, template=prompt,
                                            top_k=32 if args.top_k is None else args.top_k,
                                            top_p=0.6 if args.top_p is None else args.top_p,
                                            temperature=args.temperature or 1.0, captions_num=args.generations_num,
                                            bs=bs, seed=args.seed, progress=backend.progress)
        head = backend.tokenizer.decode_text(pipelines.template_prefix(
            backend.tokenizer.encode_text(prompt, backend.model.get_param('r_text_seq_length')))).strip()
        counts: Dict[str, int] = {}
        for text in texts:
            answer = text[len(head):].strip() if text.startswith(head) else text
            if answer:
                counts[answer] = counts.get(answer, 0) + 1
        answers = [{'answer': a, 'count': c} for a, c in sorted(counts.items(), key=lambda kv: -kv[1])]
        answers = answers[:args.answers_num]
    answers = [{'answer': a['answer'], 'count': int(a['count'])} for a in answers]
    result = {'image': args.image, 'question': args.question, **_meta(args, backend), 'answers': answers}
    _emit(args, result, [a['answer'] for a in answers] or ['(no answer)'])
    return 0


# ----------------------------------------------------------------------------- classify
def _classify_args(p: argparse.ArgumentParser) -> None:
    p.add_argument('image', help='image file')
    p.add_argument('--classes', required=True, nargs='+', metavar='CLASS', help='class names (Russian), at least one')
    p.add_argument('--template', default='{}', help="right text for each class, with {} for its name, "
                                                    "e.g. 'на картинке {}' (default '{}')")


def _classify_run(args: argparse.Namespace) -> int:
    from rudolph import pipelines

    img = _open_image(args.image)
    pipelines._check_classes(args.classes)
    pipelines._check_template('--template', args.template)
    backend = _prepare(args)
    bs = args.bs or 16
    if backend.task_tokens:
        pred = backend.api.zs_clf(img, args.classes, bs=bs, r_template=args.template)
    else:
        pred = pipelines.zs_clf(img, args.classes, backend.model, backend.tokenizer, backend.vae, bs=bs,
                                template=args.template)
    scores = {c: float(s) for c, s in zip(args.classes, pred['scores'].tolist())}
    result = {'image': args.image, **_meta(args, backend), 'class': pred['class'], 'label': int(pred['label']),
              'scores': scores}
    lines = [pred['class']] + [f'  {c}: {s:.4f}' for c, s in sorted(scores.items(), key=lambda kv: kv[1])]
    _emit(args, result, lines)
    return 0


# ----------------------------------------------------------------------------- text
def _text_args(p: argparse.ArgumentParser) -> None:
    p.add_argument('prompt', nargs='?', default='', help='start of the text (Russian); may be empty')
    p.add_argument('-n', '--texts-num', type=_positive_int, default=5, help='texts to print (default 5)')
    p.add_argument('--generations-num', type=_positive_int, default=32,
                   help='texts to sample; the least perplexing are printed (default 32)')
    _sampling(p, None, None, None)


def _text_run(args: argparse.Namespace) -> int:
    from rudolph import pipelines

    backend = _prepare(args)
    bs = args.bs or 16
    if backend.task_tokens:
        res = backend.api.generate_texts(template=args.prompt, texts_num=args.generations_num, top_k=args.top_k,
                                         top_p=args.top_p, temperature=args.temperature, bs=bs, seed=args.seed)
        texts = [{'text': r['text'], 'ppl': float(r['ppl_txt']), 'count': int(r['count'])} for r in res]
    else:
        res = pipelines.generate_texts(backend.tokenizer, backend.model, template=args.prompt,
                                       top_k=32 if args.top_k is None else args.top_k,
                                       top_p=0.8 if args.top_p is None else args.top_p,
                                       temperature=args.temperature or 1.0, texts_num=args.generations_num, bs=bs,
                                       seed=args.seed, progress=backend.progress)
        texts = [{'text': r['text'], 'ppl': float(r['ppl'])} for r in res]
    texts = texts[:args.texts_num]
    result = {'prompt': args.prompt, **_meta(args, backend), 'texts': texts}
    _emit(args, result, [t['text'] for t in texts] or ['(no text)'])
    return 0


register('text2image', 'draw images for a text; the best by self-reranking are saved as PNG files and a grid',
         _text2image_args, _text2image_run, common=True,
         description='Draw images for a text: rudolph text2image "рисунок кота" -n 8 -o out/')
register('caption', 'caption an image', _caption_args, _caption_run, common=True,
         description='Caption an image: rudolph caption img.jpg')
register('vqa', 'answer a question about an image', _vqa_args, _vqa_run, common=True,
         description='Answer a question about an image: rudolph vqa img.jpg "что на картинке?"')
register('classify', 'zero-shot classification of an image', _classify_args, _classify_run, common=True,
         description='Zero-shot classification: rudolph classify img.jpg --classes кошка собака')
register('text', 'write texts continuing a prompt', _text_args, _text_run, common=True,
         description='Write texts: rudolph text "красивый пейзаж"')


# ----------------------------------------------------------------------------- entry point
def _load_subcommands() -> None:
    for name, (module_name, help) in SUBCOMMAND_MODULES.items():
        if name not in COMMANDS:
            module = importlib.import_module(module_name)
            register(name, help, module.add_arguments, module.run)


def build_parser() -> argparse.ArgumentParser:
    _load_subcommands()
    parser = argparse.ArgumentParser(
        prog='rudolph', description='RuDOLPH, the Russian text-image-text transformer: draw, caption, answer, '
                                    'classify and write from the command line.',
        epilog='examples:\n'
               '  rudolph text2image "рисунок кота" -n 8 -o out/\n'
               '  rudolph caption img.jpg\n'
               '  rudolph vqa img.jpg "что на картинке?"\n'
               '  rudolph classify img.jpg --classes кошка собака\n'
               '  rudolph text "красивый пейзаж"\n'
               'Run "rudolph COMMAND --help" for the options of a command.',
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--debug', action='store_true', help='show full tracebacks on errors')
    sub = parser.add_subparsers(dest='command', metavar='COMMAND')
    sub.required = True
    for name, command in COMMANDS.items():
        p = sub.add_parser(name, help=command.help, description=command.description or command.help)
        command.add_arguments(p)
        if command.common:
            _add_common(p)
        p.set_defaults(_run=command.run)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Run ``rudolph ARGV``; returns the exit code (0 ok, 1 error, 2 bad usage, 130 interrupted)."""
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        if args.debug:
            raise
        print('rudolph: interrupted', file=sys.stderr)
        return 130
    except (CliError, ValueError, TypeError, OSError) as error:
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
