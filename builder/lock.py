"""The lock: everything that decides an image, in one reviewable file next to the recipe.

`<recipe stem>.lock.json`: JSON (no YAML ambiguities such as 1.10 becoming 1.1), keys sorted,
two-space indent and one package per line, so a changed version or hash is a one-line diff in
review. `lock_version` says how to read it; a reader refuses versions it does not know.

What it holds: the base image (registry digest, or the image ID of a base that has none), the
exact Debian package versions that each apt step installs (resolved in the base), every Python
package of each pip step at an exact version with its sha256 hashes (resolved by pip inside the
base, see `resolve_lock`), the resolved spec (framework, CUDA, cuDNN, matrix data version,
mlbuild version) with its digest, and the epoch used for every timestamp in the image.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from builder.changes import changed
from builder.errors import BuildError, ResolveError, UsageError
from builder.recipe import IMAGE_REF_RE
from builder.spec import ResolvedSpec

if TYPE_CHECKING:
    from builder.engine import Engine
    from builder.pipeline import BaseChoice
    from builder.render import Pins
    from builder.settings import BuildSettings

LOCK_VERSION = 1
LOCK_LABEL = "org.mlbuild.lock"  # sha256 of the lock file's bytes
SBOM_LABEL = "org.mlbuild.sbom"  # "<file name> sha256:<digest>" of the SBOM beside the lock
STEPS = ("framework", "project", "packages")  # the pip steps of the builder stage, in order
OPTIONAL_STEPS = ("project",)  # written only when they hold pins (locks without one stay as they were)
Say = Callable[[str], None]


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

    def check_base(self, base: BaseChoice) -> None:
        if base.image_id != self.base.image_id:
            raise LockedArtefactError(
                f"the locked base image is not available: {self.base.ref} is now {base.image_id[:19]}",
                details=[f"locked: {self.base.image_id}" + (f" ({self.base.digest})" if self.base.digest else "")],
                hint="load the locked base again, or run `mlbuild lock --upgrade RECIPE` to move to the new one",
            )

    def pins(self) -> Pins:
        from builder.render import Pins

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
        out = {k: v for k, v in labels.items() if k != "org.opencontainers.image.revision"}
        out["org.opencontainers.image.created"] = iso(self.epoch)
        if self.base.digest:
            out["org.opencontainers.image.base.digest"] = self.base.digest.partition("@")[2]
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


def write_atomic(path: Path, text: str) -> None:
    """Never a half-written file: write beside it, then rename over it."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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


# -- what the resolver prints --------------------------------------------------------------------
_INST_RE = re.compile(r"^Inst (\S+) (?:\[[^\]]*\] )?\((\S+) ")


def parse_apt_simulation(text: str, stage: str) -> list[AptPin]:
    """`apt-get install -s` lines: `Inst libc6 [2.36-9] (2.36-9+deb12u9 Debian:12 [amd64])`."""
    pins = {}
    for line in text.splitlines():
        m = _INST_RE.match(line)
        if m:
            name = m.group(1).split(":")[0]  # drop an :arch qualifier
            pins[name] = AptPin(stage, name, m.group(2))
    return sorted(pins.values())


def parse_pip_report(report: dict[str, Any], step: str) -> list[PythonPin]:
    """pip's installation report (`pip install --report`): name, version and archive hash."""
    pins = []
    for item in report.get("install", []):
        meta = item.get("metadata") or {}
        info = item.get("download_info") or {}
        archive = info.get("archive_info") or {}
        hashes = {f"{k}:{v}" for k, v in (archive.get("hashes") or {}).items() if k == "sha256"}
        legacy = archive.get("hash") or ""  # pip < 23.1: "sha256=<hex>"
        if legacy.startswith("sha256="):
            hashes.add("sha256:" + legacy.partition("=")[2])
        if not hashes:
            raise LockError(
                f"pip gave no sha256 for {meta.get('name')} {meta.get('version')}",
                details=[f"source: {info.get('url', '?')}"],
                hint="a package from a folder or VCS cannot be locked by hash; publish it to an index",
            )
        pins.append(PythonPin(step, canonical(str(meta["name"])), str(meta["version"]), tuple(sorted(hashes))))
    return sorted(pins)


def explain_build_failure(exc: BuildError) -> BuildError:
    """Turn pip's and apt's own words about a locked artefact into a clear error."""
    text = "\n".join([exc.message, *exc.details])
    if "DO NOT MATCH THE HASHES" in text or re.search(r"Expected sha256 \w+", text):
        got = [
            line.strip()
            for line in exc.details
            if "Expected sha256" in line or "Got " in line or re.match(r"\s*\S+==\S+ from ", line)
        ]
        return LockedArtefactError(
            "a locked Python package does not match its hash in the lock",
            details=got or exc.details[-6:],
            hint="the index serves other bytes than were locked: check the index, or run "
            "`mlbuild lock --upgrade RECIPE` and review the diff",
        )
    missing = re.findall(r"Version '([^']+)' for '([^']+)' was not found", text)
    pip_missing = re.findall(r"No matching distribution found for (\S+)", text)
    if missing or pip_missing:
        return LockedArtefactError(
            "a locked package is no longer available",
            details=[f"apt: {n}={v}" for v, n in missing] + [f"pip: {r}" for r in pip_missing],
            hint="the archive or index dropped it: use a snapshot mirror, or "
            "`mlbuild lock --upgrade RECIPE` and review the diff",
        )
    return exc


