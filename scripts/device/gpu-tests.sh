#!/bin/bash
set -uo pipefail
export PATH=/opt/dk/bin:/usr/local/nvidia/bin:$PATH PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
export LD_LIBRARY_PATH=/opt/dk/lib:/usr/local/nvidia/lib64 MLBUILD_BUILD_NETWORK=none
docker info >/dev/null 2>&1 || bash .device/gpu-host-setup.sh
python3 -m pytest tests/gpu -m gpu -v -p no:cacheprovider 2>&1 | tee "$OUT/pytest-gpu.log" | tail -12
