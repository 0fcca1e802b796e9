"""Fine-tuning batches: the encoded dataset, its collate function and the one-task-per-batch sampler."""
import hashlib
import json
import random
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence

import torch
from torch.utils.data import Dataset, Sampler

__all__ = ['EncodedDataset', 'collate', 'TaskBatchSampler']


class EncodedDataset(Dataset):
    """Fixed-length token sequences ready for training: items ``{'input_ids': LongTensor[S], 'task': str}``.

    ``weights`` maps each task to its loss weights (``lt_loss_weight``, ``img_loss_weight``,
    ``rt_loss_weight``); :func:`collate` attaches them to every batch.
    """

    def __init__(self, input_ids: torch.Tensor, tasks: Sequence[str], weights: Mapping[str, Mapping[str, float]]):
        if input_ids.dim() != 2 or len(tasks) != input_ids.shape[0]:
            raise ValueError(f'expected input_ids [n, S] and n tasks, got {tuple(input_ids.shape)} and {len(tasks)} tasks')
        missing = sorted(set(tasks) - set(weights))
        if missing:
            raise ValueError(f'no loss weights for tasks {missing}; weights given for {sorted(weights)}')
        self.input_ids = input_ids
        self.tasks = list(tasks)
        self.weights = {k: dict(v) for k, v in weights.items()}

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def fingerprint(self) -> str:
        """SHA-256 of the token ids, tasks and loss weights: what a resumed run must train on again."""
        digest = hashlib.sha256(self.input_ids.detach().cpu().contiguous().numpy().tobytes())
        digest.update(json.dumps([self.tasks, self.weights], sort_keys=True).encode('utf-8'))
        return digest.hexdigest()

    def __getitem__(self, index: int) -> Dict[str, Any]:
        return {'input_ids': self.input_ids[index], 'task': self.tasks[index]}


def collate(items: Sequence[Mapping[str, Any]], weights: Optional[Mapping[str, Mapping[str, float]]] = None) -> Dict[str, Any]:
    """Stack a batch of one task: ``{'input_ids': [b, S], 'task': str, 'weights': {...}}``."""
    tasks = {item['task'] for item in items}
    if len(tasks) != 1:
        raise ValueError(f'a batch must hold a single task (its loss weights apply to the whole batch), got {sorted(tasks)}; '
                         'use TaskBatchSampler')
    task = tasks.pop()
    batch = {'input_ids': torch.stack([item['input_ids'] for item in items]), 'task': task}
    if weights is not None:
        batch['weights'] = dict(weights[task])
    return batch


class TaskBatchSampler(Sampler[List[int]]):
    """Batches that each hold one task, reshuffled every epoch from ``(seed, epoch)``.

    Deterministic, so a resumed run sees exactly the batches the interrupted one would have.
    The last, smaller batch of each task is kept unless ``drop_last``.
    """

    def __init__(self, tasks: Sequence[str], batch_size: int, shuffle: bool = True, seed: int = 0,
                 drop_last: bool = False):
        if batch_size < 1:
            raise ValueError(f'batch_size must be >= 1, got {batch_size}')
        self.tasks = list(tasks)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def batches(self) -> List[List[int]]:
        rng = random.Random(self.seed * 1_000_003 + self.epoch)
        groups: Dict[str, List[int]] = {}
        for i, task in enumerate(self.tasks):
            groups.setdefault(task, []).append(i)
        batches = []
        for task in sorted(groups):
            indices = groups[task]
            if self.shuffle:
                rng.shuffle(indices)
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start:start + self.batch_size]
                if len(chunk) == self.batch_size or not self.drop_last:
                    batches.append(chunk)
        if self.shuffle:
            rng.shuffle(batches)
        return batches

    def __iter__(self) -> Iterator[List[int]]:
        return iter(self.batches())

    def __len__(self) -> int:
        return len(self.batches())
