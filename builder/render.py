"""Render a ResolvedSpec into a Dockerfile and the files of its build context.

All quoting, sorting and pinning happens here, in Python, where it is tested; the template only
places prepared lines (`if`/`for`, StrictUndefined). Values reach the Dockerfile only in forms
that cannot become another instruction: JSON-array COPY, escaped double-quoted ENV and LABEL
values, and allow-listed names and paths (checked in recipe.py).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import jinja2

from builder import layersplit
from builder.contextdigest import BUILD_SETTINGS
from builder.labels import LOCK_LABEL, OCI_DESCRIPTION, OCI_TITLE, OCI_VERSION, SPEC_LABEL
from builder.lock import Pins
from builder.matrix import ToolPin, load_matrix
from builder.settings import BuildSettings
from builder.spec import PROBE_PATH, SPEC_PATH, VENV, ResolvedSpec

TEMPLATE = "Dockerfile.j2"
RESOLVER_TEMPLATE = "resolver.j2"
RESOLVER_OUT = "/tmp/mlbuild-lock"  # where the resolver image collects what apt and pip said
APT_CACHES = "/var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/apt/archives/*.deb "
APT_CLEAN = "rm -rf " + APT_CACHES + "/var/log/apt /var/log/dpkg.log /var/log/alternatives.log /var/cache/debconf/*-old"
# BuildKit's variant (never the classic one): caches that outlive the build, outside every layer.
# One lock per cache: apt and pip refuse to share their folders with a second process. pip's
# cache is content-addressed, so one cache serves every recipe; apt's is per Debian/Ubuntu suite.
# The site's pip.conf (index credentials) arrives as a secret, mounted only while a step runs.
PIP_CONF_SECRET = "mlbuild-pip-conf"
UV_TOML_SECRET = "mlbuild-uv-toml"  # uv's own settings file: the same indexes, the same credentials
SECRET_MOUNT = (
    f"--mount=type=secret,id={PIP_CONF_SECRET},target=/tmp/mlbuild-build/pip.conf "
    f"--mount=type=secret,id={UV_TOML_SECRET},target=/tmp/mlbuild-build/uv.toml "
)
PYTHON_CACHE_MOUNTS = "--mount=type=cache,id=mlbuild-python-cache,target=/root/.cache,sharing=locked " + SECRET_MOUNT
# Locked builds also drop ldconfig's aux-cache: it records inode numbers and ctimes.
LOCKED_CLEAN = APT_CLEAN + " /var/cache/ldconfig/aux-cache"
# Hash-based .pyc (PEP 552): no source mtime inside, so the bytes do not depend on when the
# build ran. One process, files in a fixed order: marshal's output can depend on the state of
# the process that compiled (reference flags), so no worker pool.
COMPILE = (
    "import compileall, py_compile, sys; ok = compileall.compile_dir(sys.argv[1], quiet=2, "
    "force=True, workers=1, invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH)"
)
MLBUILD_FILES = "mlbuild/probe.py mlbuild/spec.json mlbuild/imagesetup.py"
LAYERSPLIT_FILE = "mlbuild/layersplit.py"  # every install step links its files into the layer slots
APT_STAGES = ("devel", "builder", "runtime")  # the stages with apt steps, each its own caches on BuildKit
# The image's constraints (imagesetup.write_constraints): written in the builder stage from what
# was installed, copied into the image, named by PIP_CONSTRAINT and UV_CONSTRAINT there.
IMAGE_CONSTRAINTS = "/opt/mlbuild/constraints.txt"


def exec_form(argv: list[str]) -> str:
    """A JSON-array (exec form) instruction argument: no shell ever parses it."""
    return json.dumps(argv)


@dataclass(frozen=True)
class DevelStage:
    """The devel stage (templates/Dockerfile.j2): CUDA extensions compiled into wheels."""

    image: str  # an image with nvcc
    apt: str  # the distro Python and its headers; "" for a standalone Python
    venv_command: str  # a venv with pip (ensurepip): this stage makes wheels with pip
    framework_files: str  # the framework step, as the unlocked builder stage has it
    install_framework: str
    tools: str  # what extensions build with, installed into the venv
    env: str  # ENV arguments: the architectures to compile for, parallel jobs ("": no ENV)
    build_wheels: str


@dataclass(frozen=True)
class PackageStep:
    """One install step of the recipe's packages: the files it copies in, its command, and the
    names its cache key holds (what layersplit's link may place in the recipe's slots)."""

    files: str
    command: str
    names: tuple[str, ...] = ()


# The recipe's packages install in the order listed, one step each for the first ones, so that
# a package added at the end (the everyday change) installs only itself: the steps before it,
# pandas' 1,400 files of bytecode among them, stay cached. The last step takes the rest.
MAX_PACKAGE_STEPS = 6


@dataclass(frozen=True)
class Plan:
    """What the template places: every line already quoted and checked."""

    name: str
    summary: str
    mlbuild_version: str
    base_image: str
    venv: str
    venv_command: str
    base_pth_command: str
    builder_apt: str
    runtime_apt: str
    create_user: str
    install_framework: str
    package_steps: tuple[PackageStep, ...]
    copy_files: tuple[str, ...]
    env_lines: tuple[str, ...]
    label_lines: tuple[str, ...]
    workdir: str
    uid: int
    framework_files: str = "mlbuild/requirements-framework.txt mlbuild/constraints.txt"
    install_project: str = ""  # the requirements: file's hashed pins (a uv.lock ...), by hash
    project_files: str = ""
    builder_env: str = ""
    epoch_arg: str = ""  # locked: the lock's epoch keys every cached step of the other stages
    compile_command: str = ""
    mlbuild_files: str = MLBUILD_FILES
    uv_stage: str = ""  # FROM <uv image> AS uv, for standalone Pythons
    python_setup: tuple[str, ...] = ()  # builder-stage lines that provide Python (uv)
    wheelhouse_copy: str = ""  # COPY of the wheelhouse into the builder stage only
    devel: DevelStage | None = None  # the devel stage, compiled extensions as wheels
    install_built: str = ""  # builder: install the devel stage's wheels
    runtime_python: str = ""  # final stage: COPY of a standalone Python
    constraints_env: str = ""  # final stage: ENV arguments that point pip and uv at them
    # BuildKit's variant (builder.buildkit): mounts before the RUN steps that download, and
    # pip's cache left on (it lives in a cache mount, never in a layer).
    buildkit: bool = False
    pip_cache: str = "PIP_NO_CACHE_DIR=1 "
    # BuildKit: each stage's apt cache mounts (none on the classic builder)
    apt_mounts: dict[str, str] = dataclasses.field(default_factory=lambda: dict.fromkeys(APT_STAGES, ""))
    python_mounts: str = ""
    # the image's constraints (IMAGE_CONSTRAINTS) written, then the venv's layer slots completed
    # (builder/layersplit.py); the final stage has one COPY per slot
    layer_split: str = ""
    layer_files: str = "mlbuild/imagesetup.py mlbuild/layersplit.py mlbuild/layers.json"
    layer_copies: tuple[str, ...] = tuple(f"COPY --from=builder {layersplit.OUT}/{s}/ /" for s in layersplit.SLOTS)
    installer_setup: tuple[str, ...] = ()  # builder: uv's ENV and the hash-checked install of uv


def templates_dir() -> Path:
    here = Path(__file__).resolve().parent
    repo = here.parent / "templates"  # a source checkout or an editable install
    if (repo / TEMPLATE).exists():
        return repo
    return Path(str(resources.files("builder") / "templates"))


def dockerfile_string(value: str) -> str:
    """A double-quoted Dockerfile word in which $, \\ and " are literal (no expansion)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    return f'"{escaped}"'


