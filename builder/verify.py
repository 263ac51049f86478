"""`mlbuild verify`: rebuild from the lock without cache and compare with an earlier image."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from builder.engine_api import Engine
from builder.errors import UsageError
from builder.imagediff import ImageDiff, diff_images
from builder.labels import BUILDER_LABEL, LOCK_LABEL, SPEC_LABEL
from builder.lock import read_lock
from builder.pipeline import BuildOptions, build
from builder.refs import split_tag
from builder.settings import BuildSettings
from builder.spec import image_spec


@dataclass(frozen=True)
class Verified:
    reference: str
    reference_id: str
    rebuilt_id: str
    diff: ImageDiff | None
    seconds: float

    @property
    def identical(self) -> bool:
        return self.reference_id == self.rebuilt_id


def verify(
    engine: Engine,
    recipe_path: Path,
    *,
    settings: BuildSettings,
    reference: str | None = None,
    network: str | None = None,
    platform: str | None = None,
    say: Callable[[str], None] = lambda _: None,
) -> Verified:
    """Rebuild from the lock without cache and compare with `reference` (default: the newest
    image built from this very lock). The reference keeps its tags whatever the outcome.

    `platform`: which of the lock's platforms (default: the reference image's own, else the
    recipe's first); each platform's entry of the lock is a lock of its own."""
    started = time.monotonic()
    attrs = engine.inspect(reference) if reference is not None else None
    if platform is None and attrs is not None:
        labels = (attrs.get("Config") or {}).get("Labels") or {}
        platform = image_spec(labels, str(reference)).platform if SPEC_LABEL in labels else None
    lock = read_lock(recipe_path).for_platform(platform)
    if attrs is None:
        made = engine.images_with_label(f"{LOCK_LABEL}={lock.digest()}")
        if not made:
            raise UsageError(
                f"no image on this engine was built from {recipe_path.name}'s lock"
                + (f" for {platform}" if platform else ""),
                hint=f"build one first: mlbuild build {recipe_path} --locked"
                + (f" --platform {platform}" if platform else ""),
            )
        reference = str(max(made, key=lambda img: (img.get("Created", 0), img["Id"]))["Id"])
        attrs = engine.inspect(reference)
    ref_id, ref_tags = str(attrs["Id"]), list(attrs.get("RepoTags") or [])
    # The same builder as the reference (its label): a lock gives identical bytes per builder.
    builder = ((attrs.get("Config") or {}).get("Labels") or {}).get(BUILDER_LABEL)
    made_by = f" (the {builder} builder made it)" if builder else ""
    say(f"rebuilding {recipe_path.name} from its lock, without cache, to compare with {reference}{made_by}"
        + (f", for {platform}" if platform else ""))  # fmt: skip
    options = BuildOptions(locked=True, nocache=True, reuse=False, run_smoke=False, network=network, builder=builder,
                           platform=platform)  # fmt: skip
    rebuilt = build(recipe_path, engine=engine, settings=settings, options=options, say=say)
    diff = None
    if rebuilt.image_id != ref_id:
        for ref in ref_tags:  # the rebuild took the tags: give them back
            engine.tag(ref_id, *split_tag(ref))
        diff = diff_images(engine, ref_id, rebuilt.image_id)
    return Verified(str(reference), ref_id, rebuilt.image_id, diff, time.monotonic() - started)
