"""Fine-tuning RuDOLPH on your own data: captioning, VQA, text QA, text-to-image.

Python::

    from rudolph.finetune import TrainConfig, freeze, prepare_dataset, train
    data = prepare_dataset('captions.jsonl', tokenizer, vae, model, task='i2t', image_root='images/')
    freeze(model)  # attention and feed-forward frozen, as in the original notebooks
    train(model, data, TrainConfig(out_dir='out', epochs=3, lr=1e-4))

Command line: ``rudolph finetune --model 350M --data captions.jsonl --out out`` (or
``python -m rudolph.finetune ...``), and ``accelerate launch -m rudolph.finetune ...`` on many GPUs.
"""
from rudolph._lazy import lazy_exports

_EXPORTS = {
    'DEFAULT_SPC_TOKENS': ('.data', 'DEFAULT_SPC_TOKENS'),
    'TASKS': ('.rows', 'TASKS'),
    'DataError': ('.data', 'DataError'),
    'EncodedDataset': ('.batching', 'EncodedDataset'),
    'ImageCodeCache': ('.data', 'ImageCodeCache'),
    'TaskBatchSampler': ('.batching', 'TaskBatchSampler'),
    'TaskSpec': ('.rows', 'TaskSpec'),
    'collate': ('.batching', 'collate'),
    'encode_task_text': ('.data', 'encode_task_text'),
    'infer_task': ('.rows', 'infer_task'),
    'prepare_dataset': ('.data', 'prepare_dataset'),
    'preprocess_image': ('.data', 'preprocess_image'),
    'read_rows': ('.rows', 'read_rows'),
    'freeze': ('.freeze', 'freeze'),
    'parameter_group': ('.freeze', 'parameter_group'),
    'NonFiniteLossError': ('.config', 'NonFiniteLossError'),
    'TrainConfig': ('.config', 'TrainConfig'),
    'Trainer': ('.trainer', 'Trainer'),
    'TrainResult': ('.config', 'TrainResult'),
    'TrainState': ('.config', 'TrainState'),
    'check_writable': ('.checkpoints', 'check_writable'),
    'evaluate': ('.trainer', 'evaluate'),
    'find_checkpoint': ('.checkpoints', 'find_checkpoint'),
    'train': ('.trainer', 'train'),
}
__all__ = list(_EXPORTS)
__getattr__ = lazy_exports(__name__, globals(), _EXPORTS)
