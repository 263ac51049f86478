"""The image's constraints (/opt/mlbuild/constraints.txt, PIP_CONSTRAINT and UV_CONSTRAINT):
what they pin (builder.imagesetup, run in the builder stage) and where the Dockerfile puts
them (after mlbuild's own pip and RUN steps, so those never see them)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from builder import layersplit
from builder.errors import RecipeError
from builder.imagesetup import CONSTRAINTS_HEADER, pinned_with_framework
from builder.recipe import parse_recipe
from builder.render import IMAGE_CONSTRAINTS, pinned_names, render
from builder.resolve import load_and_resolve

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = sorted((ROOT / "tests" / "golden").rglob("*.Dockerfile"))

TORCH_GPU = {  # what a torch CUDA venv's metadata says, trimmed
    "torch": (
        "2.5.1",
        [
            "filelock",
            "sympy==1.13.1; python_version >= '3.9'",
            "nvidia-cudnn-cu12==9.1.0.70; platform_system == 'Linux'",
            "triton==3.1.0; platform_machine == 'x86_64'",
            "opt-einsum>=3.3; extra == 'opt-einsum'",
        ],
    ),
    "torchvision": ("0.20.1", ["numpy", "torch==2.5.1", "pillow!=8.3.*,>=5.3.0"]),
    "nvidia-cudnn-cu12": ("9.1.0.70", ["nvidia-cublas-cu12"]),
    "nvidia-cublas-cu12": ("12.4.5.8", []),
    "triton": ("3.1.0", ["filelock"]),
    "sympy": ("1.13.1", ["mpmath<1.4,>=1.1.0"]),
    "mpmath": ("1.3.0", []),
    "filelock": ("3.16.1", []),
    "numpy": ("2.1.3", []),
    "pillow": ("11.0.0", []),
    "opt-einsum": ("3.4.0", []),
    "nvidia-nccl-cu11": ("2.21.5", []),  # installed by the recipe, not a dependency of the framework
    "pandas": ("2.2.3", ["numpy>=1.26"]),
}


def test_the_framework_companions_and_cuda_build_are_pinned_exactly() -> None:
    assert pinned_with_framework(["torch", "torchvision"], TORCH_GPU) == [
        "nvidia-cublas-cu12===12.4.5.8",  # a dependency of a dependency
        "nvidia-cudnn-cu12===9.1.0.70",
        "torch===2.5.1",  # ===: 2.5.1+cpu, another build of 2.5.1, does not match
        "torchvision===0.20.1",
        "triton===3.1.0",
    ]  # numpy, sympy, filelock ... may move; the recipe's own nvidia-nccl-cu11 too


def test_jax_plugins_and_names_are_matched_canonically() -> None:
    jax = {
        "jax": (
            "0.4.35",
            [
                "jaxlib<=0.4.35,>=0.4.34",
                "ml_dtypes>=0.4.0",
                "jax-cuda12-plugin[with_cuda]<=0.4.35,>=0.4.35; extra == 'cuda12'",
            ],
        ),
        "jaxlib": ("0.4.35", ["ml-dtypes"]),
        "jax-cuda12-plugin": ("0.4.35", ["jax-cuda12-pjrt==0.4.35", "nvidia-cuda-runtime-cu12>=12.1"]),
        "jax-cuda12-pjrt": ("0.4.35", []),
        "nvidia-cuda-runtime-cu12": ("12.6.77", []),
        "ml-dtypes": ("0.5.0", ["numpy"]),
    }
    assert pinned_with_framework(["JAX"], jax) == [
        "jax===0.4.35", "jax-cuda12-pjrt===0.4.35", "jax-cuda12-plugin===0.4.35", "jaxlib===0.4.35",
        "nvidia-cuda-runtime-cu12===12.6.77",
    ]  # fmt: skip
    assert pinned_with_framework(["scikit_learn"], {"scikit-learn": ("1.5.2", ["numpy>=1.19.5"])}) == [
        "scikit-learn===1.5.2"
    ]
    assert pinned_with_framework(["torch"], {}) == []  # not installed: nothing to pin


def test_the_step_writes_the_file_from_this_pythons_metadata(tmp_path: Path) -> None:
    target = tmp_path / "opt" / "mlbuild" / "constraints.txt"
    run = subprocess.run([sys.executable, str(ROOT / "builder" / "imagesetup.py"), "constraints", str(target),
                          "PyYAML", "not-installed-here"], capture_output=True, text=True, check=True)  # fmt: skip
    import yaml

    assert target.read_text() == CONSTRAINTS_HEADER + f"pyyaml==={yaml.__version__}\n"
    assert "not installed, not pinned: not-installed-here" in run.stdout


@pytest.mark.parametrize("golden", GOLDEN, ids=lambda p: p.stem)
def test_only_the_final_image_sets_the_constraints_after_mlbuilds_own_steps(golden: Path) -> None:
    text = golden.read_text()
    *earlier, final = text.split("\nFROM ")
    assert not any("PIP_CONSTRAINT" in stage for stage in earlier)  # the builder's and devel's pip: untouched
    env = f"ENV PIP_CONSTRAINT={IMAGE_CONSTRAINTS} UV_CONSTRAINT={IMAGE_CONSTRAINTS}"
    assert final.count(env) == 1 and "RUN " not in final.split(env)[1]  # no mlbuild step runs under them
    builder = earlier[-1]
    assert f'"constraints", "{IMAGE_CONSTRAINTS}"' in builder
    # written first in the venv's split step: it travels in the framework's layer slot, not a layer of its own
    split = next(line for line in builder.splitlines() if '"/tmp/mlbuild/layers.json"' in line)
    first = 'layers.json", "--", "/opt/venv/bin/python", "/tmp/mlbuild/imagesetup.py", "constraints", '
    first += f'"{IMAGE_CONSTRAINTS}"'
    assert first in split
    assert f"{layersplit.OUT}/{layersplit.FRAMEWORK_SLOT}/ /" in final
    assert f"COPY --from=builder {IMAGE_CONSTRAINTS}" not in final


def test_the_plan_puts_the_constraints_in_the_framework_slot(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    (venv / "lib" / "python3.11" / "site-packages").mkdir(parents=True)
    extra = tmp_path / "opt" / "mlbuild" / "constraints.txt"
    extra.parent.mkdir(parents=True)
    extra.write_text("torch===2.5.1\n")
    out = tmp_path / "layers"
    layersplit.split(str(venv), str(out), set(), set(), 315532800, {str(extra): layersplit.FRAMEWORK_SLOT})
    moved = out / layersplit.FRAMEWORK_SLOT / str(extra).lstrip("/")
    assert moved.read_text() == "torch===2.5.1\n" and not extra.exists()
    assert moved.stat().st_mtime == 315532800 and moved.parent.stat().st_mtime == 315532800


def test_pinned_names_are_the_framework_and_its_companions() -> None:
    _, spec = load_and_resolve(ROOT / "recipes" / "pytorch-gpu.yaml")
    assert pinned_names(spec) == ["torch", "torchvision"]
    assert '"constraints", "/opt/mlbuild/constraints.txt", "torch", "torchvision"]' in render(spec)


@pytest.mark.parametrize("name", ["PIP_CONSTRAINT", "UV_CONSTRAINT"])
def test_a_recipe_cannot_unset_the_constraints(name: str, tmp_path: Path) -> None:
    text = f"name: x\nframework: sklearn\nenv:\n  {name}: ''\n"
    with pytest.raises(RecipeError) as err:
        parse_recipe(text.encode(), tmp_path / "r.yaml")
    assert [str(p) for p in err.value.problems] == [f"env.{name}: is set by mlbuild for the image's Python environment"]
