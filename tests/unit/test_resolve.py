# ruff: noqa: RUF001  (one real combination per line; the messages use en dashes)
"""The resolver on real combinations: known good picks, known impossible recipes and their
messages, and the CLI's exit codes and JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from builder.cli import main
from builder.errors import ResolveError
from builder.matrix import Matrix, load_matrix
from builder.recipe import GpuFleet, Recipe
from builder.resolve import resolve

ROOT = Path(__file__).resolve().parent.parent.parent


@pytest.fixture(scope="module")
def m() -> Matrix:
    return load_matrix()


def _recipe(framework: str, **kw: object) -> Recipe:
    gpu = kw.pop("gpu", None)
    recipe = Recipe(name="t", framework=framework, **kw)  # type: ignore[arg-type]
    if gpu:
        recipe = Recipe(**{**recipe.__dict__, "gpu": GpuFleet(**gpu)})  # type: ignore[arg-type]
    return recipe


GOOD = [
    # (framework, recipe fields, expected spec fields)
    ("pytorch", {"framework_version": "2.5", "python": "3.12", "cuda": "12.4"},
     {"framework_version": "2.5.1", "variant": "cu124", "index_url": None,
      "framework_requirement": "torch==2.5.1", "cudnn": "9.1"}),
    ("pytorch", {"framework_version": "2.5", "cuda": "11.8"},
     {"framework_version": "2.5.1", "python": "3.13", "variant": "cu118",
      "framework_requirement": "torch==2.5.1+cu118",
      "index_url": "https://download.pytorch.org/whl/cu118"}),
    ("pytorch", {"framework_version": "2.5.1", "cuda": "12.1"}, {"variant": "cu121"}),
    ("pytorch", {"framework_version": "2.4", "cuda": "cpu", "python": "3.9"},
     {"framework_version": "2.4.1", "variant": "cpu", "cuda": "cpu", "min_driver": None}),
    ("pytorch", {"framework_version": "2.5", "gpu": {"min_driver": "535.104.05", "archs": ("sm_80", "sm_90")}},
     {"variant": "cu124", "min_driver": "525.60.13"}),
    # the newest CUDA the fleet's driver runs: 2.9's cu130 needs 580, so cu128
    ("pytorch", {"framework_version": "2.9", "gpu": {"min_driver": "535.104.05"}},
     {"framework_version": "2.9.1", "variant": "cu128"}),
    # sm_37 (Kepler) only in the cu118 builds
    ("pytorch", {"framework_version": "2.6", "gpu": {"archs": ("sm_37",)}}, {"variant": "cu118"}),
    ("tensorflow", {"framework_version": "2.17", "python": "3.11", "cuda": "12.3"},
     {"framework_version": "2.17.1", "cudnn": "8.9", "framework_requirement": "tensorflow[and-cuda]==2.17.1"}),
    ("tensorflow", {"framework_version": "2.13", "cuda": "cpu"},
     {"framework_version": "2.13.1", "framework_requirement": "tensorflow-cpu==2.13.1"}),
    ("sklearn", {"framework_version": "1.5", "python": "3.13"}, {"framework_version": "1.5.2"}),
    ("sklearn", {"framework_version": "1.5"}, {"framework_version": "1.5.2", "python": "3.13"}),
    ("sklearn", {"framework_version": "1.5", "python": "3.9"}, {"framework_version": "1.5.2"}),
    ("jax", {"python": "3.12", "cuda": "12.6"}, {"variant": "cuda12", "cuda": "12.6", "cuda_match": "major"}),
]  # fmt: skip


@pytest.mark.parametrize(("framework", "fields", "expected"), GOOD)
def test_known_good(m: Matrix, framework: str, fields: dict, expected: dict) -> None:  # type: ignore[type-arg]
    spec = resolve(_recipe(framework, **fields), m)
    got = {k: getattr(spec, k) for k in expected}
    assert got == expected
    assert spec.reasons and all(isinstance(r, str) and r for r in spec.reasons)


BAD = [
    # (framework, recipe fields, message, hint fragments)
    ("pytorch", {"framework_version": "2.4", "cuda": "12.6"},
     "pytorch 2.4.* offers CUDA 11.8, 12.1, 12.4; you asked for 12.6",
     ['cuda: "12.4"', 'framework_version: "2.6"']),
    ("pytorch", {"framework_version": "2.9", "cuda": "13.0", "gpu": {"min_driver": "535.104.05"}},
     "pytorch 2.9.* cu130 needs driver ≥ 580.65.06; your fleet has 535.104.05 → cuda 12.8 or earlier",
     ['cuda: "12.8"']),
    ("pytorch", {"framework_version": "2.9", "gpu": {"min_driver": "470.82.01"}},
     "needs driver ≥ 525.60.13; your fleet has 470.82.01 → no pytorch 2.9.* build runs on it",
     ['framework_version: "2.7"']),
    ("sklearn", {"framework_version": "1.5", "python": "3.14"},
     "sklearn 1.5.* supports Python 3.9–3.13; you asked for 3.14",
     ['python: "3.13"', 'framework_version: "1.7"']),
    ("sklearn", {"cuda": "12.4"}, "has no CUDA builds (CPU only); you asked for CUDA 12.4", []),
    ("tensorflow", {"framework_version": "2.13", "cuda": "11.8"},
     "tensorflow 2.13.* has no CUDA builds (CPU only); you asked for CUDA 11.8",
     ['framework_version: "2.14"']),
    ("pytorch", {"framework_version": "2.7", "gpu": {"archs": ("sm_37", "sm_120")}},
     "has no kernels for sm_37", []),
    ("tensorflow", {"gpu": {"archs": ("sm_80",)}}, "cannot be promised", ["drop gpu.archs"]),
    ("pytorch", {"framework_version": "3.0"}, "no pytorch release matches framework_version '3.0'", []),
    ("pytorch", {"cuda": "cpu", "gpu": {"min_driver": "535.104.05"}}, "contradict", []),
]  # fmt: skip


@pytest.mark.parametrize(("framework", "fields", "message", "hints"), BAD)
def test_known_impossible(
    m: Matrix,
    framework: str,
    fields: dict,
    message: str,
    hints: list[str],  # type: ignore[type-arg]
) -> None:
    with pytest.raises(ResolveError) as err:
        resolve(_recipe(framework, **fields), m)
    assert message in err.value.message
    for fragment in hints:
        assert fragment in (err.value.hint or "")
    assert err.value.exit_code == 2


def test_companions_are_paired_and_checked(m: Matrix) -> None:
    spec = resolve(
        _recipe("pytorch", framework_version="2.5", cuda="11.8", packages=("torchvision", "torchaudio")),
        m,
    )
    assert spec.companions == ("torchvision==0.20.1+cu118", "torchaudio==2.5.1+cu118")
    with pytest.raises(ResolveError) as err:
        resolve(
            _recipe("pytorch", framework_version="2.5", cuda="12.4", packages=("torchvision==0.19.0",)),
            m,
        )
    assert "pairs with torchvision==0.20.1" in (err.value.hint or "")


def test_two_frameworks_share_one_cuda_major(m: Matrix) -> None:
    ok = resolve(_recipe("pytorch", framework_version="2.5", cuda="12.4", packages=("jax[cuda12]",)), m)
    assert ok.requirements == ("jax[cuda12]",)
    with pytest.raises(ResolveError, match="needs CUDA 12"):
        resolve(_recipe("pytorch", framework_version="2.5", cuda="11.8", packages=("jax[cuda12]",)), m)


# ------------------------------------------------------------------ the command line


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return path


def test_resolve_json_has_index_archs_and_reasons(tmp_path: Path) -> None:
    recipe = _write(tmp_path, 'name: t\nframework: pytorch\nframework_version: "2.5"\ncuda: "11.8"\n')
    result = CliRunner().invoke(main, ["resolve", str(recipe), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["index_url"] == "https://download.pytorch.org/whl/cu118"
    assert "sm_90" in doc["archs"] and "sm_37" in doc["archs"]
    assert any(r.startswith("pytorch 2.5.1") for r in doc["reasons"])
    assert any(r.startswith("build: cu118") for r in doc["reasons"])


def test_resolve_example_recipe_json() -> None:
    result = CliRunner().invoke(main, ["resolve", str(ROOT / "recipes" / "sklearn-cpu.yaml"), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert (doc["framework_version"], doc["python"], doc["cuda"]) == ("1.5.2", "3.11", "cpu")
    assert doc["index_url"] is None and doc["archs"] == [] and len(doc["reasons"]) >= 4


def test_resolve_impossible_exits_2_with_hint(tmp_path: Path) -> None:
    recipe = _write(tmp_path, 'name: t\nframework: pytorch\nframework_version: "2.4"\ncuda: "12.6"\n')
    result = CliRunner().invoke(main, ["resolve", str(recipe)])
    assert result.exit_code == 2
    assert "pytorch 2.4.* offers CUDA 11.8, 12.1, 12.4; you asked for 12.6" in result.output
    assert "hint:" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (["matrix"], 0, "pytorch (torch)"),
        (["matrix", "pytorch", "--cuda", "12.4"], 0, "cu124 (12.4/cuDNN 9.1)"),
        (["matrix", "--python", "3.14", "sklearn"], 0, "1.9.1"),
        (["matrix", "pytorch", "--cuda", "12.7"], 0, "no release matches"),
        (["matrix", "pytorch", "--python", "2.7"], 2, "Python minor"),
        (["matrix", "pytorch", "--cuda", "twelve"], 2, "CUDA version"),
        (["matrix", "caffe"], 2, "caffe"),
    ],
)
def test_matrix_command(args: list[str], code: int, fragment: str) -> None:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == code, result.output
    assert fragment in result.output


def test_matrix_json_is_filtered() -> None:
    result = CliRunner().invoke(main, ["matrix", "pytorch", "--cuda", "12.4", "--python", "3.13", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["releases"]
    assert [r["version"] for r in rows] == ["2.6.0", "2.5.1", "2.5.0"]
    for row in rows:
        assert row["framework"] == "pytorch" and "3.13" in row["python"]
        assert [v["name"] for v in row["variants"]] == ["cu124"]
        assert row["variants"][0]["min_driver"] == "525.60.13"
