"""Property tests: over recipes drawn from the real data (and a few values outside it), the
resolver answers only with a spec that meets every constraint of the recipe or a ResolveError;
it refuses exactly when no combination exists (checked by brute force); its pick is the newest
release, then the newest Python; and the same recipe always gives the same spec."""

from __future__ import annotations

import dataclasses

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from builder.errors import ResolveError
from builder.matrix import Matrix, Release, Variant, load_matrix, version_key
from builder.recipe import GpuFleet, Recipe
from builder.resolve import cuda_fits, resolve, version_matches

M = load_matrix()
PYTHONS = [*sorted(M.python_bases, key=version_key), "3.8", "3.15"]
CUDAS = [*sorted(M.toolkits, key=version_key), "12.7", "9.2"]
DRIVERS = [
    "440.33",
    "450.80.02",
    "470.82.01",
    "525.60.13",
    "535.104.05",
    "550.54.14",
    "580.65.06",
    "999.1",
]
ARCHS = sorted({a for mj in M.majors.values() for a in mj.archs}, key=lambda a: int(a[3:]))


@st.composite
def recipes(draw: st.DrawFn) -> Recipe:
    framework = draw(st.sampled_from(sorted(M.frameworks)))
    fw = M.framework(framework)
    prefixes = sorted({".".join(str(p) for p in r.version.release[:2]) for r in fw.releases})
    exact = [str(r.version) for r in fw.releases]
    version = draw(st.one_of(
        st.none(), st.sampled_from(prefixes), st.sampled_from(exact), st.just("99.1"),
        st.sampled_from([f">={p}" for p in prefixes]),
    ))  # fmt: skip
    python = draw(st.one_of(st.none(), st.sampled_from(PYTHONS)))
    cuda = draw(st.one_of(st.none(), st.just("cpu"), st.sampled_from(CUDAS)))
    driver = draw(st.one_of(st.none(), st.sampled_from(DRIVERS)))
    archs = tuple(sorted(draw(st.sets(st.sampled_from(ARCHS), max_size=2))))
    return Recipe(
        name="p", framework=framework, framework_version=version, python=python, cuda=cuda,
        gpu=GpuFleet(min_driver=driver, archs=archs),
    )  # fmt: skip


def _driver_ok(m: Matrix, v: Variant, driver: str | None) -> bool:
    floor = m.min_driver_for(v.cuda) if v.cuda else None
    return driver is None or floor is None or version_key(driver) >= version_key(floor)


def _builds(rel: Release, r: Recipe, m: Matrix) -> list[Variant]:
    """Every build of `rel` the recipe allows, written independently of resolve.py."""
    fleet = bool(r.gpu.min_driver or r.gpu.archs)
    out = []
    for v in rel.variants:
        if r.cuda == "cpu":
            ok = v.is_cpu and not fleet
        elif v.cuda:
            ok = (not r.cuda or cuda_fits(v, r.cuda)) and _driver_ok(m, v, r.gpu.min_driver)
            ok = ok and set(r.gpu.archs) <= set(v.archs)
        else:
            ok = v.is_cpu and not fleet and not r.cuda
        if ok:
            out.append(v)
    if r.cuda is None and not fleet and any(v.cuda for v in out):
        out = [v for v in out if v.cuda]  # with no cuda: asked for, a GPU build comes first
    return out


def _feasible(r: Recipe, m: Matrix) -> list[tuple[Release, str, Variant]]:
    fw = m.framework(r.framework)
    found = []
    for rel in fw.releases:
        if not version_matches(rel.version, r.framework_version):
            continue
        for v in _builds(rel, r, m):
            for py in rel.pythons_for(v):
                if py in m.python_bases and (r.python is None or py == r.python):
                    found.append((rel, py, v))
    return found


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(recipes())
def test_resolver_is_sound_complete_and_newest_first(r: Recipe) -> None:
    options = _feasible(r, M)
    try:
        spec = resolve(r, M)
    except ResolveError as err:
        assert not options, f"refused a feasible recipe: {err.message}"
        assert err.exit_code == 2 and err.message and "\n" not in err.message
        return
    assert options, "resolved a recipe that has no valid combination"
    # every constraint of the recipe holds
    rel = next(x for x in M.framework(r.framework).releases if str(x.version) == spec.framework_version)
    v = next(x for x in rel.variants if x.name == spec.variant)
    assert version_matches(rel.version, r.framework_version)
    assert spec.python in rel.pythons_for(v) and spec.python in M.python_bases
    assert r.python is None or spec.python == r.python
    if r.cuda == "cpu":
        assert spec.cuda == "cpu" and v.is_cpu
    elif r.cuda:
        assert v.cuda and cuda_fits(v, r.cuda) and spec.cuda == r.cuda
    if r.gpu.min_driver:
        assert spec.min_driver and version_key(spec.min_driver) <= version_key(r.gpu.min_driver)
    assert set(r.gpu.archs) <= set(spec.archs)
    assert spec.base_image == M.python_bases[spec.python].image
    # the newest release that has any valid combination, then its newest valid Python
    newest = max(o[0].version for o in options)
    assert rel.version == newest
    assert spec.python == max((o[1] for o in options if o[0].version == newest), key=version_key)


@settings(max_examples=150, deadline=None)
@given(recipes())
def test_resolving_twice_gives_the_same_answer(r: Recipe) -> None:
    fresh = load_matrix.__wrapped__()  # a second, independent load of the data
    try:
        first = resolve(r, M)
    except ResolveError as err:
        try:
            resolve(dataclasses.replace(r), fresh)
        except ResolveError as again:
            assert (again.message, again.details, again.hint) == (
                err.message,
                err.details,
                err.hint,
            )
            return
        raise AssertionError("refused once, resolved the second time") from None
    second = resolve(dataclasses.replace(r), fresh)
    assert first == second and first.to_json() == second.to_json()
