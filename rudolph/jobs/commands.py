"""The runs of the job forms of the ``rudolph`` commands (their options: :mod:`rudolph.jobs.cli`);
``rudolph.cli.commands`` imports this module only when a job runs."""
import argparse
import os
import sys
from dataclasses import replace
from typing import Any, Dict, Optional

from rudolph.checks import check_classes, check_template
from rudolph.cli.options import CliError, check_device_option, check_model_args, load, text_sampling
from rudolph.io.paths import check_writable_folder, file_stems, refuse_existing
from rudolph.jobs.cli import RECORDS_NAME
from rudolph.jobs.data import default_workers
from rudolph.jobs.features import index_path, rows_path
from rudolph.jobs.inputs import list_images, read_prompts
from rudolph.jobs.output import errors_path, json_text, read_settings, settings_path
from rudolph.jobs.runner import check_output, process_state, run_job
from rudolph.jobs.specs import CaptionJob, ClassifyJob, EmbedJob, Text2ImageJob, VqaJob
from rudolph.tasks.core import Parts, image_sampling_for

__all__ = ['run_caption', 'run_vqa', 'run_classify', 'run_text2image', 'embed_run', 'check_features', 'setup',
           'run_and_report', 'model_settings']


def model_settings(args: argparse.Namespace) -> Dict[str, Any]:
    """The options that choose the model and its precision: stored with a job's output, so that ``--resume``
    continues it only with the same model."""
    names = ('model', 'checkpoint', 'config', 'tokenizer', 'vae', 'vae_config', 'dtype', 'fp16', 'bf16', 'quantize')
    return {name: getattr(args, name, None) for name in names}

def setup(args: argparse.Namespace, records: str):
    """``(parts, loaded, state)``: the processes, the seed (given, else the resumed output's, else 0), the model."""

    check_model_args(args)
    state = process_state()
    if args.device is None and state.world > 1:
        args.device = str(state.device)
    check_device_option(args)
    check_output(records, args.resume, args.overwrite)
    if args.seed is None:  # resumed: the seed the output was written with
        recorded = read_settings(settings_path(records)) if args.resume else None
        args.seed = (recorded or {}).get('seed') or 0
    loaded = load(args)
    parts = Parts.of_components(loaded, progress=False)
    return parts, loaded, state

def _items(args: argparse.Namespace, source: str, text_column: Optional[str] = None):

    return list_images(source, image_column=args.image_column, question_column=text_column,
                       id_column=args.id_column, root=args.root)

def run_and_report(args: argparse.Namespace, job, items, records: str, state, report: Dict[str, Any]) -> int:
    """Run ``job``; the main process prints the summary (stderr; ``--json``: the report on stdout)."""

    workers = default_workers() if getattr(args, 'workers', None) is None else args.workers
    summary = run_job(job, items, records, resume=args.resume, overwrite=args.overwrite, bs=args.bs or 8,
                      workers=workers, progress=not args.quiet, state=state, settings=model_settings(args))
    if not state.is_main:
        return 0
    errors = errors_path(records)
    report = {**report, **summary.as_dict(), 'errors': errors if os.path.exists(errors) else None}
    if args.json:
        print(json_text(report))
    elif not args.quiet:
        print(f'rudolph {job.name}: {summary.line()} -> {report["out"]}'
              + (f' (errors: {errors})' if summary.failed else ''), file=sys.stderr)
    return 0

def run_caption(args: argparse.Namespace) -> int:
    """``rudolph caption SOURCE --out FILE``."""

    items = _items(args, args.image)
    parts, _, state = setup(args, args.out)
    job = CaptionJob(parts, seed=args.seed, captions_num=args.captions_num or 1, template=args.template,
                     sampling=text_sampling(args, parts), generations_num=args.generations_num)
    return run_and_report(args, job, items, args.out, state, {'out': args.out, 'seed': args.seed})

def run_vqa(args: argparse.Namespace) -> int:
    """``rudolph vqa SOURCE --question Q --out FILE`` (or ``--question-column`` of a table)."""


    question = args.question_option or args.question
    if question is not None and not question.strip():
        raise CliError('the question is empty')
    if question is None and not args.question_column:
        raise CliError('give --question TEXT (or --question-column COLUMN of a JSONL/CSV table)')
    items = _items(args, args.image, None if question else args.question_column)
    if question:
        items = [replace(item, text=question) for item in items]
    parts, _, state = setup(args, args.out)
    job = VqaJob(parts, seed=args.seed, answers_num=args.answers_num, sampling=text_sampling(args, parts))
    return run_and_report(args, job, items, args.out, state, {'out': args.out, 'seed': args.seed})

def run_classify(args: argparse.Namespace) -> int:
    """``rudolph classify SOURCE --classes A B ... --out FILE``."""

    check_classes(args.classes)
    check_template('--template', args.template)
    items = _items(args, args.image)
    parts, _, state = setup(args, args.out)
    job = ClassifyJob(parts, args.classes, args.template)
    return run_and_report(args, job, items, args.out, state, {'out': args.out})

def run_text2image(args: argparse.Namespace) -> int:
    """``rudolph text2image --prompts FILE -o DIR``: ``DIR/<stem>_<j>.png`` (stems from the keys,
    :func:`rudolph.io.paths.file_stems`) and ``DIR/images.jsonl`` (``args.codebooks_num`` already checked by
    :mod:`rudolph.cli.commands`). Existing pictures are kept unless ``--overwrite`` (``--resume``: those of
    the prompts not done yet were written by the run it continues)."""

    if args.text is not None:
        raise CliError('give either a text or --prompts FILE, not both')
    if args.reencode:
        raise CliError('--reencode is not available with --prompts')
    items = read_prompts(args.prompts, column=args.prompt_column)
    check_writable_folder(args.out)
    stems = file_stems([item.key for item in items])
    if not (args.resume or args.overwrite):
        refuse_existing(os.path.join(args.out, f'{stems[item.key]}_{j}.png')
                        for item in items for j in range(args.images_num))
    records = os.path.join(args.out, RECORDS_NAME)
    parts, loaded, state = setup(args, records)
    sampling = image_sampling_for(loaded.sampling_for('text2image'), args.top_k, args.top_p, args.temperature)
    job = Text2ImageJob(parts, args.out, seed=args.seed, images_num=args.images_num,
                        codebooks_num=args.codebooks_num, sampling=sampling, stems=stems)
    return run_and_report(args, job, items, records, state, {'out': records, 'seed': args.seed})

def check_features(npy: str, args: argparse.Namespace) -> None:
    """A finished features file is continued (``--resume``) or replaced (``--overwrite``), never silently."""

    done = [p for p in (npy, index_path(npy)) if os.path.exists(p)]
    if done and not (args.resume or args.overwrite):
        raise CliError(f'{npy!r} already exists; pass --resume to add to it or --overwrite')

def embed_run(args: argparse.Namespace) -> int:

    if not args.out.lower().endswith('.npy'):
        raise CliError(f'--out {args.out!r}: expected a .npy file name')
    check_features(args.out, args)
    items = (read_prompts(args.source, column=args.text_column, option='SOURCE (--texts)') if args.texts
             else _items(args, args.source))
    parts, _, state = setup(args, rows_path(args.out))
    job = EmbedJob(parts, layer=args.layer, pooling=args.pooling, texts=args.texts)
    return run_and_report(args, job, items, rows_path(args.out), state,
                {'out': args.out, 'index': index_path(args.out)})
