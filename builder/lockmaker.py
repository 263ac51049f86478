"""Making a lock: resolve every package of a recipe inside its base image, on an engine.

builder.lock is the lock as data; this module produces one (`resolve_lock`) and refreshes
one (`upgrade`), from what apt and pip say inside a throwaway resolver image.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from builder import buildkit
from builder.base import choose_base, observe
from builder.engine_api import Engine, LineSink
from builder.errors import UsageError
from builder.labels import TEMPORARY_LABEL
from builder.lock import (
    STEPS,
    AptPin,
    BaseLock,
    Lock,
    LockError,
    PythonPin,
    canonical,
    diff_locks,
    spec_digest,
    spec_for_lock,
)
from builder.platforms import DEFAULT_PLATFORM
from builder.recipe import check_image_ref, load_recipe
from builder.render import resolver_context
from builder.resolve import resolve_platforms
from builder.settings import BuildSettings
from builder.spec import ResolvedSpec

Say = Callable[[str], None]


def resolve_lock(
    recipe_path: Path,
    *,
    engine: Engine,
    settings: BuildSettings,
    base_image: str | None = None,
    network: str | None = None,
    epoch: int | None = None,
    say: Say = lambda _: None,
    on_line: LineSink | None = None,
    builder: str | None = None,
    platform: str | None = None,
) -> Lock:
    """Resolve every package inside the base image, the way the build installs them.

    A throwaway image is built from the base with the builder stage's own setup (site CA
    bundle and index, never the final image): apt simulates each apt step on the untouched base
    (`apt-get install -s`: exact versions of everything it would add), then pip really installs
    the framework step (so that the packages step sees it, as in the build) and dry-runs the
    packages step, each writing `--report` JSON with the archive's sha256.
    """
    spec = platform_spec(recipe_path, base_image, platform)
    locked_spec = spec_for_lock(spec)
    base = choose_base(engine, spec, say)
    named = bool(base_image or load_recipe(recipe_path).base_image)  # a base the user chose: its own Python
    spec = observe(engine, dataclasses.replace(spec, base_image=base.ref), base_named=named)
    digest = _registry_digest(engine, base.ref)
    chosen = buildkit.choose_for(engine, builder, settings.builder)
    with tempfile.TemporaryDirectory(prefix="mlbuild-lock-") as tmp, \
            tempfile.TemporaryDirectory(prefix="mlbuild-secrets-") as secrets:  # fmt: skip
        kit = buildkit.run_for(chosen, Path(secrets), inline_cache=False)  # a throwaway image
        resolver_context(spec, Path(tmp), settings, Path(secrets) if kit else None)
        say(f"resolving OS and Python packages inside {base.ref} (builder: {chosen.builder})")
        image_id = engine.build(
            Path(tmp),
            buildargs=settings.build_args(),
            on_line=on_line,
            network=network,
            labels={TEMPORARY_LABEL: "1"},
            kit=kit,
            platform=None if spec.platform == DEFAULT_PLATFORM.name else spec.platform,
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


def platform_spec(recipe_path: Path, base_image: str | None, platform: str | None) -> ResolvedSpec:
    """The spec of one platform of the recipe, agreed with its others (as the build resolves)."""
    recipe = load_recipe(recipe_path)
    if base_image:
        recipe = dataclasses.replace(recipe, base_image=check_image_ref(base_image, "--base-image"))
    specs = resolve_platforms(recipe)
    return next((s for s in specs if s.platform == platform), specs[0])


def lock_platforms(
    recipe_path: Path,
    platforms: tuple[str, ...],
    *,
    base_images: dict[str, str | None],
    epoch: int | None = None,
    **kwargs: Any,
) -> Lock:
    """One lock for every platform of the recipe: the first's, with each other's entry in it.
    One epoch for all, so that every platform's image carries the same times."""
    when = epoch if epoch is not None else _default_epoch()
    locks = [
        resolve_lock(recipe_path, base_image=base_images.get(p), epoch=when, platform=p, **kwargs) for p in platforms
    ]
    return dataclasses.replace(locks[0], others=tuple((lock.platform, lock) for lock in locks[1:]))


def _registry_digest(engine: Engine, ref: str) -> str | None:
    digests = engine.inspect(ref).get("RepoDigests") or []
    return str(sorted(digests)[0]) if digests else None


def _default_epoch() -> int:
    env = os.environ.get("SOURCE_DATE_EPOCH", "")
    return int(env) if env.isdigit() else int(time.time())


def upgrade(old: Lock | None, new: Lock, package: str | None) -> Lock:
    """--upgrade PACKAGE: take only that package's new pin; everything else stays as locked.
    A lock of several platforms is upgraded platform by platform."""
    if old is not None and (old.others or new.others):
        if package is None:
            return new if _platform_diff(old, new) else old
        first = upgrade(dataclasses.replace(old, others=()), dataclasses.replace(new, others=()), package)
        others = tuple((p, upgrade(old.for_platform(p), lock, package)) for p, lock in new.others)
        return dataclasses.replace(first, others=others)
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


def _platform_diff(old: Lock, new: Lock) -> bool:
    """Anything to write: another set of platforms, or a change in any platform's lock."""
    if [p for p, _ in old.others] != [p for p, _ in new.others]:
        return True
    pairs = [(old, new), *((old.for_platform(p), lock) for p, lock in new.others)]
    return any(diff_locks(dataclasses.replace(a, others=()), dataclasses.replace(b, others=())) for a, b in pairs)


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
