"""`mlbuild doctor`: what this host offers for building and testing images, with remedies."""

from __future__ import annotations

import os
import shutil
from typing import Any

from builder import gpu as gpu_mod
from builder.buildkit import choose
from builder.credentials import docker_config_path, read_docker_config
from builder.engine_api import BuilderProbe
from builder.errors import MlbuildError
from builder.matrix import load_matrix, version_key
from builder.settings import load_settings


def finding(severity: str, what: str, remedy: str = "", **facts: Any) -> dict[str, Any]:
    return {"severity": severity, "what": what, "remedy": remedy, **facts}


def run_checks() -> list[dict[str, Any]]:
    from builder.engine import Engine

    out: list[dict[str, Any]] = []
    runtimes: tuple[str, ...] = ()
    api = "1.41"
    data_root = "/var/lib/docker"
    engine = None
    try:
        engine = Engine.connect(timeout=20)
        info, version = engine.info(), engine.version()
        runtimes = tuple((info.get("Runtimes") or {}).keys())
        api = str(version.get("ApiVersion", api))
        data_root = str(info.get("DockerRootDir") or data_root)
        out.append(finding(
            "ok", f"Docker engine {version.get('Version')} (API {api}), storage {info.get('Driver')}, "
            f"cgroup v{info.get('CgroupVersion', '?')}, runtimes {', '.join(runtimes) or '-'}",
            engine_version=version.get("Version"), api_version=api, storage_driver=info.get("Driver"),
        ))  # fmt: skip
    except MlbuildError as exc:
        out.append(finding("error", exc.message, exc.hint or ""))
    host = gpu_mod.detect(runtimes, api)
    if not host.present:
        out.append(
            finding(
                "info",
                "no NVIDIA GPU on this host (no /dev/nvidia* devices): GPU smoke checks will not run",
                "build here, smoke-test GPU images on a GPU host with `mlbuild smoke IMAGE --gpu required`",
            )
        )
    else:
        out.append(
            finding(
                "ok" if host.driver else "warning",
                f"NVIDIA driver {host.driver or 'unknown'}; devices {' '.join(host.device_nodes)}",
                "" if host.driver else "load the nvidia kernel module",
                driver=host.driver,
            )
        )
        for g in host.gpus:
            out.append(
                finding(
                    "ok",
                    f"GPU {g.index}: {g.name}, compute capability {g.capability} ({g.arch})",
                    gpu=g.name,
                    capability=g.capability,
                )
            )
        if host.driver:
            out.append(newest_cuda(host.driver))
        modes = host.modes()
        out.append(finding(
            "ok" if modes else "error",
            "GPU access modes: " + (", ".join(modes) or "none")
            + ("" if host.toolkit else "; no NVIDIA container toolkit (device injection is used instead)"),
            "" if modes else "install the NVIDIA container toolkit, or the driver's libraries",
            modes=modes, driver_dir=host.driver_dir, driver_libs=list(host.driver_libs),
        ))  # fmt: skip
    if engine is not None:
        out.append(builder_finding(engine.buildkit_probe(), _site_builder()))
    out.append(credentials())
    out.append(disk(data_root))
    return out


def _site_builder() -> str | None:
    try:
        return load_settings().builder
    except MlbuildError:
        return None  # a bad setting is reported by the commands that read it


def builder_finding(probe: BuilderProbe, site: str | None = None) -> dict[str, Any]:
    """Which builder `--builder auto` picks on this host, and why."""
    chosen = choose("auto", probe)
    remedy = "" if chosen.buildkit else (
        "for cache mounts, secrets and --cache-from: install the docker buildx plugin (or Debian's "
        "docker.io CLI); builds work either way"
    )  # fmt: skip
    what = f"builder: auto picks {chosen.builder} ({chosen.reason})"
    if site:
        what += f"; the site's builder: {site} ($MLBUILD_BUILDER or the site config) is used instead"
    return finding("ok" if chosen.buildkit else "info", what, remedy, builder=chosen.builder,
                   builder_cli=probe.cli, builder_reason=chosen.reason)  # fmt: skip


def newest_cuda(driver: str) -> dict[str, Any]:
    m = load_matrix()
    full = [t.version for t in m.toolkits.values() if version_key(driver) >= version_key(t.min_driver)]
    compat = [mj.major for mj in m.majors.values() if version_key(driver) >= version_key(mj.compat_min_driver)]
    best = max(full, key=version_key) if full else None
    return finding(
        "ok" if best else "warning",
        f"driver {driver} runs CUDA up to {best or 'none'} natively; CUDA majors "
        f"{', '.join(sorted(compat, key=int)) or 'none'} through minor-version compatibility",
        "" if best else "upgrade the driver",
        newest_cuda=best, cuda_majors=compat,
    )  # fmt: skip


def credentials() -> dict[str, Any]:
    """Registries with stored credentials: names only, never the secrets."""
    path = docker_config_path()
    try:
        doc = read_docker_config(path)
    except MlbuildError:
        doc = {}
    names = sorted((doc.get("auths") or {}).keys())
    helpers = sorted(
        set((doc.get("credHelpers") or {}).values()) | ({doc["credsStore"]} if doc.get("credsStore") else set())
    )
    what = f"registry credentials in {path}: {', '.join(names) or 'none'}"
    if helpers:
        what += f"; credential helpers: {', '.join(helpers)}"
    return finding("info", what, "", registries=names, helpers=helpers)


def disk(data_root: str) -> dict[str, Any]:
    target = data_root if os.path.exists(data_root) else "/"
    usage = shutil.disk_usage(target)
    free_gb = usage.free / 1e9
    severity = "ok" if free_gb > 20 else "warning" if free_gb > 5 else "error"
    return finding(
        severity,
        f"{free_gb:.1f} GB free at {target}",
        "" if severity == "ok" else "free disk space: CUDA images need 10-20 GB while building",
        free_bytes=usage.free,
    )
