"""Loaded models and saved-model folders: :class:`~rudolph.pretrained.components.Components` (model,
tokenizer, VQGAN, task tokens loaded together), the folder format (:mod:`~rudolph.pretrained.folder`),
where parts come from (:mod:`~rudolph.pretrained.sources`), the model card and publishing
(:mod:`~rudolph.pretrained.publish`)."""
