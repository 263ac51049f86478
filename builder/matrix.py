"""The compatibility matrix: loads the data files in builder/data/ into typed, checked objects.

The knowledge itself is data (see builder/data/README.md for the schema and sources); this
module only reads it, checks that it is consistent, and offers lookups. resolve.py decides.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from packaging.requirements import InvalidRequirement, Requirement
from packaging.version import InvalidVersion, Version

from builder.errors import MlbuildError
from builder.platformdata import PlatformBuilds, read_platforms, releases_for
from builder.platforms import DEFAULT_PLATFORM

# libyaml's loader is ~7x faster than the pure-Python one on these files (about 15 ms instead of
# 110 ms), which matters because every `mlbuild resolve` loads them; fall back where PyYAML was
# built without libyaml.
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# A site (or a test) can point mlbuild at another data folder; read when the data is first read.
DATA_DIR_ENV = "MLBUILD_DATA_DIR"
FRAMEWORK_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,30}$")  # it starts image tags: sklearn1.5.2-...
PROJECT_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$")  # a PyPI project name
IMPORT_RE = re.compile(r"^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*$", re.A)
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
ARCH_FORMAT_RE = re.compile(r"^[A-Za-z0-9_.+{}-]+$")
# a folder glob below site-packages: no absolute paths, no "..", nothing a shell would expand
LIBRARY_DIR_RE = re.compile(r"^(?!.*(?:^|/)\.\.(?:/|$))[A-Za-z0-9_.*-]+(?:/[A-Za-z0-9_.*-]+)*$")


class MatrixDataError(MlbuildError):
    """The data files are inconsistent: a bug in mlbuild's data, or in a site's own data folder
    ($MLBUILD_DATA_DIR), never in a recipe."""


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
class CudaArchEnv:
    """The variable through which extensions compiled against the framework (devel stage) learn
    the GPU architectures to build kernels for, and how its value is written."""

    name: str  # e.g. TORCH_CUDA_ARCH_LIST
    format: str = "{major}.{minor}"  # one architecture: sm_86 -> "8.6"
    separator: str = ";"


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
    order: int | None = None  # where it is listed (help, tables, messages); None: after, by name
    starter_packages: tuple[str, ...] = ()  # `mlbuild init` writes them as commented examples
    pythons_from: str = ""  # the project whose wheels' CPython tags give the Pythons (refresh)
    cuda_arch_env: CudaArchEnv | None = None  # devel: None when its extensions read no such variable
    library_dirs: tuple[str, ...] = ()  # site-packages folders (globs) where its wheel keeps CUDA libraries
    platforms: tuple[PlatformBuilds, ...] = ()  # builds for platforms other than linux/amd64
    platform: str = DEFAULT_PLATFORM.name  # the platform `releases` describe

    def index_for(self, variant: str) -> str | None:
        return dict(self.indexes).get(variant)

    def builds_for(self, platform: str) -> PlatformBuilds | None:
        return next((b for b in self.platforms if b.platform == platform), None)

    def on(self, platform: str) -> FrameworkData:
        """This framework as `platform` has it (builder.platformdata): its releases narrowed
        to the builds with wheels there."""
        if platform == self.platform:
            return self
        releases = releases_for(self.builds_for(platform), self.releases)
        return dataclasses.replace(self, releases=releases, platform=platform)


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
class ToolPin:
    """A build tool from PyPI (uv, pip): one version, the sha256 of its wheel for each machine
    architecture (`any` for a pure-Python wheel)."""

    name: str
    version: str
    sha256: tuple[tuple[str, str], ...]  # (x86_64 | aarch64 | any, hex digest)

    @property
    def requirement(self) -> str:
        """One hash-checked requirement line: pip picks the wheel of the machine."""
        hashes = " ".join(f"--hash=sha256:{digest}" for _, digest in self.sha256)
        return f"{self.name}=={self.version} {hashes}"

    def digest_for(self, machine: str) -> str | None:
        """The wheel's sha256 for `machine` (x86_64, aarch64), or the pure-Python wheel's."""
        found = dict(self.sha256)
        return found.get(machine) or found.get("any")


@dataclass(frozen=True)
class Matrix:
    frameworks: dict[str, FrameworkData]
    toolkits: dict[str, Toolkit]
    majors: dict[str, CudaMajor]
    python_bases: dict[str, PythonBase]
    cuda_bases: dict[str, CudaBase] = field(default_factory=dict)
    os_python: dict[str, str] = field(default_factory=dict)  # OS -> the python3 it ships
    uv_image: str = ""  # where standalone Pythons come from on CUDA bases
    uv: ToolPin | None = None  # the uv the builder stage installs with (bases.yaml tools.uv)
    pip: ToolPin | None = None  # the pip of the image's venv (bases.yaml tools.pip)
    version: str = "unknown"  # a digest of the data files: recorded in every image

    def framework(self, name: str) -> FrameworkData:
        return self.frameworks[name]

    def on(self, platform: str) -> Matrix:
        """The matrix as `platform` has it: every framework's builds with wheels there."""
        if platform == DEFAULT_PLATFORM.name:
            return self
        return dataclasses.replace(self, frameworks={k: fw.on(platform) for k, fw in self.frameworks.items()})

    @property
    def library_dirs(self) -> tuple[str, ...]:
        """Every framework's CUDA library folders: an image may hold a second framework."""
        return tuple(sorted({d for fw in self.frameworks.values() for d in fw.library_dirs}))

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
    """The data folder: $MLBUILD_DATA_DIR, else the one shipped in the package."""
    override = os.environ.get(DATA_DIR_ENV)
    return Path(override) if override else Path(__file__).resolve().parent / "data"