def context_name(index: int, src: str) -> str:
    """Where file `index` sits in the build context: never a name the recipe chose."""
    return f"files/{index}/{Path(src).name}"


def plan(
    spec: ResolvedSpec, pins: Pins | None = None, settings: BuildSettings | None = None, buildkit: bool = False
) -> Plan:
    settings = settings or BuildSettings()
    install = install_argv(spec, settings)
    distro = spec.python_from == "distro"
    apt_runtime = ([f"python{spec.python}"] if distro else []) + list(spec.system_packages)
    runtime_apt = _apt([*sorted(set(apt_runtime)), "ca-certificates"]) if apt_runtime else ""
    # ensurepip only for pip as the installer; uv brings pip's wheel (builder.toolwheels). Then
    # the builder's apt step is the image's own, letter for letter: one step, run once.
    ensurepip = needs_pip(spec) and installer(spec, settings) == "pip"
    # uv needs distutils on a Python before 3.10: Debian's -venv package brings it (python3-distutils)
    old_python = tuple(int(n) for n in spec.python.split(".")) < (3, 10)
    builder_apt = runtime_apt if distro else ""
    if distro and (ensurepip or old_python):
        builder_apt = _apt([f"python{spec.python}", f"python{spec.python}-venv", "ca-certificates"])
    create_user = ""
    if spec.uid != 0:
        dirs = [f"/home/{spec.user}"] + ([spec.workdir] if spec.workdir else [])
        create_user = exec_form(
            [
                f"{VENV}/bin/python",
                "/opt/mlbuild/imagesetup.py",
                "user",
                spec.user,
                str(spec.uid),
                *dirs,
            ]
        )
    c = "/tmp/mlbuild/constraints.txt"
    project_c = ["-c", PROJECT_CONSTRAINTS] if has_project_constraints(spec) else []
    step_constraints = "mlbuild/constraints.txt" + (f" {PROJECT_CONSTRAINTS_FILE}" if project_c else "")
    owner = f"--chown={spec.uid}:0 " if spec.uid else ""
    copy_files = tuple(
        f"COPY {owner}{json.dumps([context_name(i, src), dest])}" for i, (src, dest) in enumerate(spec.files)
    )
    env_lines = tuple(f"ENV {k}={dockerfile_string(v)}" for k, v in spec.env)
    labels = {
        OCI_TITLE: spec.name,
        OCI_VERSION: spec.readable_tag,
        OCI_DESCRIPTION: summary(spec),
        SPEC_LABEL: spec.to_json(),
    }
    if pins:
        labels[LOCK_LABEL] = pins.lock_digest
    label_lines = tuple(f"LABEL {dockerfile_string(k)}={dockerfile_string(v)}" for k, v in sorted(labels.items()))
    p = Plan(
        name=spec.name,
        summary=summary(spec),
        mlbuild_version=spec.mlbuild_version,
        base_image=spec.base_image,
        venv=VENV,
        venv_command=_venv_command(spec, with_pip=ensurepip),
        base_pth_command=_base_pth(spec),
        builder_apt=builder_apt,
        runtime_apt=runtime_apt,
        create_user=create_user,
        install_framework=exec_form([*install, "-r", "/tmp/mlbuild/requirements-framework.txt"])
        if spec.framework_requirement
        else "",
        package_steps=tuple(
            PackageStep(f"mlbuild/{name} {step_constraints}", exec_form([*install, "-c", c, *project_c, "-r",
                        f"/tmp/mlbuild/{name}"]), tuple(_names(reqs)))
            for name, reqs in package_requirement_files(spec)
        ),
        install_project=exec_form(
            [*install, "--require-hashes", "-c", c, *project_c, "-r", "/tmp/mlbuild/requirements-project.txt"]
        )
        if spec.hashed_requirements
        else "",
        project_files="mlbuild/requirements-project.txt mlbuild/constraints.txt"
        + (f" {PROJECT_CONSTRAINTS_FILE}" if project_c else ""),
        copy_files=copy_files,
        env_lines=env_lines,
        label_lines=label_lines,
        workdir=spec.workdir or "",
        uid=spec.uid,
        # the image's constraints first, in the same step: they travel in the framework's slot
        layer_split=exec_form([f"{VENV}/bin/python", "/tmp/mlbuild/layersplit.py", "/tmp/mlbuild/layers.json", "--",
                               f"{VENV}/bin/python", "/tmp/mlbuild/imagesetup.py", "constraints", IMAGE_CONSTRAINTS,
                               *pinned_names(spec)]),
        constraints_env=f"PIP_CONSTRAINT={IMAGE_CONSTRAINTS} UV_CONSTRAINT={IMAGE_CONSTRAINTS}",
    )  # fmt: skip
    p = _shapes(p, spec, settings, locked=pins is not None)
    p = _locked(p, spec, pins, settings) if pins else p
    p = _linking(p, spec)
    return _buildkit(p, spec) if buildkit else p


