"""A brute-force oracle for the resolver, written from the data files and their documented
meaning (builder/data/README.md, the README's "How resolution works") alone.

It reads builder/data/*.yaml itself and imports nothing from builder (test_resolve_properties.py
checks that), so a bug in the resolver's helpers (version matching, CUDA fitting, driver floors,
Python lists, the data loader) cannot hide in the oracle too. It enumerates every (release,
Python, build) a recipe allows and picks as documented: the newest release, then its newest
Python, then its newest CUDA build (a CPU build when the recipe asks for one, or when the release
has no CUDA build and no GPU fleet is named).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml
from packaging.specifiers import SpecifierSet
from packaging.version import Version

DATA = Path(__file__).resolve().parents[2] / "builder" / "data"


def numeric(text: str) -> tuple[int, ...]:
    """ "12.4" < "12.10", "535.104.05" < "550.54.14": compared part by part as numbers."""
    return tuple(int(p) for p in text.split("."))


@dataclass(frozen=True)
class Build:
    name: str
    cuda: str | None  # None: a CPU or ROCm build
    rocm: str | None
    cuda_match: str
    archs: frozenset[str]
    pythons: tuple[str, ...]


@dataclass(frozen=True)
class Release:
    version: Version
    builds: tuple[Build, ...]


@dataclass(frozen=True)
class Data:
    releases: dict[str, tuple[Release, ...]]  # framework -> its releases, in file order
    toolkit_driver: dict[str, str]  # CUDA minor -> the driver its full toolkit needs
    major_floor: dict[str, str]  # CUDA major -> the minor-version-compatibility driver floor
    base_image: dict[str, str]  # Python -> its default slim base image


@dataclass(frozen=True)
class Choice:
    release: Release
    python: str
    build: Build


def load(folder: Path = DATA) -> Data:
    docs = {p.name: yaml.safe_load(p.read_text()) or {} for p in sorted(folder.glob("*.yaml"))}
    releases: dict[str, tuple[Release, ...]] = {}
    for doc in docs.values():
        if "framework" not in doc or "releases" not in doc:
            continue
        found = []
        for r in doc["releases"]:
            python = tuple(str(p) for p in r["python"])
            builds = tuple(
                Build(
                    name=str(v["name"]),
                    cuda=None if v.get("cuda") is None else str(v["cuda"]),
                    rocm=None if v.get("rocm") is None else str(v["rocm"]),
                    cuda_match=str(v.get("cuda_match", "exact")),
                    archs=frozenset(str(a) for a in v.get("archs") or ()),
                    pythons=tuple(str(p) for p in v["python"]) if v.get("python") else python,
                )
                for v in r["variants"]
            )
            found.append(Release(Version(str(r["version"])), builds))
        releases[str(doc["framework"])] = tuple(found)
    cuda, bases = docs["cuda.yaml"], docs["bases.yaml"]
    return Data(
        releases=releases,
        toolkit_driver={str(t["version"]): str(t["min_driver"]) for t in cuda["toolkits"]},
        major_floor={str(m["major"]): str(m["compat_min_driver"]) for m in cuda["majors"]},
        base_image={str(b["python"]): str(b["image"]) for b in bases["python"]},
    )


def release_matches(version: Version, wanted: str | None) -> bool:
    """None: any final release; "2.4": the final 2.4.x; "1.4.1.post1": that one; else PEP 440."""
    if wanted is None:
        return not version.is_prerelease
    parts = wanted.split(".")
    if wanted[0].isdigit() and all(p.isdigit() for p in parts):
        return list(version.release[: len(parts)]) == [int(p) for p in parts] and not version.is_prerelease
    if wanted[0].isdigit():
        return version == Version(wanted)
    return version in SpecifierSet(wanted)


def driver_floor(data: Data, cuda: str) -> str | None:
    """The oldest driver that runs a CUDA build: the major's compatibility floor, or the
    toolkit's own driver where that is older; None when the major is unknown."""
    floor = data.major_floor.get(cuda.split(".")[0])
    own = data.toolkit_driver.get(cuda)
    if floor is None:
        return None
    return own if own is not None and numeric(own) < numeric(floor) else floor


def _fleet_runs(data: Data, b: Build, min_driver: str | None, archs: tuple[str, ...]) -> bool:
    assert b.cuda is not None
    floor = driver_floor(data, b.cuda)
    driver_ok = min_driver is None or floor is None or numeric(min_driver) >= numeric(floor)
    return driver_ok and set(archs) <= b.archs


def _cuda_fits(b: Build, wanted: str) -> bool:
    assert b.cuda is not None
    if b.cuda_match == "major":
        return wanted.split(".")[0] == b.cuda.split(".")[0] and numeric(wanted) >= numeric(b.cuda)
    return wanted == b.cuda


def allowed_builds(
    data: Data, release: Release, cuda: str | None, min_driver: str | None, archs: tuple[str, ...]
) -> list[Build]:
    fleet = bool(min_driver or archs)
    cpu = [b for b in release.builds if b.cuda is None and b.rocm is None]
    gpu = [b for b in release.builds if b.cuda is not None]
    if cuda == "cpu":
        return [] if fleet else cpu
    if cuda is not None:
        return [b for b in gpu if _cuda_fits(b, cuda) and _fleet_runs(data, b, min_driver, archs)]
    if fleet:
        return [b for b in gpu if _fleet_runs(data, b, min_driver, archs)]
    return gpu or cpu  # no cuda: asked for: a release's CUDA builds come first


def choices(
    data: Data,
    framework: str,
    framework_version: str | None,
    python: str | None,
    cuda: str | None,
    min_driver: str | None,
    archs: tuple[str, ...],
) -> list[Choice]:
    """Every (release, Python, build) the recipe allows."""
    return [
        Choice(rel, py, b)
        for rel in data.releases[framework]
        if release_matches(rel.version, framework_version)
        for b in allowed_builds(data, rel, cuda, min_driver, archs)
        for py in b.pythons
        if py in data.base_image and python in (None, py)
    ]


def best(found: list[Choice]) -> list[Choice]:
    """The choices tied for the documented pick: newest release, newest Python, newest CUDA."""
    if not found:
        return []
    newest = max(c.release.version for c in found)
    found = [c for c in found if c.release.version == newest]
    top_python = max((c.python for c in found), key=numeric)
    found = [c for c in found if c.python == top_python]
    top_cuda: tuple[int, ...] | None = max((numeric(c.build.cuda) for c in found if c.build.cuda), default=None)
    return [c for c in found if (numeric(c.build.cuda) if c.build.cuda else None) == top_cuda]
