"""The base image of a build: found on the engine, pulled, or made from a Debian archive with
debootstrap for sites that cannot pull; and, for framework_from_base, what the base carries."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builder import hostcache
from builder.engine_api import Engine
from builder.errors import EngineError, ResolveError, UsageError
from builder.labels import BASE_MIRROR_LABEL, BASE_SUITE_LABEL, SPEC_LABEL
from builder.platforms import DEFAULT_PLATFORM, PLATFORMS, Platform, platform_named
from builder.probe import base_version
from builder.refs import split_tag
from builder.render import needs_pip, probe_source
from builder.resolve import FROM_BASE
from builder.settings import redact
from builder.spec import ResolvedSpec
from builder.tarstream import tar_stream

Say = Callable[[str], None]
SOURCES_FILES = ("/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list")
# Left out of the image: caches that debootstrap leaves and nothing at run time needs.
PRUNE = (
    "var/cache/apt/archives",
    "var/lib/apt/lists",
    "var/log",
    "var/cache/debconf/templates.dat-old",
)


def host_mirror(files: tuple[str, ...] = SOURCES_FILES, extra_dir: str = "/etc/apt/sources.list.d") -> str | None:
    """The Debian archive this host's apt uses (deb822 URIs: or one-line `deb URL suite`)."""
    candidates = (
        list(files)
        + sorted(str(p) for p in Path(extra_dir).glob("*.sources"))
        + sorted(str(p) for p in Path(extra_dir).glob("*.list"))
    )
    for name in candidates:
        try:
            text = Path(name).read_text()
        except OSError:
            continue
        for line in text.splitlines():
            line = line.strip()
            url = None
            if line.startswith("URIs:"):
                url = line.split()[1] if len(line.split()) > 1 else None
            elif line.startswith("deb "):
                parts = [p for p in line.split() if not p.startswith("[")]
                url = parts[1] if len(parts) > 1 else None
            if url and url.startswith(("http://", "https://")) and "security" not in url:
                return url.rstrip("/")
    return None