def _linking(p: Plan, spec: ResolvedSpec) -> Plan:
    """Every install step links what it installed into its layer slot in the same RUN
    (builder/layersplit.py: a later step would copy every byte of it up first). A step names
    only what its own cache key holds already: the framework step the framework, so that a
    changed package list still finds it cached; the final split corrects what a step guessed."""
    framework = ",".join(_framework_names(spec))
    project = ",".join(_names(pin for pin, _ in spec.hashed_requirements))
    recipe = ",".join(_recipe_names(spec))
    others = [pin for pin, _ in spec.hashed_requirements] + list(spec.build_packages)

    def link(command: str, named: str) -> str:
        if not command:
            return ""
        argv = [f"{VENV}/bin/python", "/tmp/mlbuild/layersplit.py", "link", VENV, layersplit.OUT, framework, named]
        return exec_form([*argv, "--", *json.loads(command)])

    def with_splitter(files: str) -> str:
        return f"{files} {LAYERSPLIT_FILE}"

    return dataclasses.replace(
        p,
        install_framework=link(p.install_framework, ""),
        install_project=link(p.install_project, project),
        package_steps=tuple(
            PackageStep(with_splitter(step.files), link(step.command, ",".join(_names([*step.names, *others]))))
            for step in p.package_steps
        ),
        install_built=link(p.install_built, recipe),
        compile_command=link(p.compile_command, recipe),
        framework_files=with_splitter(p.framework_files),
        project_files=with_splitter(p.project_files),
    )


def _buildkit(p: Plan, spec: ResolvedSpec) -> Plan:
    """BuildKit's variant of the same stages: cache mounts for apt's and pip's downloads (a
    changed package downloads only itself) and the pip.conf secret; apt's caches, being mounts,
    are no longer cleaned out of the layer (they were never in it)."""
    suite = re.sub(r"[^A-Za-z0-9_.-]", "-", spec.base_suite or "any")
    # A cache per stage: apt locks its cache, so the stages' apt steps, which BuildKit runs side
    # by side, would wait for each other on a shared one (measured: +10 s on a cold build).
    apt_mounts = {
        stage: "".join(
            f"--mount=type=cache,id=mlbuild-apt-{name}-{suite}-{stage},target={target},sharing=locked "
            for name, target in (("archives", "/var/cache/apt"), ("lists", "/var/lib/apt/lists"))
        )
        for stage in APT_STAGES
    }
    if p.builder_apt == p.runtime_apt:  # one step of both stages: one cache, and no wait
        apt_mounts["builder"] = apt_mounts["runtime"]
    devel = dataclasses.replace(p.devel, apt=_cached_apt(p.devel.apt)) if p.devel else None
    return dataclasses.replace(p, builder_apt=_cached_apt(p.builder_apt), runtime_apt=_cached_apt(p.runtime_apt),
                               devel=devel, buildkit=True, pip_cache="", apt_mounts=apt_mounts,
                               python_mounts=PYTHON_CACHE_MOUNTS,
                               installer_setup=tuple(_cached_uv(line) for line in p.installer_setup))  # fmt: skip


