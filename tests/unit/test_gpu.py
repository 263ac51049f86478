"""GPU access modes, host detection on a stand-in root, preflight, and mode fallback."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeEngine

from builder import gpu
from builder.engine_api import RunResult
from builder.errors import EngineError, SmokeFailed
from builder.resolve import load_and_resolve
from builder.smoke import smoke

ROOT = Path(__file__).resolve().parents[2]
LDCONFIG = """\
1234 libs found in cache `/etc/ld.so.cache'
	libcuda.so.1 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libcuda.so.1
	libcuda.so (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libcuda.so
	libnvidia-ml.so.1 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1
	libnvidia-ptxjitcompiler.so.1 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libnvidia-ptxjitcompiler.so.1
	libcuda.so.1 (libc6) => /usr/lib/i386-linux-gnu/libcuda.so.1
	libz.so.1 (libc6,x86-64) => /lib/x86_64-linux-gnu/libz.so.1
"""


def fake_root(tmp_path: Path, driver_dir: bool) -> Path:
    for name in ("nvidia0", "nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-caps"):
        (tmp_path / "dev").mkdir(exist_ok=True)
        (tmp_path / "dev" / name).write_text("")
    (tmp_path / "proc/driver/nvidia").mkdir(parents=True)
    (tmp_path / "proc/driver/nvidia/version").write_text(
        "NVRM version: NVIDIA UNIX x86_64 Kernel Module  580.159.04  Tue Oct 1 2025\n"
    )
    if driver_dir:
        (tmp_path / "usr/local/nvidia/lib64").mkdir(parents=True)
    return tmp_path


def test_detect_on_stand_in_root(tmp_path: Path) -> None:
    host = gpu.detect(root=str(fake_root(tmp_path, driver_dir=True)))
    assert host.device_nodes == (
        "/dev/nvidia-uvm",
        "/dev/nvidia-uvm-tools",
        "/dev/nvidia0",
        "/dev/nvidiactl",
    )
    assert host.driver == "580.159.04"
    assert host.driver_dir == "/usr/local/nvidia"
    assert host.modes() == ["devices"]


def test_device_injection_with_driver_folder() -> None:
    host = gpu.HostGpus(device_nodes=("/dev/nvidia0", "/dev/nvidiactl"), driver_dir="/usr/local/nvidia")
    access = gpu.access_for("devices", host)
    assert access.devices == ("/dev/nvidia0:/dev/nvidia0:rwm", "/dev/nvidiactl:/dev/nvidiactl:rwm")
    assert access.volume_map() == {"/usr/local/nvidia": {"bind": "/usr/local/nvidia", "mode": "ro"}}
    assert dict(access.environment)["LD_LIBRARY_PATH"] == "/usr/local/nvidia/lib64"


def test_device_injection_from_loader_cache() -> None:
    libs = gpu.loader_cache_libs(LDCONFIG)
    assert libs == (
        "/usr/lib/x86_64-linux-gnu/libcuda.so.1",
        "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1",
        "/usr/lib/x86_64-linux-gnu/libnvidia-ptxjitcompiler.so.1",
    )
    host = gpu.HostGpus(device_nodes=("/dev/nvidia0",), driver_libs=libs)
    access = gpu.access_for("devices", host)
    assert access.volume_map()["/usr/lib/x86_64-linux-gnu/libcuda.so.1"] == {
        "bind": "/usr/local/mlbuild-nvidia/lib64/libcuda.so.1",
        "mode": "ro",
    }
    assert dict(access.environment)["LD_LIBRARY_PATH"] == "/usr/local/mlbuild-nvidia/lib64"


def test_toolkit_and_cdi_modes_use_device_requests() -> None:
    host = gpu.HostGpus(device_nodes=("/dev/nvidia0",), toolkit=True, cdi=True, driver_dir="/x")
    assert host.modes() == ["toolkit", "cdi", "devices"]
    assert gpu.access_for("toolkit", host).device_request == "gpu"
    assert gpu.access_for("cdi", host).device_request == "cdi"


def test_parse_smi() -> None:
    got = gpu.parse_smi("0, NVIDIA H100 80GB HBM3, 9.0\n1, NVIDIA A100-SXM4-40GB, 8.0\n")
    assert [(g.name, g.arch) for g in got] == [
        ("NVIDIA H100 80GB HBM3", "sm_90"),
        ("NVIDIA A100-SXM4-40GB", "sm_80"),
    ]


@pytest.mark.parametrize(
    ("driver", "min_driver", "archs", "capability", "problems"),
    [
        ("580.159.04", "525.60.13", ("sm_80", "sm_90"), "9.0", 0),
        ("470.82.01", "525.60.13", ("sm_80", "sm_90"), "9.0", 1),  # driver too old for CUDA 12
        ("580.159.04", "525.60.13", ("sm_50", "sm_80"), "9.0", 1),  # no sm_90 kernels
        ("470.82.01", "525.60.13", ("sm_80",), "9.0", 2),
    ],
)
def test_preflight(driver: str, min_driver: str, archs: tuple[str, ...], capability: str, problems: int) -> None:
    host = gpu.HostGpus(
        device_nodes=("/dev/nvidia0",),
        driver=driver,
        gpus=(gpu.GpuInfo(0, "NVIDIA H100", capability),),
    )
    found = gpu.preflight(host, min_driver, archs, "12.4")
    assert len(found) == problems
    for p in found:
        assert p.remedy


class NoToolkitEngine(FakeEngine):
    """Refuses the toolkit like an engine without the NVIDIA runtime; records run arguments."""

    def __init__(self, probe_stdout: str):
        super().__init__()
        self.calls: list[dict[str, Any]] = []
        self.probe_stdout = probe_stdout

    def run(self, image: str, command: list[str], **kwargs: Any) -> RunResult:
        self.calls.append({"command": command, **kwargs})
        if kwargs.get("device_requests") == [self.gpu_device_request()]:
            raise EngineError(
                "cannot run x",
                details=['could not select device driver "" with capabilities: [[gpu]]'],
            )
        return RunResult(0, self.probe_stdout, "")


PROBE_OK = json.dumps({
    "probe": 1, "ok": True, "python": {"version": "3.12.3"},
    "framework": {"version": "2.5.1+cu124", "cuda_build": "12.4"},
    "gpu": {"status": "passed", "devices": [{"name": "H100"}]},
    "checks": [{"name": "gpu.matmul", "status": "passed"}],
})  # fmt: skip


def test_toolkit_refusal_falls_back_to_device_injection() -> None:
    _, spec = load_and_resolve(ROOT / "recipes" / "pytorch-gpu.yaml")
    spec = dataclasses.replace(spec, smoke_run=())
    host = gpu.HostGpus(device_nodes=("/dev/nvidia0",), toolkit=True, driver_dir="/usr/local/nvidia")
    engine = NoToolkitEngine(PROBE_OK)
    report = smoke(engine, "img", spec, "required", host=host)
    assert report.passed and report.gpu_access == "devices"
    assert "could not select device driver" in report.gpu_reason
    assert engine.calls[-1]["devices"] == ["/dev/nvidia0:/dev/nvidia0:rwm"]
    assert engine.calls[-1]["shm_size"] == "1g"  # NCCL's buffers live in /dev/shm (64 MB by default)


def test_required_without_gpu_exits_3() -> None:
    _, spec = load_and_resolve(ROOT / "recipes" / "pytorch-gpu.yaml")
    with pytest.raises(SmokeFailed) as info:
        smoke(NoToolkitEngine(PROBE_OK), "img", spec, "required", host=gpu.HostGpus())
    assert info.value.exit_code == 3 and "no NVIDIA GPU" in info.value.message
