"""On a real NVIDIA GPU: doctor, a framework_from_base build smoke-tested with --gpu required,
a forced access mode the host lacks, and the architecture preflight.

Skipped without a GPU. MLBUILD_GPU_BASE names a local base image that carries a CUDA build of
PyTorch (on the project's GPU machine: mlbuild-device/torch-host:latest, made by
.device/gpu-host-setup.sh). Run: pytest tests/gpu -m gpu
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not glob.glob("/dev/nvidia[0-9]*"), reason="no NVIDIA GPU on this host"),
]
BASE = os.environ.get("MLBUILD_GPU_BASE", "mlbuild-device/torch-host:latest")
NETWORK = os.environ.get("MLBUILD_BUILD_NETWORK", "")


def mlbuild(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "builder", *args], capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def gpu_image(tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = tmp_path_factory.mktemp("gpu")
    recipe = folder / "recipe.yaml"
    recipe.write_text(
        f"name: torch-gpu-check\nframework: pytorch\nframework_from_base: true\nbase_image: {BASE}\n"
        "smoke: {gpu: required}\nimage: {repository: mlbuild/torch-gpu-check, tags: [check]}\n"
    )
    args = ["build", str(recipe), "--gpu", "required", "--json"] + (["--network", NETWORK] if NETWORK else [])
    done = mlbuild(*args)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    if not report.get("up_to_date"):  # a rebuild of the same content builds (and smokes) nothing
        smoke = report["smoke"]
        assert smoke["passed"] and smoke["gpu"]["status"] == "passed", smoke
    return "mlbuild/torch-gpu-check:check"


def test_doctor_sees_the_gpu() -> None:
    done = mlbuild("doctor", "--json")
    doc = json.loads(done.stdout)
    whats = " ".join(f["what"] for f in doc["findings"])
    assert "compute capability" in whats and "NVIDIA driver" in whats


def test_smoke_required_passes_through_an_access_mode(gpu_image: str) -> None:
    done = mlbuild("smoke", gpu_image, "--gpu", "required", "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    names = {c["name"]: c["status"] for c in doc["checks"]}
    wanted = ("gpu.arch", "gpu.matmul", "gpu.cudnn_conv", "gpu.nccl_allreduce", "gpu.nccl_process_group")
    for check in (*wanted, "framework.import"):
        assert names.get(check) == "passed", (check, doc["checks"])
    assert doc["gpu"]["access"] in ("toolkit", "cdi", "devices")
    assert doc["gpu"]["devices"] and doc["gpu"]["driver"]


def test_forced_toolkit_without_toolkit_is_a_clear_exit_3(gpu_image: str) -> None:
    done = mlbuild("doctor", "--json")
    modes = next(f.get("modes") for f in json.loads(done.stdout)["findings"] if "modes" in f)
    if "toolkit" in modes:
        pytest.skip("this host has the NVIDIA container toolkit")
    done = mlbuild("smoke", gpu_image, "--gpu", "required", "--gpu-access", "toolkit")
    assert done.returncode == 3
    assert "Traceback" not in done.stderr and "error:" in done.stderr


def test_preflight_refuses_wheels_without_this_gpus_kernels(tmp_path: Path) -> None:
    """torch 1.13 cu117 has kernels up to sm_86: a Hopper or newer GPU is refused before any build."""
    recipe = tmp_path / "old.yaml"
    recipe.write_text('name: old-torch\nframework: pytorch\nframework_version: "1.13"\ncuda: "11.7"\n')
    done = mlbuild("build", str(recipe))
    caps = subprocess.run(
        ["nvidia-smi", "--query-gpu=compute_cap", "--format=csv,noheader"],
        capture_output=True,
        text=True,
    ).stdout.split()
    if caps and all(float(c) <= 8.6 for c in caps):
        pytest.skip("this GPU is covered by cu117's architectures")
    assert done.returncode == 2, done.stderr
    assert "has kernels for" in done.stderr
