"""Which of a framework's builds exist for a platform other than linux/amd64, read from the
`platforms:` block of its data file (builder/data/README.md), and the framework as that
platform sees it.

The releases, Pythons, CUDA and cuDNN of a framework file describe its linux/amd64 wheels. For
another platform the file lists, per build (variant), the releases that publish wheels for it,
what the default index's own wheel is there, and a requirement where the project is named
differently. Everything else is taken from the amd64 rows; GPU architectures are not (the
kernels of an aarch64 wheel were not read), so a gpu.archs fleet is refused there rather than
promised.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import Version

from builder.platforms import DEFAULT_PLATFORM, PLATFORMS

Spans = tuple[SpecifierSet, ...]  # releases (any of these specifier sets)


@dataclass(frozen=True)
class PlatformBuilds:
    platform: str  # linux/arm64
    variants: tuple[tuple[str, Spans], ...]  # variant name -> releases with wheels for it
    defaults: tuple[tuple[SpecifierSet, str], ...] = ()  # releases -> the default index's build
    requirements: tuple[tuple[str, str], ...] = ()  # variant -> requirement template here
    note: str = ""  # why builds are missing, shown in refusals
    sources: tuple[dict[str, str], ...] = ()

    def spans(self, variant: str) -> Spans:
        return dict(self.variants).get(variant, ())

    def default_for(self, version: Version) -> str | None:
        return next((v for spec, v in self.defaults if spec.contains(version, prereleases=True)), None)


def read_platforms(doc: dict[str, Any], problems: list[str]) -> tuple[PlatformBuilds, ...]:
    """The file's `platforms:` block; problems name the field, the value and what is allowed."""
    block = doc.get("platforms") or {}
    if not isinstance(block, dict):
        problems.append(f"platforms: {block!r} is not a mapping of platform to its builds")
        return ()
    out = []
    for name, body in block.items():
        where = f"platforms.{name}"
        if name not in PLATFORMS or name == DEFAULT_PLATFORM.name:
            others = ", ".join(p for p in PLATFORMS if p != DEFAULT_PLATFORM.name)
            problems.append(f"{where}: not a platform this block describes (one of: {others})")
            continue
        if not isinstance(body, dict) or set(body) - {"variants", "default_variant", "requirements", "note", "sources"}:
            problems.append(f"{where}: expected a mapping of variants, default_variant, requirements, note, sources")
            continue
        variants = tuple(
            (str(v), tuple(_spec(s, f"{where}.variants.{v}", problems) for s in _list(spans)))
            for v, spans in (body.get("variants") or {}).items()
        )
        defaults = tuple(
            (_spec(s, f"{where}.default_variant", problems), str(v))
            for s, v in (body.get("default_variant") or {}).items()
        )
        requirements = tuple(sorted((str(k), str(v)) for k, v in (body.get("requirements") or {}).items()))
        for v, req in requirements:
            if "{version}" not in req:
                problems.append(f"{where}.requirements.{v}: {req!r} lacks {{version}}")
        out.append(
            PlatformBuilds(
                platform=str(name),
                variants=variants,
                defaults=defaults,
                requirements=requirements,
                note=str(body.get("note") or ""),
                sources=tuple(body.get("sources") or ()),
            )
        )
    return tuple(out)


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _spec(text: Any, where: str, problems: list[str]) -> SpecifierSet:
    try:
        return SpecifierSet(str(text))
    except InvalidSpecifier:
        problems.append(f'{where}: {text!r} is not a PEP 440 specifier set such as ">=2.9,<2.12"')
        return SpecifierSet()


def releases_for(builds: PlatformBuilds | None, releases: tuple[Any, ...]) -> tuple[Any, ...]:
    """The releases (builder.matrix.Release) as `builds`' platform has them: only the variants
    with wheels there, its own default build and requirements, no recorded GPU architectures.
    None (the file says nothing about the platform): no releases."""
    if builds is None:
        return ()
    out = []
    requirements = dict(builds.requirements)
    for rel in releases:
        variants = tuple(
            dataclasses.replace(v, archs=(), requirement=requirements.get(v.name, v.requirement))
            for v in rel.variants
            if any(s.contains(rel.version, prereleases=True) for s in builds.spans(v.name))
        )
        if variants:
            out.append(dataclasses.replace(rel, variants=variants, default_variant=builds.default_for(rel.version)))
    return tuple(out)