def _cached_uv(line: str) -> str:
    """uv's setup on BuildKit: uv keeps its cache (a cache mount, in no layer), with the site's
    uv.toml, a secret there."""
    if line.startswith("ENV "):
        return line.replace("UV_NO_CACHE=1", "UV_CACHE_DIR=/root/.cache/uv")
    return line.replace("RUN ", "RUN " + PYTHON_CACHE_MOUNTS, 1)


TOOLS = "/tmp/mlbuild-build/tools"  # uv and pip's wheel (builder.toolwheels), in the builder stage only
TOOLS_FOLDER = "tools"  # their folder in the context's build settings


def installer(spec: ResolvedSpec, settings: BuildSettings) -> str:
    """uv unless the recipe or the site config says pip. An --offline build whose wheelhouse
    lacks the pinned uv or pip wheel keeps pip: nothing could fetch them there."""
    chosen = spec.installer or settings.installer or "uv"
    if chosen == "uv" and spec.python_from != "standalone" and settings.offline:
        m = load_matrix()
        house = settings.wheelhouse
        pins = [f"{pin.name}=={pin.version}" for pin in (m.uv, m.pip) if pin]
        if not (house and len(pins) == 2 and _wheelhouse_has(house, pins, spec.python)):
            return "pip"
    return chosen


def needs_tools(spec: ResolvedSpec, settings: BuildSettings) -> bool:
    """Whether the builder stage runs the uv and pip that mlbuild brings (TOOLS)."""
    return needs_pip(spec) and installer(spec, settings) == "uv" and spec.python_from != "standalone"


def pip_wheel_name() -> str:
    return f"pip-{_pip_pin().version}-py3-none-any.whl"


def pip_requirement() -> str:
    return f"pip=={_pip_pin().version}"


def _pip_pin() -> ToolPin:
    pin = load_matrix().pip
    if pin is None:
        raise ValueError("builder/data/bases.yaml has no tools.pip pin")
    return pin


def install_argv(spec: ResolvedSpec, settings: BuildSettings, *, locked: bool = False) -> list[str]:
    """The builder stage's install command, before its requirement options. uv compiles
    bytecode as pip does by default; locked builds compile once, later, in a fixed order."""
    if installer(spec, settings) == "pip":
        return [f"{VENV}/bin/pip", "install", *(["--no-compile"] if locked else [])]
    uv = UV if spec.python_from == "standalone" else f"{TOOLS}/uv"
    return [uv, "pip", "install", "--python", f"{VENV}/bin/python", *([] if locked else ["--compile-bytecode"])]


def _installer_setup(spec: ResolvedSpec, settings: BuildSettings, *, locked: bool = False) -> tuple[str, ...]:
    """uv's settings (this stage's ENV only) and the venv's pip: uv installs the pinned wheel
    that mlbuild checked against its hash (builder.toolwheels), as ensurepip would have (a
    locked build compiles it later, with the rest)."""
    if installer(spec, settings) != "uv" or not needs_pip(spec):
        return ()
    env = "UV_CONFIG_FILE=/tmp/mlbuild-build/uv.toml UV_NO_CACHE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never"
    if settings.ca_bundle and spec.python_from != "standalone":  # _python_setup set it there
        env += " SSL_CERT_FILE=/tmp/mlbuild-build/ca.crt"
    lines = [f"ENV {env}"]
    if spec.python_from != "standalone":
        # by name from the folder, not by path: a path would be recorded (pip freeze: "pip @ file:...")
        seed = [f"{TOOLS}/uv", "pip", "install", "--python", f"{VENV}/bin/python", "--no-index", "--no-deps",
                *([] if locked else ["--compile-bytecode"]), "--find-links", TOOLS, pip_requirement()]  # fmt: skip
        lines.append("RUN " + exec_form(seed))
    return tuple(lines)


def _venv_command(spec: ResolvedSpec, *, with_pip: bool) -> str:
    if spec.python_from == "standalone":
        return exec_form([UV, "venv", *(["--seed"] if needs_pip(spec) else []), "--python", spec.python, VENV])
    return exec_form([spec.python_bin, "-m", "venv", *([] if with_pip else ["--without-pip"]), VENV])


UV = "/usr/local/bin/uv"
PROJECT_CONSTRAINTS = "/tmp/mlbuild/constraints-project.txt"
PROJECT_CONSTRAINTS_FILE = "mlbuild/constraints-project.txt"
STANDALONE = "/opt/python"
WHEELHOUSE = "/tmp/wheelhouse"
WHEELHOUSE_DIR = "wheelhouse"  # in the context
BUILD_PACKAGES = "/tmp/mlbuild/build-packages.txt"


