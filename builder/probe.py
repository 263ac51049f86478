#!/usr/bin/env python3
"""mlbuild's smoke probe: a stand-alone script shipped in every image at /opt/mlbuild/probe.py.

Standard library plus the framework only, so a teammate can run it with plain docker:
    docker run --rm IMAGE python /opt/mlbuild/probe.py [--gpu auto|required|off]
It prints one JSON document: what it found, every check with passed / failed / not-run and
why, and "ok". GPU checks that could not run are reported as not-run with the reason, never as
passed. Expectations come from /opt/mlbuild/spec.json (the image's resolved spec).

`--observe IMPORT_NAME --framework NAME` instead reports the Python and framework it finds (used
on base images that already carry a framework).

Each framework's own checks are one function below, registered with @framework_probe under the
framework's name (its builder/data/<name>.yaml): the probe picks it by the spec's `framework`.
"""

from __future__ import annotations

import argparse
import ctypes
import glob
import importlib
import json
import mmap
import os
import platform
import re
import site
import struct
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

PROBE_VERSION = 1
SPEC_PATH = "/opt/mlbuild/spec.json"
# CUDA libraries whose soname major is the CUDA major (libcudart.so.12 is CUDA 12). Others
# version on their own (libcurand.so.10, libcufft.so.11 in CUDA 12), and cuDNN has its own.
CUDA_LIBS = ("libcudart", "libcublas", "libcublasLt", "libnvrtc", "libnvJitLink")
LIB_DIRS = (
    "/usr/local/cuda*/lib64",
    "/usr/local/cuda*/targets/*/lib",
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
)


class Report:
    def __init__(self) -> None:
        self.checks: list[dict[str, Any]] = []
        self.facts: dict[str, Any] = {}

    def check(self, name: str, status: str, detail: str = "") -> None:
        self.checks.append({"name": name, "status": status, "detail": detail})

    def run(self, name: str, fn: Callable[[], str]) -> bool:
        """Run one check; an exception is a failure with its last line as the detail."""
        try:
            detail = fn()
        except Exception as exc:
            last = traceback.format_exception_only(type(exc), exc)[-1].strip()
            self.check(name, "failed", last[:500])
            return False
        self.check(name, "passed", detail)
        return True

    def document(self) -> dict[str, Any]:
        ok = all(c["status"] != "failed" for c in self.checks)
        return {"probe": PROBE_VERSION, "ok": ok, **self.facts, "checks": self.checks}


def base_version(text: str) -> str:
    """'2.5.1+cu124' -> '2.5.1'; '1.5.2' -> '1.5.2'."""
    return re.split(r"[+]", text, maxsplit=1)[0]


def site_dirs() -> list[str]:
    dirs = [p for p in sys.path if p.endswith(("site-packages", "dist-packages")) and os.path.isdir(p)]
    return sorted(set(dirs))


def cuda_library_majors(library_dirs: list[str]) -> dict[str, Any]:
    """Every CUDA library file in the image, and the CUDA majors they belong to.

    library_dirs: folders below site-packages where framework wheels keep CUDA libraries (the
    spec's, from every framework's data: a second framework may have come in packages)."""
    patterns = []
    for d in site_dirs():
        patterns += [f"{d}/nvidia/*/lib/*.so*", f"{d}/nvidia/cu*/lib/*.so*"]
        patterns += [f"{d}/{sub}/*.so*" for sub in library_dirs]
    patterns += [f"{d}/*.so*" for d in LIB_DIRS]
    found: dict[str, set[str]] = {}
    cudnn: set[str] = set()
    copies: dict[str, set[str]] = {}  # library name -> real files (a symlink is not a copy)
    for pattern in patterns:
        for path in glob.glob(pattern, recursive=True):
            name = os.path.basename(path)
            m = re.match(r"^(lib[A-Za-z]+)(?:-[0-9a-f]{8})?\.so\.(\d+)", name)
            if not m:
                continue
            lib, major = m.group(1), m.group(2)
            if lib in CUDA_LIBS:
                found.setdefault(major, set()).add(path)
            elif lib.startswith("libcudnn"):
                cudnn.add(major)
            if lib in CUDA_LIBS or lib.startswith(
                ("libcudnn", "libcufft", "libcusparse", "libcusolver", "libcurand", "libnccl")
            ):
                copies.setdefault(f"{lib}.so.{major}", set()).add(os.path.realpath(path))
    duplicates = {k: sorted(v) for k, v in sorted(copies.items()) if len(v) > 1}
    return {
        "cuda_majors": sorted(found),
        "files": {k: sorted(v)[:20] for k, v in sorted(found.items())},
        "cudnn_majors": sorted(cudnn),
        "duplicates": duplicates,
        "duplicate_bytes": sum(os.path.getsize(p) for v in duplicates.values() for p in v[1:]),
    }


