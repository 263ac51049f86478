"""builder.variants without Docker: the recipe matrix, expansion, planning, CI's matrix."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder import variants
from builder.commands.many import github_matrix
from builder.errors import RecipeError, ResolveError, UsageError
from builder.recipe import load_recipe

MATRIX = """\
name: skm
framework: sklearn
cuda: cpu
matrix:
  python: ["3.9", "3.11", "3.13"]
  framework_version: ["1.5", "1.9"]
  exclude:
    - {python: "3.13", framework_version: "1.5"}
image:
  tags: ["v1"]
"""


def write(folder: Path, text: str, name: str = "recipe.yaml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


# ---- recipe matrix: validation ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("matrix:\n  python: [3.11]\n", "matrix.python[0]: 3.11 is a YAML number"),
        ('matrix:\n  cuda: ["12.x"]\n', "matrix.cuda[0]: '12.x' is not allowed"),
        ("matrix:\n  python: []\n", "matrix.python: is empty"),
        ('matrix:\n  pyhton: ["3.11"]\n', "matrix.pyhton: unknown key (did you mean 'python'?)"),
        ('matrix:\n  python: ["3.11", "3.11"]\n', "listed twice"),
        ('matrix:\n  framework_version: [">=x"]\n', "neither a version prefix"),
        ('python: "3.11"\nmatrix:\n  python: ["3.11"]\n', "also set at the top level"),
        ('matrix:\n  python: ["3.11"]\n  exclude: [{python: "3.9"}]\n', "not among matrix.python"),
        (
            'matrix:\n  python: ["3.11"]\n  exclude: [{cuda: "cpu"}]\n',
            "is not an axis of this matrix",
        ),
        ('matrix:\n  python: ["3.11"]\n  exclude: ["3.11"]\n', "expected a mapping"),
        ("matrix: {}\n", "names no axis"),
    ],
)
def test_matrix_problems_are_reported(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, "name: x\nframework: sklearn\n" + text)
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    assert any(expected in d for d in info.value.details), info.value.details


def test_matrix_is_read(tmp_path: Path) -> None:
    r = load_recipe(write(tmp_path, MATRIX))
    assert r.matrix is not None
    assert r.matrix.axes == (
        ("python", ("3.9", "3.11", "3.13")),
        ("framework_version", ("1.5", "1.9")),
    )
    assert r.matrix.exclude == ((("framework_version", "1.5"), ("python", "3.13")),)


# ---- expansion and planning ------------------------------------------------------------------
def test_expand_crosses_axes_less_excluded(tmp_path: Path) -> None:
    expanded = variants.expand(load_recipe(write(tmp_path, MATRIX)))
    assert [v.id for v in expanded] == [
        "py3.9-fw1.5",
        "py3.9-fw1.9",
        "py3.11-fw1.5",
        "py3.11-fw1.9",
        "py3.13-fw1.9",
    ]
    v = expanded[3]
    assert (v.recipe.python, v.recipe.framework_version, v.recipe.matrix) == ("3.11", "1.9", None)
    assert v.recipe.image.tags == ("v1-py3.11-fw1.9",)  # one tag per variant, not one for all
    assert v.label == "skm:py3.11-fw1.9"


def test_expand_without_matrix_is_one_variant(tmp_path: Path) -> None:
    r = load_recipe(write(tmp_path, "name: one\nframework: sklearn\n"))
    [v] = variants.expand(r)
    assert v.id == "default" and v.recipe == r and v.label == "one"


def test_exclude_everything_is_a_recipe_error(tmp_path: Path) -> None:
    text = 'name: x\nframework: sklearn\nmatrix:\n  python: ["3.11"]\n  exclude: [{python: "3.11"}]\n'
    with pytest.raises(RecipeError, match="problem"):
        variants.expand(load_recipe(write(tmp_path, text)))


def test_variant_ids_fit_docker_tags() -> None:
    vid = variants.variant_id([("python", "3.12"), ("cuda", "12.4"), ("framework_version", ">=2.3,<2.5")])
    assert vid == "py3.12-cuda12.4-fwge2.3_lt2.5"
    assert variants.variant_id([]) == "default"


def test_plan_skips_impossible_variants_with_reasons(tmp_path: Path) -> None:
    planned = variants.plan([write(tmp_path, MATRIX)])
    by_id = {p.variant.id: p for p in planned}
    assert not by_id["py3.9-fw1.9"].possible  # scikit-learn 1.9 has no Python 3.9 wheels
    assert "3.9" in by_id["py3.9-fw1.9"].reason
    ok = by_id["py3.11-fw1.9"]
    assert ok.spec is not None and ok.spec.python == "3.11" and ok.spec.framework_version.startswith("1.9")
    assert by_id["py3.9-fw1.5"].spec.framework_version.startswith("1.5")  # type: ignore[union-attr]
    variants.check_strict(planned, strict=False)
    with pytest.raises(ResolveError, match="1 of 5 variants cannot be built") as info:
        variants.check_strict(planned, strict=True)
    assert info.value.exit_code == 2 and "skm:py3.9-fw1.9" in info.value.details[0]


def test_plan_of_a_folder_and_variant_filter(tmp_path: Path) -> None:
    write(tmp_path, MATRIX, "a.yaml")
    write(tmp_path, "name: b\nframework: sklearn\n", "b.yml")
    (tmp_path / "notes.txt").write_text("not a recipe")
    planned = variants.plan([tmp_path])
    assert len(planned) == 6
    only = variants.plan([tmp_path], only=("py3.11-fw1.5", "b"))
    assert [p.variant.label for p in only] == ["skm:py3.11-fw1.5", "b"]
    with pytest.raises(UsageError, match="no variant 'py9'"):
        variants.plan([tmp_path], only=("py9",))


def test_plan_refuses_two_recipes_with_one_name(tmp_path: Path) -> None:
    write(tmp_path, "name: same\nframework: sklearn\n", "a.yaml")
    write(tmp_path, "name: same\nframework: sklearn\n", "b.yaml")
    with pytest.raises(UsageError, match="two recipes are named 'same'"):
        variants.plan([tmp_path])


def test_nothing_possible_fails_even_without_strict(tmp_path: Path) -> None:
    text = 'name: x\nframework: sklearn\nmatrix:\n  cuda: ["12.4", "12.6"]\n'
    with pytest.raises(ResolveError, match="no variant can be built"):
        variants.check_strict(variants.plan([write(tmp_path, text)]), strict=False)


def test_github_matrix_puts_gpu_smoke_on_gpu_runners(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2] / "recipes"
    planned = variants.plan([root / "pytorch-gpu.yaml", root / "sklearn-cpu.yaml"])
    m = github_matrix(planned, "cpu-box", "gpu-box")
    runners = {e["name"]: (e["runner"], e["gpu"]) for e in m["include"]}
    assert runners == {"pytorch-gpu": ("gpu-box", True), "sklearn-cpu": ("cpu-box", False)}
