"""Pulling images: the content tag from the recipe's registry (build avoidance), and exactly
the image a recipe's record names (`mlbuild pull`). Nothing here prints."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from builder.credentials import auth_error
from builder.engine_api import Engine, ProgressSink
from builder.errors import RegistryError, UsageError
from builder.labels import CONTENT_LABEL
from builder.publish import platform_of
from builder.recipe import load_recipe
from builder.records import ImageRecord, check_labels, read_record
from builder.refs import parse_reference
from builder.registry import RegistryClient, RetryPolicy, access_for
from builder.resolve import load_and_resolve, resolve_platforms
from builder.spec import ResolvedSpec

Say = Callable[[str], None]


def pull_if_present(engine: Engine, repository: str, tag: str, say: Say = lambda _: None) -> str | None:
    """The content tag from the recipe's registry, pulled by digest; None when it is not there.

    Only repositories that name their registry are asked (never Docker Hub by default), with a
    short timeout and no retries: a registry that does not answer means "build it here".
    """
    ref = parse_reference(repository)
    if not ref.explicit_registry:
        return None
    try:
        acc = access_for(ref.registry)
        client = RegistryClient(ref.registry, acc.creds, acc.ca, RetryPolicy(attempts=1), timeout=3)
        remote = client.manifest(ref.path, tag)
        if remote is None:
            return None
        say(f"{repository}:{tag} is in the registry ({remote.digest}); pulling it")
        auth = acc.creds.auth_config() if acc.creds else None
        image_id = str(engine.pull_ref(f"{ref.name}@{remote.digest}", auth_config=auth))
    except (RegistryError, UsageError) as exc:
        say(f"registry {ref.registry} not checked: {exc.message}")
        return None
    labels = dict((engine.inspect(image_id).get("Config") or {}).get("Labels") or {})
    if labels.get(CONTENT_LABEL) != tag:  # a moved content tag: never trust it
        say(f"{repository}:{tag} in the registry carries content {labels.get(CONTENT_LABEL)!r}; building instead")
        return None
    return image_id


@dataclass(frozen=True)
class Pulled:
    record: ImageRecord
    image_id: str
    spec: ResolvedSpec
    size_bytes: int


def engine_platform(engine: Engine) -> str:
    """os/arch of the engine: the platform its containers run natively."""
    version = engine.version()
    return f"{version.get('Os') or 'linux'}/{version.get('Arch') or 'amd64'}"


def pull_recorded(
    engine: Engine,
    recipe: Path,
    *,
    platform: str | None = None,
    registry_ca: str | Path | None = None,
    say: Say = lambda _: None,
    on_progress: ProgressSink | None = None,
) -> Pulled:
    """`mlbuild pull RECIPE`: pull exactly the image the recipe's record names, by digest;
    check its labels against the record and against the recipe as it resolves now; give it
    the record's tags.

    A multi-platform record names an index and each platform's own manifest: the image of
    `platform` (default: the engine's own) is pulled by its own manifest digest, so that the
    engine cannot pick another platform's image and the pull itself checks that digest."""
    record = read_record(recipe)
    wanted = platform or (engine_platform(engine) if record.platforms else record.platform)
    if record.platforms:
        record = record.for_platform(wanted)  # clear error when the record has no such entry
    elif platform and record.platform and platform != record.platform:
        raise UsageError(
            f"--platform {platform}: the record of {recipe} names one image, for {record.platform}",
            hint="push the recipe with `platforms:` listing both, or leave out --platform",
        )
    base = str(record.spec.get("base_image") or "") or None
    _, expected = load_and_resolve(recipe, base)  # the same base as the build: compare the rest
    if record.platforms:
        expected = next(s for s in resolve_platforms(load_recipe(recipe)) if s.platform == wanted)
    ref = parse_reference(record.repository)
    acc = access_for(ref.registry, registry_ca)
    pull_ref = record.platform_reference
    say(f"pulling {record.reference}" + (f" for {wanted} ({pull_ref})" if record.platforms else ""))
    auth = acc.creds.auth_config() if acc.creds else None
    try:
        image_id = engine.pull_ref(pull_ref, auth_config=auth, on_progress=on_progress)
    except RegistryError as exc:
        if any(w in " ".join(exc.details).lower() for w in ("unauthorized", "authentication required")):
            raise auth_error(ref.registry, acc.creds) from None
        raise
    attrs = engine.inspect(image_id)
    labels = dict((attrs.get("Config") or {}).get("Labels") or {})
    problems = check_labels(labels, record, expected.to_dict())
    if record.image_id and image_id != record.image_id:
        problems.append(f"image ID {image_id}, the record says {record.image_id}")
    if record.platforms and platform_of(attrs) != wanted:
        problems.append(f"the image is for {platform_of(attrs)}, the record's entry for {wanted}")
    if problems:
        raise RegistryError(
            f"the image {pull_ref} does not match {recipe}",
            details=problems,
            hint="the recipe changed since the push: rebuild and push, or use the recipe's "
            "version from when the record was written",
        )
    for tag in record.tags:
        engine.tag(image_id, record.repository, tag)
    spec = ResolvedSpec.from_labels(labels)
    assert spec is not None  # check_labels found the label
    return Pulled(record, image_id, spec, int(attrs.get("Size") or 0))
