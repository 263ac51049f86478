"""Resolve a Recipe against the compatibility Matrix into one exact ResolvedSpec.

Order of decisions (deterministic): the newest framework release that matches the recipe and
has some fitting Python and build, then the newest fitting Python, then the newest fitting
CUDA build (or CPU). Every decision leaves a line in `reasons`; every refusal names the
constraint that failed and the nearest valid choices.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from builder.errors import ResolveError
from builder.matrix import CudaArchEnv, FrameworkData, Matrix, Release, Variant, load_matrix, version_key
from builder.platforms import DEFAULT_PLATFORM, Platform, platform_named
from builder.projectmerge import Target, check_python, merge, narrow_releases, python_fits
from builder.recipe import Recipe, check_image_ref, load_recipe
from builder.spec import DEFAULT_UID, ResolvedSpec
from builder.version import __version__

DASH = "\u2013"  # en dash, for spans of versions such as 3.9 to 3.13
FROM_BASE = "from-base"  # placeholder until the base image is observed at build time


@dataclass(frozen=True)
class _Pick:
    release: Release
    python: str
    variant: Variant


def load_and_resolve(path: str | Path, base_image: str | None = None) -> tuple[Recipe, ResolvedSpec]:
    """Load a recipe file (with an optional --base-image override) and resolve it."""
    recipe = load_recipe(path)
    if base_image:
        recipe = dataclasses.replace(recipe, base_image=check_image_ref(base_image, "--base-image"))
    return recipe, resolve(recipe)


def resolve(recipe: Recipe, matrix: Matrix | None = None, platform: str | None = None) -> ResolvedSpec:
    """The spec for one of the recipe's platforms (its first when `platform` is None)."""
    name = platform or recipe.platforms[0]
    m = (matrix or load_matrix()).on(name)
    if name == DEFAULT_PLATFORM.name:
        return _resolve(recipe, m, DEFAULT_PLATFORM)
    try:
        return _resolve(recipe, m, platform_named(name))
    except ResolveError as exc:
        builds = m.framework(recipe.framework).builds_for(name) if recipe.framework in m.frameworks else None
        note = [builds.note] if builds and builds.note else []
        hint = exc.hint or f"choose what {name} offers (above), or leave {name} out of platforms:"
        raise ResolveError(f"on {name}: {exc.message}", details=exc.details + note, hint=hint) from None


def resolve_platforms(
    recipe: Recipe, matrix: Matrix | None = None, platforms: tuple[str, ...] = ()
) -> tuple[ResolvedSpec, ...]:
    """One spec per platform, of one framework release and one Python: the images share a tag.

    Each platform is resolved alone first; when they disagree, the oldest framework release
    (then the oldest Python) of the picks is asked of all of them, so the newest that every
    platform has wins. A refusal names the platform that cannot have it.
    """
    names = platforms or recipe.platforms
    specs = [resolve(recipe, matrix, n) for n in names]
    releases = {s.framework_version for s in specs}
    if len(releases) > 1 and FROM_BASE not in releases:
        oldest = min(releases, key=Version)
        recipe = dataclasses.replace(recipe, framework_version=f"=={oldest}")
        specs = _agreed(recipe, matrix, names, f"framework_version {oldest}")
    pythons = {s.python for s in specs}
    if len(pythons) > 1 and FROM_BASE not in pythons:
        oldest = min(pythons, key=version_key)
        specs = _agreed(dataclasses.replace(recipe, python=oldest), matrix, names, f"python {oldest}")
    return tuple(specs)


def _agreed(recipe: Recipe, matrix: Matrix | None, names: tuple[str, ...], what: str) -> list[ResolvedSpec]:
    why = f"{what}: the newest that all of {', '.join(names)} have"
    return [dataclasses.replace(s, reasons=(*s.reasons, why)) for s in (resolve(recipe, matrix, n) for n in names)]


