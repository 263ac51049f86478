"""Render a ResolvedSpec into a Dockerfile and the files of its build context.

All quoting, sorting and pinning happens here, in Python, where it is tested; the template only
places prepared lines (`if`/`for`, StrictUndefined). Values reach the Dockerfile only in forms
that cannot become another instruction: JSON-array COPY, escaped double-quoted ENV and LABEL
values, and allow-listed names and paths (checked in recipe.py).
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import jinja2

from builder.settings import BuildSettings
from builder.spec import PROBE_PATH, SPEC_LABEL, SPEC_PATH, VENV, ResolvedSpec

TEMPLATE = "Dockerfile.j2"
APT_CLEAN = (
    "rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/apt/archives/*.deb "
    "/var/log/apt /var/log/dpkg.log /var/log/alternatives.log /var/cache/debconf/*-old"
)


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
    install_packages: str
    copy_files: tuple[str, ...]
    env_lines: tuple[str, ...]
    label_lines: tuple[str, ...]
    workdir: str
    uid: int


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


def plan(spec: ResolvedSpec) -> Plan:
    distro = spec.python_from == "distro"
    apt_runtime = (["python3"] if distro else []) + list(spec.system_packages)
    builder_apt = ""
    if distro:
        builder_apt = _apt(["python3", "python3-venv", "ca-certificates"])
    runtime_apt = _apt(sorted(set(apt_runtime)) + ["ca-certificates"]) if apt_runtime else ""
    create_user = ""
    if spec.uid != 0:
        dirs = [f"/home/{spec.user}"] + ([spec.workdir] if spec.workdir else [])
        create_user = exec_form(
            [f"{VENV}/bin/python", "/opt/mlbuild/imagesetup.py", "user", spec.user, str(spec.uid), *dirs]
        )
    pip = f"{VENV}/bin/pip"
    c = "/tmp/mlbuild/constraints.txt"
    owner = f"--chown={spec.uid}:0 " if spec.uid else ""
    copy_files = tuple(
        f"COPY {owner}{json.dumps([context_name(i, src), dest])}"
        for i, (src, dest) in enumerate(spec.files)
    )
    env_lines = tuple(f"ENV {k}={dockerfile_string(v)}" for k, v in spec.env)
    labels = {
        "org.opencontainers.image.title": spec.name,
        "org.opencontainers.image.version": spec.readable_tag,
        "org.opencontainers.image.description": summary(spec),
        SPEC_LABEL: spec.to_json(),
    }
    label_lines = tuple(
        f"LABEL {dockerfile_string(k)}={dockerfile_string(v)}" for k, v in sorted(labels.items())
    )
    return Plan(
        name=spec.name,
        summary=summary(spec),
        mlbuild_version=spec.mlbuild_version,
        base_image=spec.base_image,
        venv=VENV,
        venv_command=exec_form(
            [spec.python_bin, "-m", "venv", *([] if needs_pip(spec) else ["--without-pip"]), VENV]
        ),
        base_pth_command=_base_pth(spec),
        builder_apt=builder_apt,
        runtime_apt=runtime_apt,
        create_user=create_user,
        install_framework=exec_form([pip, "install", "-r", "/tmp/mlbuild/requirements-framework.txt"])
        if spec.framework_requirement
        else "",
        install_packages=exec_form([pip, "install", "-c", c, "-r", "/tmp/mlbuild/requirements.txt"])
        if spec.requirements
        else "",
        copy_files=copy_files,
        env_lines=env_lines,
        label_lines=label_lines,
        workdir=spec.workdir or "",
        uid=spec.uid,
    )


def _base_pth(spec: ResolvedSpec) -> str:
    """framework_from_base: a .pth file that puts the base's site-packages on the venv's path
    (a venv made from a venv's Python would not see the first venv's packages)."""
    if not spec.base_site_packages:
        return ""
    target = f"{VENV}/lib/python{spec.python}/site-packages/_mlbuild_base.pth"
    return exec_form(
        [f"{VENV}/bin/python", "/tmp/mlbuild/imagesetup.py", "pth", target, *spec.base_site_packages]
    )


def exec_form(argv: list[str]) -> str:
    """A JSON-array (exec form) instruction argument: no shell ever parses it."""
    return json.dumps(argv)


def needs_pip(spec: ResolvedSpec) -> bool:
    return bool(spec.framework_requirement or spec.requirements)


def summary(spec: ResolvedSpec) -> str:
    gpu = "CPU" if spec.cuda == "cpu" else f"CUDA {spec.cuda}" + (f", cuDNN {spec.cudnn}" if spec.cudnn else "")
    return f"{spec.framework} {spec.framework_version}, Python {spec.python}, {gpu}"


def _apt(packages: list[str]) -> str:
    names = " ".join(shlex.quote(p) for p in packages)
    return (
        "apt-get update && apt-get install -y --no-install-recommends "
        f"{names} && {APT_CLEAN}"
    )


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # a Dockerfile, not HTML: values are quoted by plan()
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render(spec: ResolvedSpec) -> str:
    """The Dockerfile text; the same spec always gives the same bytes."""
    p = plan(spec)
    text = _environment().get_template(TEMPLATE).render(p=p)
    if "\x00" in text:
        raise ValueError("rendered Dockerfile contains a NUL")
    return text


def write_context(
    spec: ResolvedSpec, folder: Path, recipe_folder: Path, settings: BuildSettings
) -> str:
    """Fill `folder` with exactly what the build needs; returns the Dockerfile text."""
    dockerfile = render(spec)
    (folder / "Dockerfile").write_text(dockerfile)
    ml = folder / "mlbuild"
    ml.mkdir()
    pins = list(spec.packages[: 1 + len(spec.companions)]) if spec.framework_requirement else []
    framework_lines = ([f"--index-url {spec.index_url}"] if spec.index_url else []) + pins
    (ml / "requirements-framework.txt").write_text("\n".join(framework_lines) + "\n")
    (ml / "constraints.txt").write_text("\n".join(_constraints(spec)) + "\n")
    (ml / "requirements.txt").write_text("\n".join(spec.requirements) + "\n")
    (ml / "probe.py").write_text(probe_source())
    (ml / "spec.json").write_text(spec.to_json() + "\n")
    (ml / "imagesetup.py").write_text((Path(__file__).resolve().parent / "imagesetup.py").read_text())
    settings.write_build_settings(folder / "build-settings")
    for i, (src, _dest) in enumerate(spec.files):
        source = (recipe_folder / src).resolve()
        target = folder / context_name(i, src)
        target.parent.mkdir(parents=True)
        _copy(source, target)
    return dockerfile


def _constraints(spec: ResolvedSpec) -> list[str]:
    """Pins that a later pip step may not change: the framework and its companions."""
    out = []
    for pin in (spec.framework_requirement, *spec.companions):
        if pin:
            # constraints may not carry extras: keep "name==version"
            name, _, version = pin.partition("==")
            out.append(f"{name.split('[')[0]}=={version}")
    return out


def _copy(source: Path, target: Path) -> None:
    import shutil

    if source.is_dir():
        shutil.copytree(source, target, symlinks=False)
    else:
        shutil.copyfile(source, target)


def probe_source() -> str:
    return (Path(__file__).resolve().parent / "probe.py").read_text()


__all__ = ["PROBE_PATH", "SPEC_PATH", "plan", "render", "write_context"]