def _python_setup(spec: ResolvedSpec, settings: BuildSettings) -> tuple[str, ...]:
    """A standalone CPython (uv) on CUDA bases whose OS ships another Python."""
    if spec.python_from != "standalone":
        return ()
    env = f"UV_PYTHON_INSTALL_DIR={STANDALONE} UV_PYTHON_PREFERENCE=only-managed"
    if settings.ca_bundle:
        env += " SSL_CERT_FILE=/tmp/mlbuild-build/ca.crt"  # builder stage only
    return (
        f"COPY --from=uv /uv {UV}",
        f"ENV {env}",
        "RUN " + exec_form([UV, "python", "install", spec.python]),
    )


def _shapes(p: Plan, spec: ResolvedSpec, settings: BuildSettings, *, locked: bool = False) -> Plan:
    """What the image's shape and the site's wheelhouse add to the two basic stages."""
    setup = _python_setup(spec, settings)
    devel = _devel(p, spec) if spec.shape == "devel" and spec.devel_image else None
    return dataclasses.replace(
        p,
        uv_stage=f"FROM {spec.uv_image} AS uv" if spec.python_from == "standalone" and spec.uv_image else "",
        python_setup=setup,
        wheelhouse_copy=f"COPY wheelhouse/ {WHEELHOUSE}/" if settings.wheelhouse else "",
        devel=devel,
        installer_setup=_installer_setup(spec, settings, locked=locked),
        install_built=exec_form(
            [*install_argv(spec, settings), "--find-links", "/tmp/wheels", "-c", "/tmp/mlbuild/constraints.txt",
             "-r", BUILD_PACKAGES]
        ) if devel else "",
        runtime_python=f"COPY --from=builder {STANDALONE} {STANDALONE}" if setup else "",
    )  # fmt: skip


def _devel(p: Plan, spec: ResolvedSpec) -> DevelStage:
    pip = f"{VENV}/bin/pip"
    distro = spec.python_from == "distro"
    return DevelStage(
        image=spec.devel_image or "",
        venv_command=_venv_command(spec, with_pip=True),
        apt=_apt([f"python{spec.python}", f"python{spec.python}-venv", f"python{spec.python}-dev",
                  "ca-certificates"]) if distro else "",
        framework_files=p.framework_files,
        # pip here: this stage makes wheels with pip (the builder stage's uv is not in it)
        install_framework=exec_form([pip, "install", "-r", "/tmp/mlbuild/requirements-framework.txt"])
        if spec.framework_requirement else "",
        # extensions build against the installed framework (no isolation), with these tools
        tools=exec_form([pip, "install", "setuptools", "wheel", "ninja", "packaging"]),
        env=_devel_env(spec),
        build_wheels=exec_form([pip, "wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", "/tmp/wheels",
                                "-r", BUILD_PACKAGES]),
    )  # fmt: skip


def _devel_env(spec: ResolvedSpec) -> str:
    """Kernels for exactly the resolved architectures, not every one nvcc knows, through the
    variable the framework's extension builder reads (its data's cuda_arch_env); none without."""
    if not spec.cuda_arch_env:
        return ""
    return f"{spec.cuda_arch_env}={dockerfile_string(spec.cuda_arch_list)} MAX_JOBS=4"


def _locked(p: Plan, spec: ResolvedSpec, pins: Pins, settings: BuildSettings) -> Plan:
    """The same stages, installing only what the lock names: pinned apt versions, uv (or pip)
    with --require-hashes --no-deps (the lock already holds every dependency), hash-based .pyc."""
    pip = [*install_argv(spec, settings, locked=True), "--no-deps", "--require-hashes", "-r"]
    framework = _has_pins(pins.framework)
    has_packages = _has_pins(pins.packages)
    has_project = _has_pins(pins.project)
    tmp = "/tmp/mlbuild"
    return dataclasses.replace(
        p,
        builder_apt=_locked_apt(p.builder_apt, pins.builder_apt),
        runtime_apt=_locked_apt(p.runtime_apt, pins.runtime_apt),
        install_framework=exec_form([*pip, f"{tmp}/locked-framework.txt"]) if framework else "",
        package_steps=(
            PackageStep("mlbuild/locked-packages.txt", exec_form([*pip, f"{tmp}/locked-packages.txt"]),
                        tuple(_names(spec.requirements))),
        ) if has_packages else (),
        install_project=exec_form([*pip, f"{tmp}/locked-project.txt"]) if has_project else "",
        framework_files="mlbuild/locked-framework.txt",
        project_files="mlbuild/locked-project.txt",
        builder_env=f"ENV SOURCE_DATE_EPOCH={pins.epoch}",
        epoch_arg=f"ARG SOURCE_DATE_EPOCH={pins.epoch}",
        compile_command=exec_form([f"{VENV}/bin/python", "-c", COMPILE, VENV]),
        mlbuild_files=MLBUILD_FILES + " mlbuild/lock.json",
    )  # fmt: skip


def _locked_apt(unlocked: str, pins: tuple[str, ...]) -> str:
    """A pinned apt step where the unlocked plan has one (none when the base has it all)."""
    return _apt(list(pins), LOCKED_CLEAN) if unlocked and pins else ""


