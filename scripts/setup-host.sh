#!/bin/bash
# Set up a Debian machine for mlbuild, as root: the Debian packages it uses (Docker engine,
# debootstrap, registry server and tools for the tests, QEMU user emulation for arm64 images on
# an x86_64 host), a virtual environment at .venv with mlbuild installed, and a running Docker
# engine. Safe to run again: it does only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v docker-registry >/dev/null || need+=(docker-registry)
command -v htpasswd >/dev/null || need+=(apache2-utils)
command -v skopeo >/dev/null || need+=(skopeo)
command -v openssl >/dev/null || need+=(openssl)
command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)
command -v ip >/dev/null || need+=(iproute2)
command -v iptables >/dev/null || need+=(iptables)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
if [ "$(uname -m)" != aarch64 ]; then  # linux/arm64 images: built and smoke-tested under QEMU
  command -v qemu-aarch64-static >/dev/null || need+=(qemu-user-static)
  command -v update-binfmts >/dev/null || need+=(binfmt-support)
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "==> installing Debian packages: ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

if [ "$(uname -m)" != aarch64 ]; then
  binfmt=/proc/sys/fs/binfmt_misc
  [ -e $binfmt/register ] || mount -t binfmt_misc binfmt_misc $binfmt
  if ! grep -qx enabled $binfmt/qemu-aarch64 2>/dev/null; then
    echo "==> enabling QEMU emulation of aarch64 (binfmt_misc)"
    update-binfmts --enable qemu-aarch64
  fi
  grep -qx enabled $binfmt/qemu-aarch64 || { echo "binfmt_misc: qemu-aarch64 is not enabled" >&2; exit 1; }
fi

if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  python3 -m venv .venv
fi
if ! .venv/bin/python -c 'import builder, pytest, hypothesis' 2>/dev/null \
   || [ pyproject.toml -nt .venv/.mlbuild-installed ]; then
  echo "==> installing mlbuild and its test tools into .venv"
  .venv/bin/pip install -q -e '.[test]'
  touch .venv/.mlbuild-installed
fi

if ! docker info >/dev/null 2>&1; then
  echo "==> starting the Docker engine (log: /var/log/mlbuild-dockerd.log)"
  # a bridge left without its address (by another daemon started with --bridge none) stops dockerd
  setsid dockerd >/var/log/mlbuild-dockerd.log 2>&1 < /dev/null &
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { tail -20 /var/log/mlbuild-dockerd.log; echo "dockerd did not start" >&2; exit 1; }
fi
echo "==> ready: $(docker version --format 'Docker engine {{.Server.Version}}'), $(.venv/bin/mlbuild --version)"
