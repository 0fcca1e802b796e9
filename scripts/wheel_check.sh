#!/usr/bin/env bash
# Installs a built wheel into a fresh virtual environment of PYTHON and runs `rudolph demo` from it,
# outside the source tree; with --fast also the fast test subset (scripts/fast_tests.sh) against the
# installed wheel (the `test` and `sr` extras installed beside it).
#   bash scripts/wheel_check.sh PYTHON WHEEL [--fast] [--venv DIR]
#   bash scripts/wheel_check.sh --prepare PYTHON DIR    # only create DIR with PyTorch in it (the long part)
# A DIR made by --prepare holds nothing but PyTorch (the version of requirements/ci.txt), so that CI can install
# them in the background while other work runs; the wheel and its other dependencies go in afterwards.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"

prepare() {  # PYTHON DIR
    rm -rf "$2"
    "$1" -m venv "$2"
    "$2/bin/python" -m pip install -q -U pip
    "$2/bin/python" -m pip install -q -c "$REPO/requirements/ci.txt" torch
}

if [ "${1:-}" = "--prepare" ]; then
    prepare "$2" "$3"
    exit 0
fi

PYTHON="$1"; WHEEL="$(realpath "$2")"; shift 2
FAST=0; VENV=""
while [ $# -gt 0 ]; do
    case "$1" in
        --fast) FAST=1 ;;
        --venv) VENV="$2"; shift ;;
        *) echo "wheel_check.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
if [ -z "$VENV" ]; then
    VENV="$WORK/venv"
    prepare "$PYTHON" "$VENV"
fi
VPY="$VENV/bin/python"
if [ "$FAST" = 1 ]; then
    "$VPY" -m pip install -q -c "$REPO/requirements/ci.txt" "$WHEEL[test,sr]"
else
    "$VPY" -m pip install -q -c "$REPO/requirements/ci.txt" "$WHEEL"
fi
cd "$WORK"   # outside the source tree: `import rudolph` can only be the installed wheel
"$VPY" - <<'PY'
import os, sys, rudolph
where = os.path.dirname(rudolph.__file__)
assert os.path.realpath(where).startswith(os.path.realpath(sys.prefix)), f'rudolph imported from {where}'
print(f'rudolph {rudolph.__version__} from {where} on Python {sys.version.split()[0]}')
PY
"$VENV/bin/rudolph" demo --seed 0 > "$WORK/demo.txt"
cat "$WORK/demo.txt"
grep -q '^demo finished' "$WORK/demo.txt" && test -s "$WORK/rudolph_demo/text2image.png"
if [ "$FAST" = 1 ]; then
    PYTEST="$VENV/bin/pytest" bash "$REPO/scripts/fast_tests.sh"
fi
