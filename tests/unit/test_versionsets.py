"""versionsets.intersects: two specifier sets that some version satisfies are never called
disjoint (checked against a dense grid of versions), and plainly disjoint ones are."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from builder.versionsets import intersects

NAMED = ["0.9", "1", "1.0", "1.0.1", "1.1", "1.1rc1", "1.1rc3", "2.0.dev2", "1.1.post1", "2.0", "2.0.0.1", "2.1", "3"]
GRID = sorted(
    {Version(f"{a}.{b}.{c}") for a, b, c in itertools.product(range(5), range(4), range(4))}
    | {Version(v) for v in NAMED}
    | {
        Version(f"{v}{s}")
        for v in ("1.0", "1.1", "2.0")
        for s in ("a1", "rc1", "rc2", ".post1", ".post2", ".dev1", ".0.1")
    }
)
ONE = st.one_of(
    st.builds(lambda op, v: f"{op}{v}", st.sampled_from(["==", "!=", ">=", "<=", ">", "<"]), st.sampled_from(NAMED)),
    st.builds(
        lambda op, v: f"{op}{v}.*", st.sampled_from(["==", "!="]), st.sampled_from(["1", "1.0", "1.1", "2", "2.0"])
    ),
    st.builds(lambda v: f"~={v}", st.sampled_from(["1.0", "1.1", "2.0", "1.0.1"])),
)
SETS = st.lists(ONE, min_size=1, max_size=3).map(lambda parts: SpecifierSet(",".join(parts)))


@settings(max_examples=1500, deadline=None, derandomize=True, database=None)
@given(a=SETS, b=SETS)
def test_sets_that_share_a_version_are_never_called_disjoint(a: SpecifierSet, b: SpecifierSet) -> None:
    shared = [v for v in GRID if a.contains(v, prereleases=True) and b.contains(v, prereleases=True)]
    if shared:
        assert intersects(a, b), (str(a), str(b), shared[:3])


@pytest.mark.parametrize(
    ("a", "b"),
    [("==1.26.4", ">=2"), ("<2", ">=2"), ("==2.*", "==1.*"), ("~=1.4", ">=2"), ("==1.0", "!=1.0"),
     (">1.0,<1.0.0", ""), ("==3.11.*", ">=3.12")],
)  # fmt: skip
def test_disjoint_sets_are_found(a: str, b: str) -> None:
    assert not intersects(SpecifierSet(a), SpecifierSet(b))


@pytest.mark.parametrize(
    ("a", "b"), [("==1.26.4", ">=1.20"), ("", "==0"), (">=2.0rc1", "<=2.0"), (">2.0rc1", "<2.0rc3"), ("===foo", "==1")]
)
def test_overlapping_sets_are_found(a: str, b: str) -> None:
    assert intersects(SpecifierSet(a), SpecifierSet(b))