def _has_pins(requirements: str) -> bool:
    return any(line and not line.startswith("--") for line in requirements.splitlines())


def _base_pth(spec: ResolvedSpec) -> str:
    """framework_from_base: a .pth file that puts the base's site-packages on the venv's path
    (a venv made from a venv's Python would not see the first venv's packages)."""
    if not spec.base_site_packages:
        return ""
    target = f"{VENV}/lib/python{spec.python}/site-packages/_mlbuild_base.pth"
    return exec_form(
        [
            f"{VENV}/bin/python",
            "/tmp/mlbuild/imagesetup.py",
            "pth",
            target,
            *spec.base_site_packages,
        ]
    )


def needs_pip(spec: ResolvedSpec) -> bool:
    return bool(spec.framework_requirement or spec.requirements or spec.hashed_requirements)


def has_project_constraints(spec: ResolvedSpec) -> bool:
    return bool(spec.hashed_requirements or spec.requirement_constraints)


def summary(spec: ResolvedSpec) -> str:
    gpu = "CPU" if spec.cuda == "cpu" else f"CUDA {spec.cuda}" + (f", cuDNN {spec.cudnn}" if spec.cudnn else "")
    return f"{spec.framework} {spec.framework_version}, Python {spec.python}, {gpu}"


def _apt(packages: list[str], clean: str = APT_CLEAN) -> str:
    names = " ".join(shlex.quote(p) for p in packages)
    return f"apt-get update && apt-get install -y --no-install-recommends {names} && {clean}"


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # a Dockerfile, not HTML: values are quoted by plan()
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def _cached_apt(command: str) -> str:
    """An apt step whose archives and lists are cache mounts: keep them, do not clean them."""
    keep = "apt-get install -o APT::Keep-Downloaded-Packages=true "
    return command.replace(APT_CACHES, "").replace("apt-get install ", keep)


def render(
    spec: ResolvedSpec, pins: Pins | None = None, settings: BuildSettings | None = None, buildkit: bool = False
) -> str:
    """The Dockerfile text; the same spec (and lock, and site settings) always gives the same
    bytes. `buildkit`: the variant with cache and secret mounts, for BuildKit only."""
    return _render_template(TEMPLATE, plan(spec, pins, settings, buildkit))


def _render_template(name: str, p: Plan | ResolverPlan) -> str:
    text = _environment().get_template(name).render(p=p)
    if "\x00" in text:
        raise ValueError("rendered Dockerfile contains a NUL")
    return text


def write_context(
    spec: ResolvedSpec,
    folder: Path,
    recipe_folder: Path,
    settings: BuildSettings,
    pins: Pins | None = None,
    secrets: Path | None = None,
    inputs: bool = True,
) -> str:
    """Fill `folder` with exactly what the build needs but uv and pip's wheel, which a build
    adds (place_tools) where needs_tools; returns the Dockerfile text.
    `secrets`: a folder outside the context for BuildKit's secrets (the BuildKit variant).
    `inputs`: False leaves out the recipe's files and the wheels (context_sources), which the
    build then places (place_sources): an up-to-date image needs no copy of them."""
    dockerfile = render(spec, pins, settings, buildkit=secrets is not None)
    (folder / "Dockerfile").write_text(dockerfile)
    ml = folder / "mlbuild"
    ml.mkdir()
    _write_requirements(spec, ml, settings)
    if spec.build_packages:
        (ml / "build-packages.txt").write_text("\n".join(spec.build_packages) + "\n")
    if settings.wheelhouse:
        (folder / WHEELHOUSE_DIR).mkdir()  # COPY needs it, even without a usable wheel
    (ml / "probe.py").write_text(probe_source())
    (ml / "spec.json").write_text(spec.to_json() + "\n")
    (ml / "imagesetup.py").write_text((Path(__file__).resolve().parent / "imagesetup.py").read_text())
    (ml / "layersplit.py").write_text((Path(__file__).resolve().parent / "layersplit.py").read_text())
    (ml / "layers.json").write_text(json.dumps(layer_plan(spec), indent=1, sort_keys=True) + "\n")
    if pins:
        (ml / "locked-framework.txt").write_text(pins.framework)
        (ml / "locked-packages.txt").write_text(pins.packages)
        if _has_pins(pins.project):
            (ml / "locked-project.txt").write_text(pins.project)
        (ml / "lock.json").write_text(pins.lock_json)
    settings.write_build_settings(folder / BUILD_SETTINGS, secrets)
    if inputs:
        place_sources(folder, context_sources(spec, recipe_folder, settings))
    return dockerfile


def context_sources(spec: ResolvedSpec, recipe_folder: Path, settings: BuildSettings) -> list[tuple[str, Path]]:
    """(where in the context, source) of the recipe's files and of the wheels the build can use."""
    from builder.wheelhouse import usable

    found = [(context_name(i, src), (recipe_folder / src).resolve()) for i, (src, _dest) in enumerate(spec.files)]
    if settings.wheelhouse:
        found += [(f"{WHEELHOUSE_DIR}/{w.name}", w) for w in usable(settings.wheelhouse, spec.python)]
    return found


