"""Read the project file a recipe's `requirements:` names, whatever its kind."""

from __future__ import annotations

from pathlib import Path

from builder.projectfiles import MAX_BYTES, ProjectFileError, ProjectRequirements, RequirementsRef, read_inside
from builder.pyproject_deps import read_pyproject
from builder.requirements_txt import read_requirements
from builder.uvlock import read_uv_lock


def read_project(ref: RequirementsRef, folder: Path) -> ProjectRequirements:
    """Read and check the file `ref` names, relative to the recipe's `folder`."""
    kind = ref.kind
    if kind is None:
        raise ProjectFileError(
            [f"{ref.path!r} is not a project file; expected a requirements file (*.txt, *.in), "
             "a pyproject.toml or a uv.lock"]
        )  # fmt: skip
    if kind == "requirements" and (ref.extras or ref.groups):
        raise ProjectFileError(["extras and groups apply to a pyproject.toml or a uv.lock, not a requirements file"])
    if kind == "requirements":
        return ProjectRequirements(ref, kind, entries=read_requirements(folder, ref.path))
    text = read_inside(folder, ref.path, MAX_BYTES[kind])
    if kind == "pyproject":
        return read_pyproject(ref, text)
    return read_uv_lock(ref, text)