def compilers() -> list[str]:
    """CUDA compilers left in the image (a runtime image should have none)."""
    found = [p for p in ("/usr/local/cuda/bin/nvcc",) if os.path.exists(p)]
    found += glob.glob("/usr/local/cuda-*/bin/nvcc")
    return sorted(set(found))


def driver_version() -> str | None:
    """The host driver as seen from inside the container: NVML, else /proc."""
    try:
        nvml = ctypes.CDLL("libnvidia-ml.so.1")
        if nvml.nvmlInit_v2() == 0:
            buf = ctypes.create_string_buffer(96)
            if nvml.nvmlSystemGetDriverVersion(buf, 96) == 0:
                return buf.value.decode()
    except OSError:
        pass
    try:
        with open("/proc/driver/nvidia/version") as fh:
            m = re.search(r"Kernel Module\s+([0-9.]+)", fh.read())
            return m.group(1) if m else None
    except OSError:
        return None


def arch_covers(capability: tuple[int, int], archs: list[str]) -> bool:
    """Can a device of this compute capability run kernels built for `archs` (CUDA's binary
    compatibility)? SASS sm_XY runs on major X with minor >= Y; PTX compute_XY is JIT-compiled
    by the driver for any device at or above XY. Arch-specific builds (sm_90a, compute_90a) run
    on exactly that capability; family builds (sm_100f) on the same major, minor >= Y."""
    major, minor = capability
    for a in archs:
        m = re.match(r"^(sm|compute)_(\d+)([af]?)$", a.strip())
        if not m:
            continue
        n, suffix = int(m.group(2)), m.group(3)
        x, y = n // 10, n % 10
        if suffix == "a":
            ok = (major, minor) == (x, y)
        elif suffix == "f" or m.group(1) == "sm":
            ok = major == x and minor >= y
        else:  # PTX: forward to any later capability
            ok = (major, minor) >= (x, y)
        if ok:
            return True
    return False


def coverage(devices: list[dict[str, Any]], archs: list[str], what: str) -> str:
    """The gpu.arch check: every device's capability covered by `archs` (AssertionError if not)."""
    assert archs, f"{what} reports no CUDA architectures: kernel coverage cannot be checked"
    missing = [f"{d['name']} (sm_{d['capability'].replace('.', '')})" for d in devices if not d["arch_covered"]]
    assert not missing, f"no kernel image for {', '.join(missing)} in {what}: {' '.join(archs)}"
    return f"{what} ({' '.join(archs)}) cover " + ", ".join(
        f"GPU {d['index']} sm_{d['capability'].replace('.', '')}" for d in devices
    )


def capability_of(text: str) -> tuple[int, int] | None:
    m = re.match(r"^(\d+)\.(\d+)$", text.strip())
    return (int(m.group(1)), int(m.group(2))) if m else None


# ---- CUDA fat binaries: which architectures a shared library carries kernels for ---------------
FATBIN_MAGIC = b"\x50\xed\x55\xba"  # 0xBA55ED50, little-endian
FATBIN_PTX, FATBIN_SASS = 1, 2
FATBIN_ARCH_SPECIFIC, FATBIN_FAMILY = 0x100000, 0x200000  # entry flags: sm_90a, sm_100f


