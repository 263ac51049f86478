"""recipe -> resolve -> render -> build -> smoke -> tag -> push: one image, the library's main
job. The build command (one recipe), many-image builds and CI fan-out (builder.fanout) all
come through `build`; the CLI only fills in `BuildOptions` and prints what comes back.

Nothing here prints: callers pass callbacks (`say`, `on_line`, `on_stage`, `on_progress`).
"""

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

from builder import buildkit
from builder.base import BaseChoice, choose_base, observe
from builder.buildkit import BuilderChoice
from builder.cleanup import untag_partial
from builder.contextdigest import context_digest
from builder.engine_api import Engine, LineSink, ProgressSink
from builder.errors import NO_SPACE, BuildError, EngineError, PreflightError, UsageError
from builder.gpu import HostGpus, preflight
from builder.labels import (
    BASE_ID_LABEL,
    BUILDER_LABEL,
    CONTENT_LABEL,
    OCI_BASE_NAME,
    OCI_CREATED,
    OCI_REVISION,
    OCI_SOURCE,
)
from builder.lock import Lock, explain_build_failure, read_lock
from builder.normalize import normalize_locked
from builder.platforms import DEFAULT_PLATFORM, platform_named
from builder.publish import Published, publish, require_smoke
from builder.pull import pull_if_present
from builder.recipe import Recipe, check_image_ref, load_recipe
from builder.refs import split_tag
from builder.render import context_sources, needs_tools, place_sources, place_tools, write_context
from builder.resolve import resolve, resolve_platforms
from builder.settings import BUILDERS, BuildSettings, redact
from builder.smoke import SmokeReport, detect_host, refuse_required_on_cpu, smoke_on
from builder.spec import ResolvedSpec
from builder.toolwheels import fetch_tools
from builder.wheelhouse import missing

Say = Callable[[str], None]
STAGES = ("resolving", "building", "smoke", "tagging", "pushing")  # what on_stage is told


def _quiet(_: str) -> None:
    pass


@dataclass(frozen=True)
class BuildOptions:
    """What a build asks for: the build command's options, for one recipe or for each variant
    of many. The same options give the same behaviour from the CLI, fan-out and Python."""

    base_image: str | None = None  # FROM this instead of the resolved base
    extra_tags: tuple[str, ...] = ()  # more references for the image, e.g. host:5000/team/x:v1
    run_smoke: bool = True
    gpu_mode: str | None = None  # auto | required | off (default: the recipe's smoke.gpu)
    gpu_access: str | None = None  # toolkit | cdi | devices (default: the best this host has)
    network: str | None = None  # for the build steps (default: the engine's)
    reuse: bool = True  # build avoidance: the image of the same content tag is used as it is
    locked: bool = False  # install only what the lock beside the recipe names
    nocache: bool = False
    push: bool = False  # after the smoke test: push every tag (builder.publish)
    registry_ca: str | None = None
    record: bool = True  # with push: write the image record beside the recipe
    builder: str | None = None  # auto | buildkit | classic (default: the site config's, else auto)
    cache_from: tuple[str, ...] = ()  # BuildKit: reuse the layers of these pushed images (inline cache)
    platform: str | None = None  # which of the recipe's platforms (default: its first)

    def __post_init__(self) -> None:
        if self.push and not self.run_smoke:
            raise UsageError("--push needs the smoke test", hint="drop --no-smoke: only tested images are pushed")
        if self.builder is not None and self.builder not in BUILDERS:
            raise UsageError(f"--builder {self.builder!r} is not one of {', '.join(BUILDERS)}")
        for ref in self.cache_from:
            check_image_ref(ref, "--cache-from")
        for ref in self.extra_tags:
            check_image_ref(ref, "--tag")


@dataclass(frozen=True)
class BuildResult:
    image_id: str
    tags: tuple[str, ...]
    size_bytes: int
    spec: ResolvedSpec
    content_tag: str
    base: BaseChoice
    smoke: SmokeReport | None  # None: not run (--no-smoke, or up to date and not pushed)
    seconds: float  # resolve to tag; a push is not counted
    dockerfile: str
    up_to_date: bool = False  # the content tag existed already: nothing was built
    published: Published | None = None  # with push
    builder: str = "classic"  # buildkit or classic: what built it (or would have, when up to date)

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
            "builder": self.builder,
            **(self.published.to_dict() if self.published else {}),
        }