def _resolve(recipe: Recipe, m: Matrix, platform: Platform) -> ResolvedSpec:
    if recipe.framework not in m.frameworks:
        raise ResolveError(f"no compatibility data for framework {recipe.framework!r}")
    fw = m.framework(recipe.framework)
    if recipe.framework_from_base:
        return _from_base(recipe, fw, m, platform)
    if not fw.releases:
        raise ResolveError(f"{fw.framework} has no builds for {platform.name} on file")
    releases = [r for r in fw.releases if version_matches(r.version, recipe.framework_version)]
    if not releases:
        known = ", ".join(str(r.version) for r in fw.releases[:8])
        raise ResolveError(
            f"no {fw.framework} release matches framework_version {recipe.framework_version!r}",
            details=[f"known {fw.framework} releases (newest first): {known}"],
            hint=f'use framework_version: "{_prefix(fw.releases[0].version)}" or leave it out',
        )
    releases = narrow_releases(recipe, fw, releases)
    check_python(recipe)
    reasons: list[str] = []
    failures: list[str] = []
    pick: _Pick | None = None
    for rel in releases:
        pick, why = _pick_in_release(rel, recipe, fw, m)
        if pick:
            break
        failures.append(why)
    if pick is None:
        raise _impossible(recipe, fw, m, releases, failures)
    rel, variant, python = pick.release, pick.variant, pick.python
    reasons.append(_why_release(fw, rel, recipe, releases))
    reasons.append(
        f"python {python}: "
        + (
            "asked for in the recipe"
            if recipe.python
            else f"newest of {_span(rel.pythons_for(variant))} that {fw.framework} {rel.version} supports"
        )
    )
    reasons.append(_why_variant(variant, recipe, rel))
    index_url = None if variant.name == rel.default_variant else fw.index_for(variant.name)
    requirement = variant.requirement.format(version=str(rel.version))
    if index_url and fw.local_version_label:
        requirement += f"+{variant.name}"
    if index_url:
        reasons.append(f"index: {variant.name} builds come from {index_url}")
    elif variant.name == rel.default_variant:
        reasons.append(f"index: the default index's {fw.distribution} {rel.version} is the {variant.name} build")
    label = f"+{variant.name}" if index_url and fw.local_version_label else ""
    merged = merge(recipe, Target(fw, rel, requirement, label, python, platform))
    reasons += merged.reasons
    _check_other_frameworks(merged.requirements + tuple(pin for pin, _ in merged.hashed), variant, fw, m)
    cuda = (recipe.cuda if variant.cuda_match == "major" and recipe.cuda else variant.cuda) or "cpu"
    base = _base_for(recipe, python, cuda, m, reasons, platform)
    min_driver = m.min_driver_for(variant.cuda) if variant.cuda else None
    if variant.cuda and min_driver:
        full = m.full_driver_for(variant.cuda)
        reasons.append(
            f"driver: at least {min_driver} (CUDA {variant.cuda.split('.')[0]}.x minor-version "
            f"compatibility); {full} or newer runs CUDA {variant.cuda} without it"
        )
    # devel: extensions compile for the build's archs, through the variable the framework reads
    arch_env = fw.cuda_arch_env if recipe.variant == "devel" else None
    return ResolvedSpec(
        name=recipe.name,
        framework=fw.framework,
        framework_version=str(rel.version),
        distribution=fw.distribution,
        import_name=fw.import_name,
        python=python,
        cuda=cuda,
        cudnn=variant.cudnn,
        cuda_match=variant.cuda_match,
        variant=variant.name,
        framework_requirement=requirement,
        index_url=index_url,
        companions=merged.companions,
        requirements=merged.requirements,
        hashed_requirements=merged.hashed,
        requirement_constraints=merged.constraints,
        requirement_sources=merged.sources,
        base_image=base.image,
        base_os=base.os,
        base_suite=base.suite,
        python_from=base.python_from,
        python_bin=base.python_bin,
        min_driver=min_driver,
        archs=variant.archs,
        shape=recipe.variant,
        devel_image=base.devel_image,
        build_packages=recipe.build_packages,
        cuda_arch_env=arch_env.name if arch_env else "",
        cuda_arch_list=cuda_arch_list(variant.archs, arch_env) if arch_env else "",
        uv_image=m.uv_image if base.python_from == "standalone" else None,
        **_common(recipe, m, tuple(reasons), platform),
    )


