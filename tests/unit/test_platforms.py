"""One recipe, several platforms: the data says which builds exist per platform, the resolver
picks per platform (one release and Python for all), refuses impossible pairs with the reason
and the nearest valid choices, and the spec of linux/amd64 stays as it was."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.errors import RecipeError, ResolveError
from builder.matrix import MatrixDataError, data_dir, load_matrix
from builder.platformdata import read_platforms
from builder.recipe import GpuFleet, Recipe, parse_recipe
from builder.resolve import resolve, resolve_platforms

ARM = "linux/arm64"
BOTH = ("linux/amd64", ARM)


def _recipe(framework: str, **kw: object) -> Recipe:
    return Recipe(name="t", framework=framework, **kw)  # type: ignore[arg-type]


GOOD = [
    # (framework, recipe fields, expected arm64 spec fields)
    ("sklearn", {"framework_version": "1.5", "python": "3.11", "cuda": "cpu"},
     {"framework_requirement": "scikit-learn==1.5.2", "platform": ARM}),
    # PyPI's own aarch64 torch is the CPU build up to 2.10.0: no index, no +cpu label
    ("pytorch", {"framework_version": "2.5", "cuda": "cpu"},
     {"framework_requirement": "torch==2.5.1", "index_url": None, "variant": "cpu"}),
    # from 2.11 PyPI's aarch64 wheel is the CUDA 13.0 build
    ("pytorch", {"framework_version": "2.11"}, {"variant": "cu130", "index_url": None, "cuda": "13.0"}),
    ("pytorch", {"framework_version": "2.5", "cuda": "12.4"},
     {"variant": "cu124", "index_url": "https://download.pytorch.org/whl/cu124", "archs": ()}),
    ("tensorflow", {}, {"framework_requirement": "tensorflow==2.21.0", "cuda": "cpu"}),
    ("jax", {"framework_version": "0.4.30", "cuda": "12.4"}, {"variant": "cuda12"}),
]  # fmt: skip


@pytest.mark.parametrize(("framework", "fields", "expected"), GOOD)
def test_arm64_picks(framework: str, fields: dict[str, object], expected: dict[str, object]) -> None:
    spec = resolve(_recipe(framework, platforms=(ARM,), **fields))
    for key, value in expected.items():
        assert getattr(spec, key) == value, key
    assert any("linux/arm64" in r for r in spec.reasons)


REFUSED = [
    # (framework, recipe fields, words in the message, words in the hint)
    ("tensorflow", {"cuda": "12.5"}, ["on linux/arm64", "no CUDA builds (CPU only)"], ["linux/arm64"]),
    ("pytorch", {"cuda": "12.1"}, ["on linux/arm64", "offers CUDA 12.4"], ['cuda: "12.4"']),
    ("pytorch", {"framework_version": "2.6", "cuda": "12.4"}, ["2.6.* offers CUDA 12.6"],
     ['cuda: "12.6"', 'framework_version: "2.5"']),
    ("pytorch", {"framework_version": "2.12", "cuda": "cpu"}, ["has no CPU build"], ['framework_version: "2.10"']),
    ("jax", {"framework_version": "0.4.25", "cuda": "12.4"}, ["no CUDA builds"], ["offer CUDA 12.4"]),
    ("tensorflow", {"framework_version": "2.14"}, ["no tensorflow release matches"], ['framework_version: "2.21"']),
    ("pytorch", {"cuda": "12.4", "variant": "cuda-runtime"}, ["NVIDIA CUDA base image for linux/arm64"],
     ["variant: runtime"]),
]  # fmt: skip


@pytest.mark.parametrize(("framework", "fields", "message", "hint"), REFUSED)
def test_arm64_refusals_name_the_reason_and_nearest_choices(
    framework: str, fields: dict[str, object], message: list[str], hint: list[str]
) -> None:
    with pytest.raises(ResolveError) as exc:
        resolve(_recipe(framework, platforms=(ARM,), **fields))
    for words in message:
        assert words in exc.value.message
    for words in hint:
        assert words in (exc.value.hint or "")
    assert any("aarch64" in d for d in exc.value.details), "the platform's note explains what exists"


def test_gpu_archs_are_not_promised_on_arm64() -> None:
    recipe = Recipe(name="t", framework="pytorch", platforms=(ARM,), cuda="12.4", gpu=GpuFleet(archs=("sm_80",)))
    with pytest.raises(ResolveError, match="does not record which GPU architectures"):
        resolve(recipe)


def test_both_platforms_share_the_newest_release_they_all_have() -> None:
    amd, arm = resolve_platforms(_recipe("pytorch", platforms=BOTH, cuda="cpu"))
    assert amd.framework_version == arm.framework_version == "2.10.0"  # arm64 CPU ends at 2.10.0
    assert (amd.platform, arm.platform) == BOTH
    assert amd.framework_requirement == "torch==2.10.0+cpu" and arm.framework_requirement == "torch==2.10.0"
    assert amd.python == arm.python
    assert any("newest that all of linux/amd64, linux/arm64 have" in r for r in arm.reasons)
    assert amd.digest() != arm.digest()  # one content tag per platform


def test_amd64_spec_has_no_platform_key_so_content_tags_stay() -> None:
    spec = resolve(_recipe("sklearn", framework_version="1.5", python="3.11", cuda="cpu"))
    assert "platform" not in spec.to_dict()
    arm = resolve(_recipe("sklearn", framework_version="1.5", python="3.11", cuda="cpu", platforms=(ARM,)))
    assert arm.to_dict()["platform"] == ARM


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("platforms: [linux/s390x]", "platforms[0]: 'linux/s390x' is not one of: linux/amd64 | linux/arm64"),
        ("platforms: [linux/arm64, linux/arm64]", "platforms[1]: 'linux/arm64' is listed twice"),
        ("platforms: []", "platforms: is empty"),
        ("platforms: linux/arm64", "platforms: expected a list"),
    ],
)
def test_recipe_platforms_are_checked(text: str, words: str) -> None:
    doc = f"name: t\nframework: sklearn\n{text}\n".encode()
    with pytest.raises(RecipeError) as exc:
        parse_recipe(doc, Path("r.yaml"))
    assert words in str([str(p) for p in exc.value.problems])


def test_recipe_platforms_are_read() -> None:
    recipe = parse_recipe(b"name: t\nframework: sklearn\nplatforms: [linux/amd64, linux/arm64]\n", Path("r.yaml"))
    assert recipe.platforms == BOTH
    assert parse_recipe(b"name: t\nframework: sklearn\n", Path("r.yaml")).platforms == ("linux/amd64",)


def test_platform_block_problems_name_field_value_and_allowed() -> None:
    problems: list[str] = []
    read_platforms(
        {"platforms": {"linux/s390x": {}, ARM: {"variants": {"cpu": ["~~bad"]}, "requirements": {"cpu": "x"}}}},
        problems,
    )
    assert any("platforms.linux/s390x: not a platform" in p for p in problems)
    assert any("platforms.linux/arm64.variants.cpu: '~~bad' is not a PEP 440 specifier set" in p for p in problems)
    assert any("platforms.linux/arm64.requirements.cpu: 'x' lacks {version}" in p for p in problems)


def test_shipped_platform_data_is_consistent_and_sourced() -> None:
    m = load_matrix()  # check_matrix ran on it
    for fw in m.frameworks.values():
        builds = fw.builds_for(ARM)
        assert builds is not None, f"{fw.framework}: say which builds exist for {ARM}"
        assert builds.sources and all({"what", "where", "checked"} <= set(s) for s in builds.sources)
        assert builds.note


def test_a_default_build_without_wheels_is_refused_as_bad_data(tmp_path: Path) -> None:
    src = data_dir()
    for f in src.glob("*.yaml"):
        (tmp_path / f.name).write_text(f.read_text())
    torch = tmp_path / "pytorch.yaml"
    torch.write_text(torch.read_text().replace('      cpu: ["<=2.10.0"]\n', ""))
    with pytest.raises(MatrixDataError, match="default_variant cpu has no wheels there"):
        load_matrix(str(tmp_path))