def bootstrap(
    engine: Engine, suite: str, tag: str, mirror: str | None, say: Callable[[str], None], arch: str = "amd64"
) -> dict[str, Any]:
    """debootstrap `suite` for Debian architecture `arch` (amd64, arm64) and import it as an
    image of that platform. Another architecture than the host's runs its package scripts
    under QEMU user emulation (binfmt_misc with qemu-user-static: scripts/setup-host.sh)."""
    platform = platform_of_arch(arch)
    if os.geteuid() != 0:
        raise UsageError("base bootstrap needs root (debootstrap makes device files and chroots)")
    if not shutil.which("debootstrap"):
        raise UsageError("debootstrap is not installed", hint="apt-get install -y debootstrap")
    mirror = mirror or host_mirror()
    if not mirror:
        raise UsageError("no Debian mirror found in this host's apt sources", hint="give --mirror URL")
    repo, version = split_tag(tag)
    with tempfile.TemporaryDirectory(prefix="mlbuild-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        foreign = platform.machine != os.uname().machine
        if foreign:
            check_emulation(platform.machine)
        say(f"debootstrap {suite} {arch} from {redact(mirror)} ({'minutes, emulated' if foreign else 'about 30 s'})")
        started = time.monotonic()
        cmd = ["debootstrap", f"--arch={arch}", "--variant=minbase", suite, str(rootfs), mirror]
        _run_with_progress(cmd, say, "debootstrap")
        for rel in PRUNE:
            target = rootfs / rel
            if target.is_dir():
                for child in target.iterdir():
                    if child.is_dir() and child.name == "partial":
                        continue
                    if child.is_file() or child.is_symlink():
                        child.unlink()
                    elif child.is_dir():
                        shutil.rmtree(child)
        say(f"importing into the engine as {repo}:{version}")
        image_id = _import(engine, rootfs, repo, version, suite, mirror, platform.name)
    attrs = engine.inspect(image_id)
    if attrs.get("Architecture") != arch:
        engine.remove_image(image_id, force=True)  # nothing half done: no base of the wrong architecture
        raise EngineError(
            f"the engine imported {repo}:{version} as {attrs.get('Architecture')}, not {arch}",
            hint="the engine did not keep the image's architecture: build on a native engine of it",
        )
    size = int(attrs.get("Size") or 0)
    return {
        "image_id": image_id,
        "tag": f"{repo}:{version}",
        "suite": suite,
        "platform": platform.name,
        "mirror": redact(mirror),
        "size_bytes": size,
        "seconds": round(time.monotonic() - started, 1),
    }


def _run_with_progress(cmd: list[str], say: Callable[[str], None], what: str) -> None:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    last: list[str] = []
    assert proc.stdout
    for line in proc.stdout:
        last = [*last[-20:], line.rstrip()]
        # the few milestones of a debootstrap run, not its hundreds of lines
        if line.startswith(("I: Retrieving Release", "I: Installing core", "I: Base system")):
            say(line.strip()[3:])
    if proc.wait() != 0:
        raise EngineError(f"{what} failed (exit {proc.returncode})", details=last[-8:])


def platform_of_arch(arch: str) -> Platform:
    """The platform of a Debian architecture name (they are the OCI ones: amd64, arm64)."""
    found = [p for p in PLATFORMS.values() if p.architecture == arch]
    if not found:
        allowed = ", ".join(p.architecture for p in PLATFORMS.values())
        raise UsageError(f"--arch {arch!r} is not an architecture mlbuild builds for", hint=f"use one of: {allowed}")
    return found[0]


def check_emulation(machine: str, root: str = "/proc/sys/fs/binfmt_misc") -> None:
    """Foreign binaries run only where binfmt_misc hands them to QEMU; say how to set it up."""
    entry = Path(root) / f"qemu-{machine}"
    try:
        enabled = entry.read_text().splitlines()[0].strip() == "enabled"
    except (OSError, IndexError):
        enabled = False
    if not enabled:
        raise UsageError(
            f"this host cannot run linux {machine} programs: no enabled {entry}",
            hint="bash scripts/setup-host.sh (installs qemu-user-static and binfmt-support, mounts "
            "binfmt_misc), or run on a native host / engine of that architecture",
        )


def _import(engine: Engine, rootfs: Path, repo: str, version: str, suite: str, mirror: str, platform: str) -> str:
    """`docker import` of the root file system, entries in sorted order; for another platform
    than the engine's own, `docker load` of an image made here (below)."""

    def fill(tar: tarfile.TarFile) -> None:
        for path in sorted(rootfs.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(rootfs)), recursive=False)

    changes = [
        "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        f"LABEL {BASE_SUITE_LABEL}={suite}",
        f"LABEL {BASE_MIRROR_LABEL}={redact(mirror)}",
        'CMD ["/bin/bash"]',
    ]
    if platform == DEFAULT_PLATFORM.name:
        return engine.import_rootfs(tar_stream(fill, "the root file system"), repo, version, changes)
    return _load_rootfs(engine, rootfs.parent / "layer.tar", fill, f"{repo}:{version}", suite, mirror, platform)