@dataclass(frozen=True)
class _Base:
    image: str
    os: str
    suite: str | None
    python_from: str  # distro | image | standalone
    python_bin: str
    devel_image: str | None = None


def _base_for(recipe: Recipe, python: str, cuda: str, m: Matrix, reasons: list[str], platform: Platform) -> _Base:
    """The base of the image's shape, and how Python gets there.

    runtime: a slim OS base with Python; CUDA comes from the framework's wheels.
    cuda-runtime / devel: NVIDIA's CUDA base of the resolved CUDA release; Python from the OS
    when it ships the requested version, else a standalone CPython installed with uv.
    """
    if recipe.variant == "runtime":
        pb = m.python_bases.get(python)
        if pb is None:
            raise ResolveError(f"no base image is known for Python {python}")
        image = recipe.base_image or pb.image
        why = "recipe's base_image" if recipe.base_image else f"default slim base for Python {python}"
        reasons.append(f"base: {image} ({why})")
        return _Base(image, pb.os, pb.suite, pb.python_from, pb.python_bin)
    if not platform.is_default:
        raise ResolveError(
            f"variant: {recipe.variant} needs an NVIDIA CUDA base image for {platform.name}; "
            "bases.yaml records them for linux/amd64 only",
            hint="use variant: runtime (CUDA then comes from the framework's wheels), "
            f"or build {recipe.variant} for linux/amd64 alone",
        )
    if cuda == "cpu":
        raise ResolveError(
            f"variant: {recipe.variant} is for CUDA builds; this recipe resolves to a CPU build",
            hint="use variant: runtime (the default), or ask for a cuda: version",
        )
    cb = m.cuda_bases.get(cuda)
    if cb is None:
        have = ", ".join(sorted(m.cuda_bases, key=version_key))
        raise ResolveError(
            f"no NVIDIA CUDA base image is known for CUDA {cuda}",
            details=[f"CUDA bases known: {have}"],
            hint=f"use cuda: one of those with variant: {recipe.variant}, or variant: runtime",
        )
    image = recipe.base_image or cb.runtime
    reasons.append(f"base: {image} (NVIDIA CUDA {cb.full} cuDNN {cb.cudnn or '-'} runtime, {cb.os})")
    if recipe.variant == "devel":
        reasons.append(f"devel stage: {cb.devel} (nvcc; compiled wheels are copied, the compiler is not)")
    if m.os_python.get(cb.os) == python:
        reasons.append(f"python {python}: {cb.os}'s own python3")
        return _Base(image, cb.os, None, "distro", f"/usr/bin/python{python}", cb.devel)
    reasons.append(f"python {python}: {cb.os} ships {m.os_python.get(cb.os, '?')}, so a standalone CPython from uv")
    # uv makes the venv itself (its Python's folder name carries the patch release)
    return _Base(image, cb.os, None, "standalone", "/usr/local/bin/uv", cb.devel)


def cuda_arch_list(archs: tuple[str, ...], env: CudaArchEnv) -> str:
    """sm_80, sm_90 -> "8.0;9.0" with the format "{major}.{minor}" and the separator ";"."""
    out = []
    for a in archs:
        digits = a.removeprefix("sm_").rstrip("abcdefghijklmnopqrstuvwxyz")
        out.append(env.format.format(major=digits[:-1], minor=digits[-1]))
    return env.separator.join(out)