def framework_names(folder: str | None = None) -> tuple[str, ...]:
    """The frameworks a recipe may name: the data files that declare one, in listing order
    (`order:`, then the name; the first is `mlbuild init`'s default)."""
    # load_matrix() and load_matrix(None) are two cache entries: call it as everyone else does
    return tuple((load_matrix(folder) if folder else load_matrix()).frameworks)


def listing_key(order: int | None, name: str) -> tuple[int, int, str]:
    return (0, order, name) if order is not None else (1, 0, name)


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
    parsed = [_framework(doc, name) for name, doc in docs.items() if "framework" in doc]
    frameworks = {fw.framework: fw for fw in sorted(parsed, key=lambda fw: listing_key(fw.order, fw.framework))}
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
        uv=_tool_pin("uv", (bases_doc.get("tools") or {}).get("uv")),
        pip=_tool_pin("pip", (bases_doc.get("tools") or {}).get("pip")),
        version=digest.hexdigest()[:12],
    )
    check_matrix(matrix)
    return matrix


def _tool_pin(name: str, doc: Any) -> ToolPin | None:
    if not doc:
        return None
    hashes = tuple(sorted((str(arch), str(digest)) for arch, digest in (doc.get("sha256") or {}).items()))
    if not hashes or any(not re.fullmatch(r"[0-9a-f]{64}", digest) for _, digest in hashes):
        raise MatrixDataError(f"bases.yaml tools.{name}: sha256 needs a 64-hex digest per architecture")
    if not re.fullmatch(r"\d+(\.\d+)*", str(doc.get("version") or "")):
        raise MatrixDataError(f"bases.yaml tools.{name}: version must be a release such as 0.13.9")
    return ToolPin(name=name, version=str(doc["version"]), sha256=hashes)


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
    fields = _FrameworkFields(doc, fname)
    distribution = fields.text("distribution", PROJECT_RE, "a PyPI project name")
    fw = FrameworkData(
        framework=fields.text("framework", FRAMEWORK_NAME_RE, "lower-case letters, digits, - or _"),
        distribution=distribution,
        import_name=fields.text("import_name", IMPORT_RE, "a Python module name", default=distribution),
        releases=tuple(releases),
        companions=tuple(doc.get("companions") or ()),
        indexes=tuple(sorted((str(k), str(v)) for k, v in (doc.get("indexes") or {}).items())),
        local_version_label=bool(doc.get("local_version_label", False)),
        sources=tuple(doc.get("sources") or ()),
        order=fields.order(),
        starter_packages=fields.requirements("starter_packages"),
        pythons_from=fields.text("pythons_from", PROJECT_RE, "a PyPI project name", default=distribution),
        cuda_arch_env=fields.cuda_arch_env(),
        library_dirs=fields.texts("library_dirs", LIBRARY_DIR_RE, "a folder glob below site-packages"),
        platforms=read_platforms(doc, fields.problems),
    )
    if fw.framework != Path(fname).stem:
        fields.problems.append(f"framework: {fw.framework!r} must be the file's name ({Path(fname).stem})")
    if fields.problems:
        n = len(fields.problems)
        raise MatrixDataError(f"{fname}: {n} problem{'s' if n > 1 else ''}:\n  " + "\n  ".join(fields.problems))
    return fw


