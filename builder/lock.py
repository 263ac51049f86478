"""The lock: everything that decides an image, in one reviewable file next to the recipe.

`<recipe stem>.lock.json`: JSON (no YAML ambiguities such as 1.10 becoming 1.1), keys sorted,
two-space indent and one package per line, so a changed version or hash is a one-line diff in
review. `lock_version` says how to read it; a reader refuses versions it does not know.

What it holds: the base image (registry digest, or the image ID of a base that has none), the
exact Debian package versions that each apt step installs (resolved in the base), every Python
package of each pip step at an exact version with its sha256 hashes (resolved by pip inside the
base, see builder.lockmaker), the resolved spec (framework, CUDA, cuDNN, matrix data version,
mlbuild version) with its digest, and the epoch used for every timestamp in the image.

This module is the lock as data: reading, checking and using one (`Lock.pins()` is what a
locked build installs). Making one runs the base image on an engine: builder.lockmaker.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builder.changes import changed
from builder.errors import BuildError, ResolveError
from builder.labels import OCI_BASE_DIGEST, OCI_CREATED, OCI_REVISION
from builder.platforms import DEFAULT_PLATFORM
from builder.recipe import IMAGE_REF_RE
from builder.spec import ResolvedSpec

LOCK_VERSION = 1
STEPS = ("framework", "project", "packages")  # the pip steps of the builder stage, in order
OPTIONAL_STEPS = ("project",)  # written only when they hold pins (locks without one stay as they were)


_DEB_NAME = re.compile(r"[a-z0-9][a-z0-9+.-]+")
_DEB_VERSION = re.compile(r"[A-Za-z0-9.+~:-]+")
_PY_NAME = re.compile(r"[a-z0-9]+(?:[-_.][a-z0-9]+)*")
_PY_VERSION = re.compile(r"[A-Za-z0-9.+!_-]+")
_HASH = re.compile(r"sha256:[0-9a-f]{64}")
_URL = re.compile(r"https?://[^\s#'\"]+")
_IMAGE_ID = re.compile(r"sha256:[0-9a-f]{64}")


class LockError(ResolveError):
    """The lock is missing, unreadable or no longer matches the recipe (exit 2)."""


class LockedArtefactError(BuildError):
    """Something the lock names cannot be had any more, or its hash differs (exit 1)."""


@dataclass(frozen=True)
class Pins:
    """What a lock fixes, as the build's files take it (builder.render): the locked build
    installs only this."""

    builder_apt: tuple[str, ...]  # name=version
    runtime_apt: tuple[str, ...]
    framework: str  # requirements file text: name==version --hash=sha256:...
    packages: str
    lock_json: str
    lock_digest: str
    epoch: int
    project: str = ""  # the pins of the requirements: file's hashed step


@dataclass(frozen=True, order=True)
class PythonPin:
    step: str  # framework | project | packages: which pip step installs it
    name: str  # canonical name (PEP 503)
    version: str
    hashes: tuple[str, ...]  # "sha256:<hex>", sorted

    def __post_init__(self) -> None:
        object.__setattr__(self, "hashes", tuple(sorted(set(self.hashes))))

    def requirement(self) -> str:
        return f"{self.name}=={self.version} " + " ".join(f"--hash={h}" for h in self.hashes)


@dataclass(frozen=True, order=True)
class AptPin:
    stage: str  # builder | runtime
    name: str
    version: str


@dataclass(frozen=True)
class BaseLock:
    ref: str  # what FROM names
    image_id: str
    digest: str | None  # registry digest (repo@sha256:...); None for a base made locally
    note: str = ""


@dataclass(frozen=True)
class Lock:
    recipe: str  # the recipe's file name (not a path: the lock sits beside it)
    base_override: str | None  # --base-image given when locking
    spec: dict[str, Any]  # the resolved spec without `reasons` (wording is not a decision)
    spec_digest: str
    base: BaseLock
    apt: tuple[AptPin, ...]
    python: tuple[PythonPin, ...]
    index_url: str | None  # the framework step's index (a variant index), None = the site's
    epoch: int
    mlbuild_version: str
    matrix_version: str
    apt_snapshot: str | None = None
    lock_version: int = LOCK_VERSION
    # a recipe of several platforms: the lock of each other platform, under "platforms" (this
    # one is its first platform's); each is a whole lock, used alone by that platform's build
    others: tuple[tuple[str, Lock], ...] = ()

    @property
    def platform(self) -> str:
        return str(self.spec.get("platform") or DEFAULT_PLATFORM.name)

    def for_platform(self, platform: str | None) -> Lock:
        """The lock of one platform of the recipe (None: the first)."""
        if platform in (None, self.platform):
            return self
        found = dict(self.others).get(platform or "")
        if found is None:
            have = ", ".join([self.platform, *(p for p, _ in self.others)])
            raise LockError(
                f"the lock of {self.recipe} has no entry for {platform} (it has: {have})",
                hint="run `mlbuild lock --upgrade RECIPE` to lock every platform of the recipe",
            )
        return found

    # -- text ------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "lock_version": self.lock_version,
            "recipe": self.recipe,
            "base_override": self.base_override,
            "mlbuild_version": self.mlbuild_version,
            "matrix_version": self.matrix_version,
            "source_date_epoch": self.epoch,
            "created": iso(self.epoch),
            "spec_digest": self.spec_digest,
            "spec": self.spec,
            "framework": {
                k: self.spec.get(k) for k in ("framework", "framework_version", "variant", "python", "cuda", "cudnn")
            },
            "base": dataclasses.asdict(self.base),
            "apt_snapshot": self.apt_snapshot,
            "apt": {
                stage: {p.name: p.version for p in sorted(self.apt) if p.stage == stage}
                for stage in ("builder", "runtime")
            },
            "python": {
                "index_url": self.index_url,
                **{
                    step: {
                        p.name: {"version": p.version, "hashes": list(p.hashes)}
                        for p in sorted(self.python)
                        if p.step == step
                    }
                    for step in STEPS
                    if step not in OPTIONAL_STEPS or any(p.step == step for p in self.python)
                },
            },
            **({"platforms": {p: lock.to_dict() for p, lock in self.others}} if self.others else {}),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"

    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.to_json().encode()).hexdigest()

    @classmethod
    def from_json(cls, text: str, where: str = "lock") -> Lock:
        try:
            d = json.loads(text)
        except ValueError as exc:
            raise LockError(f"{where} is not valid JSON: {exc}") from None
        return cls.from_dict(d, where)

    @classmethod
    def from_dict(cls, d: Any, where: str = "lock") -> Lock:
        if not isinstance(d, dict) or "lock_version" not in d:
            raise LockError(f"{where} is not an mlbuild lock (no lock_version)")
        if d["lock_version"] != LOCK_VERSION:
            raise LockError(
                f"{where} has lock_version {d['lock_version']}; this mlbuild reads {LOCK_VERSION}",
                hint="run `mlbuild lock --upgrade RECIPE` with this mlbuild to rewrite it",
            )
        try:
            py = d["python"]
            lock = cls(
                recipe=d["recipe"],
                base_override=d.get("base_override"),
                spec=d["spec"],
                spec_digest=d["spec_digest"],
                base=BaseLock(**d["base"]),
                apt=tuple(
                    AptPin(stage, n, v) for stage, pins in sorted(d["apt"].items()) for n, v in sorted(pins.items())
                ),
                python=tuple(
                    PythonPin(step, n, e["version"], tuple(e["hashes"]))
                    for step in STEPS
                    for n, e in sorted(py.get(step, {}).items())
                ),
                index_url=py.get("index_url"),
                epoch=int(d["source_date_epoch"]),
                mlbuild_version=d["mlbuild_version"],
                matrix_version=d["matrix_version"],
                apt_snapshot=d.get("apt_snapshot"),
                others=tuple(
                    (str(p), cls.from_dict(sub, f"{where} (platforms.{p})"))
                    for p, sub in sorted((d.get("platforms") or {}).items())
                ),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise LockError(f"{where} is damaged: {exc!r}", hint="run `mlbuild lock` again") from None
        lock.validate(where)
        return lock

    def validate(self, where: str = "lock") -> None:
        """A lock is shared like a recipe: every value that reaches a Dockerfile, a shell or a
        requirements file gets the same allow-lists as recipe values."""
        problems: list[str] = []
        for a in self.apt:
            if (
                a.stage not in ("builder", "runtime")
                or not _DEB_NAME.fullmatch(a.name)
                or not _DEB_VERSION.fullmatch(a.version)
            ):
                problems.append(f"apt.{a.stage}.{a.name!r}: {a.version!r} is not a Debian package and version")
        for p in self.python:
            if p.step not in STEPS or not _PY_NAME.fullmatch(p.name) or not _PY_VERSION.fullmatch(p.version):
                problems.append(f"python.{p.step}.{p.name!r}: {p.version!r} is not a package name and PEP 440 version")
            bad = [h for h in p.hashes if not _HASH.fullmatch(h)]
            if bad or not p.hashes:
                problems.append(f"python.{p.step}.{p.name}: hashes must be sha256:<64 hex>")
        if self.index_url is not None and not _URL.fullmatch(self.index_url):
            problems.append(f"python.index_url: {self.index_url!r} is not an http(s) URL")
        if not IMAGE_REF_RE.fullmatch(self.base.ref) or not _IMAGE_ID.fullmatch(self.base.image_id):
            problems.append(f"base: {self.base.ref!r} / {self.base.image_id!r} is not an image reference and ID")
        if self.epoch < 0:
            problems.append("source_date_epoch: must not be negative")
        if problems:
            raise LockError(
                f"{where} holds values mlbuild will not use",
                details=problems,
                hint="a lock is written by `mlbuild lock`; run it again",
            )

    # -- use -------------------------------------------------------------------------------------
    def check_spec(self, spec: ResolvedSpec) -> None:
        """The recipe (as resolved now) must be the one that was locked, or nothing is built."""
        now = spec_for_lock(spec)
        if spec_digest(now) == self.spec_digest:
            return
        changed = sorted(k for k in set(now) | set(self.spec) if now.get(k) != self.spec.get(k))
        raise LockError(
            f"{self.recipe} changed since it was locked: {', '.join(changed)}",
            details=[f"{k}: locked {_short(self.spec.get(k))}, now {_short(now.get(k))}" for k in changed],
            hint="run `mlbuild lock --upgrade RECIPE` to lock the new recipe, and review the diff",
        )

    def check_base(self, image_id: str) -> None:
        """The base found on the engine (by ID) must be the locked one."""
        if image_id != self.base.image_id:
            raise LockedArtefactError(
                f"the locked base image is not available: {self.base.ref} is now {image_id[:19]}",
                details=[f"locked: {self.base.image_id}" + (f" ({self.base.digest})" if self.base.digest else "")],
                hint="load the locked base again, or run `mlbuild lock --upgrade RECIPE` to move to the new one",
            )

    def pins(self) -> Pins:
        def apt(stage: str) -> tuple[str, ...]:
            return tuple(f"{p.name}={p.version}" for p in sorted(self.apt) if p.stage == stage)

        return Pins(
            builder_apt=apt("builder"),
            runtime_apt=apt("runtime"),
            framework=requirements_text(self.python, "framework", self.index_url),
            packages=requirements_text(self.python, "packages", None),
            project=requirements_text(self.python, "project", None),
            lock_json=self.to_json(),
            lock_digest=self.digest(),
            epoch=self.epoch,
        )

    def labels(self, labels: dict[str, str]) -> dict[str, str]:
        """Build-time labels of a locked build: times from the epoch, nothing that varies."""
        out = {k: v for k, v in labels.items() if k != OCI_REVISION}
        out[OCI_CREATED] = iso(self.epoch)
        if self.base.digest:
            out[OCI_BASE_DIGEST] = self.base.digest.partition("@")[2]
        return out


def spec_for_lock(spec: ResolvedSpec) -> dict[str, Any]:
    d = spec.to_dict()
    d.pop("reasons", None)
    return d


def spec_digest(d: dict[str, Any]) -> str:
    raw = json.dumps(d, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(raw.encode()).hexdigest()


def iso(epoch: int) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 80 else text[:77] + "..."


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements_text(pins: tuple[PythonPin, ...], step: str, index_url: str | None) -> str:
    """A pip requirements file that installs exactly these artefacts (--require-hashes)."""
    lines = [f"--index-url {index_url}"] if index_url else []
    lines += [p.requirement() for p in sorted(pins) if p.step == step]
    return "\n".join(lines) + "\n"


# -- files ---------------------------------------------------------------------------------------
def lock_path(recipe: Path) -> Path:
    return recipe.with_name(recipe.stem + ".lock.json")


def sbom_path(recipe: Path) -> Path:
    return recipe.with_name(recipe.stem + ".sbom.json")


def read_lock(recipe: Path) -> Lock:
    path = lock_path(recipe)
    if not path.is_file():
        raise LockError(f"{path} does not exist", hint=f"make it with: mlbuild lock {recipe}")
    return Lock.from_json(path.read_text(), str(path))


# -- review --------------------------------------------------------------------------------------
def diff_locks(old: Lock | None, new: Lock) -> list[str]:
    """What an upgrade changes, one line per package: `+ added`, `- removed`, `~ a -> b`."""
    if old is None:
        return [f"+ {p.step}: {p.name} {p.version}" for p in sorted(new.python)]
    out: list[str] = []
    if old.base != new.base:
        out.append(f"~ base: {old.base.ref} {old.base.image_id[:19]} -> {new.base.ref} {new.base.image_id[:19]}")
    if old.spec_digest != new.spec_digest:
        keys = sorted(k for k in set(old.spec) | set(new.spec) if old.spec.get(k) != new.spec.get(k))
        out.append("~ recipe: " + ", ".join(keys))
    out += _diff_map(
        "apt",
        {(p.stage, p.name): p.version for p in old.apt},
        {(p.stage, p.name): p.version for p in new.apt},
    )
    out += _diff_map(
        "python",
        {(p.step, p.name): p.version for p in old.python},
        {(p.step, p.name): p.version for p in new.python},
    )
    same_version_new_hash = [
        f"~ python {b.step}: {b.name} {b.version}: hashes changed"
        for a in old.python
        for b in new.python
        if (a.step, a.name, a.version) == (b.step, b.name, b.version) and a.hashes != b.hashes
    ]
    return out + same_version_new_hash


def _diff_map(kind: str, a: dict[tuple[str, str], str], b: dict[tuple[str, str], str]) -> list[str]:
    return changed(a, b, lambda key: f"{kind} {key[0]}: {key[1]}")


_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # the classic builder marks a step's stderr in colour


def explain_build_failure(exc: BuildError, lock: Lock | None = None) -> BuildError:
    """Turn pip's, uv's and apt's own words about a locked artefact into a clear error. uv's
    report is long (the log's tail may hold only its Expected/Computed block): the lock's pin
    whose hash it expected is named then."""
    text = _ANSI.sub("", "\n".join([exc.message, *exc.details]))
    uv_mismatch = re.findall(r"Hash mismatch for `([^`]+)`", text)
    uv_block = re.search(r"(Expected|Computed):\s+sha256:[0-9a-f]{64}", text)
    if not uv_mismatch and uv_block and lock:
        uv_mismatch = [f"{p.name}=={p.version}" for p in lock.python if any(h in text for h in p.hashes)]
    if "DO NOT MATCH THE HASHES" in text or re.search(r"Expected sha256 \w+", text) or uv_mismatch or uv_block:
        got = [
            line.strip()
            for line in exc.details
            if "Expected sha256" in line or "Got " in line or re.match(r"\s*\S+==\S+ from ", line)
        ]
        # uv: "Hash mismatch for `name==version`", then the expected and computed sha256 lines
        got += [f"{pin}: downloaded bytes differ from the lock" for pin in uv_mismatch]
        got += [f"computed {h}" for h in re.findall(r"Computed:\s+(sha256:[0-9a-f]{64})", text)]
        return LockedArtefactError(
            "a locked Python package does not match its hash in the lock",
            details=got or exc.details[-6:],
            hint="the index serves other bytes than were locked: check the index, or run "
            "`mlbuild lock --upgrade RECIPE` and review the diff",
        )
    missing = re.findall(r"Version '([^']+)' for '([^']+)' was not found", text)
    pip_missing = re.findall(r"No matching distribution found for (\S+)", text)
    # uv: "there is no version of name==version", "name was not found in the package registry
    # and you require name==version"
    pip_missing += re.findall(r"there is no version of ([^\s,]+==[^\s,]+)", text)
    pip_missing += re.findall(r"was not found in the package registry and you require ([^\s,]+==[^\s,]+)", text)
    if missing or pip_missing:
        return LockedArtefactError(
            "a locked package is no longer available",
            details=[f"apt: {n}={v}" for v, n in missing] + [f"pip: {r}" for r in pip_missing],
            hint="the archive or index dropped it: use a snapshot mirror, or "
            "`mlbuild lock --upgrade RECIPE` and review the diff",
        )
    return exc


__all__ = [
    "AptPin",
    "BaseLock",
    "Lock",
    "LockError",
    "LockedArtefactError",
    "Pins",
    "PythonPin",
    "diff_locks",
    "lock_path",
    "read_lock",
]