def _common(recipe: Recipe, m: Matrix, reasons: tuple[str, ...], platform: Platform) -> dict[str, Any]:
    if not platform.is_default:
        reasons += (f"platform: {platform.name} (Python packages chosen for linux {platform.machine})",)
    return {
        "platform": platform.name,
        "system_packages": recipe.system_packages,
        "env": recipe.env,
        "files": tuple((f.src, f.dest) for f in recipe.files),
        "workdir": recipe.workdir,
        "user": recipe.user,
        "uid": 0 if recipe.user == "root" else DEFAULT_UID,
        "smoke_gpu": recipe.smoke.gpu,
        "smoke_run": recipe.smoke.run,
        "repository": recipe.image.repository or f"mlbuild/{recipe.name}",
        "tags": recipe.image.tags,
        "reasons": reasons,
        "installer": recipe.installer,
        "library_dirs": m.library_dirs,
        "matrix_version": m.version,
        "mlbuild_version": __version__,
    }


def _from_base(recipe: Recipe, fw: FrameworkData, m: Matrix, platform: Platform) -> ResolvedSpec:
    """The base image carries the framework: install none; observe it at build time."""
    assert recipe.base_image
    for req in recipe.packages:
        if canonicalize_name(Requirement(req).name) == canonicalize_name(fw.distribution):
            raise ResolveError(
                f"{req!r} would replace the framework that the base image carries",
                hint="remove it from packages, or drop framework_from_base",
            )
    if recipe.requirements is not None and recipe.requirements.lock is not None and not recipe.python:
        raise ResolveError(
            "a uv.lock is chosen for the image's Python: with framework_from_base, say which one",
            hint='add python: "X.Y" (the Python of the base image)',
        )
    merged = merge(recipe, Target(fw, None, "", "", recipe.python, platform))
    reasons = (
        f"{fw.framework}: taken from the base image {recipe.base_image} (framework_from_base); "
        "its version, CUDA and cuDNN are observed in the base at build time",
        *merged.reasons,
    )
    return ResolvedSpec(
        name=recipe.name,
        framework=fw.framework,
        framework_version=FROM_BASE,
        distribution=fw.distribution,
        import_name=fw.import_name,
        python=recipe.python or FROM_BASE,
        cuda=recipe.cuda or FROM_BASE,
        cudnn=None,
        cuda_match="exact",
        variant=FROM_BASE,
        framework_requirement="",
        index_url=None,
        companions=(),
        requirements=merged.requirements,
        hashed_requirements=merged.hashed,
        requirement_constraints=merged.constraints,
        requirement_sources=merged.sources,
        base_image=recipe.base_image,
        base_os="unknown",
        python_from="image",
        python_bin="python3",
        min_driver=None,
        archs=(),
        framework_from_base=True,
        **_common(recipe, m, reasons, platform),
    )


def version_matches(version: Version, wanted: str | None) -> bool:
    """`wanted` is a prefix ("2.4" = 2.4.*) or a PEP 440 specifier set; None matches finals."""
    if wanted is None:
        return not version.is_prerelease
    if wanted[0].isdigit():
        if not all(p.isdigit() for p in wanted.split(".")):
            return version == Version(wanted)  # an exact release such as "1.4.1.post1"
        parts = tuple(int(p) for p in wanted.split("."))
        return version.release[: len(parts)] == parts and not version.is_prerelease
    return SpecifierSet(wanted).contains(version)