# -- making a lock -------------------------------------------------------------------------------
def resolve_lock(
    recipe_path: Path,
    *,
    engine: Engine,
    settings: BuildSettings,
    base_image: str | None = None,
    network: str | None = None,
    epoch: int | None = None,
    say: Say = lambda _: None,
    on_line: Callable[[str], None] | None = None,
) -> Lock:
    """Resolve every package inside the base image, the way the build installs them.

    A throwaway image is built from the base with the builder stage's own setup (site CA
    bundle and index, never the final image): apt simulates each apt step on the untouched base
    (`apt-get install -s`: exact versions of everything it would add), then pip really installs
    the framework step (so that the packages step sees it, as in the build), then the project
    step of a requirements: file's hashed pins (checked against the file's hashes), and dry-runs
    the packages step, each writing `--report` JSON with the archive's sha256.
    """
    from builder.pipeline import choose_base, observe_base
    from builder.render import resolver_context
    from builder.resolve import load_and_resolve

    _, spec = load_and_resolve(recipe_path, base_image)
    locked_spec = spec_for_lock(spec)
    base = choose_base(engine, spec, say)
    spec = dataclasses.replace(spec, base_image=base.ref)
    if spec.framework_from_base:
        spec = observe_base(engine, spec)
    digest = _registry_digest(engine, base.ref)
    with tempfile.TemporaryDirectory(prefix="mlbuild-lock-") as tmp:
        resolver_context(spec, Path(tmp), settings)
        say(f"resolving OS and Python packages inside {base.ref}")
        image_id = engine.build(
            Path(tmp),
            buildargs=settings.build_args(),
            on_line=on_line,
            network=network,
            labels={"org.mlbuild.temporary": "1"},
        )
    try:
        run = engine.run(image_id, ["/tmp/mlbuild-lock/collect.py"], entrypoint=["python3"])
    finally:
        engine.remove_image(image_id, force=True)
    if run.exit_code != 0:
        raise LockError("could not read what the resolver found", details=[run.stderr[-400:]])
    found = json.loads(run.stdout.strip().splitlines()[-1])
    apt = parse_apt_simulation(found.get("apt-builder", ""), "builder")
    apt += parse_apt_simulation(found.get("apt-runtime", ""), "runtime")
    python = []
    for step in STEPS:
        if found.get(step):
            python += parse_pip_report(json.loads(found[step]), step)
    when = epoch if epoch is not None else _default_epoch()
    return Lock(
        recipe=recipe_path.name,
        base_override=base_image,
        spec=locked_spec,
        spec_digest=spec_digest(locked_spec),
        base=BaseLock(
            base.ref,
            base.image_id,
            digest,
            "" if digest else "no registry digest (a base made locally): locked by image ID",
        ),
        apt=tuple(sorted(apt)),
        python=tuple(sorted(python)),
        index_url=spec.index_url,
        epoch=when,
        mlbuild_version=spec.mlbuild_version,
        matrix_version=spec.matrix_version,
    )


def _registry_digest(engine: Engine, ref: str) -> str | None:
    digests = engine.inspect(ref).get("RepoDigests") or []
    return str(sorted(digests)[0]) if digests else None


def _default_epoch() -> int:
    env = os.environ.get("SOURCE_DATE_EPOCH", "")
    return int(env) if env.isdigit() else int(time.time())


def upgrade(old: Lock | None, new: Lock, package: str | None) -> Lock:
    """--upgrade PACKAGE: take only that package's new pin; everything else stays as locked."""
    if old is None or package is None:
        return new if old is None or diff_locks(old, new) else old
    name = canonical(package)
    if not any(p.name == name for p in (*old.python, *new.python)):
        raise UsageError(f"{package} is not in the lock", hint="leave PACKAGE out to refresh everything")
    if old.spec_digest != new.spec_digest or old.base != new.base:
        raise LockError(
            "the recipe or base changed since locking: upgrade everything, not one package",
            hint="run `mlbuild lock --upgrade RECIPE` without a PACKAGE",
        )
    kept = [p for p in old.python if p.name != name]
    taken = [p for p in new.python if p.name == name]
    python = tuple(sorted(kept + taken))
    changed = python != old.python
    return dataclasses.replace(old, python=python, epoch=new.epoch if changed else old.epoch)


__all__ = [
    "LOCK_LABEL",
    "SBOM_LABEL",
    "AptPin",
    "BaseLock",
    "Lock",
    "LockError",
    "LockedArtefactError",
    "PythonPin",
    "diff_locks",
    "lock_path",
    "read_lock",
    "resolve_lock",
]
