#!/usr/bin/env bash
# Installs what tests/app/test_app_browser.py drives: Debian's headless Chromium (no browser download by
# Playwright) and the Python packages of the web app and its browser test. Idempotent: run it again at will.
# Usage: bash scripts/install_browser.sh [PYTHON]   (default: python3; as root, or with sudo available)
set -euo pipefail
PYTHON="${1:-python3}"

if ! command -v chromium >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core
fi

# gradio for the app, playwright's Python client for the test (it drives /usr/bin/chromium through
# executable_path, so `playwright install` is never run)
"$PYTHON" -m pip install -q -c "$(dirname "$0")/../requirements/ci.txt" 'gradio>=6' 'playwright>=1.40'

chromium --version
"$PYTHON" -c "import gradio, playwright; print('gradio', gradio.__version__)"