def _variants_for(rel: Release, recipe: Recipe, m: Matrix) -> tuple[list[Variant], str]:
    """The builds of `rel` that fit the recipe's cuda and GPU fleet, best first, or a reason."""
    cuda_builds = sorted((v for v in rel.variants if v.cuda), key=lambda v: version_key(v.cuda or "0"), reverse=True)
    cpu_builds = [v for v in rel.variants if v.is_cpu]
    fleet = recipe.gpu
    if recipe.cuda == "cpu":
        if fleet.min_driver or fleet.archs:
            return [], 'cuda: "cpu" and a gpu: fleet contradict each other'
        return cpu_builds, "" if cpu_builds else f"{_name(rel)} has no CPU build"
    offered = ", ".join(sorted({v.cuda or "" for v in cuda_builds}, key=version_key))
    if recipe.cuda:
        cuda_builds = [v for v in cuda_builds if cuda_fits(v, recipe.cuda)]
        if not cuda_builds:
            if not offered:
                return (
                    [],
                    f"{_name(rel)} has no CUDA builds (CPU only); you asked for CUDA {recipe.cuda}",
                )
            return [], f"{_name(rel)} offers CUDA {offered}; you asked for {recipe.cuda}"
    fitting: list[Variant] = []
    refusals: list[str] = []
    for v in cuda_builds:
        assert v.cuda
        floor = m.min_driver_for(v.cuda)
        if fleet.min_driver and not driver_runs(m, v, fleet.min_driver):
            refusals.append(f"{_name(rel)} {v.name} needs driver ≥ {floor}; your fleet has {fleet.min_driver}")
            continue
        if fleet.archs and not v.archs:
            # unknown is not "all": TF and JAX do not publish a per-wheel arch list we could read
            refusals.append(f"{_name(rel)} {v.name}: its GPU architectures are not recorded")
            continue
        missing = [a for a in fleet.archs if a not in v.archs]
        if missing:
            refusals.append(f"{_name(rel)} {v.name} has no kernels for {', '.join(missing)}")
            continue
        fitting.append(v)
    if fitting:
        return fitting, ""
    if refusals:
        return [], "; ".join(refusals)
    if recipe.cuda is None and not (fleet.min_driver or fleet.archs):
        return cpu_builds, "" if cpu_builds else f"{_name(rel)} has no builds"
    return [], f"{_name(rel)} has no CUDA builds (CPU only)"


def driver_runs(m: Matrix, v: Variant, driver: str) -> bool:
    """A fleet driver runs a CUDA build when it meets the major's minor-version-compat floor."""
    floor = m.min_driver_for(v.cuda) if v.cuda else None
    return floor is None or version_key(driver) >= version_key(floor)


def cuda_fits(v: Variant, wanted: str) -> bool:
    assert v.cuda
    if v.cuda_match == "major":
        return wanted.split(".")[0] == v.cuda.split(".")[0] and version_key(wanted) >= version_key(v.cuda)
    return v.cuda == wanted


def _pick_in_release(rel: Release, recipe: Recipe, fw: FrameworkData, m: Matrix) -> tuple[_Pick | None, str]:
    variants, why = _variants_for(rel, recipe, m)
    if not variants:
        return None, why
    pythons = sorted(rel.python, key=version_key, reverse=True)
    if recipe.python:
        if recipe.python not in pythons:
            return None, (f"{_name(rel)} supports Python {_span(rel.python)}; you asked for {recipe.python}")
        pythons = [recipe.python]
    pythons = [p for p in pythons if p in m.python_bases]
    project = recipe.requirements
    if project is not None and not any(python_fits(recipe, p) for p in pythons):
        return None, (
            f"{_name(rel)} supports Python {_span(rel.python)}; "
            f"{project.shown} has requires-python {project.requires_python}"
        )
    pythons = [p for p in pythons if python_fits(recipe, p)]
    for python in pythons:
        for v in variants:
            if python in rel.pythons_for(v):
                return _Pick(rel, python, v), ""
    names = ", ".join(v.name for v in variants)
    return None, f"{_name(rel)} has no {names} build for Python {', '.join(pythons) or '?'}"


def _check_other_frameworks(requirements: tuple[str, ...], variant: Variant, fw: FrameworkData, m: Matrix) -> None:
    """A second GPU framework in packages must use the same CUDA major, or be refused."""
    if not variant.cuda:
        return
    major = variant.cuda.split(".")[0]
    for text in requirements:
        req = Requirement(text)
        for other in m.frameworks.values():
            if other is fw or canonicalize_name(other.distribution) != canonicalize_name(req.name):
                continue
            majors: set[str] = set()
            for rel in other.releases:
                if req.specifier and not req.specifier.contains(rel.version, prereleases=True):
                    continue
                for v in rel.variants:
                    extras = _extras_of(v.requirement)
                    if v.cuda and extras and extras <= set(req.extras):
                        majors.add(v.cuda.split(".")[0])
            if majors and major not in majors:
                raise ResolveError(
                    f"packages: {text!r} needs CUDA {' or '.join(sorted(majors))}, but "
                    f"{fw.framework} {variant.name} is built for CUDA {variant.cuda}",
                    hint="two GPU frameworks in one image must share one CUDA major: choose "
                    f"the {req.name} extra for CUDA {major}, or a cuda: of the other major",
                )