def fatbin_archs(data: bytes) -> set[str]:
    """sm_XY / compute_XY of every kernel image in the fat binaries embedded in `data` (a .so
    file's bytes): each fat binary is a 16-byte header (magic, version, header size, size) and
    entries of (kind, ..., header size, payload size, ..., arch at offset 28, flags at 40)."""
    found: set[str] = set()
    start = data.find(FATBIN_MAGIC)
    while start != -1:
        if start + 16 <= len(data):
            version, header, size = struct.unpack_from("<HHQ", data, start + 4)
            off, end = start + header, min(start + header + size, len(data))
            while version == 1 and header == 16 and off + 48 <= end:
                kind, _, entry_header, payload = struct.unpack_from("<HHIQ", data, off)
                arch = struct.unpack_from("<I", data, off + 28)[0]
                flags = struct.unpack_from("<Q", data, off + 40)[0]
                if kind not in (FATBIN_PTX, FATBIN_SASS) or not 10 <= arch < 1000 or entry_header < 48:
                    break
                suffix = "a" if flags & FATBIN_ARCH_SPECIFIC else "f" if flags & FATBIN_FAMILY else ""
                found.add(f"{'sm' if kind == FATBIN_SASS else 'compute'}_{arch}{suffix}")
                off += entry_header + payload
        start = data.find(FATBIN_MAGIC, start + 4)
    return found


def library_archs(paths: list[str]) -> dict[str, list[str]]:
    """The kernel architectures of each shared library (those that carry any)."""
    out: dict[str, list[str]] = {}
    for path in sorted(set(paths)):
        try:
            with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
                archs = fatbin_archs(data)  # type: ignore[arg-type]
        except (OSError, ValueError):
            continue
        if archs:
            out[path] = sorted(archs, key=_arch_key)
    return out


def _arch_key(arch: str) -> tuple[int, str]:
    m = re.search(r"_(\d+)", arch)
    return (int(m.group(1)) if m else 0, arch)


def close(a: list[float], b: list[float], rtol: float = 1e-2, atol: float = 1e-3) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= atol + rtol * abs(y) for x, y in zip(a, b, strict=True))


# ---- frameworks ---------------------------------------------------------------------------------
# Checks: (report, the imported framework module, --gpu mode) -> None, adding checks to the report.
# Build facts: module -> what the installed build is (cuda_build, cudnn, archs), for the checks'
# report and for --observe on a base image; none for a framework with nothing to say.
Checks = Callable[[Report, Any, str], None]
BuildFacts = Callable[[Any], dict[str, Any]]


class FrameworkProbe:
    def __init__(self, checks: Checks, build_facts: BuildFacts | None):
        self.checks = checks
        self.build_facts = build_facts or (lambda module: {})


PROBES: dict[str, FrameworkProbe] = {}


def framework_probe(framework: str, build_facts: BuildFacts | None = None) -> Callable[[Checks], Checks]:
    """Register the checks of `framework` (the data file's `framework:` name)."""

    def register(checks: Checks) -> Checks:
        PROBES[framework] = FrameworkProbe(checks, build_facts)
        return checks

    return register


def torch_build(torch: Any) -> dict[str, Any]:
    return {
        "cuda_build": torch.version.cuda,
        "cudnn": _cudnn_text(torch.backends.cudnn.version()) if torch.backends.cudnn.is_available() else None,
        "archs": list(torch.cuda.get_arch_list()) if hasattr(torch.cuda, "get_arch_list") else [],
    }


