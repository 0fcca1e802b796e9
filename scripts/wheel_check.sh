#!/usr/bin/env bash
# Installs a built wheel into a fresh virtual environment of PYTHON and runs `rudolph demo` from it,
# outside the source tree; with --fast also the fast test subset (scripts/fast_tests.sh) against the
# installed wheel (the `test` and `sr` extras installed beside it).
#   bash scripts/wheel_check.sh PYTHON WHEEL [--fast]
set -euo pipefail
PYTHON="$1"; WHEEL="$(realpath "$2")"; MODE="${3:-}"
REPO="$(cd "$(dirname "$0")/.." && pwd)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
"$PYTHON" -m venv "$WORK/venv"
VPY="$WORK/venv/bin/python"
"$VPY" -m pip install -q -U pip
if [ "$MODE" = "--fast" ]; then
    "$VPY" -m pip install -q "$WHEEL[test,sr]"
else
    "$VPY" -m pip install -q "$WHEEL"
fi
cd "$WORK"   # outside the source tree: `import rudolph` can only be the installed wheel
"$VPY" - <<'PY'
import os, sys, rudolph
where = os.path.dirname(rudolph.__file__)
assert os.path.realpath(where).startswith(os.path.realpath(sys.prefix)), f'rudolph imported from {where}'
print(f'rudolph {rudolph.__version__} from {where} on Python {sys.version.split()[0]}')
PY
"$WORK/venv/bin/rudolph" demo --seed 0 > "$WORK/demo.txt"
cat "$WORK/demo.txt"
grep -q '^demo finished' "$WORK/demo.txt" && test -s "$WORK/rudolph_demo/text2image.png"
if [ "$MODE" = "--fast" ]; then
    PYTEST="$WORK/venv/bin/pytest" bash "$REPO/scripts/fast_tests.sh"
fi