def build(
    recipe_path: str | Path,
    *,
    engine: Engine,
    settings: BuildSettings,
    options: BuildOptions | None = None,
    recipe: Recipe | None = None,
    smoke_engine: Engine | None = None,
    say: Say = _quiet,
    on_line: LineSink | None = None,
    on_stage: Say = _quiet,
    on_progress: ProgressSink | None = None,
) -> BuildResult:
    """Build one image from `recipe_path`, smoke-test it, tag it and, with `options.push`,
    publish it. An image gets its tags only after its smoke test passed (SmokeFailed, exit 3,
    leaves it untagged), and only a tested image is pushed.

    `recipe`: a matrix variant, loaded already (builder.fanout). `smoke_engine`: run only the
    smoke step there (--gpu-host); the image is copied over. Callbacks: `say` one line per
    step, `on_line` the build's own output, `on_stage` each of STAGES as it starts,
    `on_progress` the layers of a push.
    """
    opts = options or BuildOptions()
    started = time.monotonic()
    on_stage("resolving")
    # it decides base, packages, times; one entry per platform of the recipe
    lock = read_lock(Path(recipe_path)).for_platform(opts.platform) if opts.locked else None
    recipe, spec = _resolve(
        recipe_path, recipe, opts.base_image or (lock.base_override if lock else None), opts.platform
    )
    if lock:
        lock.check_spec(spec)  # the recipe must be the one that was locked
    settings = with_wheelhouse(settings, recipe, spec)
    chosen = choose_builder(engine, opts, settings)  # before any long step: --cache-from needs BuildKit
    gpu_checked = opts.run_smoke and smoke_engine is None and (opts.gpu_mode or spec.smoke_gpu) != "off"
    host = detect_host(engine) if gpu_checked and spec.is_gpu else None
    if host and not spec.framework_from_base:
        check_host_gpus(spec, host)  # before any long step: the base pull, the build
    base = choose_base(engine, spec, say)
    if base.note:
        say(base.note)
    spec = dataclasses.replace(spec, base_image=base.ref)
    if lock:
        lock.check_base(base.image_id)
    spec = observe(engine, spec, base_named=bool(recipe.base_image))  # its Python (and framework)
    if spec.framework_from_base and gpu_checked and spec.is_gpu:
        check_host_gpus(spec, host or detect_host(engine))
    if opts.run_smoke:  # before the build: `required` can never pass on an image without a GPU build
        refuse_required_on_cpu(spec, opts.gpu_mode or spec.smoke_gpu)
    say(f"resolved: {spec.framework} {spec.framework_version}, Python {spec.python}, "
        f"{'CPU' if spec.cuda == 'cpu' else 'CUDA ' + spec.cuda} on {base.ref}")  # fmt: skip
    for line in settings.describe():
        say(f"build setting: {line}")
    say(f"builder: {chosen.builder} ({chosen.reason})")
    pins = lock.pins() if lock else None
    with tempfile.TemporaryDirectory(prefix="mlbuild-context-") as tmp, \
            tempfile.TemporaryDirectory(prefix="mlbuild-secrets-") as secrets:  # fmt: skip
        context = Path(tmp)
        # The content tag covers the Dockerfile (BuildKit's variant has its own text, so each
        # builder's image has its own tag) and the context's files: mlbuild's helpers, the
        # recipe's files, the lock, the wheels (builder.contextdigest).
        dockerfile = write_context(spec, context, recipe.folder, settings, pins,
                                   Path(secrets) if chosen.buildkit else None, inputs=False)  # fmt: skip
        sources = context_sources(spec, recipe.folder, settings)
        tag = content_tag(spec, dockerfile, base.image_id, context_digest(context, sources=sources))
        # build avoidance: the same spec, Dockerfile, context and base were built before
        found = find_existing(engine, spec, tag, say) if opts.reuse else None
        if not found:  # only a build copies the files and wheels in, and needs uv and pip's wheel
            complete_context(spec, context, sources, settings, say)
            on_stage("building")
        image_id = found or _build_image(engine, recipe, Path(recipe_path), spec, base, tag, settings, opts,
                                         lock, chosen, context, Path(secrets), say, on_line)  # fmt: skip
    up_to_date = found is not None
    report = None
    if not up_to_date and opts.run_smoke:
        on_stage("smoke")
        report = _smoke(engine, image_id, spec, opts, smoke_engine, say)
    on_stage("tagging")
    tags = tag_image(engine, image_id, spec, tag, opts.extra_tags)  # an up-to-date image's readable tags may move
    if up_to_date:
        say(f"up to date: {tags[0] if tags else tag} (nothing built)")
        if opts.push:  # what is about to be shared is tested, whatever happened before
            on_stage("smoke")
            report = require_smoke(engine, image_id, gpu_mode=opts.gpu_mode, gpu_access=opts.gpu_access,
                                   smoke_engine=smoke_engine, say=say)  # fmt: skip
    size = int(engine.inspect(image_id).get("Size") or 0)
    result = BuildResult(image_id, tags, size, spec, tag, base, report, time.monotonic() - started, dockerfile,
                         up_to_date, builder=chosen.builder)  # fmt: skip
    if not opts.push:
        return result
    on_stage("pushing")
    published = publish(engine, image_id, tags, recipe=Path(recipe_path) if opts.record else None,
                        registry_ca=opts.registry_ca, say=say, on_progress=on_progress)  # fmt: skip
    return dataclasses.replace(result, published=published)


