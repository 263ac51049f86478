"""Real projects as input: the recipe's `requirements:` file, read and checked.

Three kinds, told apart by the file's name:
- a pip requirements file (`*.txt`, `*.in`), with `-r`/`-c` includes (builder.requirements_txt);
- a `pyproject.toml`: `[project].dependencies` plus named extras and PEP 735 dependency groups
  (builder.pyproject_deps);
- a `uv.lock`: exact pins with sha256 hashes, chosen per Python and platform (builder.uvlock).

Every file is read from inside the recipe's folder only (no absolute paths, no `..` out of it,
no symlink leading out), as bounded, strict UTF-8 text without NUL bytes; every requirement in
it gets the same checks as a `packages:` entry. Anything that would change where packages come
from (an index, find-links, a URL or a local path) is refused: the site's configuration and
mlbuild's options choose indexes, never a recipe. Problems are collected and raised once.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import Protocol

from packaging.requirements import Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name

from builder.platforms import LINUX_X86_64, Platform


class LockedChoice(Protocol):
    """A lock that chooses its pins per Python and platform (builder.uvlock.UvLock)."""

    def select(
        self,
        python: str,
        platform: Platform,
        extras: tuple[str, ...],
        groups: tuple[str, ...],
        skip: frozenset[str] = frozenset(),
    ) -> tuple[Entry, ...]: ...

    def pins_of(self, names: set[str]) -> tuple[Entry, ...]: ...

    def names(self) -> set[str]: ...


KINDS = ("requirements", "pyproject", "uv.lock")
MAX_BYTES = {"requirements": 1 << 20, "pyproject": 1 << 20, "uv.lock": 16 << 20}
MAX_ENTRIES = 5000  # requirements from one project, all includes together


@dataclass(frozen=True)
class Entry:
    """One requirement from one place."""

    requirement: str  # normalised PEP 508 text, markers kept
    source: str  # where it was written: "requirements.txt line 4", "packages[0]", "uv.lock"
    hashes: tuple[str, ...] = ()  # "sha256:<hex>": installed only as these artefacts
    constraint: bool = False  # from a -c file: limits versions, installs nothing

    @cached_property
    def parsed(self) -> Requirement:
        return Requirement(self.requirement)

    @property
    def name(self) -> str:
        return canonicalize_name(self.parsed.name)


@dataclass(frozen=True)
class RequirementsRef:
    """The recipe's `requirements:` value: a path, and for pyproject.toml / uv.lock the
    optional-dependency extras and dependency groups to add."""

    path: str
    extras: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()

    @property
    def kind(self) -> str | None:
        return kind_of(self.path)


@dataclass(frozen=True)
class ProjectRequirements:
    """What a project file asks for. A uv.lock's choice depends on the image's Python, known
    only after resolving, so it keeps the lock and chooses in `select`."""

    ref: RequirementsRef
    kind: str
    entries: tuple[Entry, ...] = ()
    requires_python: str | None = None
    project_name: str | None = None
    extras_offered: tuple[str, ...] = ()
    groups_offered: tuple[str, ...] = ()
    lock: LockedChoice | None = None

    @property
    def shown(self) -> str:
        return self.ref.path

    def select(
        self, python: str, platform: Platform = LINUX_X86_64, skip: frozenset[str] = frozenset()
    ) -> tuple[Entry, ...]:
        """The entries for CPython `python` on `platform`. `skip`: distributions installed by
        another step (the framework): a uv.lock names them but does not follow their deps."""
        if self.lock is not None:
            return self.lock.select(python, platform, self.ref.extras, self.ref.groups, skip)
        return self.entries

    def framework_entries(self, names: set[str]) -> tuple[Entry, ...]:
        """Entries on these distributions that hold for every Python (no marker): they narrow
        the framework releases before a Python is chosen."""
        if self.lock is not None:
            return self.lock.pins_of(names)
        return tuple(e for e in self.entries if e.name in names and e.parsed.marker is None and not e.constraint)

    def allows_python(self, python: str) -> bool:
        from builder.versionsets import intersects

        if not self.requires_python:
            return True
        return intersects(SpecifierSet(self.requires_python), SpecifierSet(f"=={python}.*"))


class ProjectFileError(Exception):
    """The project file cannot be used; `problems` name the place and what is allowed."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


def kind_of(path: str) -> str | None:
    name = PurePosixPath(path).name
    if name == "pyproject.toml":
        return "pyproject"
    if name == "uv.lock":
        return "uv.lock"
    if name.endswith((".txt", ".in")):
        return "requirements"
    return None


def read_inside(folder: Path, rel: str, limit: int) -> str:
    """The text of `folder/rel`, which must stay inside `folder` after following symlinks and
    be a regular file of at most `limit` bytes of UTF-8 without NUL bytes."""
    if rel.startswith("/") or "\\" in rel:
        raise ProjectFileError([f"{rel!r}: only paths relative to the recipe's folder are allowed"])
    if os.path.normpath(rel).split(os.sep)[0] == "..":
        raise ProjectFileError([f"{rel!r} leads outside the recipe's folder"])
    root = folder.resolve()
    target = (folder / rel).resolve()
    if not target.is_relative_to(root):
        raise ProjectFileError([f"{rel!r} leads outside the recipe's folder (through a symlink)"])
    try:
        info = target.stat()
    except FileNotFoundError:
        raise ProjectFileError([f"{rel!r} does not exist in {folder}"]) from None
    except OSError as exc:
        raise ProjectFileError([f"{rel!r} cannot be read: {exc.strerror}"]) from None
    if not stat.S_ISREG(info.st_mode):  # a FIFO or a device would block or never end
        raise ProjectFileError([f"{rel!r} is not a regular file"])
    if info.st_size > limit:
        raise ProjectFileError([f"{rel!r} is {info.st_size} bytes; at most {limit} allowed"])
    try:
        with target.open("rb") as fh:
            data = fh.read(limit + 1)
    except OSError as exc:
        raise ProjectFileError([f"{rel!r} cannot be read: {exc.strerror}"]) from None
    if len(data) > limit:
        raise ProjectFileError([f"{rel!r} is more than {limit} bytes"])
    return decode(data, rel)


def decode(data: bytes, shown: str) -> str:
    nul = data.find(b"\0")
    if nul >= 0:
        raise ProjectFileError([f"{shown} contains a NUL byte (at byte {nul}); expected text"])
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ProjectFileError([f"{shown} is not UTF-8 text (byte {exc.start} is {data[exc.start]:#04x})"]) from None


def check_requires_python(value: object, where: str, problems: list[str]) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        problems.append(f"{where}: {value!r} is not a version specifier such as '>=3.10'")
        return None
    try:
        return str(SpecifierSet(value))
    except InvalidSpecifier:
        problems.append(f"{where}: {value!r} is not a version specifier such as '>=3.10'")
        return None
