"""uv.lock as a recipe's `requirements:`: its exact pins and sha256 hashes for the image.

A uv.lock is a universal resolution: every package of the project for every Python and
platform, with markers on the edges. `select` walks it from the project (the package whose
source is the lock's own folder) for one CPython and one Linux machine: an edge counts when its
marker holds inside the image (packaging.markers with that Python and platform), optional
dependencies when the recipe names the extra, dev-dependencies when it names the group.
Each package chosen becomes `name==version` with the hashes of its wheels for that platform
(by wheel tag), or of its sdist when it has no such wheel.

The lock's index and file URLs are never used: packages come from the index the site
configures and must match the lock's hashes. Packages from git, a URL or a local path (other
workspace members too) are refused: they cannot be checked against the index. Distributions
another step installs (the framework and its companions) are named with their version, so the
resolver can check them, but not followed: their own dependencies come with that step.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from packaging.markers import InvalidMarker, Marker
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from builder.platforms import Platform
from builder.projectfiles import (
    Entry,
    ProjectFileError,
    ProjectRequirements,
    RequirementsRef,
    check_requires_python,
)
from builder.pyproject_deps import load_toml

LOCK_VERSIONS = (1,)
HASH_RE = re.compile(r"sha256:[0-9a-f]{64}")
NAME_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,198}[A-Za-z0-9])?")
MAX_PACKAGES = 20000
MAX_FILES = 5000  # wheels of one package


@dataclass(frozen=True)
class Dep:
    """An edge of the lock: a package needs `name` (at `version` where the lock holds several)."""

    name: str
    version: str | None = None
    marker: str | None = None
    extras: tuple[str, ...] = ()


@dataclass(frozen=True)
class LockedPackage:
    name: str  # canonical
    version: str
    deps: tuple[Dep, ...] = ()
    optional: tuple[tuple[str, tuple[Dep, ...]], ...] = ()  # extra -> deps
    groups: tuple[tuple[str, tuple[Dep, ...]], ...] = ()  # dependency group -> deps
    wheels: tuple[tuple[str, str], ...] = ()  # (file name, sha256:...)
    sdist: str | None = None  # sha256:... of the sdist
    not_from_index: str | None = None  # why it cannot come from the index (git, path ...)
    is_project: bool = False  # the lock's own project: never installed, only its dependencies


@dataclass(frozen=True)
class UvLock:
    shown: str
    root: str  # the project's canonical name
    packages: tuple[LockedPackage, ...]
    requires_python: str | None = None

    def find(self, dep: Dep) -> LockedPackage:
        found = [p for p in self.packages if p.name == dep.name and (dep.version is None or p.version == dep.version)]
        return found[0]  # read_uv_lock checked that every edge names exactly one package

    @property
    def project(self) -> LockedPackage:
        return next(p for p in self.packages if p.name == self.root)

    def names(self) -> set[str]:
        """Every locked distribution but the project itself."""
        return {p.name for p in self.packages if not p.is_project}

    def pins_of(self, names: set[str]) -> tuple[Entry, ...]:
        """`name==version` of these distributions, where the lock holds a single version."""
        out = []
        for name in sorted(names):
            versions = {p.version for p in self.packages if p.name == name}
            if len(versions) == 1:
                out.append(Entry(f"{name}=={versions.pop()}", self.shown))
        return tuple(out)

    def select(
        self,
        python: str,
        platform: Platform,
        extras: tuple[str, ...],
        groups: tuple[str, ...],
        skip: frozenset[str] = frozenset(),
    ) -> tuple[Entry, ...]:
        project = self.project
        optional, dev = dict(project.optional), dict(project.groups)
        start = list(project.deps)
        for extra in extras:
            start += _named(optional, extra, f"{self.shown}: the project has no extra", "extras")
        for group in groups:
            start += _named(dev, group, f"{self.shown}: the project has no dependency group", "groups")
        envs = [platform.marker_environment(python, patch) for patch in (0, 99)]
        chosen: dict[tuple[str, str], LockedPackage] = {}
        done: set[tuple[str, str, str]] = set()  # (name, version, extra or "")
        queue = [(d, "the project") for d in start]
        while queue:
            dep, via = queue.pop(0)
            if not _active(dep, envs, self.shown, via):
                continue
            pkg = self.find(dep)
            if pkg.not_from_index:
                raise ProjectFileError(
                    [f"{self.shown}: {pkg.name} (needed by {via}) comes from {pkg.not_from_index}; mlbuild "
                     "installs packages from the site's index only: publish it, or use a wheelhouse"]
                )  # fmt: skip
            chosen[(pkg.name, pkg.version)] = pkg
            if pkg.name in skip:
                continue
            table = dict(pkg.optional)
            for part in ("", *dep.extras):
                if (pkg.name, pkg.version, part) in done:
                    continue
                done.add((pkg.name, pkg.version, part))
                edges = pkg.deps if not part else table.get(canonicalize_name(part), ())
                queue += [(d, f"{pkg.name} {pkg.version}") for d in edges]
        names = [n for n, _ in chosen]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ProjectFileError(
                [
                    f"{self.shown}: for Python {python} on linux {platform.machine} it asks two versions "
                    f"of {', '.join(twice)}"
                ]
            )
        tags = platform.wheel_tags(python)
        return tuple(
            Entry(f"{pkg.name}=={pkg.version}", self.shown, _hashes(pkg, tags, python, platform, self.shown))
            for pkg in sorted(chosen.values(), key=lambda p: p.name)
        )


def _named(table: dict[str, tuple[Dep, ...]], name: str, missing: str, what: str) -> list[Dep]:
    key = canonicalize_name(name)
    if key not in table:
        raise ProjectFileError([f"{missing} {name!r}; its {what}: {', '.join(sorted(table)) or 'none'}"])
    return list(table[key])


def _active(dep: Dep, envs: list[dict[str, str]], shown: str, via: str) -> bool:
    if dep.marker is None:
        return True
    marker = Marker(dep.marker)
    seen = {marker.evaluate(env) for env in envs}
    if len(seen) > 1:
        raise ProjectFileError(
            [f"{shown}: {dep.name} (needed by {via}) depends on Python's patch release ({dep.marker}), "
             "which the base image decides; lock for a range of whole minor releases"]
        )  # fmt: skip
    return seen.pop()


def _hashes(pkg: LockedPackage, tags: frozenset[Any], python: str, platform: Platform, shown: str) -> tuple[str, ...]:
    fitting = sorted({h for file, h in pkg.wheels if set(parse_wheel_filename(file)[3]) & tags})
    if fitting:
        return tuple(fitting)
    if pkg.sdist:
        return (pkg.sdist,)
    raise ProjectFileError(
        [f"{shown}: {pkg.name} {pkg.version} has no wheel for CPython {python} on linux "
         f"{platform.machine} and no sdist"]
    )  # fmt: skip


# -- reading -----------------------------------------------------------------------------------
def read_uv_lock(ref: RequirementsRef, text: str) -> ProjectRequirements:
    doc = load_toml(text, ref.path)
    problems: list[str] = []
    lock = _Reader(ref.path, problems).lock(doc)
    if lock is not None and not problems:
        project = lock.project
        for extra in ref.extras:
            if canonicalize_name(extra) not in dict(project.optional):
                problems.append(f"{ref.path}: the project has no extra {extra!r}; its extras: "
                                f"{', '.join(n for n, _ in project.optional) or 'none'}")  # fmt: skip
        for group in ref.groups:
            if canonicalize_name(group) not in dict(project.groups):
                problems.append(f"{ref.path}: the project has no dependency group {group!r}; its groups: "
                                f"{', '.join(n for n, _ in project.groups) or 'none'}")  # fmt: skip
    if problems or lock is None:
        raise ProjectFileError(problems or [f"{ref.path} is not a uv.lock"])
    project = lock.project
    return ProjectRequirements(
        ref,
        "uv.lock",
        requires_python=lock.requires_python,
        project_name=lock.root,
        extras_offered=tuple(n for n, _ in project.optional),
        groups_offered=tuple(n for n, _ in project.groups),
        lock=lock,
    )


class _Reader:
    def __init__(self, shown: str, problems: list[str]):
        self.shown = shown
        self.problems = problems

    def fail(self, message: str) -> None:
        if len(self.problems) < 20:  # a hostile lock could hold thousands: the first ones tell
            self.problems.append(f"{self.shown}: {message}")

    def lock(self, doc: dict[str, Any]) -> UvLock | None:
        version = doc.get("version")
        if version not in LOCK_VERSIONS or isinstance(version, bool):
            known = ", ".join(map(str, LOCK_VERSIONS))
            self.fail(f"version = {version!r} is not a uv.lock version mlbuild reads ({known})")
            return None
        raw = doc.get("package")
        if not isinstance(raw, list) or not raw:
            self.fail("holds no [[package]] tables")
            return None
        if len(raw) > MAX_PACKAGES:
            self.fail(f"holds {len(raw)} packages; at most {MAX_PACKAGES}")
            return None
        packages = [p for p in (self.package(i, item) for i, item in enumerate(raw)) if p is not None]
        roots = [p for p in packages if p.is_project]
        if len(roots) != 1:
            self.fail('names no project at its own folder (a package with source virtual/editable ".")')
            return None
        root = roots[0]
        self.check_edges(packages)
        requires = check_requires_python(doc.get("requires-python"), f"{self.shown} requires-python", self.problems)
        return UvLock(self.shown, root.name, tuple(packages), requires)

    def package(self, i: int, item: Any) -> LockedPackage | None:
        if not isinstance(item, dict):
            self.fail(f"package {i} is not a table")
            return None
        name, version = item.get("name"), item.get("version")
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            self.fail(f"package {i}: name {name!r} is not a package name")
            return None
        kind, where = _source_kind(item.get("source"))
        if version is None and kind == "project":
            version = "0"  # the project itself may have a dynamic version: it is never installed
        try:
            Version(str(version))
        except InvalidVersion:
            self.fail(f"package {name}: version {version!r} is not a PEP 440 version")
            return None
        if kind == "unknown":
            self.fail(f"package {name}: source {item.get('source')!r} is not one mlbuild knows")
            return None
        canonical = canonicalize_name(name)
        return LockedPackage(
            name=canonical,
            version=str(version),
            deps=self.deps(item.get("dependencies"), name),
            optional=self.dep_tables(item.get("optional-dependencies"), name),
            groups=self.dep_tables(item.get("dev-dependencies"), name),
            wheels=self.wheels(item.get("wheels"), canonical, str(version)),
            sdist=self.file_hash(item.get("sdist"), f"package {name} sdist"),
            not_from_index=None if kind in ("registry", "project") else f"{kind} {where}",
            is_project=kind == "project",
        )

    def deps(self, value: Any, owner: str) -> tuple[Dep, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            self.fail(f"package {owner}: dependencies is not a list")
            return ()
        out = []
        for d in value:
            name = d.get("name") if isinstance(d, dict) else None
            if not isinstance(name, str) or not NAME_RE.fullmatch(name):
                self.fail(f"package {owner}: dependency {d!r} has no valid name")
                continue
            marker = d.get("marker")
            if marker is not None:
                try:
                    Marker(str(marker))
                except InvalidMarker:
                    self.fail(f"package {owner}: dependency {name}: marker {marker!r} is not a PEP 508 marker")
                    continue
            extras = d.get("extra") or []
            if not isinstance(extras, list) or not all(isinstance(e, str) and NAME_RE.fullmatch(e) for e in extras):
                self.fail(f"package {owner}: dependency {name}: extra {extras!r} is not a list of names")
                continue
            version = d.get("version")
            out.append(
                Dep(canonicalize_name(name), None if version is None else str(version),
                    None if marker is None else str(marker), tuple(extras))
            )  # fmt: skip
        return tuple(out)

    def dep_tables(self, value: Any, owner: str) -> tuple[tuple[str, tuple[Dep, ...]], ...]:
        if value is None:
            return ()
        if not isinstance(value, dict):
            self.fail(f"package {owner}: optional/dev dependencies are not a table")
            return ()
        return tuple(sorted((canonicalize_name(str(k)), self.deps(v, owner)) for k, v in value.items()))

    def wheels(self, value: Any, name: str, version: str) -> tuple[tuple[str, str], ...]:
        if value is None:
            return ()
        if not isinstance(value, list) or len(value) > MAX_FILES:
            self.fail(f"package {name}: wheels is not a list of at most {MAX_FILES} files")
            return ()
        out = []
        for w in value:
            where = f"package {name} wheel"
            digest = self.file_hash(w, where)
            if digest is None:
                continue
            location = w.get("url") or w.get("path") or w.get("filename")
            file = unquote(urlsplit(str(location)).path.rsplit("/", 1)[-1]) if location else ""
            try:
                wname, wversion, _build, _tags = parse_wheel_filename(file)
            except (InvalidWheelFilename, InvalidVersion):
                self.fail(f"{where} {location!r} does not end in a wheel file name")
                continue
            if wname != name or wversion != Version(version):
                self.fail(f"{where} {file!r} is not a wheel of {name} {version}")
                continue
            out.append((file, digest))
        return tuple(out)

    def file_hash(self, value: Any, where: str) -> str | None:
        if value is None:
            return None
        digest = value.get("hash") if isinstance(value, dict) else None
        if not isinstance(digest, str) or not HASH_RE.fullmatch(digest):
            self.fail(f"{where}: hash {digest!r} is not sha256:<64 lower-case hex digits>")
            return None
        return digest

    def check_edges(self, packages: list[LockedPackage]) -> None:
        """Every edge names one package of the lock, and each extra it asks exists there."""
        for pkg in packages:
            edges = [*pkg.deps, *(d for _, ds in pkg.optional for d in ds), *(d for _, ds in pkg.groups for d in ds)]
            for dep in edges:
                found = [p for p in packages if p.name == dep.name and dep.version in (None, p.version)]
                if len(found) != 1:
                    what = "no" if not found else "more than one"
                    self.fail(f"package {pkg.name}: dependency {dep.name} {dep.version or ''} matches {what} package")


def _source_kind(source: Any) -> tuple[str, str]:
    """("registry", url) | ("project", ".") | ("git" | "url" | "path" | ..., where) | ("unknown", "")."""
    if not isinstance(source, dict) or len(source) != 1:
        return "unknown", ""
    ((kind, where),) = source.items()
    if kind == "registry":
        return "registry", str(where)
    if kind in ("virtual", "editable") and where == ".":
        return "project", "."
    if kind in ("git", "url", "path", "directory", "editable", "virtual"):
        return kind, str(where)
    return "unknown", ""