def _resolve(
    recipe_path: str | Path, recipe: Recipe | None, base_image: str | None, platform: str | None = None
) -> tuple[Recipe, ResolvedSpec]:
    """The spec of one platform of the recipe; with several, of the release and Python that
    all of them share (resolve_platforms), so their images can share a tag."""
    if recipe is None:
        recipe = load_recipe(recipe_path)
    if base_image:  # --base-image, or a matrix variant's (loaded already, one value per axis)
        recipe = dataclasses.replace(recipe, base_image=check_image_ref(base_image, "--base-image"))
    if platform is not None and platform not in recipe.platforms:
        raise UsageError(
            f"--platform {platform}: the recipe builds for {', '.join(recipe.platforms)}",
            hint="add it to the recipe's platforms:, or choose one of those",
        )
    if len(recipe.platforms) == 1:
        return recipe, resolve(recipe)
    specs = resolve_platforms(recipe)
    return recipe, next(s for s in specs if s.platform == (platform or recipe.platforms[0]))


def _build_image(
    engine: Engine,
    recipe: Recipe,
    recipe_path: Path,
    spec: ResolvedSpec,
    base: BaseChoice,
    tag: str,
    settings: BuildSettings,
    opts: BuildOptions,
    lock: Lock | None,
    chosen: BuilderChoice,
    context: Path,
    secrets: Path,
    say: Say,
    on_line: LineSink | None,
) -> str:
    """The build itself from the written `context` (and, from a lock, the normalisation);
    returns the new image's ID."""
    # Inline cache lets a pushed image seed a later --cache-from; not for locked builds:
    # normalisation rewrites every layer, so the cache would name layers the image lacks.
    kit = buildkit.run_for(chosen, secrets, cache_from=opts.cache_from, inline_cache=lock is None)
    say(f"building {spec.repository}:{tag}")
    labels = {**oci_labels(recipe, base, tag), BUILDER_LABEL: chosen.builder}
    try:
        image_id = engine.build(
            context,
            labels=lock.labels(labels) if lock else labels,
            buildargs=settings.build_args(),
            on_line=on_line,
            network=opts.network,
            nocache=opts.nocache,
            kit=kit,
            platform=None if spec.platform == DEFAULT_PLATFORM.name else spec.platform,
        )
    except BuildError as exc:
        if NO_SPACE in " ".join([exc.message, *exc.details]).lower():
            raise _disk_full(exc) from None
        if lock:
            raise explain_build_failure(exc, lock) from None
        raise
    if lock:  # identical bytes from the same lock (builder.normalize)
        image_id = normalize_locked(engine, image_id, lock, base.image_id, recipe_path, say)
    return image_id


def complete_context(
    spec: ResolvedSpec, folder: Path, sources: list[tuple[str, Path]], settings: BuildSettings, say: Say
) -> None:
    """What write_context(inputs=False) leaves for a build: the recipe's files and the wheels
    (`sources`), and the uv and pip the builder stage runs where it needs them, fetched once
    per machine (builder.toolwheels)."""
    place_sources(folder, sources)
    place_tools(folder, fetch_tools(spec, settings, say) if needs_tools(spec, settings) else ())