def place_sources(folder: Path, sources: list[tuple[str, Path]]) -> None:
    """The recipe's files copied (their own modes dropped, as always), the wheels hard-linked
    where the file system allows it (a wheel of GBs)."""
    for rel, source in sources:
        target = folder / rel
        if rel.startswith(f"{WHEELHOUSE_DIR}/"):
            _link_or_copy(source, target)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            _copy(source, target)


def place_tools(folder: Path, tools: tuple[Path, ...]) -> None:
    """uv and pip's wheel into the context's build settings (TOOLS in the builder stage): no
    part of the content tag (builder.contextdigest), so only a build needs them fetched."""
    for tool in tools:
        _link_or_copy(tool, folder / BUILD_SETTINGS / TOOLS_FOLDER / tool.name)


def layer_plan(spec: ResolvedSpec) -> dict[str, object]:
    """What layersplit.py needs to know: the framework's names and the recipe's own; the
    image's constraints pin the framework, so they travel in its slot."""
    return {
        "venv": VENV,
        "out": layersplit.OUT,
        "framework": _framework_names(spec),
        "recipe": _recipe_names(spec),
        "files": {IMAGE_CONSTRAINTS: layersplit.FRAMEWORK_SLOT},
    }


def _names(requirements: Iterable[str]) -> list[str]:
    return sorted({n for n in map(layersplit.requirement_name, requirements) if n})


def _framework_names(spec: ResolvedSpec) -> list[str]:
    return _names([spec.framework_requirement, *spec.companions] if spec.framework_requirement else [])


def _recipe_names(spec: ResolvedSpec) -> list[str]:
    return _names([*spec.requirements, *(pin for pin, _ in spec.hashed_requirements), *spec.build_packages])


def package_requirement_files(spec: ResolvedSpec) -> list[tuple[str, list[str]]]:
    """Each package step's requirements file: the packages listed up to its own (so a step
    never loses an earlier pin: uv finds those installed and adds only the new), one more each,
    the last step all the rest (MAX_PACKAGE_STEPS)."""
    reqs = list(spec.requirements)
    ends = [*range(1, min(len(reqs), MAX_PACKAGE_STEPS)), len(reqs)] if reqs else []
    return [(f"requirements-{i}.txt", reqs[:end]) for i, end in enumerate(ends, 1)]


def _write_requirements(spec: ResolvedSpec, ml: Path, settings: BuildSettings) -> None:
    """The pip steps' files. A wheelhouse adds --find-links (and --no-index offline); the
    framework's variant index is used only when the wheelhouse does not carry the framework."""
    pinned = list(spec.packages[: 1 + len(spec.companions)]) if spec.framework_requirement else []
    links = [f"--find-links {WHEELHOUSE}"] if settings.wheelhouse else []
    if settings.offline:
        links.insert(0, "--no-index")
    index = settings.variant_index(spec.variant, spec.index_url)
    if (
        index
        and not settings.offline
        and not (settings.wheelhouse and _wheelhouse_has(settings.wheelhouse, pinned[:1], spec.python))
    ):
        links.append(f"--index-url {index}")
    (ml / "requirements-framework.txt").write_text("\n".join(links + pinned) + "\n")
    (ml / "constraints.txt").write_text("\n".join(_constraints(spec)) + "\n")
    others = [line for line in links if not line.startswith("--index-url")]
    (ml / "requirements.txt").write_text("\n".join(others + list(spec.requirements)) + "\n")  # the lock's resolver
    for name, reqs in package_requirement_files(spec):
        (ml / name).write_text("\n".join(others + reqs) + "\n")
    if spec.hashed_requirements:
        hashed = [" ".join([pin, *(f"--hash={h}" for h in hashes.split())]) for pin, hashes in spec.hashed_requirements]
        (ml / "requirements-project.txt").write_text("\n".join(others + hashed) + "\n")
    if has_project_constraints(spec):
        (ml / "constraints-project.txt").write_text("\n".join(_project_constraints(spec)) + "\n")


def _wheelhouse_has(folder: Path, requirements: list[str], python: str) -> bool:
    from builder.wheelhouse import missing

    return bool(requirements) and not missing(requirements, folder, python, deps=False)


def _link_or_copy(source: Path, target: Path) -> None:
    """A hard link where the file system allows it (a wheel of GBs), else a copy (mode kept)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _constraints(spec: ResolvedSpec) -> list[str]:
    """Pins that a later pip step may not change: the framework and its companions."""
    out = []
    for pin in (spec.framework_requirement, *spec.companions):
        if pin:
            # constraints may not carry extras: keep "name==version"
            name, _, version = pin.partition("==")
            out.append(f"{name.split('[')[0]}=={version}")
    return out


def pinned_names(spec: ResolvedSpec) -> list[str]:
    """The distributions a derived image's pip may not replace (with their CUDA build): the
    framework, installed here or in the base, and its companions."""
    return [spec.distribution, *(re.split(r"[\[=<>!~; ]", pin, maxsplit=1)[0] for pin in spec.companions)]


def _project_constraints(spec: ResolvedSpec) -> list[str]:
    """What later steps may not change: the hashed pins (as name==version, markers kept) and
    the file's own -c constraints."""
    return [pin for pin, _ in spec.hashed_requirements] + list(spec.requirement_constraints)