def _load_rootfs(
    engine: Engine,
    layer: Path,
    fill: Callable[[tarfile.TarFile], None],
    ref: str,
    suite: str,
    mirror: str,
    platform: str,
) -> str:
    """The root file system as a one-layer image of `platform`, through `docker load`: an
    imported image gets the engine's own architecture whatever the import asks (Docker 20.10
    does so), and a base of the wrong architecture is never chosen for a build."""
    digest = hashlib.sha256()
    with layer.open("wb") as fh, tarfile.open(fileobj=fh, mode="w", format=tarfile.PAX_FORMAT) as tar:
        fill(tar)
    with layer.open("rb") as written:
        while block := written.read(1 << 20):
            digest.update(block)
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    os_name, arch = platform.split("/")[:2]
    config = json.dumps({
        "architecture": arch,
        "os": os_name,
        "created": created,
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["/bin/bash"],
            "Labels": {BASE_SUITE_LABEL: suite, BASE_MIRROR_LABEL: redact(mirror)},
        },
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{digest.hexdigest()}"]},
        "history": [{"created": created, "created_by": f"mlbuild base bootstrap --arch {arch}"}],
    }, sort_keys=True).encode()  # fmt: skip
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [ref], "Layers": ["layer.tar"]}]).encode()

    def image(tar: tarfile.TarFile) -> None:
        for name, data in (("manifest.json", manifest), (config_name, config)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        tar.add(layer, arcname="layer.tar")

    engine.load(tar_stream(image, "the base image"))
    image_id = engine.image_id(ref)
    if not image_id:
        raise EngineError(f"docker load of {ref} gave no image")
    return image_id


@dataclass(frozen=True)
class BaseChoice:
    ref: str  # what FROM names
    image_id: str
    note: str = ""


def choose_base(engine: Engine, spec: ResolvedSpec, say: Say) -> BaseChoice:
    """The base image on this engine: as named, pulled, or one made by `mlbuild base bootstrap`;
    always one of the spec's platform (an engine keeps one platform per tag)."""
    arch = platform_named(spec.platform).architecture
    image_id = engine.image_id(spec.base_image)
    if image_id and _arch(engine, image_id) == arch:
        return BaseChoice(spec.base_image, image_id)
    if image_id:
        say(f"base {spec.base_image} on this engine is {_arch(engine, image_id)}, not {arch}")
    other = "" if arch == "amd64" else f" for {spec.platform}"
    say(f"base {spec.base_image} is not on this engine{other}; pulling it")
    try:
        pulled = engine.pull(spec.base_image)
        if _arch(engine, pulled) != arch:
            raise EngineError(f"the pull gave a {_arch(engine, pulled)} image, not {arch}")
        return BaseChoice(spec.base_image, pulled, "pulled")
    except EngineError as exc:
        pull_error = "; ".join([exc.message, *exc.details])
    if spec.base_suite and spec.python_from == "distro":
        made = [
            img for img in engine.images_with_label(f"{BASE_SUITE_LABEL}={spec.base_suite}")
            # images built FROM such a base inherit its label: keep tagged ones that are a bare
            # imported root file system (one history entry), as `mlbuild base bootstrap` makes
            if [t for t in img.get("RepoTags") or [] if t != "<none>:<none>"]
            and SPEC_LABEL not in (img.get("Labels") or {})
            and len(engine.history(str(img["Id"]))) == 1
            and _arch(engine, str(img["Id"])) == arch
        ]  # fmt: skip
        if made:
            newest = max(made, key=lambda img: (img.get("Created", 0), img["Id"]))
            ref = sorted(t for t in newest["RepoTags"] if t != "<none>:<none>")[0]
            return BaseChoice(
                ref, str(newest["Id"]),
                f"{spec.base_image} cannot be pulled; using {ref}, a Debian {spec.base_suite} {arch} "
                "base made by `mlbuild base bootstrap`",
            )  # fmt: skip
    suite = spec.base_suite or "bookworm"
    raise EngineError(
        f"base image {spec.base_image} is not on this engine and cannot be pulled",
        details=[redact(pull_error)],
        hint=(
            f"on a site without registry access, make one: mlbuild base bootstrap --suite {suite} "
            + (f"--tag mlbuild/debian:{suite}" if arch == "amd64" else f"--arch {arch}")
            if spec.python_from == "distro"
            else "load it with `docker load`, or pass --base-image REF"
        ),
    )


def observe(engine: Engine, spec: ResolvedSpec, base_named: bool) -> ResolvedSpec:
    """What the build takes from its base: with framework_from_base the Python and the
    framework; on a base the recipe or --base-image named (`base_named`), its own Python."""
    if spec.framework_from_base:
        return observe_base(engine, spec)
    if base_named and spec.python_from in ("image", "distro"):
        return observe_python(engine, spec)
    return spec


def observe_python(engine: Engine, spec: ResolvedSpec) -> ResolvedSpec:
    """A base named by the recipe or --base-image: the venv is made with the Python found there
    (python{X.Y}, else python3, on its PATH), not with the path of the default base of that
    version (/usr/local/bin/python3.12 is python:3.12-slim's). Without a usable one, a distro
    Python is installed with apt as usual; a base that must carry it (python_from image) is
    refused before the build."""
    seen, output = _observe(engine, spec)
    py = ".".join(str(seen["python"]).split(".")[:2]) if seen else None
    venv = str(seen.get("venv_pip") or "ok") if seen else ""
    if seen and py == spec.python and (venv == "ok" or not needs_pip(spec)):
        if seen["python_bin"] == spec.python_bin and spec.python_from == "image":
            return spec
        return dataclasses.replace(
            spec,
            python_from="image",
            python_bin=str(seen["python_bin"]),
            reasons=(*spec.reasons, f"python {spec.python}: {seen['python_bin']}, found in the base {spec.base_image}"),
        )
    if spec.python_from == "distro":
        return spec  # apt installs python{X.Y} and its venv module, as on the default base
    if seen is None:
        raise ResolveError(
            f"the base image {spec.base_image} has no python{spec.python} or python3 on its PATH",
            details=[output] if output else [],
            hint=f"use a base that carries Python {spec.python}, or leave base_image out for the default one",
        )
    if py != spec.python:
        raise ResolveError(
            f"the base image {spec.base_image} has Python {seen['python']} ({seen['python_bin']}); "
            f"the recipe asks for {spec.python}",
            hint=f'use python: "{py}" in the recipe, or another base image',
        )
    raise ResolveError(
        f"the base image {spec.base_image}'s Python ({seen['python_bin']}) cannot make a virtual environment with pip",
        details=[venv],
        hint=f"Debian and Ubuntu Pythons need python{spec.python}-venv (ensurepip's wheels in "
        "/usr/share/python-wheels) in the base",
    )


def _observe(engine: Engine, spec: ResolvedSpec) -> tuple[dict[str, Any] | None, str]:
    """The probe's --observe in the base, by the first of python{X.Y}, python3 that the base's
    PATH has (bases imported from a host may have no shell and no python3 link): what it saw
    (None if no Python answered) and the last output, for the error."""
    code = probe_source()
    names = ([f"python{spec.python}"] if spec.python != FROM_BASE else []) + ["python3"]
    image_id = engine.image_id(spec.base_image) or ""
    # an image ID is the digest of the image's content: what it carries never changes under it
    entry = hostcache.key("observe", image_id, hashlib.sha256(code.encode()).hexdigest(), names, spec.import_name,
                          spec.framework)  # fmt: skip
    remembered = hostcache.get("observed", entry) if image_id else None
    if isinstance(remembered, dict) and "seen" in remembered:
        return remembered["seen"], str(remembered.get("output") or "")
    result = None
    absent = 0  # names the engine found on no PATH of the base
    for name in names:
        try:
            result = engine.run(
                spec.base_image,
                ["-c", code, "--observe", spec.import_name, "--framework", spec.framework],  # probe main() reads argv
                entrypoint=[name],
            )
        except EngineError as exc:  # not on the base's PATH: the engine cannot start it
            absent += _not_found(exc)
            continue
        if result.exit_code == 0:
            break
    output = (result.stderr or result.stdout).strip()[-300:] if result else ""
    try:
        seen = json.loads(result.stdout.strip().splitlines()[-1]) if result else None
    except (ValueError, IndexError):
        seen = None
    found = isinstance(seen, dict) and "python_bin" in seen
    # facts of the image, remembered: what its Python said, or that it has none of these names
    if image_id and ((found and result and result.exit_code == 0) or absent == len(names)):
        hostcache.put("observed", entry, {"seen": seen if found else None, "output": output})
    return (seen, output) if found else (None, output)


def _not_found(exc: EngineError) -> bool:
    said = " ".join([str(exc), *exc.details]).lower()
    return "executable file not found" in said or "no such file or directory" in said


def _arch(engine: Engine, image_id: str) -> str:
    return str(engine.inspect(image_id).get("Architecture") or "amd64")


def observe_base(engine: Engine, spec: ResolvedSpec) -> ResolvedSpec:
    """framework_from_base: find the base's Python and framework and record them in the spec."""
    seen, output = _observe(engine, spec)
    if seen is None:
        raise EngineError(
            f"cannot find Python in the base image {spec.base_image}",
            details=[output] if output else [],
            hint="framework_from_base needs python3 on the base image's PATH",
        )
    if "error" in seen:
        raise ResolveError(
            f"the base image {spec.base_image} does not carry {spec.framework}",
            details=[seen["error"]],
            hint="drop framework_from_base to install the framework, or use another base",
        )
    py = ".".join(seen["python"].split(".")[:2])
    if spec.python not in (FROM_BASE, py):
        raise ResolveError(f"the base image has Python {seen['python']}; the recipe asks for {spec.python}")
    cuda = seen.get("cuda_build")
    cuda_mm = ".".join(str(cuda).split(".")[:2]) if cuda else "cpu"
    if spec.cuda not in (FROM_BASE, cuda_mm):
        raise ResolveError(f"the base's {spec.framework} is built for {cuda_mm}; the recipe asks for {spec.cuda}")
    return dataclasses.replace(
        spec,
        framework_version=base_version(seen["framework_version"]),
        python=py,
        python_bin=seen["python_bin"],
        cuda=cuda_mm,
        cudnn=seen.get("cudnn"),
        variant=seen["framework_version"].partition("+")[2] or ("cpu" if not cuda else f"cuda{cuda_mm}"),
        archs=tuple(seen.get("archs") or ()),
        base_site_packages=tuple(seen.get("site_packages") or ()),
        reasons=(*spec.reasons, f"observed in the base: {spec.framework} {seen['framework_version']}, "
                 f"Python {seen['python']}, CUDA {cuda or 'none'}, cuDNN {seen.get('cudnn') or 'none'}"),
    )  # fmt: skip