@framework_probe("pytorch", torch_build)
def probe_torch(r: Report, torch: Any, gpu: str) -> None:
    fw = r.facts["framework"]

    def cpu() -> str:
        g = torch.Generator().manual_seed(0)
        a = torch.randn(64, 64, generator=g)
        inv = torch.linalg.inv(a @ a.T + 64 * torch.eye(64))
        err = (inv @ (a @ a.T + 64 * torch.eye(64)) - torch.eye(64)).abs().max().item()
        assert err < 1e-3, f"inverse error {err}"
        return f"64x64 inverse on CPU, max error {err:.1e}"

    r.run("compute.cpu", cpu)
    if not _gpu_wanted(r, gpu):
        return
    if not torch.cuda.is_available():
        _no_gpu(r, gpu, "torch.cuda.is_available() is False" + _cuda_init_error(torch))
        return
    devices = []
    for i in range(torch.cuda.device_count()):
        cap = torch.cuda.get_device_capability(i)
        devices.append(
            {
                "index": i,
                "name": torch.cuda.get_device_name(i),
                "capability": f"{cap[0]}.{cap[1]}",
                "arch_covered": arch_covers(cap, fw["archs"]),
            }
        )
    r.facts["gpu"]["devices"] = devices

    def arch() -> str:
        return coverage(devices, fw["archs"], f"torch {fw['version']}'s kernels")

    r.run("gpu.arch", arch)

    def matmul() -> str:
        g = torch.Generator().manual_seed(0)
        a, b = torch.randn(512, 512, generator=g), torch.randn(512, 512, generator=g)
        want = (a.double() @ b.double()).float()
        for i in range(torch.cuda.device_count()):
            got = (a.cuda(i) @ b.cuda(i)).cpu()
            diff = ((got - want).abs().max() / want.abs().max()).item()
            assert diff < 1e-2, f"device {i}: GPU matmul differs from CPU by {diff:.2e}"
        torch.cuda.synchronize()
        return f"512x512 matmul on {torch.cuda.device_count()} device(s) matches CPU (rel. diff < 1e-2)"

    r.run("gpu.matmul", matmul)

    def conv() -> str:
        assert torch.backends.cudnn.is_available(), "cuDNN is not available to torch"
        g = torch.Generator().manual_seed(0)
        x, w = torch.randn(4, 3, 32, 32, generator=g), torch.randn(8, 3, 3, 3, generator=g)
        want = torch.nn.functional.conv2d(x.double(), w.double()).float()
        for i in range(torch.cuda.device_count()):
            with torch.backends.cudnn.flags(enabled=True):
                got = torch.nn.functional.conv2d(x.cuda(i), w.cuda(i)).cpu()
            diff = ((got - want).abs().max() / want.abs().max()).item()
            assert diff < 1e-2, f"device {i}: cuDNN conv2d differs from CPU by {diff:.2e}"
        return f"cuDNN {fw['cudnn']} conv2d on {torch.cuda.device_count()} device(s) matches CPU"

    r.run("gpu.cudnn_conv", conv)

    def nccl() -> str:
        """One NCCL communicator over every visible GPU (a single one too), one all-reduce."""
        n = torch.cuda.device_count()
        tensors = [torch.full((1 << 20,), float(i + 1), device=f"cuda:{i}") for i in range(n)]
        assert torch.cuda.nccl.is_available(tensors), "torch was built without NCCL"
        torch.cuda.nccl.all_reduce(tensors)
        torch.cuda.synchronize()
        want = n * (n + 1) / 2
        for i, t in enumerate(tensors):
            lo, hi = t.min().item(), t.max().item()
            assert lo == hi == want, f"device {i}: all-reduce gave {lo}..{hi}, expected {want}"
        v = torch.cuda.nccl.version()
        shown = ".".join(map(str, v)) if isinstance(v, tuple) else str(v)
        return f"NCCL {shown} all-reduce (sum) of 4 MB over {n} GPU(s): {want:g} everywhere"

    r.run("gpu.nccl_allreduce", nccl)

    def process_group() -> str:
        """What training code uses: torch.distributed's NCCL backend, world size 1, in-process store."""
        import torch.distributed as dist

        assert dist.is_available() and dist.is_nccl_available(), "torch.distributed has no NCCL"
        dist.init_process_group("nccl", store=dist.HashStore(), rank=0, world_size=1)
        try:
            t = torch.arange(1024, dtype=torch.float32, device="cuda:0")
            dist.all_reduce(t)
            torch.cuda.synchronize()
            assert torch.equal(t.cpu(), torch.arange(1024, dtype=torch.float32)), "all_reduce changed the values"
        finally:
            dist.destroy_process_group()
        return "torch.distributed NCCL process group (world size 1): all_reduce correct"

    r.run("gpu.nccl_process_group", process_group)


def _cuda_init_error(torch: Any) -> str:
    try:
        torch.cuda.init()
    except Exception as exc:
        return f" ({str(exc).splitlines()[0][:300]})"
    return ""


def tensorflow_build(tf: Any) -> dict[str, Any]:
    info = dict(tf.sysconfig.get_build_info())
    caps = info.get("cuda_compute_capabilities") or []
    # TF 2.x build info lists them (['sm_60', ..., 'compute_90']); a text is split on commas
    archs = [str(c).strip() for c in (caps if isinstance(caps, (list, tuple)) else str(caps).split(","))]
    return {
        "cuda_build": info.get("cuda_version") or None,
        "cudnn": info.get("cudnn_version") or None,
        "archs": [a for a in archs if a],
    }


