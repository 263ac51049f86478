"""`mlbuild init --from FILE`: a recipe for an existing project (requirements.txt,
pyproject.toml or uv.lock).

The framework is guessed from the project's dependencies, by the distribution names in the
compatibility data (the framework's own and its companions', e.g. torchvision -> pytorch) and
the few other names that only ever come with one framework (ALSO_MEANS). Its version comes from
the project's pin, Python from requires-python (through the resolver, which honours it), and the
recipe points `requirements:` at the file instead of copying the list, so the two cannot drift.
The recipe is resolved before it is written.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path, PurePath

from packaging.utils import canonicalize_name

from builder.commands.starter import default_name, resolved_text
from builder.errors import UsageError
from builder.matrix import FrameworkData, load_matrix
from builder.projectfiles import Entry, ProjectFileError, ProjectRequirements, RequirementsRef
from builder.projectinput import read_project

# Distributions that mean a framework without being in its data (jaxlib is installed by jax).
ALSO_MEANS = {"jaxlib": "jax"}


def recipe_from_project(
    source: Path,
    output: Path,
    *,
    framework: str | None = None,
    name: str | None = None,
    python: str | None = None,
    cuda: str | None = None,
    extras: tuple[str, ...] = (),
    groups: tuple[str, ...] = (),
) -> str:
    """The text of a recipe at `output` whose requirements: is `source`, resolved as written."""

    rel = _relative(source, output)
    try:
        project = read_project(RequirementsRef(rel, extras, groups), output.parent)
    except ProjectFileError as exc:
        raise UsageError(f"{source} cannot be used as a recipe's requirements:", details=exc.problems) from None
    fw = _framework(project, framework)
    version = _version(project, fw)
    cuda = cuda or "cpu"
    name = name or _name(project.project_name or output.parent.resolve().name) or default_name(fw.framework, cuda)
    value = json.dumps(rel) if not (extras or groups) else _mapping(rel, extras, groups)
    return resolved_text(
        fw.framework, name, python, cuda, version,
        requirements=(value, _offered(project, rel)), where=output,
    )  # fmt: skip


def _relative(source: Path, output: Path) -> str:
    rel = os.path.relpath(source.resolve(), output.parent.resolve())
    parts = PurePath(rel).parts
    if parts[0] == ".." or PurePath(rel).is_absolute():
        raise UsageError(
            f"{source} is outside the folder of {output}: a recipe reads files from its own folder only",
            hint=f"write the recipe next to the project: -o {source.parent / 'recipe.yaml'}",
        )
    return "/".join(parts)


def _distributions(fw: FrameworkData) -> set[str]:
    names = {canonicalize_name(fw.distribution), *(canonicalize_name(c) for c in fw.companions)}
    return names | {alias for alias, target in ALSO_MEANS.items() if target == fw.framework}


def _names_in(project: ProjectRequirements) -> set[str]:
    if project.lock is not None:
        return project.lock.names()
    return {e.name for e in project.entries if not e.constraint}


def _framework(project: ProjectRequirements, wanted: str | None) -> FrameworkData:
    m = load_matrix()
    if wanted:
        return m.framework(wanted)
    names = _names_in(project)
    found = [fw for fw in m.frameworks.values() if _distributions(fw) & names]
    # a GPU framework is what an image is built around; scikit-learn beside it is a package
    gpu = [fw for fw in found if any(v.cuda for r in fw.releases for v in r.variants)]
    if len(gpu) > 1:
        raise UsageError(
            f"{project.shown} names {' and '.join(fw.framework for fw in gpu)}; one image is built around one",
            hint="choose it with --framework",
        )
    if gpu or len(found) == 1:
        return (gpu or found)[0]
    known = ", ".join(sorted(fw.distribution for fw in m.frameworks.values()))
    raise UsageError(
        f"{project.shown} names no framework mlbuild builds ({known})",
        hint="choose one with --framework",
    )


def _version(project: ProjectRequirements, fw: FrameworkData) -> str | None:
    """framework_version from the project's pin on the framework: "2.5.1" for ==2.5.1 (local
    label dropped), the specifier set otherwise; None when the project does not say."""
    pins: tuple[Entry, ...] = project.framework_entries({canonicalize_name(fw.distribution)})
    if not pins:
        return None
    spec = pins[0].parsed.specifier
    exact = [s.version for s in spec if s.operator == "==" and not s.version.endswith(".*")]
    if len(spec) == 1 and exact:
        return exact[0].split("+")[0]
    return str(spec) or None


def _name(text: str) -> str | None:
    name = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:64].strip("-")
    return name or None


def _mapping(rel: str, extras: tuple[str, ...], groups: tuple[str, ...]) -> str:
    parts = [f"path: {json.dumps(rel)}"]
    if extras:
        parts.append(f"extras: [{', '.join(extras)}]")
    if groups:
        parts.append(f"groups: [{', '.join(groups)}]")
    return "{" + ", ".join(parts) + "}"


def _offered(project: ProjectRequirements, rel: str) -> str:
    """A comment naming the extras and groups the file offers (none are taken unless named)."""
    bits = []
    if project.extras_offered:
        bits.append(f"extras: {', '.join(project.extras_offered)}")
    if project.groups_offered:
        bits.append(f"groups: {', '.join(project.groups_offered)}")
    if not bits:
        return "the project's own file, read at every resolve"
    return f"{rel} offers {'; '.join(bits)}: only those named here are installed"
