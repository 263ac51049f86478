"""The image record: `<recipe stem>.image.json`, the exact image a recipe was pushed as.

After a push, mlbuild writes it next to the recipe (for `recipes/train.yaml`:
`recipes/train.image.json`), so that the recipe names the exact image::

    {"schema": 1, "repository": "registry.example.com/team/train",
     "digest": "sha256:...", "reference": "registry.example.com/team/train@sha256:...",
     "tags": ["sklearn1.5.2-py3.11-cpu", "spec-0123456789abcdef"],
     "content_tag": "spec-0123456789abcdef", "image_id": "sha256:...", "platform": "linux/amd64",
     "spec": {"name": ..., "framework": ..., ...}, "spec_digest": "...", "mlbuild_version": ...}

It is written atomically (a temporary file, then a rename) and never holds credentials. Commit
it with the recipe; `mlbuild pull RECIPE` pulls `reference` by digest and checks the image's
labels against it and against the recipe (`check_labels`). builder.publish writes it.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builder.errors import RegistryError
from builder.fileio import write_atomic
from builder.labels import CONTENT_LABEL, SPEC_LABEL
from builder.spec import ResolvedSpec

RECORD_SUFFIX = ".image.json"
RECORD_SCHEMA = 1
PLATFORM_FIELDS = ("platform", "digest", "content_tag", "image_id", "spec_digest")


@dataclass(frozen=True)
class PlatformImage:
    """One platform's image behind a multi-platform record's index."""

    platform: str  # linux/arm64
    digest: str  # its own manifest
    content_tag: str
    image_id: str
    spec_digest: str

    def to_dict(self) -> dict[str, str]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class ImageRecord:
    repository: str
    digest: str
    tags: tuple[str, ...]
    content_tag: str
    image_id: str
    platform: str
    spec: dict[str, Any]  # a summary of the resolved spec, for people and for checks
    spec_digest: str
    mlbuild_version: str = ""
    schema: int = RECORD_SCHEMA
    # several platforms under one tag: `digest` is the index's; the top-level content tag,
    # image ID and spec are the first platform's, each platform's own are here
    platforms: tuple[PlatformImage, ...] = ()

    @property
    def reference(self) -> str:
        return f"{self.repository}@{self.digest}"

    @property
    def platform_reference(self) -> str:
        """The image of `platform` itself: behind an index, its own manifest's digest."""
        entry = next((p for p in self.platforms if p.platform == self.platform), None)
        return f"{self.repository}@{entry.digest}" if entry else self.reference

    def for_platform(self, platform: str) -> ImageRecord:
        """The record as one platform's image must match it (itself, for one platform)."""
        if not self.platforms:
            return self
        entry = next((p for p in self.platforms if p.platform == platform), None)
        if entry is None:
            have = ", ".join(p.platform for p in self.platforms)
            raise RegistryError(
                f"the record names no image for {platform}",
                details=[f"it has: {have}"],
                hint=f"pick one of them with --platform, or build and push the recipe for {platform} too",
            )
        return dataclasses.replace(
            self,
            content_tag=entry.content_tag,
            image_id=entry.image_id,
            platform=entry.platform,
            spec_digest=entry.spec_digest,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "repository": self.repository,
            "digest": self.digest,
            "reference": self.reference,
            "tags": list(self.tags),
            "content_tag": self.content_tag,
            "image_id": self.image_id,
            "platform": self.platform,
            "spec": self.spec,
            "spec_digest": self.spec_digest,
            "mlbuild_version": self.mlbuild_version,
            **({"platforms": [p.to_dict() for p in self.platforms]} if self.platforms else {}),
        }


SUMMARY_FIELDS = (
    "name",
    "framework",
    "framework_version",
    "python",
    "cuda",
    "cudnn",
    "variant",
    "base_image",
    "min_driver",
    "archs",
    "packages",
    "system_packages",
)


def spec_summary(spec_dict: dict[str, Any]) -> dict[str, Any]:
    return {k: spec_dict.get(k) for k in SUMMARY_FIELDS}


def record_path(recipe: str | Path) -> Path:
    p = Path(recipe)
    return p.with_name(p.stem + RECORD_SUFFIX)


def write_record(path: Path, record: ImageRecord) -> None:
    write_atomic(path, json.dumps(record.to_dict(), indent=2, sort_keys=True) + "\n")


def read_record(recipe: str | Path) -> ImageRecord:
    path = record_path(recipe)
    if not path.is_file():
        raise RegistryError(
            f"no image record for {recipe}: {path} does not exist",
            hint=f"whoever built the image runs `mlbuild build {recipe} --push` (or `mlbuild push "
            f"IMAGE --recipe {recipe}`) and commits {path.name} next to the recipe",
        )
    try:
        doc = json.loads(path.read_text())
        return ImageRecord(
            repository=str(doc["repository"]),
            digest=str(doc["digest"]),
            tags=tuple(str(t) for t in doc.get("tags") or ()),
            content_tag=str(doc["content_tag"]),
            image_id=str(doc.get("image_id") or ""),
            platform=str(doc.get("platform") or ""),
            spec=dict(doc.get("spec") or {}),
            spec_digest=str(doc.get("spec_digest") or ""),
            mlbuild_version=str(doc.get("mlbuild_version") or ""),
            schema=int(doc.get("schema") or RECORD_SCHEMA),
            platforms=tuple(
                PlatformImage(**{k: str(e[k]) for k in PLATFORM_FIELDS}) for e in doc.get("platforms") or ()
            ),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise RegistryError(
            f"{path} is not a valid image record",
            details=[f"{type(exc).__name__}: {exc}"],
            hint="push again to rewrite it",
        ) from None


# Fields the recipe decides; the rest (reasons, base observation, versions of mlbuild) may differ.
CHECKED_FIELDS = (
    "name",
    "framework",
    "framework_version",
    "python",
    "cuda",
    "variant",
    "framework_requirement",
    "companions",
    "requirements",
    "system_packages",
    "env",
    "workdir",
    "user",
    "uid",
)


def check_labels(labels: dict[str, str], record: ImageRecord, expected: dict[str, Any] | None) -> list[str]:
    """Pure: what is wrong with a pulled image, against its record and the recipe's resolution."""
    problems = []
    spec = ResolvedSpec.from_labels(labels)
    if spec is None:
        return [f"the image has no {SPEC_LABEL} label: it was not built by mlbuild"]
    if labels.get(CONTENT_LABEL) != record.content_tag:
        problems.append(f"content label {labels.get(CONTENT_LABEL)!r}, the record says {record.content_tag!r}")
    if record.spec_digest and spec.digest() != record.spec_digest:
        problems.append("the image's spec label differs from the one recorded at push time")
    if expected is not None:
        got = spec.to_dict()
        for key in CHECKED_FIELDS:
            want = expected.get(key)
            if key not in expected or want == "from-base":
                continue  # decided by the base at build time
            if got.get(key) != want:
                problems.append(f"{key}: the image has {got.get(key)!r}, the recipe resolves to {want!r}")
    return problems
