"""Publishing an image: push every tag, check the digests, keep content tags immutable, and
write the image record. The one push path: `mlbuild build --push` (one recipe or many),
`mlbuild push IMAGE` and CI fan-out all come through `publish`.

Tags
----
`spec-<hash>` content tags are immutable: before a push, the registry's manifest for that tag
is looked up (HTTP API v2); when it exists and holds another image, the push is refused with
both digests. Readable tags (`latest`, version tags) may move.

Nothing here prints: progress goes to `say` (one line of text) and `on_progress` (layers).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builder.credentials import auth_error
from builder.engine_api import Engine, ProgressSink
from builder.errors import RegistryError, UsageError
from builder.labels import CONTENT_LABEL, SPEC_LABEL
from builder.records import ImageRecord, record_path, spec_summary, write_record
from builder.refs import Reference, parse_reference, split_tag
from builder.registry import Access, RegistryClient, access_for, with_retries
from builder.smoke import SmokeReport, smoke_on
from builder.spec import ResolvedSpec, image_spec
from builder.version import __version__

CONTENT_TAG_RE = re.compile(r"^spec-[0-9a-f]{16}$")
Say = Callable[[str], None]


@dataclass(frozen=True)
class PushResult:
    repository: str
    digest: str
    tags: tuple[str, ...]
    image_id: str

    @property
    def reference(self) -> str:
        return f"{self.repository}@{self.digest}"


def group_refs(refs: tuple[str, ...] | list[str]) -> dict[str, list[str]]:
    """repository -> its tags, in order."""
    out: dict[str, list[str]] = {}
    for ref in refs:
        r = parse_reference(ref)
        out.setdefault(r.name, []).append(r.tag_or_latest)
    return out


def check_immutable(
    client: RegistryClient,
    ref: Reference,
    tag: str,
    image_id: str,
    platform: str,
    say: Say = lambda _: None,
) -> None:
    """Refuse to move a content tag that already names other content in the registry."""
    remote = client.manifest(ref.path, tag, say)
    if remote is None:
        return
    config = remote.config_digest
    if config is None:  # an index: compare the entry for our platform
        child = next((d for p, d in remote.children if p == "/".join(platform.split("/")[:2])), None)
        sub = client.manifest(ref.path, child, say) if child else None
        config = sub.config_digest if sub else None
    if config == image_id:
        return
    raise RegistryError(
        f"refusing to overwrite the immutable tag {ref.name}:{tag} with other content",
        details=[
            f"registry: {remote.digest} (image {config or 'unknown'})",
            f"local:    image {image_id}",
        ],
        hint="content tags never move; if the build changed, its content tag changes too "
        "(rebuild), or push under another repository",
    )


def push_image(
    engine: Engine,
    image_id: str,
    refs: tuple[str, ...] | list[str],
    *,
    registry_ca: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    say: Say = lambda _: None,
    on_progress: ProgressSink | None = None,
    access: Callable[[str], Access] | None = None,
) -> list[PushResult]:
    """Push every tag in `refs` (all naming `image_id`); content tags are checked first."""
    get_access = access or (lambda reg: access_for(reg, registry_ca, env))
    platform = platform_of(engine.inspect(image_id))
    groups = group_refs(refs)
    plans = []
    for name, tags in groups.items():  # every check before any push: all or nothing
        ref = parse_reference(name)
        acc = get_access(ref.registry)
        client = acc.client(ref.registry)
        for tag in tags:
            if CONTENT_TAG_RE.match(tag):
                check_immutable(client, ref, tag, image_id, platform, say)
        plans.append((ref, tags, acc))
    results = []
    for ref, tags, acc in plans:
        digests = set()
        for tag in tags:
            say(f"pushing {ref.name}:{tag}")
            auth = acc.creds.auth_config() if acc.creds else None

            def one(ref: Reference = ref, tag: str = tag, acc: Access = acc, auth: Any = auth) -> str:
                try:
                    return engine.push(ref.name, tag, auth_config=auth, on_progress=on_progress)
                except RegistryError as exc:
                    text = " ".join([exc.message, *exc.details]).lower()
                    if re.search(r"unauthorized|authentication required|denied", text):
                        raise auth_error(ref.registry, acc.creds) from None
                    raise

            digests.add(with_retries(one, acc.policy, f"push of {ref.name}:{tag}", say))
        if len(digests) != 1:
            raise RegistryError(f"the tags of {ref.name} got different digests", details=sorted(digests))
        digest = digests.pop()
        content = [t for t in tags if CONTENT_TAG_RE.match(t)]
        if content:  # the registry must now say what the push stream said
            remote = acc.client(ref.registry).manifest(ref.path, content[0], say)
            if remote is None or remote.digest != digest:
                raise RegistryError(
                    f"after the push, registry {ref.registry} does not hold {ref.name}:{content[0]} as {digest}",
                    details=[f"registry: {remote.digest if remote else 'nothing'}"],
                )
        results.append(PushResult(ref.name, digest, tuple(tags), image_id))
    return results


def platform_of(attrs: dict[str, Any]) -> str:
    parts = [str(attrs.get("Os") or "linux"), str(attrs.get("Architecture") or "amd64")]
    if attrs.get("Variant"):
        parts.append(str(attrs["Variant"]))
    return "/".join(parts)


def make_record(result: PushResult, labels: dict[str, str], platform: str) -> ImageRecord:
    spec = ResolvedSpec.from_labels(labels)
    if spec is None:
        raise RegistryError(f"{result.repository} was not built by mlbuild (no {SPEC_LABEL} label)")
    return ImageRecord(
        repository=result.repository,
        digest=result.digest,
        tags=result.tags,
        content_tag=labels.get(CONTENT_LABEL, ""),
        image_id=result.image_id,
        platform=platform,
        spec=spec_summary(spec.to_dict()),
        spec_digest=spec.digest(),
        mlbuild_version=__version__,
    )


@dataclass(frozen=True)
class Published:
    """What `publish` did: one push per repository, and the record it wrote, if any."""

    pushed: tuple[PushResult, ...]
    record: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "pushed": [
                {"repository": r.repository, "digest": r.digest, "tags": list(r.tags), "reference": r.reference}
                for r in self.pushed
            ],
            "record": str(self.record) if self.record else None,
        }


def publish(
    engine: Engine,
    image_id: str,
    refs: tuple[str, ...] | list[str],
    *,
    recipe: Path | None = None,
    registry_ca: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    say: Say = lambda _: None,
    on_progress: ProgressSink | None = None,
    access: Callable[[str], Access] | None = None,
) -> Published:
    """Tag `image_id` as every reference in `refs` and push them all; then, when every push
    succeeded and a `recipe` is given, write its image record beside it. Only tested images
    come here: callers smoke-test first (pipeline.build, `require_smoke`)."""
    for ref in refs:
        engine.tag(image_id, *split_tag(ref))
    results = push_image(
        engine, image_id, refs, registry_ca=registry_ca, env=env, say=say, on_progress=on_progress, access=access
    )
    if recipe is None:
        return Published(tuple(results))
    attrs = engine.inspect(image_id)
    labels = dict((attrs.get("Config") or {}).get("Labels") or {})
    # The record names the repository that carries the content tag (the first, if several).
    main = next((r for r in results if labels.get(CONTENT_LABEL) in r.tags), results[0])
    path = record_path(recipe)
    write_record(path, make_record(main, labels, platform_of(attrs)))
    return Published(tuple(results), path)


def require_smoke(
    engine: Engine,
    image: str,
    *,
    gpu_mode: str | None = None,
    gpu_access: str | None = None,
    smoke_engine: Engine | None = None,
    say: Say = lambda _: None,
) -> SmokeReport:
    """Smoke-test an image that is about to be shared, from its own labels; SmokeFailed
    (exit 3) when it fails. Tags prove nothing (`build --no-smoke` tags too)."""
    spec = image_spec(engine.labels(image), image)
    say(f"smoke test of {image[:19]} before pushing")
    report = smoke_on(engine, image, spec, gpu_mode or spec.smoke_gpu, gpu_access, smoke_engine=smoke_engine,
                      say=say)  # fmt: skip
    if not report.passed:
        raise report.error(f"smoke test failed for {image[:19]}: not pushed")
    return report


def push_refs(engine: Engine, image: str, to_repo: str | None = None) -> tuple[str, list[str]]:
    """`mlbuild push IMAGE [--to REPO]`: the image's ID and every reference to publish: its
    tags in its repository (or in `to_repo`), the immutable content tag always among them."""
    attrs = engine.inspect(image)
    image_id = str(attrs["Id"])
    labels = dict((attrs.get("Config") or {}).get("Labels") or {})
    content = labels.get(CONTENT_LABEL)
    if not content or SPEC_LABEL not in labels:
        raise UsageError(f"{image} was not built by mlbuild (no {CONTENT_LABEL} label)")
    source = parse_reference(image).name if not image.startswith("sha256:") else None
    target = parse_reference(to_repo).name if to_repo else source
    if target is None:
        raise UsageError("an image ID names no repository", hint="add --to REPO")
    repo_tags = [parse_reference(str(t)) for t in attrs.get("RepoTags") or []]
    tags = [r.tag for r in repo_tags if r.name in (source, target) and r.tag]
    tags = list(dict.fromkeys([content, *tags]))  # the immutable tag always travels along
    return image_id, [f"{target}:{tag}" for tag in tags]
