"""Property tests: over recipes drawn from the real data (and a few values outside it), the
resolver answers exactly as a brute-force oracle does (tests/unit/resolve_oracle.py, which
reads the data files itself and imports nothing from builder): it refuses exactly when no
combination exists, and its pick is the newest release, then the newest Python, then the newest
CUDA build; and the same recipe always gives the same spec."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import resolve_oracle as oracle
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from builder.errors import ResolveError
from builder.matrix import load_matrix
from builder.recipe import GpuFleet, Recipe
from builder.resolve import resolve

DATA = oracle.load()
PYTHONS = [*sorted(DATA.base_image, key=oracle.numeric), "3.8", "3.15"]
CUDAS = [*sorted(DATA.toolkit_driver, key=oracle.numeric), "12.7", "9.2"]
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
ARCHS = sorted({a for rels in DATA.releases.values() for r in rels for b in r.builds for a in b.archs},
               key=lambda a: int(a[3:]))  # fmt: skip


def test_the_oracle_is_independent_of_the_resolver() -> None:
    tree = ast.parse(Path(oracle.__file__).read_text())
    imported = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [m for m in imported if m.split(".")[0] == "builder"], imported
    # and it sees every framework the resolver knows
    assert set(DATA.releases) == set(load_matrix().frameworks)


@st.composite
def recipes(draw: st.DrawFn) -> Recipe:
    framework = draw(st.sampled_from(sorted(DATA.releases)))
    releases = DATA.releases[framework]
    prefixes = sorted({".".join(str(p) for p in r.version.release[:2]) for r in releases})
    exact = [str(r.version) for r in releases]
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


def oracle_picks(r: Recipe) -> list[oracle.Choice]:
    found = oracle.choices(DATA, r.framework, r.framework_version, r.python, r.cuda, r.gpu.min_driver, r.gpu.archs)
    return oracle.best(found)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(recipes())
def test_resolver_agrees_with_the_oracle(r: Recipe) -> None:
    picks = oracle_picks(r)
    try:
        spec = resolve(r)
    except ResolveError as err:
        assert not picks, f"refused a feasible recipe: {err.message}; the oracle picks {picks[0]}"
        assert err.exit_code == 2 and err.message and "\n" not in err.message
        return
    assert picks, f"resolved a recipe that has no valid combination: {spec.framework_version} {spec.variant}"
    pick = next((c for c in picks if c.build.name == spec.variant), None)
    assert pick is not None, (
        f"picked {spec.framework_version} py{spec.python} {spec.variant}; the oracle picks "
        f"{picks[0].release.version} py{picks[0].python} {[c.build.name for c in picks]}"
    )
    assert (spec.framework_version, spec.python) == (str(pick.release.version), pick.python)
    b = pick.build
    wanted_cuda = r.cuda if b.cuda_match == "major" and r.cuda else b.cuda
    assert spec.cuda == (wanted_cuda or "cpu")
    assert spec.min_driver == (oracle.driver_floor(DATA, b.cuda) if b.cuda else None)
    assert set(spec.archs) == b.archs
    assert spec.base_image == DATA.base_image[spec.python]


@settings(max_examples=150, deadline=None)
@given(recipes())
def test_resolving_twice_gives_the_same_answer(r: Recipe) -> None:
    fresh = load_matrix.__wrapped__()  # a second, independent load of the data
    try:
        first = resolve(r, load_matrix())
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
