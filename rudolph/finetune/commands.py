"""The run of ``rudolph finetune`` (its options: :mod:`rudolph.finetune.cli`)."""
import argparse
import logging
import os

from accelerate import PartialState

from rudolph.cli.commands import json_option
from rudolph.finetune.checkpoints import check_writable
from rudolph.finetune.cli import FREEZE_GROUPS
from rudolph.finetune.config import TrainConfig
from rudolph.finetune.data import TASKS, prepare_dataset
from rudolph.finetune.freeze import freeze
from rudolph.finetune.trainer import train
from rudolph.model.configs import MODELS
from rudolph.pretrained.components import Components, load_vae
from rudolph.pretrained.folder import looks_like_repo_id

__all__ = ['run']

logger = logging.getLogger('rudolph.finetune.cli')  # the command's own logger, whichever module logs


def _components(args: argparse.Namespace):
    """Model (on CPU) and tokenizer of ``--model`` with its own task tokens; the VQGAN is loaded later, and only
    if some image is not in the code cache yet."""
    overrides = {}
    if args.dropout is not None:
        overrides = dict(embedding_dropout_prob=args.dropout, attention_dropout_prob=args.dropout,
                         output_dropout_prob=args.dropout)
    return Components.from_pretrained(args.model, device='cpu', checkpoint=args.checkpoint, tokenizer=args.tokenizer,
                                      pretrained=args.checkpoint is not None or not args.resume, with_vae=False,
                                      model_kwargs=overrides)


def _train_config(args: argparse.Namespace):
    """The :class:`TrainConfig` of the training options."""
    return TrainConfig(
        out_dir=args.out, epochs=args.epochs, max_steps=args.max_steps, batch_size=args.bs, grad_accum=args.grad_accum,
        lr=args.lr, weight_decay=args.weight_decay, warmup=args.warmup, schedule=args.schedule,
        clip=args.clip or None, optimizer=args.optimizer, precision=args.precision,
        gradient_checkpointing=args.gradient_checkpointing, eval_every=args.eval_every, save_every=args.save_every,
        keep_last=args.keep_last, seed=args.seed, resume=args.resume, cpu=args.cpu, show_progress=not args.quiet,
        first_image_token=args.first_image_token)


def run(args: argparse.Namespace) -> int:
    """Run ``finetune`` with parsed ``args``; returns 0 (errors are raised with a message naming the problem)."""
    if args.task != 'auto' and args.task not in TASKS:
        raise ValueError(f'--task {args.task!r}: expected auto or one of {sorted(TASKS)}')
    # Fail before any download or expensive work on arguments that cannot work.
    if args.model not in MODELS and not os.path.exists(args.model) and not looks_like_repo_id(args.model):
        raise ValueError(f'--model {args.model!r}: expected one of {sorted(MODELS)}, a saved-model folder or a hub '
                         'repo id')
    for flag, path in (('--data', args.data), ('--eval-data', args.eval_data), ('--checkpoint', args.checkpoint)):
        if path is not None and not os.path.exists(path):
            raise FileNotFoundError(f'{flag} {path!r}: no such file')

    vae_config = json_option(args.vae_config, '--vae-config') if getattr(args, 'vae_config', None) else None
    check_writable(args.out)
    state = PartialState(cpu=args.cpu)
    device = state.device

    parts = _components(args)
    model, tokenizer = parts.model, parts.tokenizer

    def load_vae_on_device():
        return load_vae(args.model, vae=args.vae, vae_config=vae_config, device=str(device))

    def data(path: str):
        return prepare_dataset(
            path, tokenizer, load_vae_on_device, model, task=None if args.task == 'auto' else args.task,
            image_root=args.image_root or os.path.dirname(os.path.abspath(path)),
            cache_dir=args.cache_dir or os.path.join(args.out, 'cache'), missing_images=args.missing_images,
            bad_rows=args.bad_rows, spc_tokens={} if args.no_task_tokens else (parts.spc_tokens or None),
            loss_weights=dict(lt_loss_weight=args.lt_loss_weight, img_loss_weight=args.img_loss_weight,
                              rt_loss_weight=args.rt_loss_weight),
            device=device, show_progress=not args.quiet and state.is_main_process)

    # The main process encodes the images and fills the cache; the others then read it.
    with state.main_process_first():
        train_data = data(args.data)
        train_data.source = os.path.basename(args.data)  # named in the checkpoints' model card
        eval_data = data(args.eval_data) if args.eval_data else None
    if args.freeze:
        freeze(model, **{f'freeze_{g}': g in args.freeze for g in FREEZE_GROUPS})
    config = _train_config(args)
    result = train(model, train_data, config, eval_data=eval_data)
    if state.is_main_process:
        logger.info('done: %d steps, last loss %.4f, weights in %s', result.state.step,
                    result.history[-1]['loss'] if result.history else float('nan'), result.last_checkpoint)
    return 0
