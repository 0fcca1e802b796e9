#!/usr/bin/env bash
# Refreshes requirements/ci.txt: every dependency of the package with its test, docs and optional extras,
# resolved once for Python 3.10-3.13 (all platforms). torch stays at or below 2.14.1 (the release CI machines
# serve from local disk).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q uv
printf 'torch<=2.14.1\ntorchvision<=0.29.1\n' > "${TMPDIR:-/tmp}/rudolph-lock-caps.txt"
python -m uv pip compile pyproject.toml --extra test --extra docs --extra sr --extra app \
    --universal --python-version 3.10 \
    -c "${TMPDIR:-/tmp}/rudolph-lock-caps.txt" --no-header --quiet -o requirements/ci.txt
echo "requirements/ci.txt: $(grep -c '==' requirements/ci.txt) pins"