@framework_probe("tensorflow", tensorflow_build)
def probe_tensorflow(r: Report, tf: Any, gpu: str) -> None:
    fw = r.facts["framework"]

    def cpu() -> str:
        with tf.device("/CPU:0"):
            a = tf.random.stateless_normal((64, 64), seed=(1, 2))
            s = float(tf.reduce_sum(tf.matmul(a, tf.transpose(a))))
        assert s == s, "NaN"
        return "64x64 matmul on CPU"

    r.run("compute.cpu", cpu)
    if not _gpu_wanted(r, gpu):
        return
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        _no_gpu(r, gpu, "tf.config.list_physical_devices('GPU') is empty")
        return
    devices = []
    for i, d in enumerate(gpus):
        details = tf.config.experimental.get_device_details(d)
        cap = ".".join(map(str, details.get("compute_capability", ())))
        parsed = capability_of(cap)
        devices.append({"index": i, "name": details.get("device_name", d.name), "capability": cap,
                        "arch_covered": parsed is not None and arch_covers(parsed, fw["archs"])})  # fmt: skip
    r.facts["gpu"]["devices"] = devices
    names = [f"/GPU:{i}" for i in range(len(gpus))]

    def arch() -> str:
        return coverage(devices, fw["archs"], f"TensorFlow {fw['version']}'s build (cuda_compute_capabilities)")

    r.run("gpu.arch", arch)

    def matmul() -> str:
        a = tf.random.stateless_normal((512, 512), seed=(1, 2))
        b = tf.random.stateless_normal((512, 512), seed=(3, 4))
        with tf.device("/CPU:0"):
            want = tf.matmul(tf.cast(a, tf.float64), tf.cast(b, tf.float64))
        for name in names:
            with tf.device(name):
                got = tf.matmul(a, b)
            diff = float(tf.reduce_max(tf.abs(tf.cast(got, tf.float64) - want)) / tf.reduce_max(tf.abs(want)))
            assert diff < 1e-2, f"{name}: matmul differs from CPU by {diff:.2e}"
        return f"512x512 matmul on {len(names)} GPU(s) matches CPU"

    r.run("gpu.matmul", matmul)

    def conv() -> str:
        x = tf.random.stateless_normal((4, 32, 32, 3), seed=(5, 6))
        w = tf.random.stateless_normal((3, 3, 3, 8), seed=(7, 8))
        with tf.device("/CPU:0"):
            want = tf.nn.conv2d(x, w, 1, "VALID")
        for name in names:
            with tf.device(name):
                got = tf.nn.conv2d(x, w, 1, "VALID")
            diff = float(tf.reduce_max(tf.abs(got - want)) / tf.reduce_max(tf.abs(want)))
            assert diff < 1e-2, f"{name}: cuDNN conv2d differs from CPU by {diff:.2e}"
        return f"cuDNN {fw['cudnn']} conv2d on {len(names)} GPU(s) matches CPU"

    r.run("gpu.cudnn_conv", conv)

    def allreduce() -> str:
        """A collective all-reduce over every GPU (a single one too), NCCL as the transport."""
        from tensorflow.python.ops import collective_ops

        n = len(names)

        def reduce_all() -> list[Any]:
            out = []
            for i, name in enumerate(names):
                with tf.device(name):
                    t = tf.fill([1 << 20], float(i + 1))
                    out.append(collective_ops.all_reduce(t, n, 1, 1, "Add", "Id", communication_hint="nccl"))
            return out

        want = n * (n + 1) / 2
        # one graph, so that the n collectives run together (each waits for the others)
        for name, t in zip(names, tf.function(reduce_all)(), strict=True):
            lo, hi = float(tf.reduce_min(t)), float(tf.reduce_max(t))
            assert lo == hi == want, f"{name}: all-reduce gave {lo}..{hi}, expected {want}"
        return f"collective all-reduce (sum, NCCL) of 4 MB over {n} GPU(s): {want:g} everywhere"

    r.run("gpu.nccl_allreduce", allreduce)


# jaxlib's CUDA code: the PJRT plugin (jax-cudaNN-pjrt) and the kernels (jax-cudaNN-plugin, or
# jaxlib/cuda in older releases). XLA compiles the model for the device at run time; these
# libraries' prebuilt kernels are what can lack the device's architecture.
JAX_CUDA_LIBS = ("jax_plugins/xla_cuda*/*.so*", "jax_cuda*_plugin/*.so*", "jaxlib/cuda/*.so*")


