"""Files and downloads: safe torch loading and atomic writes (:mod:`~rudolph.io.files`), output file
names and write errors (:mod:`~rudolph.io.paths`), safetensors (:mod:`~rudolph.io.safetensors`), hub
downloads (:mod:`~rudolph.io.hub`) and JSONL tables (:mod:`~rudolph.io.tables`). The lowest layer
after :mod:`rudolph.errors`: it imports no other part of the package."""
