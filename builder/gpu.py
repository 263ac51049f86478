"""The host's NVIDIA GPUs and the ways to hand them to a container.

Access modes, tried in this order by `auto`:
- toolkit: the NVIDIA container toolkit (`--gpus all`, a DeviceRequest for "gpu");
- cdi: CDI devices (`nvidia.com/gpu=all`), where the engine supports them (API 1.44+);
- devices: plain device injection: the /dev/nvidia* nodes, and the driver's user-space
  libraries mounted read-only from the host (found in the driver's install folder or through
  the loader cache), for hosts with a driver but no toolkit.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from builder.matrix import version_key
from builder.probe import arch_covers

DRIVER_DIRS = ("/usr/local/nvidia",)  # where GPU clouds and the device machine put the driver
MOUNT_POINT = "/usr/local/mlbuild-nvidia"
DRIVER_LIBS = (
    "libcuda.so.1", "libnvidia-ml.so.1", "libnvidia-ptxjitcompiler.so.1", "libnvidia-nvvm.so.4",
    "libcudadebugger.so.1", "libnvidia-gpucomp.so", "libnvidia-allocator.so.1",
    "libnvidia-pkcs11.so", "libnvidia-cfg.so.1",
)  # fmt: skip
NO_DRIVER_RE = re.compile(r"could not select device driver|unknown or invalid runtime|cdi", re.I)


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    capability: str  # "9.0"

    @property
    def arch(self) -> str:
        return "sm_" + self.capability.replace(".", "")


@dataclass(frozen=True)
class HostGpus:
    """What this host offers: device nodes, driver, GPUs and the access modes available."""

    device_nodes: tuple[str, ...] = ()
    driver: str | None = None
    gpus: tuple[GpuInfo, ...] = ()
    driver_dir: str | None = None
    driver_libs: tuple[str, ...] = ()  # from the loader cache when there is no driver_dir
    toolkit: bool = False
    cdi: bool = False
    notes: tuple[str, ...] = field(default=(), compare=False)

    @property
    def present(self) -> bool:
        return bool(self.device_nodes)

    def modes(self) -> list[str]:
        out = []
        if self.toolkit:
            out.append("toolkit")
        if self.cdi:
            out.append("cdi")
        if self.device_nodes and (self.driver_dir or self.driver_libs):
            out.append("devices")
        return out


@dataclass(frozen=True)
class Access:
    """Arguments for Engine.run that give a container the GPUs in one mode."""

    mode: str
    devices: tuple[str, ...] = ()
    volumes: tuple[tuple[str, str], ...] = ()  # host path -> container path, read-only
    environment: tuple[tuple[str, str], ...] = ()
    device_request: str | None = None  # "gpu" or "cdi"

    def volume_map(self) -> dict[str, dict[str, str]]:
        return {host: {"bind": inside, "mode": "ro"} for host, inside in self.volumes}


def detect(engine_runtimes: tuple[str, ...] = (), engine_api: str = "1.41", root: str = "/") -> HostGpus:
    """Look at this host (not a remote engine's): device nodes, driver, GPUs, toolkit, CDI."""
    r = Path(root)
    nodes = tuple(sorted(
        "/" + str(Path(p).relative_to(r)) for p in glob.glob(str(r / "dev/nvidia*"))
        if re.search(r"/nvidia(\d+|ctl|-uvm|-uvm-tools|-modeset)$", p)
    ))  # fmt: skip
    driver = driver_version(root)
    driver_dir = next((d for d in DRIVER_DIRS if (r / d.lstrip("/") / "lib64").is_dir()), None)
    libs = () if driver_dir else loader_cache_libs()
    toolkit = (
        "nvidia" in engine_runtimes
        or bool(shutil.which("nvidia-container-runtime-hook"))
        or bool(shutil.which("nvidia-container-runtime"))
    )
    cdi_specs = glob.glob("/etc/cdi/nvidia*.yaml") + glob.glob("/var/run/cdi/nvidia*.yaml")
    cdi = bool(cdi_specs) and version_key(engine_api) >= version_key("1.44")
    return HostGpus(
        device_nodes=nodes,
        driver=driver,
        gpus=tuple(query_gpus(driver_dir)),
        driver_dir=driver_dir,
        driver_libs=libs,
        toolkit=toolkit,
        cdi=cdi,
    )


def driver_version(root: str = "/") -> str | None:
    try:
        text = (Path(root) / "proc/driver/nvidia/version").read_text()
    except OSError:
        return None
    m = re.search(r"Kernel Module\s+(?:for\s+\S+\s+)?([0-9]+\.[0-9.]+)", text)
    return m.group(1) if m else None


def query_gpus(driver_dir: str | None) -> list[GpuInfo]:
    smi = shutil.which("nvidia-smi") or (f"{driver_dir}/bin/nvidia-smi" if driver_dir else None)
    if not smi or not os.path.exists(smi):
        return []
    env = dict(os.environ)
    if driver_dir:
        env["LD_LIBRARY_PATH"] = f"{driver_dir}/lib64:" + env.get("LD_LIBRARY_PATH", "")
    try:
        out = subprocess.run(
            [smi, "--query-gpu=index,name,compute_cap", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20, env=env, check=False,
        ).stdout  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return []
    return parse_smi(out)


def parse_smi(text: str) -> list[GpuInfo]:
    gpus = []
    for line in text.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 3 and parts[0].isdigit():
            gpus.append(GpuInfo(int(parts[0]), parts[1], parts[2]))
    return gpus


def loader_cache_libs(ldconfig_output: str | None = None) -> tuple[str, ...]:
    """Driver libraries listed by `ldconfig -p`, as real files to mount."""
    if ldconfig_output is None:
        try:
            ldconfig_output = subprocess.run(
                ["ldconfig", "-p"], capture_output=True, text=True, timeout=10, check=False
            ).stdout
        except (OSError, subprocess.TimeoutExpired):
            return ()
    found: dict[str, str] = {}
    for line in ldconfig_output.splitlines():
        m = re.match(r"^\s*(\S+)\s+\(([^)]*)\)\s+=>\s+(\S+)$", line)
        if not m or ("x86-64" not in m.group(2) and "AArch64" not in m.group(2)):
            continue
        name, path = m.group(1), m.group(3)
        if any(name == lib or name.startswith(lib + ".") for lib in DRIVER_LIBS):
            found.setdefault(name, path)
    return tuple(sorted(found.values()))


def access_for(mode: str, host: HostGpus) -> Access:
    if mode == "toolkit":
        return Access(mode, device_request="gpu")
    if mode == "cdi":
        return Access(mode, device_request="cdi")
    if mode != "devices":
        raise ValueError(mode)
    devices = tuple(f"{n}:{n}:rwm" for n in host.device_nodes)
    if host.driver_dir:
        volumes: tuple[tuple[str, str], ...] = ((host.driver_dir, host.driver_dir),)
        lib_path = f"{host.driver_dir}/lib64"
        path = f"{host.driver_dir}/bin"
    else:
        volumes = tuple((lib, f"{MOUNT_POINT}/lib64/{os.path.basename(lib)}") for lib in host.driver_libs)
        lib_path = f"{MOUNT_POINT}/lib64"
        path = ""
    env = [("LD_LIBRARY_PATH", lib_path), ("NVIDIA_VISIBLE_DEVICES", "all")]
    if path:
        env.append(("MLBUILD_NVIDIA_BIN", path))
    return Access("devices", devices=devices, volumes=volumes, environment=tuple(env))


@dataclass(frozen=True)
class PreflightProblem:
    what: str
    remedy: str


def preflight(host: HostGpus, min_driver: str | None, archs: tuple[str, ...], cuda: str) -> list[PreflightProblem]:
    """Would an image with this CUDA minimum and these kernels run on this host's GPUs?"""
    problems = []
    if min_driver and host.driver and version_key(host.driver) < version_key(min_driver):
        problems.append(PreflightProblem(
            f"CUDA {cuda} needs driver >= {min_driver}; this host has {host.driver}",
            "choose an older cuda: in the recipe (see `mlbuild matrix`), or upgrade the driver",
        ))  # fmt: skip
    if archs:
        for g in host.gpus:
            if not covers(g.capability, archs):
                problems.append(PreflightProblem(
                    f"{g.name} is {g.arch}; the framework build has kernels for {' '.join(archs)}",
                    "choose a cuda: whose builds include this architecture (`mlbuild resolve` with "
                    f"gpu: {{archs: [{g.arch}]}} picks one)",
                ))  # fmt: skip
    return problems


def covers(capability: str, archs: tuple[str, ...]) -> bool:
    """SASS for exactly this sm_XY, or PTX (compute_XY) at or below it."""
    major, _, minor = capability.partition(".")
    return arch_covers((int(major), int(minor or 0)), list(archs))
