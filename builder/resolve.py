"""Resolve a Recipe against the compatibility Matrix into one exact ResolvedSpec.

Order of decisions (deterministic): the newest framework release that matches the recipe and
has some fitting Python and build, then the newest fitting Python, then the newest fitting
CUDA build (or CPU). Every decision leaves a line in `reasons`; every refusal names the
constraint that failed and the nearest valid choices.
"""

from __future__ import annotations

from dataclasses import dataclass

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from builder import __version__
from builder.errors import ResolveError
from builder.matrix import FrameworkData, Matrix, Release, Variant, load_matrix, version_key
from builder.recipe import Recipe
from builder.spec import DEFAULT_UID, ResolvedSpec

FROM_BASE = "from-base"  # placeholder until the base image is observed at build time


@dataclass(frozen=True)
class _Pick:
    release: Release
    python: str
    variant: Variant


def resolve(recipe: Recipe, matrix: Matrix | None = None) -> ResolvedSpec:
    m = matrix or load_matrix()
    if recipe.framework not in m.frameworks:
        raise ResolveError(f"no compatibility data for framework {recipe.framework!r}")
    fw = m.framework(recipe.framework)
    if recipe.framework_from_base:
        return _from_base(recipe, fw, m)
    releases = [r for r in fw.releases if version_matches(r.version, recipe.framework_version)]
    if not releases:
        known = ", ".join(str(r.version) for r in fw.releases[:8])
        raise ResolveError(
            f"no {fw.framework} release matches framework_version {recipe.framework_version!r}",
            details=[f"known {fw.framework} releases (newest first): {known}"],
            hint=f'use framework_version: "{_prefix(fw.releases[0].version)}" or leave it out',
        )
    reasons: list[str] = []
    failures: list[str] = []
    pick: _Pick | None = None
    for rel in releases:
        pick, why = _pick_in_release(rel, recipe, fw, m)
        if pick:
            break
        failures.append(why)
    if pick is None:
        raise ResolveError(
            f"no {fw.framework} build matches {recipe.path}",
            details=failures[:1] + _more(failures),
            hint=_hint(recipe, fw, m, releases),
        )
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
    companions, requirements = _split_companions(recipe, fw, rel, variant, index_url)
    _check_other_frameworks(requirements, variant, fw, m)
    base = m.python_bases.get(python)
    if base is None:
        raise ResolveError(f"no base image is known for Python {python}")
    base_image = recipe.base_image or base.image
    reasons.append(
        f"base: {base_image} "
        + ("(recipe's base_image)" if recipe.base_image else f"(default slim base for Python {python})")
    )
    min_driver = m.min_driver_for(variant.cuda) if variant.cuda else None
    if variant.cuda and min_driver:
        full = m.full_driver_for(variant.cuda)
        reasons.append(
            f"driver: at least {min_driver} (CUDA {variant.cuda.split('.')[0]}.x minor-version "
            f"compatibility); {full} or newer runs CUDA {variant.cuda} without it"
        )
    return ResolvedSpec(
        name=recipe.name,
        framework=fw.framework,
        framework_version=str(rel.version),
        distribution=fw.distribution,
        import_name=fw.import_name,
        python=python,
        cuda=(recipe.cuda if variant.cuda_match == "major" and recipe.cuda else variant.cuda) or "cpu",
        cudnn=variant.cudnn,
        cuda_match=variant.cuda_match,
        variant=variant.name,
        framework_requirement=requirement,
        index_url=index_url,
        companions=companions,
        requirements=requirements,
        base_image=base_image,
        base_os=base.os,
        base_suite=base.suite,
        python_from=base.python_from,
        python_bin=base.python_bin,
        min_driver=min_driver,
        archs=variant.archs,
        **_common(recipe, m, tuple(reasons)),
    )


def _common(recipe: Recipe, m: Matrix, reasons: tuple[str, ...]) -> dict[str, object]:
    return {
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
        "matrix_version": m.version,
        "mlbuild_version": __version__,
    }


def _from_base(recipe: Recipe, fw: FrameworkData, m: Matrix) -> ResolvedSpec:
    """The base image carries the framework: install none; observe it at build time."""
    assert recipe.base_image
    for req in recipe.packages:
        if canonicalize_name(Requirement(req).name) == canonicalize_name(fw.distribution):
            raise ResolveError(
                f"{req!r} would replace the framework that the base image carries",
                hint="remove it from packages, or drop framework_from_base",
            )
    reasons = (
        f"{fw.framework}: taken from the base image {recipe.base_image} (framework_from_base); "
        "its version, CUDA and cuDNN are observed in the base at build time",
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
        requirements=recipe.packages,
        base_image=recipe.base_image,
        base_os="unknown",
        python_from="image",
        python_bin="python3",
        min_driver=None,
        archs=(),
        framework_from_base=True,
        **_common(recipe, m, reasons),
    )


def version_matches(version: Version, wanted: str | None) -> bool:
    """`wanted` is a prefix ("2.4" = 2.4.*) or a PEP 440 specifier set; None matches finals."""
    if wanted is None:
        return not version.is_prerelease
    if wanted[0].isdigit():
        parts = tuple(int(p) for p in wanted.split("."))
        return version.release[: len(parts)] == parts and not version.is_prerelease
    return SpecifierSet(wanted).contains(version)