class _FrameworkFields:
    """Reads a framework file's own fields, collecting every problem (field, value, allowed)."""

    def __init__(self, doc: dict[str, Any], fname: str):
        self.doc = doc
        self.fname = fname
        self.problems: list[str] = []

    def text(self, key: str, pattern: re.Pattern[str], allowed: str, default: str | None = None) -> str:
        value = self.doc.get(key, default)
        if not isinstance(value, str) or not pattern.fullmatch(value):
            self.problems.append(f"{key}: {value!r} is not {allowed}")
            return str(value)
        return value

    def texts(self, key: str, pattern: re.Pattern[str], allowed: str) -> tuple[str, ...]:
        values = self.doc.get(key) or []
        if not isinstance(values, list):
            self.problems.append(f"{key}: {values!r} is not a list")
            return ()
        for v in values:
            if not isinstance(v, str) or not pattern.fullmatch(v):
                self.problems.append(f"{key}: {v!r} is not {allowed}")
        return tuple(str(v) for v in values)

    def order(self) -> int | None:
        value = self.doc.get("order")
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            self.problems.append(f"order: {value!r} is not a whole number >= 0")
            return None
        return value

    def requirements(self, key: str) -> tuple[str, ...]:
        values = self.texts(key, re.compile(r"^[\x20-\x22\x24-\x7e]+$"), "a pip requirement")
        for v in values:
            try:
                Requirement(v)
            except InvalidRequirement as exc:
                self.problems.append(f"{key}: {v!r} is not a pip requirement ({exc})")
        return values

    def cuda_arch_env(self) -> CudaArchEnv | None:
        value = self.doc.get("cuda_arch_env")
        if value is None:
            return None
        if not isinstance(value, dict) or set(value) - {"name", "format", "separator"} or "name" not in value:
            self.problems.append(f"cuda_arch_env: {value!r} is not a mapping of name, format and separator")
            return None
        env = CudaArchEnv(**{k: str(v) for k, v in value.items()})
        if not ENV_NAME_RE.fullmatch(env.name):
            self.problems.append(f"cuda_arch_env.name: {env.name!r} is not an environment variable name")
        try:
            sample = env.format.format(major=8, minor=6)
        except (KeyError, IndexError, ValueError):
            sample = ""
        if not ARCH_FORMAT_RE.fullmatch(env.format) or "8" not in sample or "6" not in sample:
            self.problems.append(
                f"cuda_arch_env.format: {env.format!r} must place {{major}} and {{minor}} (letters, digits, . _ + -)"
            )
        if env.separator not in (";", ",", " "):
            self.problems.append(f"cuda_arch_env.separator: {env.separator!r} is not one of ';', ',', ' '")
        return env


def check_matrix(m: Matrix) -> None:
    """Raise MatrixDataError on contradictions; tests run this on the shipped data too."""
    problems: list[str] = []
    for fw in m.frameworks.values():
        for builds in fw.platforms:
            named = {v.name for rel in fw.releases for v in rel.variants}
            listed = {name for name, _ in builds.variants} | {v for _, v in builds.defaults}
            problems += [
                f"{fw.framework} platforms.{builds.platform}: variant {v!r} is not a build of any release"
                for v in sorted(listed - named)
            ]
            for rel in releases_for(builds, fw.releases):
                if rel.default_variant and rel.default_variant not in {v.name for v in rel.variants}:
                    problems.append(
                        f"{fw.framework} {rel.version} on {builds.platform}: default_variant "
                        f"{rel.default_variant} has no wheels there (add it to variants:)"
                    )
                for v in rel.variants:
                    if fw.indexes and v.name != rel.default_variant and not fw.index_for(v.name):
                        problems.append(f"{fw.framework} {rel.version} {v.name} on {builds.platform}: no index")
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