def jax_build(jax: Any) -> dict[str, Any]:
    facts: dict[str, Any] = {"cuda_build": None}
    try:
        from jax._src.lib import cuda_versions

        if cuda_versions is not None:
            facts["cuda_build"] = _version_from_int(cuda_versions.cuda_runtime_build_version())
            facts["cudnn"] = _cudnn_text(cuda_versions.cudnn_build_version())
    except Exception:
        pass
    libs = library_archs([p for d in site_dirs() for g in JAX_CUDA_LIBS for p in glob.glob(f"{d}/{g}")])
    facts["arch_sources"] = {os.path.basename(k): v for k, v in libs.items()}
    facts["archs"] = sorted({a for v in libs.values() for a in v}, key=_arch_key)
    return facts


@framework_probe("jax", jax_build)
def probe_jax(r: Report, jax: Any, gpu: str) -> None:
    import jax.numpy as jnp
    import numpy as np

    fw = r.facts["framework"]
    host = np.arange(256 * 256, dtype=np.float64).reshape(256, 256) / 65536.0
    exact = float((host @ host.T).sum())  # the reference every backend is held to

    def product(device: Any) -> float:
        a = jnp.arange(256 * 256, dtype=jnp.float32).reshape(256, 256) / 65536.0
        f = jax.jit(lambda x: (x @ x.T).sum())
        return float(f(jax.device_put(a, device)))

    def cpu() -> str:
        v = product(jax.devices("cpu")[0])
        assert abs(v - exact) <= 1e-4 * abs(exact), f"CPU: {v} != {exact} (NumPy, float64)"
        fw["cpu_product"] = v
        return f"jitted 256x256 product on CPU matches NumPy ({v:.6g})"

    r.run("compute.cpu", cpu)
    if not _gpu_wanted(r, gpu):
        return
    try:
        gpus = jax.devices("gpu")
    except RuntimeError as exc:
        _no_gpu(r, gpu, f"jax.devices('gpu') failed: {str(exc).splitlines()[0][:300]}")
        return
    devices = []
    for d in gpus:
        cap = str(getattr(d, "compute_capability", "") or "")
        parsed = capability_of(cap)
        covered = parsed is not None and all(arch_covers(parsed, a) for a in fw["arch_sources"].values())
        devices.append({"index": d.id, "name": getattr(d, "device_kind", str(d)), "capability": cap,
                        "arch_covered": covered})  # fmt: skip
    r.facts["gpu"]["devices"] = devices

    def arch() -> str:
        unknown = [str(d["index"]) for d in devices if not capability_of(d["capability"])]
        assert not unknown, f"jax reports no compute capability for GPU {', '.join(unknown)}"
        return coverage(devices, fw["archs"], f"jaxlib's CUDA kernels ({len(fw['arch_sources'])} libraries)")

    r.run("gpu.arch", arch)

    def jitted() -> str:
        # always against a CPU result: JAX's own on the CPU backend, and NumPy's in float64
        ref = fw.get("cpu_product")
        if ref is None:
            ref = product(jax.devices("cpu")[0])
        for d in gpus:
            v = product(d)
            for want, where in ((ref, "JAX on the CPU"), (exact, "NumPy")):
                assert abs(v - want) <= 1e-2 * abs(want), f"{d}: {v} != {want} ({where})"
        return f"jitted product on {len(gpus)} GPU(s) matches the CPU ({ref:.6g}) and NumPy"

    r.run("gpu.jit", jitted)


@framework_probe("sklearn", lambda sklearn: {"cuda_build": None})
def probe_sklearn(r: Report, sklearn: Any, gpu: str) -> None:
    def fit() -> str:
        from sklearn.datasets import make_classification
        from sklearn.linear_model import LogisticRegression

        x, y = make_classification(n_samples=200, n_features=8, random_state=0)
        score = LogisticRegression(max_iter=500).fit(x, y).score(x, y)
        assert score > 0.8, f"training accuracy {score:.2f} is too low"
        return f"LogisticRegression on 200 samples: accuracy {score:.2f}"

    r.run("compute.cpu", fit)
    if gpu != "off":
        r.facts["gpu"]["status"] = "not-applicable"
        r.facts["gpu"]["reason"] = "scikit-learn runs on the CPU only"


def _cudnn_text(v: int | None) -> str | None:
    if not v:
        return None
    return (
        f"{v // 10000}.{(v % 10000) // 100}.{v % 100}" if v >= 10000 else f"{v // 1000}.{(v % 1000) // 100}.{v % 100}"
    )


