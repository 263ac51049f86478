"""Base images made from a Debian archive with debootstrap, for sites that cannot pull."""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from builder.engine_api import Engine
from builder.errors import EngineError, UsageError
from builder.labels import BASE_MIRROR_LABEL, BASE_SUITE_LABEL
from builder.refs import split_tag
from builder.settings import redact
from builder.tarstream import tar_stream

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


def bootstrap(engine: Engine, suite: str, tag: str, mirror: str | None, say: Callable[[str], None]) -> dict[str, Any]:
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
        say(f"debootstrap {suite} from {redact(mirror)} (about 30 s)")
        started = time.monotonic()
        _run_with_progress(["debootstrap", "--variant=minbase", suite, str(rootfs), mirror], say, "debootstrap")
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
        image_id = _import(engine, rootfs, repo, version, suite, mirror)
    size = int(engine.inspect(image_id).get("Size") or 0)
    return {
        "image_id": image_id,
        "tag": f"{repo}:{version}",
        "suite": suite,
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


def _import(engine: Engine, rootfs: Path, repo: str, version: str, suite: str, mirror: str) -> str:
    """`docker import` of the root file system, entries in sorted order."""

    def fill(tar: tarfile.TarFile) -> None:
        for path in sorted(rootfs.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(rootfs)), recursive=False)

    changes = [
        "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        f"LABEL {BASE_SUITE_LABEL}={suite}",
        f"LABEL {BASE_MIRROR_LABEL}={redact(mirror)}",
        'CMD ["/bin/bash"]',
    ]
    return engine.import_rootfs(tar_stream(fill, "the root file system"), repo, version, changes)