def _extras_of(requirement_template: str) -> set[str]:
    req = Requirement(requirement_template.format(version="0"))
    return set(req.extras)


def _name(rel: Release) -> str:
    return str(rel.version)


def _span(pythons: tuple[str, ...] | list[str]) -> str:
    ordered = sorted(pythons, key=version_key)
    if not ordered:
        return "none"
    return ordered[0] if len(ordered) == 1 else f"{ordered[0]}{DASH}{ordered[-1]}"


def _prefix(version: Version) -> str:
    return ".".join(str(p) for p in version.release[:2])


def _more(failures: list[str]) -> list[str]:
    rest = len(failures) - 1
    if rest <= 0:
        return []
    return [f"(and {rest} older matching release{'s fail' if rest != 1 else ' fails'} likewise)"]


def _why_release(fw: FrameworkData, rel: Release, recipe: Recipe, matching: list[Release]) -> str:
    wanted = f"matching {recipe.framework_version!r}" if recipe.framework_version else "of all"
    skipped = matching.index(rel)
    note = f"; {skipped} newer release(s) did not fit the other constraints" if skipped else ""
    return f"{fw.framework} {rel.version}: newest release {wanted}{note}"


def _why_variant(v: Variant, recipe: Recipe, rel: Release) -> str:
    if v.is_cpu:
        why = "asked for" if recipe.cuda == "cpu" else "the only kind of build it has"
        return f"build: cpu ({why})"
    src = f"asked for CUDA {recipe.cuda}" if recipe.cuda else "newest CUDA build"
    if recipe.gpu.min_driver or recipe.gpu.archs:
        src += " that the gpu: fleet can run"
    cudnn = f", cuDNN {v.cudnn}" if v.cudnn else ""
    return f"build: {v.name} ({src}; CUDA {v.cuda}{cudnn}; kernels for {', '.join(v.archs) or '?'})"


def _label(fw: FrameworkData, recipe: Recipe, matching: list[Release]) -> str:
    """How the message names the releases considered: "pytorch 2.4.*", "pytorch 2.5.1" ..."""
    wanted = recipe.framework_version
    if wanted and wanted[0].isdigit():
        exact = len(matching) == 1 and str(matching[0].version) == wanted
        return f"{fw.framework} {wanted}" + ("" if exact else ".*")
    if wanted:
        return f"{fw.framework} {wanted}"
    lo, hi = matching[-1].version, matching[0].version
    return f"{fw.framework} {lo}{DASH}{hi}" if lo != hi else f"{fw.framework} {hi}"


def _cudas(variants: list[Variant]) -> list[str]:
    return sorted({v.cuda for v in variants if v.cuda}, key=version_key)


def _all_variants(releases: list[Release], python: str | None = None) -> list[Variant]:
    return [v for r in releases for v in r.variants if python is None or python in r.pythons_for(v)]


def _nearest(wanted: str, offered: list[str]) -> list[str]:
    """The offered values just below and just above `wanted` (one each, where they exist)."""
    key = version_key(wanted)
    below = [o for o in offered if version_key(o) < key]
    above = [o for o in offered if version_key(o) > key]
    return ([below[-1]] if below else []) + ([above[0]] if above else [])


