"""recipe -> resolve -> render -> build -> smoke -> tag: the main job, used by the CLI."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builder.base import BaseChoice, choose_base, observe_base
from builder.engine_api import Engine
from builder.errors import (
    BuildError,
    EngineError,
    PreflightError,
    SmokeFailed,
    UsageError,
)
from builder.gpu import HostGpus, preflight
from builder.labels import (
    BASE_ID_LABEL,
    CONTENT_LABEL,
    OCI_BASE_NAME,
    OCI_CREATED,
    OCI_REVISION,
    OCI_SOURCE,
)
from builder.recipe import Recipe, check_image_ref
from builder.refs import split_tag
from builder.render import render, write_context
from builder.resolve import load_and_resolve, resolve
from builder.settings import BuildSettings, redact
from builder.smoke import SmokeReport, detect_host, smoke
from builder.spec import ResolvedSpec

Say = Callable[[str], None]


@dataclass(frozen=True)
class BuildResult:
    image_id: str
    tags: tuple[str, ...]
    size_bytes: int
    spec: ResolvedSpec
    content_tag: str
    base: BaseChoice
    smoke: SmokeReport | None
    seconds: float
    dockerfile: str
    up_to_date: bool = False  # the content tag existed already: nothing was built or tested

    def to_dict(self) -> dict[str, Any]:
        return {
            "image_id": self.image_id,
            "tags": list(self.tags),
            "size_bytes": self.size_bytes,
            "content_tag": self.content_tag,
            "base_image": self.base.ref,
            "base_image_id": self.base.image_id,
            "base_note": self.base.note,
            "spec": self.spec.to_dict(),
            "smoke": self.smoke.to_dict() if self.smoke else None,
            "seconds": round(self.seconds, 1),
            "up_to_date": self.up_to_date,
        }


def with_wheelhouse(settings: BuildSettings, recipe: Recipe, spec: ResolvedSpec) -> BuildSettings:
    """The recipe's wheelhouse (unless --wheelhouse named one), checked before any build: an
    offline build must find every package and dependency in it for the image's Python."""
    from builder.wheelhouse import missing

    if recipe.wheelhouse and not settings.wheelhouse:
        settings = dataclasses.replace(settings, wheelhouse=recipe.folder / recipe.wheelhouse)
    if settings.offline and not settings.wheelhouse:
        raise UsageError(
            "--offline needs a wheelhouse",
            hint="give --wheelhouse DIR or wheelhouse: in the recipe",
        )
    if settings.wheelhouse and not settings.wheelhouse.is_dir():
        raise UsageError(f"wheelhouse {settings.wheelhouse} is not a folder")
    if settings.offline and settings.wheelhouse:
        wanted = [*spec.packages, *spec.build_packages]
        lacking = missing(wanted, settings.wheelhouse, spec.python)
        if lacking:
            raise UsageError(
                f"the wheelhouse {settings.wheelhouse} lacks {len(lacking)} package(s) for Python {spec.python}",
                details=lacking,
                hint="add them, e.g. pip download --only-binary=:all: --python-version "
                f"{spec.python} --dest {settings.wheelhouse} NAME",
            )
    return settings


def check_host_gpus(spec: ResolvedSpec, host: HostGpus) -> None:
    """Preflight: refuse before a long build when this host's GPUs cannot run the image."""
    if not spec.is_gpu or not host.present:
        return
    problems = preflight(host, spec.min_driver, spec.archs, spec.cuda)
    if problems:
        raise PreflightError(
            f"this host's GPUs cannot run {spec.framework} {spec.framework_version} ({spec.variant})",
            details=[p.what for p in problems],
            hint=problems[0].remedy + "; or build with --gpu off to smoke-test elsewhere",
        )


def content_tag(spec: ResolvedSpec, dockerfile: str, base_id: str) -> str:
    """The immutable tag: the same resolved spec, Dockerfile and base give the same tag."""
    h = hashlib.sha256()
    for part in (spec.to_json(), dockerfile, base_id):
        h.update(part.encode() + b"\0")
    return "spec-" + h.hexdigest()[:16]