def _copy(source: Path, target: Path) -> None:
    if source.is_dir():
        shutil.copytree(source, target, symlinks=False)
    else:
        shutil.copyfile(source, target)


RESOLVER_COLLECT = f"""import json, os
d = "{RESOLVER_OUT}"
names = [n for n in sorted(os.listdir(d)) if n != "collect.py"]
print(json.dumps({{n: open(os.path.join(d, n)).read() for n in names}}))
"""


@dataclass(frozen=True)
class ResolverPlan:
    """What templates/resolver.j2 places (the image `mlbuild lock` resolves packages in)."""

    base_image: str
    simulate: str  # the apt steps, simulated on the untouched base, then the builder's for real
    venv_command: str
    base_pth_command: str
    report_framework: str  # pip installs the framework step for real, writing its report
    report_project: str  # pip installs the requirements: file's hashed pins, writing its report
    report_packages: str  # pip dry-runs the packages step, writing its report
    out: str = RESOLVER_OUT
    secret_mount: str = ""  # BuildKit: the site's pip.conf as a secret (no cache: the lock asks the index)


def resolver_plan(spec: ResolvedSpec) -> ResolverPlan:
    """apt simulates each stage's install on the untouched base (exact versions of all it would
    add); pip installs the framework step for real (the packages step must see it, as in the
    build) and dry-runs the packages step; both write their --report with archive hashes."""
    p = plan(spec)
    out = RESOLVER_OUT
    distro = spec.python_from == "distro"
    builder_pkgs = ["python3", "python3-venv", "ca-certificates"] if distro else []
    runtime_pkgs = sorted({*(["python3"] if distro else []), *spec.system_packages})
    sim = f"mkdir -p {out}" + (" && apt-get update" if runtime_pkgs or builder_pkgs else "")
    if runtime_pkgs:
        names = " ".join(shlex.quote(n) for n in [*runtime_pkgs, "ca-certificates"])
        sim += f" && apt-get install -s --no-install-recommends {names} > {out}/apt-runtime"
    if builder_pkgs:
        names = " ".join(shlex.quote(n) for n in builder_pkgs)
        sim += (
            f" && apt-get install -s --no-install-recommends {names} > {out}/apt-builder"
            f" && apt-get install -y --no-install-recommends {names}"
        )
    pip = f"{VENV}/bin/pip"
    framework = [pip, "install", "--report", f"{out}/framework", "-r", "/tmp/mlbuild/requirements-framework.txt"]
    project_c = ["-c", PROJECT_CONSTRAINTS] if has_project_constraints(spec) else []
    # the requirements: file's hashed pins, installed for real (the packages step must see them)
    project = [pip, "install", "--require-hashes", "--report", f"{out}/project", "-c", "/tmp/mlbuild/constraints.txt",
               *project_c, "-r", "/tmp/mlbuild/requirements-project.txt"]  # fmt: skip
    packages = [pip, "install", "--dry-run", "--report", f"{out}/packages", "-c", "/tmp/mlbuild/constraints.txt",
                *project_c, "-r", "/tmp/mlbuild/requirements.txt"]  # fmt: skip
    return ResolverPlan(
        base_image=spec.base_image,
        simulate=sim,
        venv_command=_venv_command(spec, with_pip=True),  # pip resolves here
        base_pth_command=p.base_pth_command,
        report_framework=exec_form(framework) if spec.framework_requirement else "",
        report_project=exec_form(project) if spec.hashed_requirements else "",
        report_packages=exec_form(packages) if spec.requirements else "",
    )


def resolver_dockerfile(spec: ResolvedSpec, buildkit: bool = False) -> str:
    """The throwaway image `mlbuild lock` resolves in: the base, the builder stage's setup."""
    p = resolver_plan(spec)
    if buildkit:
        p = dataclasses.replace(p, secret_mount=SECRET_MOUNT)
    return _render_template(RESOLVER_TEMPLATE, p)


def resolver_context(spec: ResolvedSpec, folder: Path, settings: BuildSettings, secrets: Path | None = None) -> str:
    """The resolver's build context; `secrets` as in write_context (BuildKit)."""
    dockerfile = resolver_dockerfile(spec, buildkit=secrets is not None)
    (folder / "Dockerfile").write_text(dockerfile)
    ml = folder / "mlbuild"
    ml.mkdir()
    # the resolver image has no wheelhouse: it asks the index what the build would install
    _write_requirements(spec, ml, dataclasses.replace(settings, wheelhouse=None, offline=False))
    setup = Path(__file__).resolve().parent / "imagesetup.py"
    (ml / "imagesetup.py").write_text(setup.read_text())
    (ml / "collect.py").write_text(RESOLVER_COLLECT)
    settings.write_build_settings(folder / BUILD_SETTINGS, secrets)
    return dockerfile


def probe_source() -> str:
    return (Path(__file__).resolve().parent / "probe.py").read_text()


__all__ = ["PROBE_PATH", "SPEC_PATH", "plan", "render", "write_context"]