def _variants_for(rel: Release, recipe: Recipe, m: Matrix) -> tuple[list[Variant], str]:
    """The builds of `rel` that fit the recipe's cuda and GPU fleet, best first, or a reason."""
    cuda_builds = sorted(
        (v for v in rel.variants if v.cuda), key=lambda v: version_key(v.cuda or "0"), reverse=True
    )
    cpu_builds = [v for v in rel.variants if v.is_cpu]
    fleet = recipe.gpu
    if recipe.cuda == "cpu":
        if fleet.min_driver or fleet.archs:
            return [], "cuda: \"cpu\" and a gpu: fleet contradict each other"
        return cpu_builds, "" if cpu_builds else f"{_name(rel)} has no CPU build"
    offered = ", ".join(sorted({v.cuda or "" for v in cuda_builds}, key=version_key))
    if recipe.cuda:
        cuda_builds = [v for v in cuda_builds if cuda_fits(v, recipe.cuda)]
        if not cuda_builds:
            if not offered:
                return [], f"{_name(rel)} has no CUDA builds (CPU only); you asked for CUDA {recipe.cuda}"
            return [], f"{_name(rel)} offers CUDA {offered}; you asked for {recipe.cuda}"
    fitting: list[Variant] = []
    refusals: list[str] = []
    for v in cuda_builds:
        assert v.cuda
        floor = m.min_driver_for(v.cuda)
        if fleet.min_driver and floor and version_key(fleet.min_driver) < version_key(floor):
            refusals.append(
                f"{_name(rel)} {v.name} needs driver >= {floor}; your fleet has {fleet.min_driver}"
            )
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


def cuda_fits(v: Variant, wanted: str) -> bool:
    assert v.cuda
    if v.cuda_match == "major":
        return (
            wanted.split(".")[0] == v.cuda.split(".")[0]
            and version_key(wanted) >= version_key(v.cuda)
        )
    return v.cuda == wanted


def _pick_in_release(
    rel: Release, recipe: Recipe, fw: FrameworkData, m: Matrix
) -> tuple[_Pick | None, str]:
    variants, why = _variants_for(rel, recipe, m)
    if not variants:
        return None, why
    pythons = sorted(rel.python, key=version_key, reverse=True)
    if recipe.python:
        if recipe.python not in pythons:
            return None, (
                f"{_name(rel)} supports Python {_span(rel.python)}; you asked for {recipe.python}"
            )
        pythons = [recipe.python]
    pythons = [p for p in pythons if p in m.python_bases]
    for python in pythons:
        for v in variants:
            if python in rel.pythons_for(v):
                return _Pick(rel, python, v), ""
    names = ", ".join(v.name for v in variants)
    return None, f"{_name(rel)} has no {names} build for Python {', '.join(pythons) or '?'}"


def _split_companions(
    recipe: Recipe, fw: FrameworkData, rel: Release, variant: Variant, index_url: str | None
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Pin companions (torchvision ...) to the release; keep the other packages as written."""
    paired = dict(rel.companions)
    companions: list[str] = []
    others: list[str] = []
    for text in recipe.packages:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        if name == canonicalize_name(fw.distribution):
            raise ResolveError(
                f"packages: {text!r} names the framework itself",
                hint=f'choose its version with framework_version: "{rel.version}" instead',
            )
        if name not in {canonicalize_name(c) for c in fw.companions}:
            others.append(text)
            continue
        version = next((v for k, v in paired.items() if canonicalize_name(k) == name), None)
        if version is None:
            raise ResolveError(
                f"packages: no {req.name} release is known to pair with {fw.framework} {rel.version}"
            )
        if req.specifier and not req.specifier.contains(version, prereleases=True):
            raise ResolveError(
                f"packages: {text!r} does not match {fw.framework} {rel.version}",
                hint=f"{fw.framework} {rel.version} pairs with {req.name}=={version}; "
                "write it without a version to have it paired",
            )
        label = f"+{variant.name}" if index_url and fw.local_version_label else ""
        extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
        companions.append(f"{req.name}{extras}=={version}{label}")
    return tuple(companions), tuple(others)


def _check_other_frameworks(
    requirements: tuple[str, ...], variant: Variant, fw: FrameworkData, m: Matrix
) -> None:
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
    return ordered[0] if len(ordered) == 1 else f"{ordered[0]}–{ordered[-1]}"


def _prefix(version: Version) -> str:
    return ".".join(str(p) for p in version.release[:2])


def _more(failures: list[str]) -> list[str]:
    rest = len(failures) - 1
    return [f"(and {rest} older matching release{'s' if rest != 1 else ''} fail likewise)"] if rest > 0 else []


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
                + (f" ({fw.framework} {lo}–{hi} offer CUDA {recipe.cuda})" if lo != hi else "")
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
                if v.cuda
                and version_key(m.min_driver_for(v.cuda) or "0") <= version_key(recipe.gpu.min_driver)
            },
            key=version_key,
        )
        if ok:
            return f'your fleet\'s driver {recipe.gpu.min_driver} runs cuda: "{ok[-1]}" or earlier'
        return "upgrade the fleet's driver, or use an older framework_version"
    return None
