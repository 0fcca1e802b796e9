"""Dataset-scale jobs: many inputs through a batched task into a resumable JSONL/CSV output.

- :mod:`rudolph.jobs.inputs`: a folder (recursive), a glob, a text file of paths, a JSONL/CSV
  table or a prompts file -> :class:`~rudolph.jobs.inputs.Item` rows with stable keys.
- :mod:`rudolph.jobs.data`: a ``DataLoader`` whose worker processes decode and preprocess pictures.
- :mod:`rudolph.jobs.output`: JSONL/CSV records appended per batch (flushed, fsynced), torn
  last lines repaired, resume keys, merging the parts of several processes.
- :mod:`rudolph.jobs.runner`: batches -> a job's batched task -> the output, on one process or
  several under ``accelerate launch``.
- :mod:`rudolph.jobs.specs`: the jobs (caption, vqa, classify, embed, text2image).
- :mod:`rudolph.jobs.evaluate`: zero-shot and linear-probe evaluation of an ImageFolder.

Nothing here is imported by ``import rudolph``; torch is imported only by the modules that need it.
"""