def _version_from_int(v: int | None) -> str | None:
    """CUDA's integer versions: 12030 -> '12.3'."""
    return f"{v // 1000}.{(v % 1000) // 10}" if v else None


def _gpu_wanted(r: Report, gpu: str) -> bool:
    g = r.facts["gpu"]
    g["driver"] = driver_version()
    if gpu == "off":
        g["status"], g["reason"] = "not-run", "--gpu off"
        r.check("gpu", "not-run", "--gpu off")
        return False
    if not glob.glob("/dev/nvidia[0-9]*"):
        _no_gpu(r, gpu, "no /dev/nvidia* device in this container (no GPU given to it)")
        return False
    return True


def _no_gpu(r: Report, gpu: str, reason: str) -> None:
    g = r.facts["gpu"]
    g["status"], g["reason"] = ("failed" if gpu == "required" else "not-run"), reason
    r.check("gpu", "failed" if gpu == "required" else "not-run", reason)


def load_spec(path: str) -> dict[str, Any]:
    try:
        with open(path) as fh:
            doc = json.load(fh)
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def probe(spec: dict[str, Any], gpu: str) -> dict[str, Any]:
    r = Report()
    started = time.monotonic()
    py = platform.python_version()
    want_py = spec.get("python")
    r.facts["python"] = {"version": py, "executable": sys.executable}
    if want_py and want_py != "from-base":
        if ".".join(py.split(".")[:2]) == want_py:
            r.check("python", "passed", f"Python {py}")
        else:
            r.check("python", "failed", f"Python {want_py} expected, found {py}")
    else:
        r.check("python", "passed", f"Python {py}")
    want_platform = str(spec.get("platform") or "")  # only in specs of platforms other than linux/amd64
    if want_platform:
        machine = platform.machine()
        ok = {"linux/arm64": "aarch64", "linux/amd64": "x86_64"}.get(want_platform) == machine
        r.facts["machine"] = machine
        r.check("platform", "passed" if ok else "failed", f"{want_platform} expected, machine {machine}")
    import_name = str(spec.get("import_name") or "")
    fw: dict[str, Any] = {"import": import_name}
    r.facts["framework"] = fw
    r.facts["gpu"] = {"status": "not-run", "reason": "", "devices": []}
    try:
        if not import_name:
            raise ImportError(f"{SPEC_PATH} names no framework module (import_name)")
        module = importlib.import_module(import_name)
    except Exception as exc:
        r.check("framework.import", "failed", f"import {import_name}: {exc}"[:500])
        r.facts["elapsed_s"] = round(time.monotonic() - started, 2)
        return r.document()
    fw["version"] = str(getattr(module, "__version__", ""))
    fw["path"] = os.path.dirname(getattr(module, "__file__", "") or "")
    r.check("framework.import", "passed", f"import {import_name} {fw['version']}")
    framework = str(spec.get("framework") or "")
    entry = PROBES.get(framework)
    try:
        if entry is None:
            raise LookupError(f"this probe has no checks for framework {framework!r}")
        fw.update(entry.build_facts(module))
        entry.checks(r, module, gpu)
    except Exception as exc:
        r.check("framework.probe", "failed", traceback.format_exception_only(type(exc), exc)[-1].strip())
    _compare(r, spec)
    r.facts["cuda_libraries"] = cuda_library_majors([str(d) for d in spec.get("library_dirs") or ()])
    libs = r.facts["cuda_libraries"]
    majors = libs["cuda_majors"]
    if len(majors) > 1:
        where = "; ".join(f"{m}: {', '.join(libs['files'][m][:3])}" for m in majors)
        # a base that carries the framework is not ours to fix: report, do not fail
        status = "warning" if spec.get("framework_from_base") else "failed"
        r.check("cuda.libraries", status, f"CUDA libraries of several majors in the image ({where})")
    elif majors:
        r.check("cuda.libraries", "passed", f"CUDA libraries all of major {majors[0]}")
    if libs["duplicates"]:
        # NVIDIA's CUDA bases carry the libraries that framework wheels bring again: reported
        # with their size, since for some frameworks (PyTorch's wheels) it is unavoidable
        names = ", ".join(list(libs["duplicates"])[:6])
        r.check(
            "cuda.duplicates",
            "warning",
            f"{len(libs['duplicates'])} CUDA libraries twice ({names}): {libs['duplicate_bytes'] / 1e6:.0f} MB",
        )
    nvcc = compilers()
    if nvcc:
        status = "warning" if spec.get("framework_from_base") else "failed"
        r.check("runtime.compiler", status, f"CUDA compiler in the image: {', '.join(nvcc)}")
    if any(c["name"].startswith("gpu.") for c in r.checks):
        failed = [c for c in r.checks if c["name"].startswith("gpu.") and c["status"] == "failed"]
        r.facts["gpu"]["status"] = "failed" if failed else "passed"
    r.facts["elapsed_s"] = round(time.monotonic() - started, 2)
    return r.document()


