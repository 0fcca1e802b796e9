#!/usr/bin/env bash
# CI helper: a fresh virtual environment with PyTorch for each Python, one after the other (pip's cache
# then downloads the CUDA libraries that PyTorch wheels of every Python share once). For each VERSION
# it leaves WORK/venv-VERSION and WORK/ready-VERSION, or WORK/failed-VERSION and stops.
#   bash scripts/prepare_envs.sh WORK VERSION=PYTHON...
set -uo pipefail
WORK="$1"; shift
for spec in "$@"; do
    v="${spec%%=*}"; python="${spec#*=}"
    if bash "$(dirname "$0")/wheel_check.sh" --prepare "$python" "$WORK/venv-$v" > "$WORK/prepare-$v.log" 2>&1; then
        touch "$WORK/ready-$v"
    else
        touch "$WORK/failed-$v"
        exit 1
    fi
done
