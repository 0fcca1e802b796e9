#!/usr/bin/env bash
# Builds the sdist and the wheel into DIST (default dist/) with the active Python and checks them with twine.
# Needs `build`, `twine` and setuptools>=77 in the active Python (the `test` extra has them): no build
# isolation, so nothing is downloaded. The source tree is copied first, so it gets no build/ or egg-info.
set -euo pipefail
cd "$(dirname "$0")/.."
DIST="$(realpath -m "${1:-dist}")"
SRC="$(mktemp -d)"
trap 'rm -rf "$SRC"' EXIT
# the files git tracks (plus new ones not ignored); a tree without git: everything but the usual debris
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git ls-files -z --cached --others --exclude-standard | xargs -0 -I{} cp --parents {} "$SRC" 2>/dev/null || true
else
    tar --exclude=.git --exclude=.venv --exclude=build --exclude=dist --exclude='*.egg-info' \
        --exclude=__pycache__ -cf - . | tar -xf - -C "$SRC"
fi
mkdir -p "$DIST"
rm -f "$DIST"/rudolph_hypermodal-*
python -m build --no-isolation --outdir "$DIST" "$SRC" > "$DIST/build.log" 2>&1 || { cat "$DIST/build.log"; exit 1; }
python -m twine check --strict "$DIST"/rudolph_hypermodal-*
ls -l "$DIST"/rudolph_hypermodal-*
