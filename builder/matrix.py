"""The compatibility matrix: loads the data files in builder/data/ into typed, checked objects.

The knowledge itself is data (see builder/data/README.md for the schema and sources); this
module only reads it, checks that it is consistent, and offers lookups. resolve.py decides.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from packaging.version import InvalidVersion, Version

# libyaml's loader is ~7x faster than the pure-Python one on these files (about 15 ms instead of
# 110 ms), which matters because every `mlbuild resolve` loads them; fall back where PyYAML was
# built without libyaml.
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

FRAMEWORK_FILES = {
    "pytorch": "pytorch.yaml",
    "tensorflow": "tensorflow.yaml",
    "jax": "jax.yaml",
    "sklearn": "sklearn.yaml",
}


class MatrixDataError(Exception):
    """The data files are inconsistent: a bug in mlbuild's data, never a user mistake."""


@dataclass(frozen=True)
class Variant:
    name: str  # cu124, cpu, rocm6.2, cuda12 ...
    requirement: str  # pip requirement template, "{version}" is the release version
    cuda: str | None = None  # major.minor the build targets; None for CPU/ROCm
    cuda_match: str = "exact"  # exact | major (any recipe cuda of that major >= cuda)
    cudnn: str | None = None
    archs: tuple[str, ...] = ()
    python: tuple[str, ...] | None = None  # fewer Pythons than the release, when so
    rocm: str | None = None

    @property
    def is_cpu(self) -> bool:
        return self.cuda is None and self.rocm is None


@dataclass(frozen=True)
class Release:
    version: Version
    python: tuple[str, ...]
    variants: tuple[Variant, ...]
    default_variant: str | None = None
    companions: tuple[tuple[str, str], ...] = ()
    todo: str | None = None  # placeholder left by `mlbuild matrix refresh`: facts a human must add

    def pythons_for(self, variant: Variant) -> tuple[str, ...]:
        return variant.python if variant.python is not None else self.python


@dataclass(frozen=True)
class FrameworkData:
    framework: str
    distribution: str
    import_name: str
    releases: tuple[Release, ...]  # newest first
    companions: tuple[str, ...] = ()
    indexes: tuple[tuple[str, str], ...] = ()  # variant name -> pip index URL
    local_version_label: bool = False  # variant indexes publish "X.Y.Z+variant" versions
    sources: tuple[dict[str, str], ...] = ()

    def index_for(self, variant: str) -> str | None:
        return dict(self.indexes).get(variant)


@dataclass(frozen=True)
class Toolkit:
    version: str
    min_driver: str


@dataclass(frozen=True)
class CudaMajor:
    major: str
    compat_min_driver: str
    archs: tuple[str, ...]


@dataclass(frozen=True)
class PythonBase:
    python: str
    image: str
    os: str
    suite: str | None
    python_from: str  # distro | image
    python_bin: str


@dataclass(frozen=True)
class CudaBase:
    cuda: str
    full: str
    cudnn: str | None
    runtime: str
    devel: str
    os: str


@dataclass(frozen=True)
class Matrix:
    frameworks: dict[str, FrameworkData]
    toolkits: dict[str, Toolkit]
    majors: dict[str, CudaMajor]
    python_bases: dict[str, PythonBase]
    cuda_bases: dict[str, CudaBase] = field(default_factory=dict)
    os_python: dict[str, str] = field(default_factory=dict)  # OS -> the python3 it ships
    uv_image: str = ""  # where standalone Pythons come from on CUDA bases
    version: str = "unknown"  # a digest of the data files: recorded in every image

    def framework(self, name: str) -> FrameworkData:
        return self.frameworks[name]

    def min_driver_for(self, cuda: str) -> str | None:
        """The oldest driver that runs this CUDA: the major's minor-version-compatibility
        floor, or the toolkit's own driver where that is older (11.0 GA: 450.51.05 < 450.80.02)."""
        major = self.majors.get(cuda.split(".")[0])
        if major is None:
            return None
        tk = self.toolkits.get(cuda)
        if tk and version_key(tk.min_driver) < version_key(major.compat_min_driver):
            return tk.min_driver
        return major.compat_min_driver

    def full_driver_for(self, cuda: str) -> str | None:
        """The driver the toolkit's release notes ask for (no compatibility mode needed)."""
        tk = self.toolkits.get(cuda)
        return tk.min_driver if tk else None


def data_dir() -> Path:
    return Path(str(resources.files("builder") / "data"))


