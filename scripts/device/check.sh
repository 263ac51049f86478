#!/bin/bash
# GPU verification on the device machine: run from the repo root, reports go to $OUT.
set -uo pipefail
exec > >(tee "$OUT/check.log") 2>&1
bash .device/gpu-host-setup.sh
export PATH=/opt/dk/bin:/usr/local/nvidia/bin:$PATH PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
export LD_LIBRARY_PATH=/opt/dk/lib:/usr/local/nvidia/lib64
export MLBUILD_BUILD_NETWORK=none
nvidia-smi --query-gpu=index,name,compute_cap,driver_version --format=csv
echo "=== doctor"; python3 -m builder doctor; python3 -m builder doctor --json > "$OUT/doctor.json"
mkdir -p /tmp/r && cat > /tmp/r/recipe.yaml <<'R'
name: torch-gpu-check
framework: pytorch
framework_from_base: true
base_image: mlbuild-device/torch-host:latest
smoke: {gpu: required}
image: {repository: mlbuild/torch-gpu-check, tags: [check]}
R
echo "=== build (framework_from_base, --gpu required)"
time python3 -m builder build /tmp/r/recipe.yaml --network none --gpu required --json > "$OUT/build.json"; echo "build rc=$?"
[ -s "$OUT/build.json" ] && python3 -c "import json; d=json.load(open('$OUT/build.json')); print({k: d[k] for k in ('image_id','tags','size_bytes')}); print(json.dumps(d['smoke']['gpu'], indent=1)); [print(c['status'], c['name'], c['detail']) for c in d['smoke']['checks']]"
echo "=== smoke --gpu required"
python3 -m builder smoke mlbuild/torch-gpu-check:check --gpu required; echo "smoke rc=$?"
python3 -m builder smoke mlbuild/torch-gpu-check:check --gpu required --json > "$OUT/smoke.json"
echo "=== forced toolkit mode (no toolkit here): expect exit 3, no traceback"
python3 -m builder smoke mlbuild/torch-gpu-check:check --gpu required --gpu-access toolkit; echo "toolkit rc=$?"
echo "=== plain docker run of the probe (teammate view)"
docker run --rm --network none --user 10001 --device /dev/nvidia0 --device /dev/nvidiactl --device /dev/nvidia-uvm -v /usr/local/nvidia:/usr/local/nvidia:ro -e LD_LIBRARY_PATH=/usr/local/nvidia/lib64 mlbuild/torch-gpu-check:check python /opt/mlbuild/probe.py --gpu required | python3 -c "import json,sys; d=json.load(sys.stdin); print('ok', d['ok'], 'gpu', d['gpu']['status'], d['gpu'].get('devices'))"
echo "=== preflight: torch 1.13 cu117 on this GPU (expect exit 2 before any build)"
mkdir -p /tmp/old && printf 'name: old-torch\nframework: pytorch\nframework_version: "1.13"\ncuda: "11.7"\n' > /tmp/old/recipe.yaml
python3 -m builder build /tmp/old/recipe.yaml; echo "preflight rc=$?"
echo "=== pytest tests/gpu"
python3 -m pytest tests/gpu -m gpu -q -p no:cacheprovider 2>&1 | tail -15
