"""Offline builds from a wheelhouse (a folder of wheels).

Before a build starts, `missing()` walks the requirements and, through each wheel's own
metadata, their dependencies, for the image's Python and platform, and lists what the folder
lacks. pip then installs with `--no-index --find-links` in the builder stage only, so the
wheelhouse never reaches the final image.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from email.parser import Parser
from functools import cached_property
from pathlib import Path

from packaging.requirements import Requirement
from packaging.tags import Tag
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

from builder.platforms import LINUX_X86_64, Platform


@dataclass(frozen=True)
class Wheel:
    path: Path
    name: str  # canonical
    version: Version
    tags: frozenset[Tag]

    @cached_property
    def requires(self) -> tuple[Requirement, ...]:
        with zipfile.ZipFile(self.path) as zf:
            meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
            msg = Parser().parsestr(zf.read(meta).decode("utf-8", errors="replace"))
        return tuple(Requirement(r) for r in msg.get_all("Requires-Dist") or [])


def target_tags(python: str, platform: str = "x86_64") -> set[Tag]:
    """Wheel tags a CPython `python` on glibc Linux accepts (manylinux up to glibc 2.40)."""
    return set(Platform(platform).wheel_tags(python))


def scan(folder: Path) -> list[Wheel]:
    wheels = []
    for path in sorted(folder.glob("*.whl")):
        name, version, _build, tags = parse_wheel_filename(path.name)
        wheels.append(Wheel(path, str(name), version, frozenset(tags)))
    return wheels


def usable(folder: Path, python: str) -> list[Path]:
    """The wheels of `folder` that an image with this CPython on Linux can install."""
    accepted = target_tags(python)
    return [w.path for w in scan(folder) if w.tags & accepted]


def missing(requirements: list[str], folder: Path, python: str, deps: bool = True) -> list[str]:
    """Requirements (and, with deps, their dependencies) the wheelhouse cannot satisfy."""
    accepted = target_tags(python)
    wheels = [w for w in scan(folder) if w.tags & accepted]
    env = LINUX_X86_64.marker_environment(python)
    lacking: list[str] = []
    seen: set[str] = set()
    queue = [(Requirement(r), "") for r in requirements]
    while queue:
        req, via = queue.pop(0)
        name = canonicalize_name(req.name)
        key = f"{name}{req.specifier}"
        if key in seen:
            continue
        seen.add(key)
        found = [
            w for w in wheels
            if w.name == name and req.specifier.contains(w.version, prereleases=True)
        ]  # fmt: skip
        if not found:
            shown = f"{req.name}{'[' + ','.join(sorted(req.extras)) + ']' if req.extras else ''}{req.specifier}"
            lacking.append(shown + (f" (needed by {via})" if via else ""))
            continue
        best = max(found, key=lambda w: w.version)
        for dep in best.requires if deps else ():
            extras = req.extras or {""}
            if dep.marker and not any(dep.marker.evaluate({**env, "extra": e}) for e in extras):
                continue
            queue.append((dep, f"{best.name} {best.version}"))
    return lacking