@cache
def load_matrix(folder: str | None = None) -> Matrix:
    """Load and check the matrix; cached, since every command needs it at most once."""
    root = Path(folder) if folder else data_dir()
    digest = hashlib.sha256()
    docs: dict[str, Any] = {}
    for name in sorted(p.name for p in root.glob("*.yaml")):
        raw = (root / name).read_bytes()
        digest.update(name.encode() + b"\0" + raw)
        docs[name] = yaml.load(raw, Loader=_Loader) or {}
    frameworks = {fw: _framework(docs[fname], fname) for fw, fname in FRAMEWORK_FILES.items() if fname in docs}
    cuda_doc = docs.get("cuda.yaml", {})
    bases_doc = docs.get("bases.yaml", {})
    matrix = Matrix(
        frameworks=frameworks,
        toolkits={
            str(t["version"]): Toolkit(str(t["version"]), str(t["min_driver"])) for t in cuda_doc.get("toolkits", [])
        },
        majors={
            str(m["major"]): CudaMajor(str(m["major"]), str(m["compat_min_driver"]), tuple(m.get("archs", [])))
            for m in cuda_doc.get("majors", [])
        },
        python_bases={
            str(b["python"]): PythonBase(
                python=str(b["python"]),
                image=str(b["image"]),
                os=str(b["os"]),
                suite=b.get("suite"),
                python_from=str(b["python_from"]),
                python_bin=str(b["python_bin"]),
            )
            for b in bases_doc.get("python", [])
        },
        cuda_bases={
            str(b["cuda"]): CudaBase(
                cuda=str(b["cuda"]),
                full=str(b["full"]),
                cudnn=_opt_str(b.get("cudnn")),
                runtime=str(b["runtime"]),
                devel=str(b["devel"]),
                os=str(b["os"]),
            )
            for b in bases_doc.get("cuda", [])
        },
        os_python={str(k): str(v) for k, v in (bases_doc.get("os_python") or {}).items()},
        uv_image=str((bases_doc.get("tools") or {}).get("uv_image") or ""),
        version=digest.hexdigest()[:12],
    )
    check_matrix(matrix)
    return matrix


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _framework(doc: dict[str, Any], fname: str) -> FrameworkData:
    releases = []
    for r in doc.get("releases", []):
        try:
            version = Version(str(r["version"]))
        except (InvalidVersion, KeyError) as exc:
            raise MatrixDataError(f"{fname}: bad release {r!r}: {exc}") from None
        variants = tuple(
            Variant(
                name=str(v["name"]),
                requirement=str(v["requirement"]),
                cuda=_opt_str(v.get("cuda")),
                cuda_match=str(v.get("cuda_match", "exact")),
                cudnn=_opt_str(v.get("cudnn")),
                archs=tuple(str(a) for a in v.get("archs") or ()),
                python=tuple(str(p) for p in v["python"]) if v.get("python") else None,
                rocm=_opt_str(v.get("rocm")),
            )
            for v in r.get("variants", [])
        )
        releases.append(
            Release(
                version=version,
                python=tuple(str(p) for p in r.get("python", [])),
                variants=variants,
                default_variant=_opt_str(r.get("default_variant")),
                companions=tuple(sorted((str(k), str(v)) for k, v in (r.get("companions") or {}).items())),
                todo=_opt_str(r.get("todo")),
            )
        )
    releases.sort(key=lambda rel: rel.version, reverse=True)
    return FrameworkData(
        framework=str(doc["framework"]),
        distribution=str(doc["distribution"]),
        import_name=str(doc.get("import_name", doc["distribution"])),
        releases=tuple(releases),
        companions=tuple(doc.get("companions") or ()),
        indexes=tuple(sorted((str(k), str(v)) for k, v in (doc.get("indexes") or {}).items())),
        local_version_label=bool(doc.get("local_version_label", False)),
        sources=tuple(doc.get("sources") or ()),
    )


def check_matrix(m: Matrix) -> None:
    """Raise MatrixDataError on contradictions; tests run this on the shipped data too."""
    problems: list[str] = []
    for fw in m.frameworks.values():
        seen: set[Version] = set()
        for rel in fw.releases:
            if rel.version in seen:
                problems.append(f"{fw.framework} {rel.version}: listed twice")
            seen.add(rel.version)
            if rel.todo:
                # a release `matrix refresh` added but could not complete: never resolve on it
                problems.append(f"{fw.framework} {rel.version}: needs review ({rel.todo})")
            if not rel.python:
                problems.append(f"{fw.framework} {rel.version}: no Python versions")
            names = [v.name for v in rel.variants]
            if len(set(names)) != len(names):
                problems.append(f"{fw.framework} {rel.version}: duplicate variant names")
            if rel.default_variant and rel.default_variant not in names:
                problems.append(f"{fw.framework} {rel.version}: default_variant not among variants")
            for v in rel.variants:
                where = f"{fw.framework} {rel.version} {v.name}"
                if v.cuda is not None:
                    if v.cuda not in m.toolkits:
                        problems.append(f"{where}: CUDA {v.cuda} has no driver minimum in cuda.yaml")
                    if v.cuda.split(".")[0] not in m.majors:
                        problems.append(f"{where}: CUDA major {v.cuda} missing in cuda.yaml")
                    if v.cuda_match not in ("exact", "major"):
                        problems.append(f"{where}: cuda_match must be exact or major")
                    major = m.majors.get(v.cuda.split(".")[0])
                    beyond = [a for a in v.archs if major and a not in major.archs]
                    if beyond:
                        # a wheel cannot hold kernels its CUDA cannot compile
                        problems.append(f"{where}: CUDA {v.cuda} cannot target {', '.join(beyond)}")
                if fw.indexes and v.name != rel.default_variant and not fw.index_for(v.name):
                    problems.append(f"{where}: not PyPI's build and no index in indexes:")
                if v.python is not None and not set(v.python) <= set(rel.python):
                    problems.append(f"{where}: variant Pythons are not a subset of the release's")
                if "{version}" not in v.requirement:
                    problems.append(f"{where}: requirement lacks {{version}}")
                for py in rel.pythons_for(v):
                    if py not in m.python_bases:
                        problems.append(f"{where}: Python {py} has no base image in bases.yaml")
    if problems:
        raise MatrixDataError("compatibility data is inconsistent:\n  " + "\n  ".join(problems))


def version_key(text: str) -> tuple[int, ...]:
    """Sort key for "3.11", "12.4", "535.104.05": numeric, component by component."""
    return tuple(int(part) for part in text.split("."))
