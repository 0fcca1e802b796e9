#!/usr/bin/env bash
# The fast subset of the test suite (what CI runs on the Pythons other than the full-suite one):
# the model, engine, task, API, pipeline, codec, security, super-resolution and packaging tests,
# without the tests marked `slow` (wheel builds). Left out: the demo's evaluation, fine-tuning runs,
# the notebooks, the command line and README runs (the wheel check runs `rudolph demo` instead) and
# the tokenizer / VQGAN oracle parity (test-only packages that do not build on every Python).
# Runs with the pytest of the active Python (`pytest`, not `python -m pytest`, so an installed wheel
# is what `import rudolph` finds; the variable PYTEST overrides it). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
FAST_TESTS=(
    tests/test_api.py tests/tasks/test_codec.py tests/pretrained/test_components.py tests/generation/test_engine.py
    tests/test_image_prompts.py tests/model/test_model.py tests/test_pins.py tests/test_pipelines.py
    tests/generation/test_sampling.py tests/io/test_security.py tests/tasks/test_tasks.py tests/test_superres.py
    tests/test_packaging.py
)
PYTEST="${PYTEST:-pytest}"
"$PYTEST" "${FAST_TESTS[@]}" -q -n 2 -m "not slow" -p no:cacheprovider "$@"
