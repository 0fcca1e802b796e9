"""Run a job: inputs -> DataLoader batches -> the job's batched task -> records appended to the output.

On one process the records go straight to the output. Under ``accelerate launch`` (``WORLD_SIZE``
> 1) the pending inputs are split between the processes with
``PartialState().split_between_processes`` (contiguous shares, in input order), process ``K``
appends to ``<out>.part-K`` and the main process merges everything into the output in input
order, so the file is the same as a one-process run's. ``resume`` skips every key already in
the output (or in parts left by a killed multi-process run); bad inputs go to
``<out>.errors.jsonl`` with the reason.
"""
import logging
import os
import time
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Set

from tqdm.auto import tqdm

from rudolph.errors import ConfigError, InputError
from rudolph.jobs.data import ImageDataset, Loaded, make_loader
from rudolph.jobs.inputs import Item
from rudolph.jobs.output import (
    Format,
    RecordWriter,
    errors_path,
    format_for,
    merge,
    part_path,
    part_paths,
    read_records,
    read_settings,
    repair,
    settings_differences,
    write_settings,
)

__all__ = ['Summary', 'ProcessState', 'process_state', 'run_job', 'ERROR_COLUMNS']

logger = logging.getLogger(__name__)
ERROR_COLUMNS = ('key', 'path', 'error')


