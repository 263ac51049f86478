"""One recipe, several platforms, one tag: build and smoke-test the image of each platform
(pipeline.build, under QEMU where the engine is of another architecture), push each by its
immutable content tag, then one image index under the shared tags that names them all, and one
image record with an entry per platform.

Nothing here prints: progress goes to `say`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builder import pipeline
from builder.engine_api import Engine, LineSink, ProgressSink
from builder.errors import RegistryError
from builder.labels import CONTENT_LABEL
from builder.publish import CONTENT_TAG_RE, PushResult, make_record, platform_of, push_image
from builder.records import PlatformImage, record_path, write_record
from builder.refs import parse_reference
from builder.registry import access_for
from builder.settings import BuildSettings

Say = Callable[[str], None]


@dataclass(frozen=True)
class PlatformsResult:
    results: tuple[pipeline.BuildResult, ...]  # one per platform, in the recipe's order
    index: PushResult | None = None  # with push: the index under the shared tags
    record: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "platforms": {r.spec.platform: r.to_dict() for r in self.results},
            "index": {"repository": self.index.repository, "digest": self.index.digest,
                      "tags": list(self.index.tags), "reference": self.index.reference} if self.index else None,
            "record": str(self.record) if self.record else None,
        }  # fmt: skip

    def summary(self) -> str:
        lines = []
        for r in self.results:
            smoke = (
                "skipped" if r.smoke is None else "passed" + (f" ({r.smoke.gpu_reason})" if r.smoke.gpu_reason else "")
            )
            lines += [f"{r.spec.platform}: image {r.image_id[:19]}  {r.size_bytes / 1e6:.1f} MB  smoke {smoke}  "
                      f"{r.seconds:.1f} s", *[f"  tag     {t}" for t in r.tags]]  # fmt: skip
        if self.index:
            lines += [f"index   {self.index.reference}", *[f"  tag     {t}" for t in self.index.tags]]
        if self.record:
            lines.append(f"record  {self.record}")
        return "\n".join(lines)


def build_platforms(
    recipe_path: str | Path,
    platforms: tuple[str, ...],
    *,
    engine: Engine,
    settings: BuildSettings,
    options: pipeline.BuildOptions,
    say: Say = lambda _: None,
    on_line: LineSink | None = None,
    on_progress: ProgressSink | None = None,
    engines: Mapping[str, Engine] | None = None,
) -> PlatformsResult:
    """Each platform's image (built, smoke-tested, tagged on its engine: `engines[platform]`,
    a native one from the site config, else `engine`); with push, then the index. A platform
    that fails stops the rest: nothing is pushed unless all are tested."""
    results = []
    for platform in platforms:
        where = (engines or {}).get(platform, engine)
        say(f"platform {platform}" + (f" on {where.base_url}" if where is not engine else ""))
        one = dataclasses.replace(options, platform=platform, push=False)
        results.append(pipeline.build(recipe_path, engine=where, settings=settings, options=one, say=say,
                                      on_line=on_line))  # fmt: skip
    if not options.push:
        return PlatformsResult(tuple(results))
    index, record = publish_index(engine, tuple(results), Path(recipe_path) if options.record else None,
                                  registry_ca=options.registry_ca, say=say, on_progress=on_progress,
                                  engines=engines)  # fmt: skip
    return PlatformsResult(tuple(results), index, record)


def publish_index(
    engine: Engine,
    results: tuple[pipeline.BuildResult, ...],
    recipe: Path | None,
    *,
    registry_ca: str | None = None,
    repository: str | None = None,
    say: Say = lambda _: None,
    on_progress: ProgressSink | None = None,
    engines: Mapping[str, Engine] | None = None,
) -> tuple[PushResult, Path | None]:
    """Push each platform's image by its content tag (immutable, checked), then PUT one index
    under the shared tags (the readable tag and the recipe's tags) naming each by digest.
    `repository`: push there instead of the recipe's (like `mlbuild push --to`)."""
    repository = repository or results[0].spec.repository

    def engine_of(r: pipeline.BuildResult) -> Engine:
        return (engines or {}).get(r.spec.platform, engine)

    pushed = []
    for r in results:
        ref = f"{repository}:{r.content_tag}"
        engine_of(r).tag(r.image_id, repository, r.content_tag)
        pushed += push_image(engine_of(r), r.image_id, [ref], registry_ca=registry_ca, say=say,
                             on_progress=on_progress)  # fmt: skip
    name = parse_reference(repository)
    acc = access_for(name.registry, registry_ca)
    client = acc.client(name.registry)
    children = []
    for r, p in zip(results, pushed, strict=True):
        remote = client.manifest(name.path, p.digest, say)
        if remote is None or remote.config_digest is None:
            raise RegistryError(f"after the push, {p.reference} is not a single-platform image in the registry")
        children.append((r.spec.platform, remote))
    shared = tuple(dict.fromkeys((results[0].spec.readable_tag, *results[0].spec.tags)))
    digest = ""
    for tag in shared:
        if CONTENT_TAG_RE.match(tag):
            continue
        say(f"pushing the index of {', '.join(r.spec.platform for r in results)} as {repository}:{tag}")
        digest = client.put_index(name.path, tag, children, say)
    index = PushResult(repository, digest, shared, "")
    if recipe is None:
        return index, None
    entries = []
    for r, p in zip(results, pushed, strict=True):
        attrs = engine_of(r).inspect(r.image_id)
        labels = dict((attrs.get("Config") or {}).get("Labels") or {})
        entries.append(
            PlatformImage(platform_of(attrs), p.digest, labels.get(CONTENT_LABEL, ""), r.image_id, r.spec.digest())
        )
    first = engine_of(results[0]).inspect(results[0].image_id)
    labels = dict((first.get("Config") or {}).get("Labels") or {})
    record = make_record(PushResult(repository, digest, shared, results[0].image_id), labels, platform_of(first))
    path = record_path(recipe)
    write_record(path, dataclasses.replace(record, platforms=tuple(entries)))
    return index, path
