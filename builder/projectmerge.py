"""A recipe's `packages:` and its `requirements:` file, merged for one resolved framework release.

The framework pin wins: a requirement on the framework distribution must be satisfied by the
release the recipe resolves (and is then left to the framework step, which installs the
resolved build), companions (torchvision ...) are pinned to the release's pairing, and two
requirements on one distribution that no version satisfies together are refused. Every refusal
names both sources. Before a release is chosen, the file's plain framework pins narrow the
releases considered, and its requires-python the Pythons, so a recipe without
framework_version or python follows the project.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from builder.errors import ResolveError
from builder.matrix import FrameworkData, Release
from builder.platforms import LINUX_X86_64, Platform
from builder.projectfiles import Entry, ProjectFileError
from builder.recipe import Recipe
from builder.versionsets import intersects


@dataclass(frozen=True)
class Target:
    """What the merge is for. `release` None: the base image carries the framework."""

    fw: FrameworkData
    release: Release | None
    requirement: str  # the resolved framework requirement, e.g. "jax[cpu]==0.4.30"; "" from the base
    label: str  # local version label of companion pins on a variant index, e.g. "+cu124"
    python: str | None  # None: not known before the build (framework_from_base): all markers hold
    platform: Platform = LINUX_X86_64


@dataclass(frozen=True)
class Merged:
    companions: tuple[str, ...] = ()
    requirements: tuple[str, ...] = ()  # the packages step, as written
    hashed: tuple[tuple[str, str], ...] = ()  # (name==version[; marker], "sha256:... sha256:...")
    constraints: tuple[str, ...] = ()
    sources: tuple[tuple[str, str], ...] = ()  # (requirement, where it came from); with a file only
    reasons: tuple[str, ...] = field(default=())


def merge(recipe: Recipe, t: Target) -> Merged:
    fw, rel = t.fw, t.release
    fw_name = canonicalize_name(fw.distribution)
    companion_names = {canonicalize_name(c) for c in fw.companions}
    entries = [Entry(text, f"packages[{i}]") for i, text in enumerate(recipe.packages)]
    if recipe.requirements is not None:
        skip = frozenset({fw_name, *companion_names})
        try:
            entries += recipe.requirements.select(t.python or "", t.platform, skip)
        except ProjectFileError as exc:
            raise ResolveError(f"requirements: {exc.problems[0]}", details=exc.problems[1:]) from None
    env = t.platform.marker_environment(t.python) if t.python else None

    def holds(e: Entry) -> bool:
        return e.parsed.marker is None or env is None or e.parsed.marker.evaluate(env)

    companions: dict[str, tuple[str, str]] = {}
    kept: list[Entry] = []
    reasons: list[str] = []
    for e in entries:
        req = e.parsed
        from_recipe = e.source.startswith("packages[")
        active = holds(e)
        if e.name == fw_name:
            if from_recipe:
                hint = f'choose its version with framework_version: "{rel.version}" instead' if rel else None
                raise ResolveError(f"{e.source}: {e.requirement!r} names the framework itself", hint=hint)
            if active:
                reasons.append(_framework_kept(e, t))
            continue
        if rel is not None and e.name in companion_names:
            if active and not e.constraint:
                pin = _companion(e, req, t, rel)
                companions.setdefault(e.name, (pin, e.source))
            continue
        kept.append(e)
    _check_conflicts([e for e in kept if holds(e)])
    pins = [pin for pin, _ in companions.values()]
    sources = [(pin, src) for pin, src in companions.values()]
    sources += [(e.requirement, e.source) for e in kept]
    return Merged(
        companions=tuple(pins),
        requirements=tuple(e.requirement for e in kept if not e.hashes and not e.constraint),
        hashed=tuple((e.requirement, " ".join(e.hashes)) for e in kept if e.hashes),
        constraints=tuple(e.requirement for e in kept if e.constraint),
        sources=tuple(sources) if recipe.requirements is not None else (),
        reasons=tuple(reasons) + _summary(recipe, kept),
    )


def _framework_kept(e: Entry, t: Target) -> str:
    """A file's requirement on the framework: satisfied by the resolved release, or refused."""
    fw, rel = t.fw, t.release
    if rel is None:
        return f"{e.requirement} ({e.source}): left to the framework of the base image"
    if not e.parsed.specifier.contains(rel.version, prereleases=True):
        raise ResolveError(
            f"{e.source} asks {e.requirement}; the recipe resolves {fw.framework} {rel.version}",
            hint=f'make them agree: framework_version: "{_version_hint(e)}" in the recipe, or change the file',
        )
    wanted = set(e.parsed.extras) - set(Requirement(t.requirement).extras)
    if wanted:
        raise ResolveError(
            f"{e.source} asks {e.requirement}; the recipe resolves {t.requirement} (without "
            f"{', '.join(sorted(wanted))})",
            hint="the recipe's cuda: chooses the framework's build; drop the extra from the file",
        )
    return f"{e.requirement} ({e.source}): the framework step installs {t.requirement}"