def _releases_with(fw: FrameworkData, ok: Callable[[Release], bool], near: Release, what: str) -> str | None:
    """`framework_version: "X.Y"` nearest to `near` among the final releases where `ok`.

    Nearest by release order, preferring newer ones on a tie; the span of all such releases
    follows in brackets, so the user sees how far the choice reaches.
    """
    found = [r for r in fw.releases if not r.version.is_prerelease and not r.todo and ok(r)]
    if not found:
        return None
    order = [r.version for r in fw.releases]
    at = order.index(near.version)
    best = min(found, key=lambda r: (abs(order.index(r.version) - at), order.index(r.version)))
    lo, hi = found[-1].version, found[0].version
    span = f"{lo}{DASH}{hi}" if lo != hi else str(hi)
    return f'framework_version: "{_prefix(best.version)}" ({fw.framework} {span} {what})'


def _use(options: list[str]) -> str | None:
    return "use " + ", or ".join(options) if options else None


def _impossible(
    recipe: Recipe, fw: FrameworkData, m: Matrix, matching: list[Release], failures: list[str]
) -> ResolveError:
    """Name the constraint that failed and the nearest valid choices.

    The constraints are tried one at a time in the resolver's order (cuda, python, driver,
    archs) over every release that matches framework_version, so the message blames the first
    one that no matching release can meet; when each is fine alone but not together, the
    per-release reasons are shown instead.
    """
    label = _label(fw, recipe, matching)
    details = failures[:1] + _more(failures)
    fleet = recipe.gpu
    variants = _all_variants(matching)
    if recipe.cuda == "cpu":
        if fleet.min_driver or fleet.archs:
            return ResolveError(
                'cuda: "cpu" and a gpu: fleet contradict each other',
                hint="drop gpu:, or ask for a CUDA version (or leave cuda: out)",
            )
        if not any(v.is_cpu for v in variants):
            return ResolveError(
                f"{label} has no CPU build",
                details=details,
                hint=_use(
                    _opt(
                        [
                            _releases_with(
                                fw,
                                lambda r: any(v.is_cpu for v in r.variants),
                                matching[0],
                                "have one",
                            )
                        ]
                    )
                ),
            )
    elif recipe.cuda:
        wanted = recipe.cuda
        offered = _cudas(variants)
        if not any(v.cuda and cuda_fits(v, wanted) for v in variants):
            message = (
                f"{label} offers CUDA {', '.join(offered)}; you asked for {wanted}"
                if offered
                else f"{label} has no CUDA builds (CPU only); you asked for CUDA {wanted}"
            )
            options = [f'cuda: "{c}"' for c in reversed(_nearest(wanted, offered))]
            options += _opt([_releases_with(
                fw, lambda r: any(v.cuda and cuda_fits(v, wanted) for v in r.variants),
                matching[0], f"offer CUDA {wanted}",
            )])  # fmt: skip
            return ResolveError(message, details=details, hint=_use(options))
    if recipe.python:
        py = recipe.python
        pythons = sorted({p for r in matching for p in r.python}, key=version_key)
        if py not in pythons:
            options = [f'python: "{p}"' for p in reversed(_nearest(py, pythons))]
            options += _opt([_releases_with(
                fw, lambda r: py in r.python, matching[0], f"support Python {py}"
            )])  # fmt: skip
            return ResolveError(
                f"{label} supports Python {_span(pythons)}; you asked for {py}",
                details=details,
                hint=_use(options),
            )
    gpu = [
        v for v in _all_variants(matching, recipe.python)
        if v.cuda and (not recipe.cuda or recipe.cuda == "cpu" or cuda_fits(v, recipe.cuda))
    ]  # fmt: skip
    if fleet.min_driver and gpu and not any(driver_runs(m, v, fleet.min_driver) for v in gpu):
        blocked = min(gpu, key=lambda v: version_key(m.min_driver_for(v.cuda or "0") or "0"))
        floor = m.min_driver_for(blocked.cuda or "0")
        runnable = _cudas([
            v for v in _all_variants(matching, recipe.python)
            if v.cuda and driver_runs(m, v, fleet.min_driver)
        ])  # fmt: skip
        arrow = f"cuda {runnable[-1]} or earlier" if runnable else f"no {label} build runs on it"
        options = [f'cuda: "{runnable[-1]}" (or leave cuda: out)'] if runnable else []
        drv = fleet.min_driver
        options += _opt([_releases_with(
            fw, lambda r: any(v.cuda and driver_runs(m, v, drv) for v in r.variants),
            matching[0], "have builds that driver runs",
        )] if not runnable else [])  # fmt: skip
        options.append(f"a fleet driver ≥ {floor}")
        return ResolveError(
            f"{label} {blocked.name} needs driver ≥ {floor}; your fleet has {drv} → {arrow}",
            details=details,
            hint=_use(options),
        )
    if fleet.archs and gpu:
        runs = [v for v in gpu if not fleet.min_driver or driver_runs(m, v, fleet.min_driver)]
        if runs and not any(set(fleet.archs) <= set(v.archs) for v in runs):
            newest = max(runs, key=lambda v: version_key(v.cuda or "0"))
            wanted_archs = ", ".join(fleet.archs)
            if not any(v.archs for v in runs):
                return ResolveError(
                    f"{label} does not record which GPU architectures its {newest.name} wheels "
                    f"cover, so kernels for {wanted_archs} cannot be promised",
                    details=details,
                    hint="drop gpu.archs to resolve without the architecture check",
                )
            missing = [a for a in fleet.archs if a not in newest.archs]
            archs = set(fleet.archs)
            options = _opt([_releases_with(
                fw, lambda r: any(archs <= set(v.archs) for v in r.variants if v.cuda),
                matching[0], f"cover {wanted_archs}",
            )])  # fmt: skip
            return ResolveError(
                f"{label} {newest.name} has no kernels for {', '.join(missing)} "
                f"(its wheels cover {', '.join(newest.archs)})",
                details=details,
                hint=_use(options)
                or f"no {fw.framework} build covers all of {wanted_archs}: "
                "drop some from gpu.archs, or build one image per architecture group",
            )
    return ResolveError(
        f"no {label} build fits all of the recipe's constraints together",
        details=failures[:3] + ([f"(and {len(failures) - 3} more)"] if len(failures) > 3 else []),
        hint=_hint(recipe, fw, m, matching),
    )


