#!/bin/bash
# GPU check of an image whose CUDA framework the BUILD installed (issue 15): on the GPU machine,
# a wheelhouse is made from the machine's own torch (repack-wheels.py), an image is built on the
# framework-free base mlbuild-device/py312-host with `--offline` (PyTorch CUDA from that
# wheelhouse, framework_from_base: false), smoke-tested with `--gpu required` (arch coverage,
# matmul and cuDNN conv against the CPU, NCCL all-reduce over every GPU, a torch.distributed NCCL
# group), and `mlbuild doctor` is run. Everything it shows goes to $OUT, for
# docs/gpu-verification/<date>/: check-installed-framework.log, build.json, smoke.json,
# smoke-required.txt, doctor.json, recipe.yaml, wheelhouse.txt.
#
# Prepare here (CPU machine, project root), once per session:
#   mkdir -p .device && cp ../shared/device/*.sh ../shared/device/repack-wheels.py .device/
#   bash .device/make-bundle.sh      # Docker engine bundle + docker SDK wheel (~2 min, 45 MB)
#   (in a git worktree add /.device/ to "$(git rev-parse --git-common-dir)/info/exclude" first)
# Run there, as ONE device call (carry [".device"], timeout_s 600):
#   bash scripts/device/check-installed-framework.sh
# Stand-in run here (no GPU; CPU torch 2.13.0 cp311 from $PIP_FIND_LINKS in a venv, a base imported
# from this host's Python 3.11 the way py312-host is made there):
#   STANDIN=1 OUT=/tmp/standin-out flock /tmp/mlbuild-integration.lock bash scripts/device/check-installed-framework.sh
#
# Timings. Stand-in run here (2 cores, 2026-12-02; torch 2.13.0+cpu, closure 10 wheels, 709 MB
# stored), the whole script 139 s: base import 11 s; venv check failed as expected (Debian's
# Python without /usr/share/python-wheels: ensurepip exit 1) and the pip-wheels base 10 s;
# repack 10 s; offline build 106 s (context, pip, layers, final COPY of the venv; image 1.6 GB,
# python_bin /usr/bin/python3.11 found in the base, framework_from_base false) with its smoke;
# `smoke --gpu required` on that CPU image: exit 3 "this image has no GPU build"; doctor 1 s.
# The device's torch 2.11.0+cu130 closure is ~4.5 GB stored (torch, nvidia-*, triton), about 6x
# the stand-in's bytes, on 16 cores and a faster disk. Expected there: engine + SDK 10 s,
# py312-host import (+ pip-wheels variant if needed) 20-40 s, repack 30-80 s, build 4-7 min,
# smoke 30-60 s (CUDA init, NCCL), doctor 5 s: 6-10 min, plus the machine's start (minutes):
# about the 15 min of device time, no room for a second full run. Give the call timeout_s 600;
# the build is the step to watch (it prints its own steps).
set -uo pipefail
cd "$(dirname "$0")/../.."
: "${OUT:?set OUT to the folder whose files come back}"
mkdir -p "$OUT"
exec > >(tee "$OUT/check-installed-framework.log") 2>&1
T0=$(date +%s)
step() { echo "=== [$(($(date +%s) - T0)) s] $*"; }

STANDIN=${STANDIN:-}
if [ -n "$STANDIN" ]; then  # this CPU machine: the same steps with a CPU torch
  PY=3.11 BASE=mlbuild-standin/py311-host:latest GPU=auto
  TORCH_SITE=/tmp/standin-torch/lib/python3.11/site-packages WHEELS=/tmp/standin-wheels
  MLBUILD=(.venv/bin/python -m builder)
else
  PY=3.12 BASE=mlbuild-device/py312-host:latest GPU=required WHEELS=/tmp/wheels
  TORCH_SITE=${TORCH_SITE:-/opt/torch/.venv/lib/python3.12/site-packages}
  MLBUILD=(python3 -m builder)
  export PATH=/opt/dk/bin:/usr/local/nvidia/bin:$PATH PYTHONPATH=/tmp/site:$PWD
  export LD_LIBRARY_PATH=/opt/dk/lib:/usr/local/nvidia/lib64
fi
export PYTHONUNBUFFERED=1 MLBUILD_BUILD_NETWORK=none
REPACK=${REPACK:-$(ls .device/repack-wheels.py {,../,../../}shared/device/repack-wheels.py 2>/dev/null | head -1)}

# A base made from this machine's own Python, as ../shared/device/gpu-host-setup.sh makes
# py312-host (no shell, no python3 link, no /usr/share); extra paths after the tag.
import_host_base() {
  local tag=$1; shift
  tar -C / -c --exclude='usr/lib/x86_64-linux-gnu/dri' "usr/bin/python$PY" "usr/lib/python$PY" \
      usr/lib/x86_64-linux-gnu usr/lib64 lib64 lib bin etc/ssl etc/passwd etc/group "$@" 2>/dev/null |
    docker import -c 'ENV PATH=/usr/bin:/bin' - "$tag" >/dev/null
}

