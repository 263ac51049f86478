#!/bin/bash
# The test suite: unit tests and integration tests on the real Docker engine and registries.
# GPU tests (tests/gpu) run only where an NVIDIA GPU is present.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-host.sh
# The venv's tools (hadolint, actionlint, ruff ...) first on PATH: the tests run them, and a
# missing one fails a test rather than skipping it (tests/required_tools.py).
export PATH="$PWD/.venv/bin:$PATH"
echo "==> ruff and mypy"
.venv/bin/ruff check builder tests benchmarks scripts
.venv/bin/mypy
exec .venv/bin/python -m pytest -q "$@"
