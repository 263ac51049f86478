"""pyproject.toml as a recipe's `requirements:`.

`[project].dependencies` always; `[project.optional-dependencies]` tables named in the recipe's
`extras:`; PEP 735 `[dependency-groups]` named in `groups:` (with their `include-group`s). A
project that names itself with extras (`all = ["myproj[train,eval]"]`) gets those extras. Names
compare in PEP 503/685 normal form. `dynamic` dependencies cannot be read without building the
project, so they are refused with a pointer to a requirements file or a uv.lock.
"""

from __future__ import annotations

import sys
from typing import Any

from packaging.utils import canonicalize_name

from builder.pep508 import requirement_problem
from builder.projectfiles import (
    MAX_ENTRIES,
    Entry,
    ProjectFileError,
    ProjectRequirements,
    RequirementsRef,
    check_requires_python,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib


def load_toml(text: str, shown: str) -> dict[str, Any]:
    try:
        doc: dict[str, Any] = tomllib.loads(text)
        return doc
    except tomllib.TOMLDecodeError as exc:
        raise ProjectFileError([f"{shown} is not valid TOML: {exc}"]) from None
    except RecursionError:
        raise ProjectFileError([f"{shown} nests arrays or tables too deeply"]) from None


def read_pyproject(ref: RequirementsRef, text: str) -> ProjectRequirements:
    reader = _Reader(ref, load_toml(text, ref.path))
    reader.read()
    if len(reader.entries) > MAX_ENTRIES:
        reader.problems.append(f"{ref.path} asks for {len(reader.entries)} requirements; at most {MAX_ENTRIES}")
    if reader.problems:
        raise ProjectFileError(reader.problems)
    return ProjectRequirements(
        ref,
        "pyproject",
        entries=tuple(reader.entries),
        requires_python=reader.requires_python,
        project_name=reader.name,
        extras_offered=tuple(sorted(reader.extras)),
        groups_offered=tuple(sorted(reader.groups)),
    )


class _Reader:
    def __init__(self, ref: RequirementsRef, doc: dict[str, Any]):
        self.ref = ref
        self.shown = ref.path
        self.problems: list[str] = []
        self.entries: list[Entry] = []
        self.requires_python: str | None = None
        project = doc.get("project")
        self.project: dict[str, Any] = project if isinstance(project, dict) else {}
        if project is not None and not isinstance(project, dict):
            self.problems.append(f"{self.shown}: [project] is not a table")
        raw_name = self.project.get("name")
        self.name = canonicalize_name(raw_name) if isinstance(raw_name, str) else None
        self.extras = self.table(self.project.get("optional-dependencies"), "[project.optional-dependencies]")
        self.groups = self.table(doc.get("dependency-groups"), "[dependency-groups]")
        self.extras_done: set[str] = set()

    def table(self, value: Any, where: str) -> dict[str, Any]:
        """A table of named lists, keyed by normalised name."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.problems.append(f"{self.shown} {where} is not a table")
            return {}
        return {canonicalize_name(str(k)): (str(k), v) for k, v in value.items()}

    def read(self) -> None:
        if not self.project and not self.ref.groups:
            self.problems.append(
                f"{self.shown} has no [project] table; mlbuild reads [project].dependencies, "
                "the extras and the dependency groups a recipe names"
            )
            return
        if "dependencies" in (self.project.get("dynamic") or ()):
            self.problems.append(
                f"{self.shown}: [project] declares its dependencies dynamic, so they are known only "
                "after a build; point requirements: at a requirements file or a uv.lock instead"
            )
        self.requires_python = check_requires_python(
            self.project.get("requires-python"), f"{self.shown} [project] requires-python", self.problems
        )
        self.add(self.project.get("dependencies"), "[project] dependencies")
        for extra in self.ref.extras:
            self.extra(extra)
        for group in self.ref.groups:
            self.group(group, ())

    def add(self, items: Any, where: str) -> None:
        if items is None:
            return
        if not isinstance(items, list):
            self.problems.append(f"{self.shown} {where} is not a list of requirements")
            return
        for i, item in enumerate(items):
            self.add_one(item, f"{self.shown} {where}[{i}]")

    def add_one(self, item: Any, at: str) -> None:
        if not isinstance(item, str):
            self.problems.append(f"{at}: {item!r} is not a requirement string")
            return
        req, why = requirement_problem(item.strip())
        if req is None:
            self.problems.append(f"{at}: {why}")
            return
        if self.name and canonicalize_name(req.name) == self.name:
            for extra in sorted(req.extras):  # the project's own extras, e.g. all = ["me[a,b]"]
                self.extra(extra)
            return
        if not any(e.requirement == str(req) for e in self.entries):
            self.entries.append(Entry(str(req), at))

    def extra(self, extra: str) -> None:
        key = canonicalize_name(extra)
        if key in self.extras_done:
            return
        self.extras_done.add(key)
        if key not in self.extras:
            offered = ", ".join(sorted(written for written, _ in self.extras.values())) or "none"
            self.problems.append(f"{self.shown}: no extra {extra!r}; [project.optional-dependencies] has: {offered}")
            return
        written, items = self.extras[key]
        self.add(items, f"[project.optional-dependencies] {written}")

    def group(self, group: str, chain: tuple[str, ...]) -> None:
        key = canonicalize_name(group)
        if key in chain:
            self.problems.append(f"{self.shown}: [dependency-groups] include a cycle: {' -> '.join([*chain, key])}")
            return
        if key not in self.groups:
            offered = ", ".join(sorted(written for written, _ in self.groups.values())) or "none"
            self.problems.append(f"{self.shown}: no dependency group {group!r}; [dependency-groups] has: {offered}")
            return
        written, items = self.groups[key]
        if not isinstance(items, list):
            self.problems.append(f"{self.shown} [dependency-groups] {written} is not a list")
            return
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                self.add_one(item, f"{self.shown} [dependency-groups] {written}[{i}]")
                continue
            included = item.get("include-group")
            if set(item) != {"include-group"} or not isinstance(included, str):
                self.problems.append(
                    f'{self.shown} [dependency-groups] {written}: {item!r}; expected {{include-group = "name"}}'
                )
                continue
            self.group(included, (*chain, key))