def _opt(items: list[str | None]) -> list[str]:
    return [i for i in items if i]


def _hint(recipe: Recipe, fw: FrameworkData, m: Matrix, matching: list[Release]) -> str | None:
    """The nearest valid choices: other values of the field that failed, or other releases."""
    newest = matching[0]
    if recipe.cuda and recipe.cuda != "cpu":
        offered = sorted({v.cuda for v in newest.variants if v.cuda}, key=version_key)
        elsewhere = [r for r in fw.releases if any(v.cuda and cuda_fits(v, recipe.cuda) for v in r.variants)]
        options = []
        if offered:
            options.append(f'cuda: "{offered[-1]}"')
        if elsewhere:
            lo, hi = elsewhere[-1].version, elsewhere[0].version
            options.append(
                f'framework_version: "{_prefix(hi)}"'
                + (f" ({fw.framework} {lo}{DASH}{hi} offer CUDA {recipe.cuda})" if lo != hi else "")
            )
        if options:
            return "use " + ", or ".join(options)
    if recipe.python:
        elsewhere = [r for r in fw.releases if recipe.python in r.python]
        options = [f'python: "{sorted(newest.python, key=version_key)[-1]}"']
        if elsewhere:
            options.append(f'framework_version: "{_prefix(elsewhere[0].version)}"')
        return "use " + ", or ".join(options)
    if recipe.gpu.min_driver:
        ok = sorted(
            {
                v.cuda
                for v in newest.variants
                if v.cuda and version_key(m.min_driver_for(v.cuda) or "0") <= version_key(recipe.gpu.min_driver)
            },
            key=version_key,
        )
        if ok:
            return f'your fleet\'s driver {recipe.gpu.min_driver} runs cuda: "{ok[-1]}" or earlier'
        return "upgrade the fleet's driver, or use an older framework_version"
    return None