def _companion(e: Entry, req: Requirement, t: Target, rel: Release) -> str:
    """Pin a companion (torchvision ...) to the release's pairing."""
    fw = t.fw
    version = next((v for k, v in rel.companions if canonicalize_name(k) == e.name), None)
    if version is None:
        raise ResolveError(f"{e.source}: no {req.name} release is known to pair with {fw.framework} {rel.version}")
    if req.specifier and not req.specifier.contains(version, prereleases=True):
        raise ResolveError(
            f"{e.source} asks {e.requirement}, which does not match {fw.framework} {rel.version}",
            hint=f"{fw.framework} {rel.version} pairs with {req.name}=={version}; "
            "write it without a version to have it paired",
        )
    extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
    return f"{req.name}{extras}=={version}{t.label}"


def _check_conflicts(entries: list[Entry]) -> None:
    """Two requirements on one distribution that no version satisfies together."""
    by_name: dict[str, list[Entry]] = {}
    for e in entries:
        by_name.setdefault(e.name, []).append(e)
    for same in by_name.values():
        for a, b in combinations(same, 2):
            if not intersects(a.parsed.specifier, b.parsed.specifier):
                raise ResolveError(
                    f"{a.source} asks {a.requirement} and {b.source} asks {b.requirement}: no version satisfies both",
                    hint="make them agree, or drop one of them",
                )


def _summary(recipe: Recipe, kept: list[Entry]) -> tuple[str, ...]:
    project = recipe.requirements
    if project is None:
        return ()
    n = sum(1 for e in kept if not e.source.startswith("packages["))
    hashed = sum(1 for e in kept if e.hashes)
    how = f", {hashed} installed by hash in their own step" if hashed else ""
    return (f"requirements: {n} from {project.shown}{how}",)


def _version_hint(e: Entry) -> str:
    pins = [s.version for s in e.parsed.specifier if s.operator == "=="]
    return pins[0] if pins else str(e.parsed.specifier)


# -- before a release is chosen ------------------------------------------------------------------
def narrow_releases(recipe: Recipe, fw: FrameworkData, releases: list[Release]) -> list[Release]:
    """The releases that the file's plain (marker-less) framework and companion pins allow."""
    project = recipe.requirements
    if project is None:
        return releases
    fw_name = canonicalize_name(fw.distribution)
    names: set[str] = {fw_name, *(canonicalize_name(c) for c in fw.companions)}
    for e in project.framework_entries(names):
        narrowed = [r for r in releases if _release_fits(r, e, fw_name)]
        if not narrowed:
            among = f"matching framework_version {recipe.framework_version!r}" if recipe.framework_version else "known"
            known = ", ".join(str(r.version) for r in releases[:8])
            raise ResolveError(
                f"{e.source} asks {e.requirement}; no {fw.framework} release {among} fits it",
                details=[f"{fw.framework} releases considered (newest first): {known}"],
                hint="change framework_version or the file so that they agree",
            )
        releases = narrowed
    return releases


def _release_fits(r: Release, e: Entry, fw_name: str) -> bool:
    spec = e.parsed.specifier
    if e.name == fw_name:
        return spec.contains(r.version, prereleases=True)
    paired = next((v for k, v in r.companions if canonicalize_name(k) == e.name), None)
    return paired is not None and spec.contains(paired, prereleases=True)


def check_python(recipe: Recipe) -> None:
    project = recipe.requirements
    if project is not None and recipe.python and not project.allows_python(recipe.python):
        raise ResolveError(
            f"python: {recipe.python!r} is outside requires-python {project.requires_python} of {project.shown}",
            hint="choose a python: that the project supports, or leave python: out",
        )


def python_fits(recipe: Recipe, python: str) -> bool:
    return recipe.requirements is None or recipe.requirements.allows_python(python)
