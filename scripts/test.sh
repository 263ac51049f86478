#!/bin/bash
# The test suite: unit tests and integration tests on the real Docker engine and registries.
# GPU tests (tests/gpu) run only where an NVIDIA GPU is present.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-host.sh
echo "==> ruff and mypy"
.venv/bin/ruff check builder tests benchmarks scripts
.venv/bin/mypy
exec .venv/bin/python -m pytest -q "$@"
