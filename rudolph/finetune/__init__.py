"""Fine-tuning RuDOLPH on your own data: captioning, VQA, text QA, text-to-image.

Python::

    from rudolph.finetune import TrainConfig, freeze, prepare_dataset, train
    data = prepare_dataset('captions.jsonl', tokenizer, vae, model, task='i2t', image_root='images/')
    freeze(model)  # attention and feed-forward frozen, as in the original notebooks
    train(model, data, TrainConfig(out_dir='out', epochs=3, lr=1e-4))

Command line: ``rudolph finetune --model 350M --data captions.jsonl --out out`` (or
``python -m rudolph.finetune ...``), and ``accelerate launch -m rudolph.finetune ...`` on many GPUs.
"""
from .data import (DEFAULT_SPC_TOKENS, TASKS, DataError, EncodedDataset, ImageCodeCache, TaskBatchSampler, TaskSpec,
                   collate, encode_task_text, infer_task, prepare_dataset, preprocess_image, read_rows)
from .freeze import freeze, parameter_group
from .trainer import (NonFiniteLossError, TrainConfig, Trainer, TrainResult, TrainState, check_writable, evaluate,
                      find_checkpoint, train)

__all__ = [
    'DEFAULT_SPC_TOKENS', 'TASKS', 'TaskSpec', 'DataError', 'EncodedDataset', 'ImageCodeCache', 'TaskBatchSampler',
    'collate', 'encode_task_text', 'infer_task', 'prepare_dataset', 'preprocess_image', 'read_rows',
    'freeze', 'parameter_group',
    'TrainConfig', 'Trainer', 'TrainResult', 'TrainState', 'NonFiniteLossError', 'train', 'evaluate', 'find_checkpoint',
    'check_writable',
]

