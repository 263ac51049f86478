"""recipe -> resolve -> render -> build -> smoke -> tag: the main job, used by the CLI."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builder.engine import Engine
from builder.errors import (
    BuildError,
    EngineError,
    PreflightError,
    ResolveError,
    SmokeFailed,
    UsageError,
)
from builder.gpu import HostGpus, preflight
from builder.probe import base_version
from builder.recipe import Recipe, check_image_ref
from builder.render import probe_source, render, write_context
from builder.resolve import FROM_BASE, load_and_resolve, resolve
from builder.settings import BuildSettings, redact
from builder.smoke import SmokeReport, detect_host, smoke
from builder.spec import ResolvedSpec

BASE_SUITE_LABEL = "org.mlbuild.base.suite"
CONTENT_LABEL = "org.mlbuild.content"
BASE_ID_LABEL = "org.mlbuild.base.id"
Say = Callable[[str], None]


@dataclass(frozen=True)
class BaseChoice:
    ref: str  # what FROM names
    image_id: str
    note: str = ""


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


def choose_base(engine: Engine, spec: ResolvedSpec, say: Say) -> BaseChoice:
    """The base image on this engine: as named, pulled, or one made by `mlbuild base bootstrap`."""
    image_id = engine.image_id(spec.base_image)
    if image_id:
        return BaseChoice(spec.base_image, image_id)
    say(f"base {spec.base_image} is not on this engine; pulling it")
    try:
        return BaseChoice(spec.base_image, engine.pull(spec.base_image), "pulled")
    except EngineError as exc:
        pull_error = "; ".join([exc.message, *exc.details])
    if spec.base_suite and spec.python_from == "distro":
        made = [
            img for img in engine.images_with_label(f"{BASE_SUITE_LABEL}={spec.base_suite}")
            # images built FROM such a base inherit its label: keep tagged ones that are a bare
            # imported root file system (one history entry), as `mlbuild base bootstrap` makes
            if [t for t in img.get("RepoTags") or [] if t != "<none>:<none>"]
            and "org.mlbuild.spec" not in (img.get("Labels") or {})
            and len(engine.history(str(img["Id"]))) == 1
        ]  # fmt: skip
        if made:
            newest = max(made, key=lambda img: (img.get("Created", 0), img["Id"]))
            ref = sorted(t for t in newest["RepoTags"] if t != "<none>:<none>")[0]
            return BaseChoice(
                ref, str(newest["Id"]),
                f"{spec.base_image} cannot be pulled; using {ref}, a Debian {spec.base_suite} base "
                "made by `mlbuild base bootstrap`",
            )  # fmt: skip
    suite = spec.base_suite or "bookworm"
    raise EngineError(
        f"base image {spec.base_image} is not on this engine and cannot be pulled",
        details=[redact(pull_error)],
        hint=(
            f"on a site without registry access, make one: mlbuild base bootstrap --suite {suite} "
            f"--tag mlbuild/debian:{suite}"
            if spec.python_from == "distro"
            else "load it with `docker load`, or pass --base-image REF"
        ),
    )


def observe_base(engine: Engine, spec: ResolvedSpec) -> ResolvedSpec:
    """framework_from_base: find the base's Python and framework and record them in the spec."""
    code = probe_source()
    result = engine.run(
        spec.base_image,
        ["-c", code, "--observe", spec.import_name, "--framework", spec.framework],  # probe's main() reads argv
        entrypoint=["python3"],
    )
    try:
        seen = json.loads(result.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise EngineError(
            f"cannot find Python in the base image {spec.base_image}",
            details=[(result.stderr or result.stdout).strip()[-300:]],
            hint="framework_from_base needs python3 on the base image's PATH",
        ) from None
    if "error" in seen:
        raise ResolveError(
            f"the base image {spec.base_image} does not carry {spec.framework}",
            details=[seen["error"]],
            hint="drop framework_from_base to install the framework, or use another base",
        )
    py = ".".join(seen["python"].split(".")[:2])
    if spec.python not in (FROM_BASE, py):
        raise ResolveError(f"the base image has Python {seen['python']}; the recipe asks for {spec.python}")
    cuda = seen.get("cuda_build")
    cuda_mm = ".".join(str(cuda).split(".")[:2]) if cuda else "cpu"
    if spec.cuda not in (FROM_BASE, cuda_mm):
        raise ResolveError(f"the base's {spec.framework} is built for {cuda_mm}; the recipe asks for {spec.cuda}")
    return dataclasses.replace(
        spec,
        framework_version=base_version(seen["framework_version"]),
        python=py,
        python_bin=seen["python_bin"],
        cuda=cuda_mm,
        cudnn=seen.get("cudnn"),
        variant=seen["framework_version"].partition("+")[2] or ("cpu" if not cuda else f"cuda{cuda_mm}"),
        archs=tuple(seen.get("archs") or ()),
        base_site_packages=tuple(seen.get("site_packages") or ()),
        reasons=(*spec.reasons, f"observed in the base: {spec.framework} {seen['framework_version']}, "
                 f"Python {seen['python']}, CUDA {cuda or 'none'}, cuDNN {seen.get('cudnn') or 'none'}"),
    )  # fmt: skip


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
        "org.opencontainers.image.created": when.replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        "org.opencontainers.image.base.name": base.ref,
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
        labels["org.opencontainers.image.revision"] = revision
    remote = git("config", "--get", "remote.origin.url")
    if remote:
        labels["org.opencontainers.image.source"] = redact(remote)
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
        lock.check_base(base)
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
            repo, tag = split_ref(ref)
            engine.tag(image_id, repo, tag)
            done.append(f"{repo}:{tag}")
    except KeyboardInterrupt:  # SIGINT/SIGTERM (builder.cleanup): leave no half-tagged image
        from builder.cleanup import untag_partial

        untag_partial(engine, done)
        raise
    return tuple(done)


def split_ref(ref: str) -> tuple[str, str]:
    """registry:5000/team/name:tag -> (registry:5000/team/name, tag); no tag -> latest."""
    name = ref.partition("@")[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon + 1 :]
    return name, "latest"