step "engine"
if [ -z "$STANDIN" ]; then  # gpu-host-setup.sh without its 7 GB torch-host import (not needed here)
  mkdir -p /opt/dk && tar -C /opt/dk -xJf .device/docker-bundle.tar.xz
  docker info >/dev/null 2>&1 || (setsid /opt/dk/bin/dockerd --iptables=false --bridge=none \
      --data-root /tmp/dockerdata >/tmp/dockerd.log 2>&1 &)
  for _ in $(seq 1 30); do docker info >/dev/null 2>&1 && break; sleep 1; done
  python3 -m pip install -q --no-index --no-deps --target /tmp/site .device/wheels/*.whl
  nvidia-smi --query-gpu=index,name,compute_cap,driver_version --format=csv
fi
docker info 2>/dev/null | grep -E "Server Version|Storage Driver" || { echo "no Docker engine"; exit 1; }
[ -n "$REPACK" ] || { echo "repack-wheels.py not found: cp ../shared/device/repack-wheels.py .device/"; exit 1; }
if [ -n "$STANDIN" ] && [ ! -d "${TORCH_SITE}/torch" ]; then
  step "stand-in torch venv (no such step on the device)"
  python3 -m venv /tmp/standin-torch && /tmp/standin-torch/bin/pip install -q "$(ls "${PIP_FIND_LINKS:-/opt/wheels}"/torch-*.whl | head -1)"
fi

[ -d "$TORCH_SITE/torch" ] || { echo "no torch in $TORCH_SITE: set TORCH_SITE to the machine's site-packages"; exit 1; }
step "base $BASE (framework-free, the machine's Python $PY)"
docker image inspect "$BASE" >/dev/null 2>&1 || import_host_base "$BASE"
docker run --rm --network none --entrypoint "python$PY" "$BASE" -c "import sys; print(sys.executable, sys.version.split()[0])"
# The build makes its venv with pip (ensurepip); Debian/Ubuntu keep ensurepip's wheels in
# /usr/share/python-wheels, which the host-imported base leaves out: add them if so.
if ! docker run --rm --network none --entrypoint "python$PY" "$BASE" -m venv /tmp/v; then
  BASE=${BASE%:*}:pip-wheels
  step "its Python cannot make a venv with pip: $BASE adds /usr/share/python-wheels"
  ls /usr/share/python-wheels || { echo "no /usr/share/python-wheels on this machine either"; exit 1; }
  import_host_base "$BASE" usr/share/python-wheels
  docker run --rm --network none --entrypoint "python$PY" "$BASE" -m venv /tmp/v || exit 1
fi

step "wheelhouse from the machine's torch ($TORCH_SITE)"
rm -rf "$WHEELS" && python3 "$REPACK" "$TORCH_SITE" "$WHEELS" torch | tee "$OUT/wheelhouse.txt"
du -sh "$WHEELS"
# the release and CUDA of the machine's torch, from its version.py (no import: no GPU needed)
read -r TORCH VERSION CUDA < <(python3 - "$TORCH_SITE/torch/version.py" <<'P'
import re, sys
text = open(sys.argv[1]).read()
full = re.search(r"__version__\s*=\s*['\"]([^'\"]+)", text).group(1)
cuda = re.search(r"^cuda(?::[^=]*)?=\s*['\"]?([0-9.]+|None)", text, re.M)
cuda = cuda.group(1) if cuda and cuda.group(1) != "None" else "cpu"
print(full, full.split("+")[0], ".".join(cuda.split(".")[:2]) if cuda != "cpu" else cuda)
P
)
echo "torch $TORCH: framework_version ==$VERSION, cuda $CUDA"

step "build (--offline, installed by the build, --gpu $GPU)"
mkdir -p /tmp/installed && cat > /tmp/installed/recipe.yaml <<R
name: torch-installed
framework: pytorch
framework_version: "==$VERSION"
python: "$PY"
cuda: "$CUDA"
smoke: {gpu: $GPU}
image: {repository: mlbuild/torch-installed, tags: [check]}
R
cp /tmp/installed/recipe.yaml "$OUT/recipe.yaml"
time "${MLBUILD[@]}" build /tmp/installed/recipe.yaml --offline --wheelhouse "$WHEELS" --base-image "$BASE" \
    --network none --gpu "$GPU" --json > "$OUT/build.json"
echo "build rc=$?"
python3 - "$OUT/build.json" <<'P'
import json, sys
try:
    d = json.load(open(sys.argv[1]))
except ValueError:
    sys.exit("no build JSON")
s = d["spec"]
print({k: s[k] for k in ("framework_version", "cuda", "python_bin", "python_from", "framework_from_base", "packages")})
print("image", d["image_id"][:19], d["tags"], f"{d['size_bytes'] / 1e9:.2f} GB", f"{d['seconds']} s")
print("gpu", json.dumps(d["smoke"]["gpu"]))
for c in d["smoke"]["checks"]:
    print(f"{c['status']:8} {c['name']}: {c['detail']}")
P

step "smoke --gpu required (a CPU build, the stand-in's, must exit 3: never pass)"
"${MLBUILD[@]}" smoke mlbuild/torch-installed:check --gpu required 2>&1 | tee "$OUT/smoke-required.txt"
echo "smoke rc=${PIPESTATUS[0]}"
"${MLBUILD[@]}" smoke mlbuild/torch-installed:check --gpu required --json > "$OUT/smoke.json"

step "doctor"
"${MLBUILD[@]}" doctor; "${MLBUILD[@]}" doctor --json > "$OUT/doctor.json"
step "done"
