"""ResolvedSpec: one exact, checked combination. Every later step reads it (or its copy in the
image's labels) instead of deciding again."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields
from typing import Any

from builder.errors import UsageError
from builder.labels import SPEC_LABEL
from builder.platforms import DEFAULT_PLATFORM

SPEC_SCHEMA = 1
DEFAULT_UID = 10001
VENV = "/opt/venv"
PROBE_PATH = "/opt/mlbuild/probe.py"
SPEC_PATH = "/opt/mlbuild/spec.json"
OMITTED_WHEN_EMPTY = ("hashed_requirements", "requirement_constraints", "requirement_sources", "installer")


@dataclass(frozen=True)
class ResolvedSpec:
    name: str
    framework: str
    framework_version: str  # exact release, e.g. "1.5.2"
    distribution: str  # the PyPI project, e.g. "scikit-learn"
    import_name: str
    python: str  # major.minor
    cuda: str  # "X.Y" or "cpu"
    cudnn: str | None
    cuda_match: str  # exact, or major: any CUDA minor of that major (JAX's cuda12 plugins)
    variant: str  # the framework build: cpu, cu124, cuda12 ...
    framework_requirement: str  # exact pin, e.g. "torch==2.5.1+cu124"; "" when from the base
    index_url: str | None  # pip index of the variant; None = the site's default index
    companions: tuple[str, ...]  # exact pins paired with the framework, e.g. torchvision==0.20.1
    requirements: tuple[str, ...]  # the recipe's own packages, as written (PEP 508)
    base_image: str
    base_os: str
    python_from: str  # distro | image | standalone (a CPython installed with uv)
    python_bin: str
    min_driver: str | None
    archs: tuple[str, ...]
    system_packages: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    files: tuple[tuple[str, str], ...] = ()  # (src relative to the recipe, dest)
    workdir: str | None = None
    user: str = "mlbuild"
    uid: int = DEFAULT_UID
    smoke_gpu: str = "auto"
    smoke_run: tuple[str, ...] = ()
    repository: str = ""
    tags: tuple[str, ...] = ()
    framework_from_base: bool = False
    base_suite: str | None = None
    base_site_packages: tuple[str, ...] = ()  # framework_from_base: the base's package folders
    # folders below site-packages where framework wheels keep CUDA libraries (every framework's
    # data: a second one may come in packages); the probe's CUDA-library checks look there
    library_dirs: tuple[str, ...] = ()
    shape: str = "runtime"  # runtime | cuda-runtime | devel (the recipe's `variant:`)
    devel_image: str | None = None  # devel: the stage with nvcc that compiles build_packages
    build_packages: tuple[str, ...] = ()
    cuda_arch_env: str = ""  # devel: the variable naming the GPU archs to compile extensions for
    cuda_arch_list: str = ""  # devel: its value, in the framework's format (e.g. "8.0;9.0")
    uv_image: str | None = None  # python_from standalone: where uv comes from
    # From the recipe's requirements: file. Left out of the JSON when empty, so that specs,
    # content tags and locks of recipes without one stay as they were.
    hashed_requirements: tuple[tuple[str, str], ...] = ()  # (name==version, "sha256:... ..."): own step
    requirement_constraints: tuple[str, ...] = ()  # the file's -c constraints
    requirement_sources: tuple[tuple[str, str], ...] = ()  # (requirement, where it came from)
    # os/arch (linux/arm64); left out of the JSON for linux/amd64, so that specs, content tags
    # and locks of single-platform recipes stay as they were
    platform: str = "linux/amd64"
    installer: str = ""  # the recipe's installer: (uv | pip); "" lets the site config decide
    reasons: tuple[str, ...] = ()
    matrix_version: str = ""
    mlbuild_version: str = ""
    schema: int = SPEC_SCHEMA

    @property
    def is_gpu(self) -> bool:
        return self.cuda != "cpu"

    @property
    def packages(self) -> tuple[str, ...]:
        """Framework pin first, then its companions, the hashed pins, then the other packages."""
        head = (self.framework_requirement,) if self.framework_requirement else ()
        return head + self.companions + tuple(pin for pin, _ in self.hashed_requirements) + self.requirements

    @property
    def readable_tag(self) -> str:
        """e.g. sklearn1.5.2-py3.11-cpu or pytorch2.5.1-py3.12-cu124."""
        variant = "cpu" if self.cuda == "cpu" else self.variant
        return f"{self.framework}{self.framework_version}-py{self.python}-{variant}".replace("+", "_")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for f in fields(self):
            if isinstance(d[f.name], tuple):
                d[f.name] = [list(x) if isinstance(x, tuple) else x for x in d[f.name]]
        d["packages"] = list(self.packages)
        for key in OMITTED_WHEN_EMPTY:
            if not d[key]:
                del d[key]
        if d["platform"] == DEFAULT_PLATFORM.name:
            del d["platform"]
        return d

    def to_json(self) -> str:
        """Canonical JSON: the same spec always gives the same bytes (it is hashed)."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    def digest(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ResolvedSpec:
        known = {f.name for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, value in d.items():
            if key not in known:
                continue
            if isinstance(value, list):
                value = tuple(tuple(x) if isinstance(x, list) else x for x in value)
            values[key] = value
        return cls(**values)

    @classmethod
    def from_labels(cls, labels: dict[str, str]) -> ResolvedSpec | None:
        raw = labels.get(SPEC_LABEL)
        if not raw:
            return None
        return cls.from_dict(json.loads(raw))


def image_spec(labels: dict[str, str], image: str) -> ResolvedSpec:
    """The spec an image built by mlbuild carries in its labels; UsageError (exit 2) for an
    image mlbuild did not build."""
    spec = ResolvedSpec.from_labels(labels)
    if spec is None:
        raise UsageError(f"{image} was not built by mlbuild (no {SPEC_LABEL} label)")
    return spec