def build_verdict(spec: dict[str, Any], found_v: str, found_cuda: str | None) -> tuple[bool, str] | None:
    """Is the installed framework exactly the resolved build (version and CUDA build)?

    None when the spec fixes no version (a framework taken from the base); else (ok, detail),
    e.g. (False, "pytorch 2.5.1 (CUDA 12.4) expected, found 2.5.1+cpu (no CUDA)").
    """
    want_v = spec.get("framework_version")
    want_cuda = spec.get("cuda") or "cpu"
    if not want_v or want_v == "from-base":
        return None
    depth = 1 if spec.get("cuda_match") == "major" else 2
    if want_cuda == "from-base":
        cuda_ok = True
    elif want_cuda == "cpu":
        cuda_ok = not found_cuda
    else:
        cuda_ok = bool(found_cuda) and (str(found_cuda).split(".")[:depth] == want_cuda.split(".")[:depth])
    expected = want_v + ("" if want_cuda in ("cpu", "from-base") else f" (CUDA {want_cuda})")
    shown = found_v + (f" (CUDA {found_cuda})" if found_cuda else " (no CUDA)")
    name = spec.get("framework", "framework")
    if base_version(found_v) == want_v and cuda_ok:
        return True, f"{name} {shown} as resolved"
    return False, f"{name} {expected} expected, found {shown}"


def _compare(r: Report, spec: dict[str, Any]) -> None:
    fw = r.facts["framework"]
    verdict = build_verdict(spec, fw.get("version", ""), fw.get("cuda_build"))
    if verdict:
        r.check("framework.build", "passed" if verdict[0] else "failed", verdict[1])


def venv_with_pip() -> str:
    """The word ok when this Python makes a virtual environment with pip (as the build does), else why
    not: Debian's and Ubuntu's Pythons need python3.X-venv (ensurepip's wheels) for it."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory(prefix="mlbuild-venv-") as tmp:
        try:
            done = subprocess.run([sys.executable, "-m", "venv", tmp + "/v"], capture_output=True, text=True,
                                  timeout=120, check=False)  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as exc:
            return str(exc)[:300]
    lines = (done.stderr or done.stdout).strip().splitlines()
    return "ok" if done.returncode == 0 else (lines[-1] if lines else f"exit {done.returncode}")[:300]


def observe(import_name: str, framework: str) -> dict[str, Any]:
    """Facts about a base image's Python and framework (framework_from_base)."""
    doc: dict[str, Any] = {
        "python": platform.python_version(),
        # inside a virtual environment keep its own path: its packages come with it
        "python_bin": sys.executable,
        "site_packages": site_dirs() or site.getsitepackages(),
        "venv_pip": venv_with_pip(),
    }
    try:
        module = importlib.import_module(import_name)
        doc["framework_version"] = base_version(str(getattr(module, "__version__", "")))
        doc["framework_version_full"] = str(getattr(module, "__version__", ""))
        entry = PROBES.get(framework)
        if entry is not None:
            doc.update(entry.build_facts(module))
    except Exception as exc:
        doc["error"] = f"import {import_name}: {exc}"[:500]
    return doc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gpu", choices=("auto", "required", "off"), default="auto")
    ap.add_argument("--spec", default=SPEC_PATH, help="resolved spec JSON (default: %(default)s)")
    ap.add_argument("--observe", metavar="IMPORT_NAME", help="report the Python and framework found")
    ap.add_argument("--framework", default="", help="with --observe: the framework's name, for its build facts")
    args = ap.parse_args(argv)
    if args.observe:
        print(json.dumps(observe(args.observe, args.framework), sort_keys=True))
        return 0
    doc = probe(load_spec(args.spec), args.gpu)
    print(json.dumps(doc, sort_keys=True))
    return 0 if doc["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