@dataclass
class Summary:
    """What a run did: inputs ``done`` now, ``skipped`` (already in the output), ``failed``, wall ``seconds``."""
    done: int
    skipped: int
    failed: int
    seconds: float

    @property
    def items_per_s(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> Dict[str, Any]:
        return {**asdict(self), 'items_per_s': self.items_per_s}

    def line(self) -> str:
        return (f'done {self.done}, skipped {self.skipped}, failed {self.failed}, {self.seconds:.1f} s, '
                f'{self.items_per_s:.2f} items/s')


class ProcessState:
    """One process (no ``accelerate``): rank 0 of 1."""
    rank, world, device = 0, 1, None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wait(self) -> None:
        """All processes reach this point before any goes on."""

    def split(self, items: List[Item]) -> List[Item]:
        return items

    def gather(self, obj: Any) -> List[Any]:
        return [obj]


class AccelerateState(ProcessState):
    """The processes of ``accelerate launch`` (``accelerate.PartialState``)."""

    def __init__(self):
        from accelerate import PartialState

        self._state = PartialState()
        self.rank, self.world, self.device = self._state.process_index, self._state.num_processes, self._state.device

    def wait(self) -> None:
        self._state.wait_for_everyone()

    def split(self, items: List[Item]) -> List[Item]:
        with self._state.split_between_processes(items) as share:
            return list(share)

    def gather(self, obj: Any) -> List[Any]:
        from accelerate.utils import gather_object

        return gather_object([obj])


def process_state() -> ProcessState:
    """The processes of this run: several under ``accelerate launch`` / ``torchrun``, else this one."""
    return AccelerateState() if int(os.environ.get('WORLD_SIZE', '1')) > 1 else ProcessState()


def check_output(out: str, resume: bool, overwrite: bool) -> None:
    """Refuse to append to an output that exists unless ``resume`` (or ``overwrite``) says what to do."""
    if resume and overwrite:
        raise ConfigError('--resume and --overwrite exclude each other')
    folder = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(folder):
        raise ConfigError(f'--out {out!r}: the folder {folder} does not exist')
    existing = [p for p in [out] + part_paths(out) if os.path.exists(p) and os.path.getsize(p) > 0]
    if existing and not (resume or overwrite):
        raise ConfigError(f'--out {out!r} already exists ({existing[0]}); pass --resume to continue it or '
                          '--overwrite to start again')


def _prepare_files(out: str, fmt: Format, resume: bool, overwrite: bool) -> None:
    """Main process: torn last lines cut (resume) or old outputs removed (overwrite); errors start afresh."""
    for path in [out] + part_paths(out):
        if overwrite and os.path.exists(path):
            os.remove(path)
        elif resume and repair(path):
            logger.warning('%s: its last line was torn (a killed run); it is rewritten', path)
    errors = errors_path(out)
    for path in [errors] + part_paths(errors):
        if os.path.exists(path):
            os.remove(path)


def check_resume_settings(job, out: str, settings: Mapping[str, Any]) -> None:
    """Refuse to resume an output written by another job or with other ``settings`` (each difference named),
    or one without a settings record (an older rudolph or another program: nothing says what it holds)."""
    path = job.settings_path(out)
    old = read_settings(path)
    if old is None:
        found = [p for p in job.output_files(out) + part_paths(out) if os.path.exists(p) and os.path.getsize(p)]
        if found:
            raise ConfigError(f'--resume: {found[0]} has no settings record ({path}), e.g. it was written by an '
                              'older rudolph, so nothing says it was made by this job with these settings; pass '
                              '--overwrite to start it again (or move it away and run without --resume)')
        return
    differences = settings_differences(old, settings)
    if differences:
        raise ConfigError(f'--resume: {out} was written with other settings: {"; ".join(differences)}. Resume with '
                          'the settings it was written with, or pass --overwrite to start it again')


def _done_keys(out: str, fmt: Format) -> Set[str]:
    return {key for path in [out] + part_paths(out) for key, _, _ in read_records(path, fmt)}


def _run_batch(job, items: List[Item], images: List[Any]) -> tuple:
    """``(records, errors)``: the batch at once; if an input is refused, each input alone."""
    try:
        return job.run(items, images), []
    except InputError:
        if len(items) == 1:
            raise
    records, errors = [], []
    for item, image in zip(items, images):
        try:
            records.extend(job.run([item], [image]))
        except InputError as error:
            errors.append(dict(key=item.key, path=item.path, error=f'{type(error).__name__}: {error}'))
    return records, errors


def _split_loaded(batch: Sequence[Loaded], items: Sequence[Item]):
    from PIL import Image

    good, images, errors = [], [], []
    for loaded in batch:
        item = items[loaded.index]
        if loaded.error is not None:
            errors.append(dict(key=item.key, path=item.path, error=loaded.error))
            continue
        good.append(item)
        images.append(None if loaded.image is None else Image.fromarray(loaded.image, 'RGB'))
    return good, images, errors


def _process(job, items: List[Item], target: str, errors_target: str, fmt: Format, bs: int, workers: int,
             progress: bool) -> Dict[str, int]:
    """This process's share: every batch's records appended to ``target`` (fsynced) as soon as it is done."""
    counts = dict(done=0, failed=0)
    if not items:
        return counts
    loader = make_loader(ImageDataset(items, job.image_size, job.needs_text), bs, workers)
    error_fmt = Format(ERROR_COLUMNS)
    with RecordWriter(target, fmt.header()) as writer, RecordWriter(errors_target) as error_writer, \
            tqdm(total=len(items), unit='item', desc=job.name, disable=not progress, dynamic_ncols=True) as bar:
        for batch in loader:
            good, images, errors = _split_loaded(batch, items)
            records, refused = _run_batch(job, good, images) if good else ([], [])
            writer.write([fmt.encode(r) for r in records])
            error_writer.write([error_fmt.encode(e) for e in errors + refused])
            counts['done'] += len(records)
            counts['failed'] += len(errors) + len(refused)
            bar.update(len(batch))
    return counts


def _finish(job, out: str, items: Sequence[Item], fmt: Format, world: int) -> None:
    """Main process: parts (and a resumed output) merged in input order; errors likewise."""
    order = {item.key: i for i, item in enumerate(items)}
    parts = part_paths(out)
    keys = [key for key, _, _ in read_records(out, fmt)]
    in_order = keys == sorted(keys, key=lambda k: order.get(k, len(order)))
    if not os.path.exists(out) or parts or not in_order:
        merge(out, [out] + parts, fmt, order)
        for path in parts:
            os.remove(path)
    errors = errors_path(out)
    error_parts = part_paths(errors)
    if error_parts:
        merge(errors, [errors] + error_parts, Format(ERROR_COLUMNS), order)
        for path in error_parts:
            os.remove(path)
    job.finish(out, items)


def run_job(job, items: Sequence[Item], out: str, *, resume: bool = False, overwrite: bool = False, bs: int = 8,
            workers: int = 0, progress: bool = True, state: Optional[ProcessState] = None,
            settings: Optional[Mapping[str, Any]] = None) -> Summary:
    """Run ``job`` over ``items`` into ``out`` (JSONL or CSV by its extension); see the module.

    The job's kind and settings (:meth:`Job.settings_record`), with ``settings`` (e.g. the model), are
    stored beside the output (:func:`rudolph.jobs.output.settings_path`); ``resume`` must match them."""
    start = time.perf_counter()
    state = state or process_state()
    fmt = format_for(out, job.columns)
    check_output(out, resume, overwrite)
    record = {**job.settings_record(), **(settings or {})}
    if resume:  # every process reads the record: all refuse together
        check_resume_settings(job, out, record)
    state.wait()
    if state.is_main:
        _prepare_files(out, fmt, resume, overwrite)
        if not (resume and read_settings(job.settings_path(out))):
            write_settings(job.settings_path(out), record)
        job.prepare(out, resume, overwrite)
    state.wait()
    done = _done_keys(out, fmt) if resume else set()
    pending = [item for item in items if item.key not in done]
    share = state.split(pending)
    one = state.world == 1
    counts = _process(job, share, out if one else part_path(out, state.rank),
                      errors_path(out) if one else part_path(errors_path(out), state.rank), fmt, bs, workers,
                      progress and state.is_main)
    state.wait()
    if state.is_main:
        _finish(job, out, items, fmt, state.world)
    state.wait()
    totals = state.gather(counts)
    return Summary(sum(c['done'] for c in totals), len(items) - len(pending), sum(c['failed'] for c in totals),
                   time.perf_counter() - start)
