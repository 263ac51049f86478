#!/bin/bash
# Quickstart, as root on a fresh Debian machine: set up, make a base image if none can be
# pulled, then build, smoke-test and tag the example recipe.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-host.sh
export PATH="$PWD/.venv/bin:$PATH"
if ! docker image inspect debian:bookworm-slim >/dev/null 2>&1 \
   && ! docker pull -q debian:bookworm-slim >/dev/null 2>&1 \
   && [ -z "$(docker images -q --filter label=org.mlbuild.base.suite=bookworm)" ]; then
  echo "==> no registry reachable: making a Debian bookworm base with debootstrap"
  mlbuild base bootstrap --suite bookworm --tag mlbuild/debian:bookworm
fi
mlbuild build recipes/sklearn-cpu.yaml "$@"