def oci_labels(recipe: Recipe, base: BaseChoice, tag: str) -> dict[str, str]:
    """Labels that are not part of the rendered Dockerfile: time, source control, the base."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = (
        dt.datetime.fromtimestamp(int(epoch), dt.timezone.utc)
        if epoch and epoch.isdigit()
        else dt.datetime.now(dt.timezone.utc)
    )
    labels = {
        OCI_CREATED: when.replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        OCI_BASE_NAME: base.ref,
        BASE_ID_LABEL: base.image_id,
        CONTENT_LABEL: tag,
    }
    labels.update(_git_labels(recipe.folder))
    return labels


def _git_labels(folder: Path) -> dict[str, str]:
    def git(*args: str) -> str:
        try:
            out = subprocess.run(
                ["git", "-C", str(folder), *args],
                capture_output=True,
                text=True,
                timeout=5,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return out.stdout.strip() if out.returncode == 0 else ""

    labels = {}
    revision = git("rev-parse", "HEAD")
    if revision:
        labels[OCI_REVISION] = revision
    remote = git("config", "--get", "remote.origin.url")
    if remote:
        labels[OCI_SOURCE] = redact(remote)
    return labels


def build(
    recipe_path: str | Path,
    *,
    engine: Engine,
    settings: BuildSettings,
    base_image: str | None = None,
    extra_tags: tuple[str, ...] = (),
    run_smoke: bool = True,
    gpu_mode: str | None = None,
    gpu_access: str | None = None,
    network: str | None = None,
    say: Say = lambda _: None,
    on_line: Callable[[str], None] | None = None,
    reuse: bool = True,
    recipe: Recipe | None = None,
    locked: bool = False,
    nocache: bool = False,
) -> BuildResult:
    started = time.monotonic()
    for ref in extra_tags:
        check_image_ref(ref, "--tag")
    lock = None
    if locked:  # the lock beside the recipe decides base, packages and timestamps (builder.lock)
        from builder.lock import read_lock

        lock = read_lock(Path(recipe_path))
        base_image = base_image or lock.base_override
    if recipe is None:
        recipe, spec = load_and_resolve(recipe_path, base_image)
    else:  # a matrix variant (builder.fanout): loaded already, one value per matrix axis
        if base_image:
            recipe = dataclasses.replace(recipe, base_image=check_image_ref(base_image, "--base-image"))
        spec = resolve(recipe)
    if lock:
        lock.check_spec(spec)  # the recipe must be the one that was locked
    settings = with_wheelhouse(settings, recipe, spec)
    gpu_checked = run_smoke and (gpu_mode or spec.smoke_gpu) != "off"
    host = detect_host(engine) if gpu_checked and spec.is_gpu else None
    if host and not spec.framework_from_base:
        check_host_gpus(spec, host)  # before any long step: the base pull, the build
    base = choose_base(engine, spec, say)
    if base.note:
        say(base.note)
    spec = dataclasses.replace(spec, base_image=base.ref)
    if lock:
        lock.check_base(base.image_id)
    if spec.framework_from_base:
        spec = observe_base(engine, spec)
        if gpu_checked and spec.is_gpu:
            check_host_gpus(spec, host or detect_host(engine))
    say(f"resolved: {spec.framework} {spec.framework_version}, Python {spec.python}, "
        f"{'CPU' if spec.cuda == 'cpu' else 'CUDA ' + spec.cuda} on {base.ref}")  # fmt: skip
    for line in settings.describe():
        say(f"build setting: {line}")
    pins = lock.pins() if lock else None
    dockerfile = render(spec, pins, settings)  # the content tag needs only the text; the context comes later
    tag = content_tag(spec, dockerfile, base.image_id)
    found = find_existing(engine, spec, tag, say) if reuse else None
    if found:  # build avoidance: the same spec, Dockerfile and base were built before
        tags = tag_image(engine, found, spec, tag, extra_tags)  # readable tags may have moved
        size = int(engine.inspect(found).get("Size") or 0)
        return BuildResult(found, tags, size, spec, tag, base, None, time.monotonic() - started,
                           dockerfile, up_to_date=True)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="mlbuild-context-") as tmp:
        context = Path(tmp)
        dockerfile = write_context(spec, context, recipe.folder, settings, pins)
        say(f"building {spec.repository}:{tag}")
        labels = oci_labels(recipe, base, tag)
        try:
            image_id = engine.build(
                context,
                labels=lock.labels(labels) if lock else labels,
                buildargs=settings.build_args(),
                on_line=on_line,
                network=network,
                nocache=nocache,
            )
        except BuildError as exc:
            if _NO_SPACE in " ".join([exc.message, *exc.details]).lower():
                raise _disk_full(exc) from None
            if lock:
                from builder.lock import explain_build_failure

                raise explain_build_failure(exc) from None
            raise
    if lock:  # identical bytes from the same lock (builder.normalize)
        from builder.normalize import normalize_locked

        image_id = normalize_locked(engine, image_id, lock, base.image_id, Path(recipe_path), say)
    report = None
    if run_smoke:
        say(f"smoke test of {image_id[:19]}")
        report = smoke(engine, image_id, spec, gpu_mode or spec.smoke_gpu, gpu_access)
        if not report.passed:
            failed = report.failures()
            raise SmokeFailed(
                f"smoke test failed for image {image_id[:19]} (left untagged)",
                details=[f"{c.name}: {c.detail}" for c in failed],
                hint=f"inspect it with: docker run --rm -it {image_id[7:19]} sh",
            )
    tags = tag_image(engine, image_id, spec, tag, extra_tags)
    size = int(engine.inspect(image_id).get("Size") or 0)
    return BuildResult(image_id, tags, size, spec, tag, base, report, time.monotonic() - started, dockerfile)


_NO_SPACE = "no space left on device"


def _disk_full(exc: BuildError) -> EngineError:
    """The engine's disk filled up: say that first, not the step that happened to hit it."""
    return EngineError(
        f"the Docker engine ran out of disk space ({_NO_SPACE}) during the build",
        details=[exc.message, *[d for d in exc.details if _NO_SPACE in d.lower()][-3:]],
        hint="free space on the engine's data root (`docker system df`, `docker image prune`, "
        "`docker builder prune`), or move it (`docker info` shows Docker Root Dir)",
    )


def find_existing(engine: Engine, spec: ResolvedSpec, tag: str, say: Say) -> str | None:
    """The image of this content tag: on the engine, or pulled from the recipe's registry."""
    image_id = engine.image_id(f"{spec.repository}:{tag}")
    if image_id:
        return image_id
    from builder.registry import pull_if_present  # requests: only when the engine lacks it

    return pull_if_present(engine, spec.repository, tag, say)


def tag_image(
    engine: Engine, image_id: str, spec: ResolvedSpec, content: str, extra: tuple[str, ...]
) -> tuple[str, ...]:
    refs = [f"{spec.repository}:{t}" for t in (spec.readable_tag, content, *spec.tags)]
    refs += [check_image_ref(ref, "--tag") for ref in extra]
    done = []
    try:
        for ref in dict.fromkeys(refs):
            repo, tag = split_tag(ref)
            engine.tag(image_id, repo, tag)
            done.append(f"{repo}:{tag}")
    except KeyboardInterrupt:  # SIGINT/SIGTERM (builder.cleanup): leave no half-tagged image
        from builder.cleanup import untag_partial

        untag_partial(engine, done)
        raise
    return tuple(done)
