"""Every RuDOLPH task, written once over a model's :class:`Parts`: text-to-image with reranking,
captioning, VQA, texts, zero-shot classification, embeddings, and their batched forms
(:mod:`rudolph.tasks.batched`, as lists or streams)."""
from rudolph.tasks.core import *  # noqa: F401,F403
from rudolph.tasks.core import __all__  # noqa: F401
