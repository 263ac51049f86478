"""Smoke-test an image: run the probe (and the recipe's smoke commands) inside it, then hold
what the probe saw to the image's resolved spec with a pure `check()`."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from builder import gpu as gpu_mod
from builder.engine_api import Engine, RunResult
from builder.errors import SmokeFailed
from builder.fileio import write_atomic
from builder.platforms import DEFAULT_PLATFORM, platform_named
from builder.probe import build_verdict
from builder.spec import PROBE_PATH, VENV, ResolvedSpec


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # passed | failed | not-run
    detail: str = ""


@dataclass(frozen=True)
class SmokeReport:
    passed: bool
    checks: tuple[Check, ...]
    gpu_status: str  # passed | failed | not-run | not-applicable
    gpu_reason: str = ""
    gpu_access: str | None = None
    probe: dict[str, Any] = field(default_factory=dict)

    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.status == "failed"]

    def error(self, message: str, hint: str | None = None) -> SmokeFailed:
        """The error (exit 3) that a failed report becomes, one detail line per failed check."""
        return SmokeFailed(message, details=[f"{c.name}: {c.detail}" for c in self.failures()], hint=hint)

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "gpu": {"status": self.gpu_status, "reason": self.gpu_reason, "access": self.gpu_access,
                    "devices": self.probe.get("gpu", {}).get("devices", []),
                    "driver": self.probe.get("gpu", {}).get("driver")},
            "checks": [c.__dict__ for c in self.checks],
            "probe": self.probe,
        }  # fmt: skip


def parse_probe(stdout: str) -> dict[str, Any] | None:
    """The probe prints one JSON document; frameworks may print before it."""
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if isinstance(doc, dict) and "checks" in doc:
                return doc
    return None


def check(
    spec: ResolvedSpec,
    probe: dict[str, Any] | None,
    gpu_mode: str,
    commands: tuple[tuple[str, RunResult], ...] = (),
    access: str | None = None,
    probe_error: str = "",
) -> SmokeReport:
    """Pure: the verdict from the probe's document, the spec and the smoke commands' results."""
    if probe is None:
        detail = probe_error or "the probe printed no report"
        return SmokeReport(False, (Check("probe", "failed", detail),), "not-run", detail, access)
    checks = [Check(str(c["name"]), str(c["status"]), str(c.get("detail", ""))) for c in probe["checks"]]
    # Do not trust the probe's own comparison alone: hold its facts to the spec from the labels.
    fw = probe.get("framework") or {}
    found = str(fw.get("version") or "")
    verdict = build_verdict(spec.to_dict(), found, fw.get("cuda_build")) if found else None
    if verdict and not verdict[0]:
        checks.append(Check("spec.framework_build", "failed", verdict[1]))
    py = str((probe.get("python") or {}).get("version") or "")
    if spec.python not in ("", "from-base") and py and not py.startswith(spec.python + "."):
        checks.append(Check("spec.python", "failed", f"Python {spec.python} expected, found {py}"))
    g = probe.get("gpu") or {}
    gpu_status, reason = str(g.get("status") or "not-run"), str(g.get("reason") or "")
    if gpu_mode == "required":
        if not spec.is_gpu:
            checks.append(Check("gpu.required", "failed", no_gpu_build(spec)))
        elif not gpu_checks_passed(checks) or gpu_status != "passed":
            shown = gpu_status if gpu_status != "passed" else "ran no GPU computation"
            checks.append(Check("gpu.required", "failed", f"--gpu required, but the GPU checks {shown}: {reason}"))
    for command, result in commands:
        status = "passed" if result.exit_code == 0 else "failed"
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        checks.append(
            Check(
                f"run: {command}",
                status,
                f"exit {result.exit_code}" + (": " + " | ".join(tail) if status == "failed" and tail else ""),
            )
        )
    if not spec.is_gpu:
        gpu_status, reason = "not-applicable", "CPU image"
    passed = not any(c.status == "failed" for c in checks)
    return SmokeReport(passed, tuple(checks), gpu_status, reason, access, probe)


def gpu_checks_passed(checks: list[Check]) -> bool:
    """At least one GPU computation (a gpu.* check) passed and none failed: what `--gpu
    required` asks for. A probe that only says "passed" without such a check does not count."""
    ran = [c for c in checks if c.name.startswith("gpu.") and c.name != "gpu.required"]
    return any(c.status == "passed" for c in ran) and not any(c.status == "failed" for c in ran)


def no_gpu_build(spec: ResolvedSpec) -> str:
    return (
        f"--gpu required, but this image has no GPU build ({spec.framework} {spec.framework_version}, "
        f"{spec.variant}): no GPU check can run in it"
    )


def refuse_required_on_cpu(spec: ResolvedSpec, gpu_mode: str) -> None:
    """`required` never passes for an image with no GPU build: SmokeFailed (exit 3) before
    anything runs (or, in a build, before anything is built)."""
    if gpu_mode == "required" and not spec.is_gpu:
        raise SmokeFailed(
            no_gpu_build(spec),
            hint="build a CUDA variant (cuda: in the recipe), or smoke-test with --gpu auto",
        )


def state_dir() -> Path:
    """Where mlbuild keeps what it learned about local images (XDG state)."""
    root = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(root) / "mlbuild" / "smoke"


def save_result(image_id: str, report: SmokeReport) -> None:
    """Remember the last smoke result of an image for `mlbuild inspect` (labels cannot change
    after the build, so this lives beside the engine, keyed by image ID)."""
    doc = {
        "image_id": image_id,
        "passed": report.passed,
        "gpu": report.gpu_status,
        "gpu_reason": report.gpu_reason,
        "access": report.gpu_access,
        "failures": [f"{c.name}: {c.detail}" for c in report.failures()],
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    with contextlib.suppress(OSError):  # a read-only home: the result is printed, not remembered
        write_atomic(state_dir() / f"{image_id.removeprefix('sha256:')}.json", json.dumps(doc, sort_keys=True))


def last_result(image_id: str) -> dict[str, Any] | None:
    try:
        doc = json.loads((state_dir() / f"{image_id.removeprefix('sha256:')}.json").read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def smoke(
    engine: Engine,
    image: str,
    spec: ResolvedSpec,
    gpu_mode: str = "auto",
    access_mode: str | None = None,
    host: gpu_mod.HostGpus | None = None,
) -> SmokeReport:
    """Run the probe in `image`, and remember the verdict for `mlbuild inspect`."""
    report = _smoke(engine, image, spec, gpu_mode, access_mode, host)
    image_id = image if image.startswith("sha256:") else _image_id(engine, image)
    if image_id:
        save_result(image_id, report)
    return report


# /dev/shm of GPU smoke containers: NCCL keeps its buffers there, and the engine's default
# (64 MB) is too small for a communicator over several GPUs.
GPU_SHM_SIZE = "1g"

# One image at a time through a smoke engine's upload (docker save | docker load of GBs).
_COPYING = threading.Lock()


def smoke_on(
    engine: Engine,
    image_id: str,
    spec: ResolvedSpec,
    gpu_mode: str = "auto",
    access_mode: str | None = None,
    *,
    smoke_engine: Engine | None = None,
    say: Callable[[str], None] = lambda _: None,
) -> SmokeReport:
    """`smoke` on the engine that has the image, or, with `smoke_engine` (--gpu-host), on
    another engine: the image is copied there (docker save | docker load) and tested there.
    An image of another architecture runs under QEMU, which has no GPUs: CPU checks only (said).
    """
    emulated = emulation(smoke_engine or engine, spec)
    if emulated:
        say(f"smoke test {emulated}")
    report = _smoke_where(engine, image_id, spec, "off" if emulated else gpu_mode, access_mode, smoke_engine)
    if emulated and spec.is_gpu:
        report = dataclasses.replace(report, gpu_status="not-run", gpu_reason=emulated)
    return report


def emulation(engine: Engine, spec: ResolvedSpec) -> str:
    """'' when the engine runs the image's platform natively, else what that means for the
    smoke test: it runs under QEMU user emulation, which has no GPUs, so CPU checks only."""
    arch = platform_named(spec.platform).architecture
    engine_arch = str(engine.version().get("Arch") or DEFAULT_PLATFORM.architecture)
    if engine_arch == arch:
        return ""
    return f"under emulation: {spec.platform} on a {engine_arch} engine (QEMU), CPU checks only"


def _smoke_where(
    engine: Engine, image_id: str, spec: ResolvedSpec, gpu_mode: str, access_mode: str | None,
    smoke_engine: Engine | None,
) -> SmokeReport:
    """The GPUs of a remote engine cannot be looked at from here, so a GPU image is handed over
    with the NVIDIA container toolkit (what GPU hosts run) unless `access_mode` says otherwise;
    the probe inside the container checks the devices, the driver and the kernels itself."""
    if smoke_engine is None:
        return smoke(engine, image_id, spec, gpu_mode, access_mode)
    with _COPYING:
        if not smoke_engine.image_id(image_id):
            smoke_engine.load(engine.save(image_id))
        if spec.is_gpu and gpu_mode != "off":
            host = gpu_mod.HostGpus(
                device_nodes=("/dev/nvidia0",),
                toolkit=access_mode in (None, "toolkit"),
                cdi=access_mode == "cdi",
                notes=("remote engine: GPUs seen only from inside the container",),
            )
            return smoke(smoke_engine, image_id, spec, gpu_mode, access_mode or "toolkit", host=host)
        return smoke(smoke_engine, image_id, spec, gpu_mode, None, host=gpu_mod.HostGpus())


def _image_id(engine: Engine, ref: str) -> str | None:
    try:
        return engine.image_id(ref)
    except Exception:  # remembering is best effort
        return None


def _smoke(
    engine: Engine,
    image: str,
    spec: ResolvedSpec,
    gpu_mode: str = "auto",
    access_mode: str | None = None,
    host: gpu_mod.HostGpus | None = None,
) -> SmokeReport:
    """Run the probe in `image` with the GPUs handed over the best way this host allows."""
    refuse_required_on_cpu(spec, gpu_mode)
    want_gpu = gpu_mode != "off" and spec.is_gpu
    host = host if host is not None else (detect_host(engine) if want_gpu else gpu_mod.HostGpus())
    if gpu_mode == "required" and spec.is_gpu and not host.present:
        raise SmokeFailed(
            "--gpu required, but this host has no NVIDIA GPU (no /dev/nvidia* device nodes)",
            hint="run the smoke test on a GPU host, or use --gpu auto",
        )
    if want_gpu and host.present:
        problems = gpu_mod.preflight(host, spec.min_driver, spec.archs, spec.cuda)
        if problems:
            raise SmokeFailed(
                f"this host's GPUs cannot run {spec.framework} {spec.framework_version} ({spec.variant})",
                details=[p.what for p in problems],
                hint=problems[0].remedy,
            )
    modes = [access_mode] if access_mode else (host.modes() if want_gpu and host.present else [])
    tried: list[str] = []
    probe_cmd = [f"{VENV}/bin/python", PROBE_PATH, "--gpu", gpu_mode if spec.is_gpu else "off"]
    user = str(spec.uid)
    attempts: list[str | None] = list(modes) or [None]
    for mode in attempts:
        access = gpu_mod.access_for(mode, host) if mode else None
        kwargs = _run_kwargs(engine, access)
        try:
            result = engine.run(image, probe_cmd, user=user, **kwargs)
        except Exception as exc:  # the engine refused this access mode: try the next
            text = getattr(exc, "message", str(exc)) + " " + " ".join(getattr(exc, "details", []))
            if mode and gpu_mod.NO_DRIVER_RE.search(text):
                tried.append(f"{mode}: {text.strip()[:200]}")
                continue
            raise
        doc = parse_probe(result.stdout)
        commands = tuple(
            (cmd, engine.run(image, ["/bin/sh", "-c", cmd], user=user, **kwargs)) for cmd in spec.smoke_run
        )
        error = "" if doc else f"exit {result.exit_code}: {(result.stderr or result.stdout).strip()[-400:]}"
        report = check(spec, doc, gpu_mode, commands, mode, error)
        if tried:
            report = SmokeReport(report.passed, report.checks, report.gpu_status,
                                 report.gpu_reason + f" (after: {'; '.join(tried)})",
                                 report.gpu_access, report.probe)  # fmt: skip
        return report
    reason = "no GPU access mode worked: " + "; ".join(tried)
    if gpu_mode == "required":
        raise SmokeFailed(reason, hint="install the NVIDIA container toolkit, or check the driver")
    result = engine.run(image, [*probe_cmd[:-1], "off"], user=user)
    report = check(spec, parse_probe(result.stdout), "off", (), None)
    return SmokeReport(report.passed, report.checks, "not-run", reason, None, report.probe)


def _run_kwargs(engine: Engine, access: gpu_mod.Access | None) -> dict[str, Any]:
    if access is None:
        return {}
    kwargs: dict[str, Any] = {
        "devices": list(access.devices),
        "volumes": access.volume_map(),
        "environment": dict(access.environment),
        "shm_size": GPU_SHM_SIZE,
    }
    if access.device_request == "gpu":
        kwargs["device_requests"] = [engine.gpu_device_request()]
    elif access.device_request == "cdi":
        kwargs["device_requests"] = [engine.cdi_device_request()]
    return kwargs


def detect_host(engine: Engine) -> gpu_mod.HostGpus:
    """GPUs of the machine this process runs on, with what the engine supports."""
    try:
        info = engine.info()
        runtimes = tuple((info.get("Runtimes") or {}).keys())
        api = str(engine.version().get("ApiVersion", "1.41"))
    except Exception:
        runtimes, api = (), "1.41"
    return gpu_mod.detect(runtimes, api)