def write_build_context(spec: ResolvedSpec, folder: Path, recipe_folder: Path, settings: BuildSettings) -> str:
    """A whole context `docker build` can build (the benchmarks' plain builds); returns the
    Dockerfile text."""
    dockerfile = write_context(spec, folder, recipe_folder, settings, inputs=False)
    complete_context(spec, folder, context_sources(spec, recipe_folder, settings), settings, lambda _: None)
    return dockerfile


def choose_builder(engine: Engine, opts: BuildOptions, settings: BuildSettings) -> BuilderChoice:
    """--builder, else the site config's builder, else auto (BuildKit where a CLI drives it)."""
    chosen = buildkit.choose_for(engine, opts.builder, settings.builder)
    if opts.cache_from and not chosen.buildkit:
        raise UsageError(
            "--cache-from needs the BuildKit builder (inline cache)",
            details=[f"builder: classic ({chosen.reason})"],
            hint="drop --cache-from, or build where BuildKit is available (--builder buildkit)",
        )
    return chosen


def _smoke(
    engine: Engine, image_id: str, spec: ResolvedSpec, opts: BuildOptions, smoke_engine: Engine | None, say: Say
) -> SmokeReport:
    """The smoke test of a new image, before it has any tag; SmokeFailed leaves it untagged."""
    where = f" on {smoke_engine.base_url}" if smoke_engine else ""
    say(f"smoke test of {image_id[:19]}" + (f"{where} (the image is copied there)" if where else ""))
    report = smoke_on(engine, image_id, spec, opts.gpu_mode or spec.smoke_gpu, opts.gpu_access,
                      smoke_engine=smoke_engine, say=say)  # fmt: skip
    if not report.passed:
        raise report.error(
            f"smoke test{where} failed for image {image_id[:19]} (left untagged)",
            hint=f"inspect it with: docker run --rm -it {image_id[7:19]} sh",
        )
    return report


def with_wheelhouse(settings: BuildSettings, recipe: Recipe, spec: ResolvedSpec) -> BuildSettings:
    """The recipe's wheelhouse (unless --wheelhouse named one), checked before any build: an
    offline build must find every package and dependency in it for the image's Python."""
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


def content_tag(spec: ResolvedSpec, dockerfile: str, base_id: str, context: str) -> str:
    """The immutable tag: the same resolved spec, Dockerfile, base and context (its digest)
    give the same tag."""
    h = hashlib.sha256()
    for part in (spec.to_json(), dockerfile, base_id, context):
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


def _disk_full(exc: BuildError) -> EngineError:
    """The engine's disk filled up: say that first, not the step that happened to hit it."""
    return EngineError(
        f"the Docker engine ran out of disk space ({NO_SPACE}) during the build",
        details=[exc.message, *[d for d in exc.details if NO_SPACE in d.lower()][-3:]],
        hint="free space on the engine's data root (`docker system df`, `docker image prune`, "
        "`docker builder prune`), or move it (`docker info` shows Docker Root Dir)",
    )


def find_existing(engine: Engine, spec: ResolvedSpec, tag: str, say: Say) -> str | None:
    """The image of this content tag: on the engine, or pulled from the recipe's registry."""
    image_id = engine.image_id(f"{spec.repository}:{tag}")
    if image_id:
        return image_id
    return pull_if_present(engine, spec.repository, tag, say)


def local_tags(spec: ResolvedSpec) -> tuple[str, ...]:
    """The readable tags on this engine. An engine keeps one image per tag, so the images of
    other platforms than linux/amd64 carry their architecture (sklearn1.5.2-py3.11-cpu-arm64);
    in a registry all platforms share the plain tags, through one image index."""
    tags = (spec.readable_tag, *spec.tags)
    if spec.platform == DEFAULT_PLATFORM.name:
        return tags
    arch = platform_named(spec.platform).architecture
    return tuple(f"{t}-{arch}"[:128] for t in tags)


def tag_image(
    engine: Engine, image_id: str, spec: ResolvedSpec, content: str, extra: tuple[str, ...]
) -> tuple[str, ...]:
    refs = [f"{spec.repository}:{t}" for t in (*local_tags(spec), content)]
    refs += [check_image_ref(ref, "--tag") for ref in extra]
    done = []
    try:
        for ref in dict.fromkeys(refs):
            repo, tag = split_tag(ref)
            engine.tag(image_id, repo, tag)
            done.append(f"{repo}:{tag}")
    except KeyboardInterrupt:  # SIGINT/SIGTERM (builder.cleanup): leave no half-tagged image
        untag_partial(engine, done)
        raise
    return tuple(done)
