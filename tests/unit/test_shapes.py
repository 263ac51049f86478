"""Image shapes (variant: runtime | cuda-runtime | devel) for every framework: golden
Dockerfiles (reviewed diffs: UPDATE_GOLDEN=1), hadolint-clean, Python provisioning, and
what each shape must never contain."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from required_tools import tool

from builder.errors import RecipeError, ResolveError
from builder.recipe import parse_recipe
from builder.render import render
from builder.resolve import resolve
from builder.settings import BuildSettings

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden" / "shapes"
FRAMEWORKS = {
    "pytorch": 'framework_version: "2.5"\ncuda: "12.4"\npackages: [torchvision]\n',
    "tensorflow": 'framework_version: "2.17"\ncuda: "12.3"\n',
    "jax": 'framework_version: "0.4.35"\ncuda: "12.6"\n',
}
SHAPES = ("runtime", "cuda-runtime", "devel")
BUILD = {
    "pytorch": "flash-attn==2.7.4.post1",
    "tensorflow": "tensorflow-addons==0.23.0",
    "jax": "jax-triton==0.2.0",
}


def recipe_text(framework: str, shape: str, python: str = "3.11") -> str:
    extra = f"build_packages: [{BUILD[framework]}]\n" if shape == "devel" else ""
    return (f"name: {framework}-{shape}\nframework: {framework}\npython: '{python}'\n"
            f"variant: {shape}\n{FRAMEWORKS[framework]}{extra}")  # fmt: skip


def spec_for(text: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    return resolve(parse_recipe(text.encode(), tmp_path / "r.yaml"))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("framework", sorted(FRAMEWORKS))
def test_golden_dockerfile_for_every_shape(framework: str, shape: str, tmp_path: Path) -> None:
    text = render(spec_for(recipe_text(framework, shape), tmp_path))
    golden = GOLDEN / f"{framework}-{shape}.Dockerfile"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text()


def test_every_golden_dockerfile_is_hadolint_clean() -> None:
    files = sorted(str(p) for p in (ROOT / "tests" / "golden").rglob("*.Dockerfile"))
    assert len(files) >= 14
    done = subprocess.run([tool("hadolint"), "--config", str(ROOT / "tests" / "hadolint.yaml"), "--no-color", *files],
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_cuda_runtime_uses_nvidias_base_and_os_python_when_it_matches(tmp_path: Path) -> None:
    spec = spec_for(recipe_text("pytorch", "cuda-runtime", python="3.10"), tmp_path)
    assert spec.base_image == "nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04"
    assert spec.python_from == "distro" and spec.python_bin == "/usr/bin/python3.10"
    text = render(spec)
    assert "apt-get install -y --no-install-recommends python3.10 ca-certificates" in text
    # no uv image and no standalone CPython: uv comes from PyPI, by hash, for installing only
    # (mlbuild brings it: builder.toolwheels)
    assert " AS uv" not in text and "COPY --from=uv" not in text and "uv python install" not in text
    assert "/usr/local/bin/uv" not in text


def test_cuda_runtime_with_another_python_gets_a_standalone_cpython(tmp_path: Path) -> None:
    spec = spec_for(recipe_text("pytorch", "cuda-runtime", python="3.12"), tmp_path)
    assert spec.python_from == "standalone" and spec.uv_image
    text = render(spec)
    assert f"FROM {spec.uv_image} AS uv" in text
    assert 'RUN ["/usr/local/bin/uv", "python", "install", "3.12"]' in text
    assert 'RUN ["/usr/local/bin/uv", "venv", "--seed", "--python", "3.12", "/opt/venv"]' in text
    final = text.split("\nFROM ")[-1].split("LABEL")[0]
    assert "COPY --from=builder /opt/python /opt/python" in final
    assert "/uv" not in final and "uv python" not in final and "uv venv" not in final  # uv stays in the builder


def test_standalone_python_trusts_the_site_ca_in_the_builder_only(tmp_path: Path) -> None:
    spec = spec_for(recipe_text("pytorch", "cuda-runtime", python="3.12"), tmp_path)
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    text = render(spec, settings=BuildSettings(ca_bundle=ca))
    assert text.count("SSL_CERT_FILE=/tmp/mlbuild-build/ca.crt") == 1
    assert "SSL_CERT_FILE" not in text.split("\nFROM ")[-1]


def test_devel_compiles_in_its_own_stage_for_the_resolved_archs(tmp_path: Path) -> None:
    spec = spec_for(recipe_text("pytorch", "devel"), tmp_path)
    assert spec.cuda_arch_list == "5.0;6.0;7.0;7.5;8.0;8.6;9.0"
    text = render(spec)
    stages = text.split("\nFROM ")
    devel = next(s for s in stages if s.startswith("nvidia/cuda:12.4.1-cudnn-devel-ubuntu22.04 AS devel"))
    assert 'TORCH_CUDA_ARCH_LIST="5.0;6.0;7.0;7.5;8.0;8.6;9.0"' in devel and '"wheel", "--no-deps"' in devel
    final = stages[-1].split("LABEL")[0]
    assert final.startswith("nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04\n")
    assert "devel" not in final and "nvcc" not in final


def test_fleet_archs_narrow_the_compiled_kernels(tmp_path: Path) -> None:
    text = recipe_text("pytorch", "devel") + "gpu: {archs: [sm_80, sm_90]}\n"
    spec = spec_for(text, tmp_path)
    assert set(spec.archs) >= {"sm_80", "sm_90"}


@pytest.mark.parametrize(
    ("text", "error", "message"),
    [
        (
            "name: x\nframework: sklearn\nvariant: cuda-runtime\n",
            ResolveError,
            "variant: cuda-runtime is for CUDA builds",
        ),
        (
            "name: x\nframework: pytorch\ncuda: '11.7'\nframework_version: '1.13'\nvariant: cuda-runtime\n",
            ResolveError,
            "no NVIDIA CUDA base image is known for CUDA 11.7",
        ),
        (
            "name: x\nframework: pytorch\nvariant: devel\n",
            RecipeError,
            "devel compiles build_packages",
        ),
        (
            "name: x\nframework: pytorch\nbuild_packages: [flash-attn]\n",
            RecipeError,
            "needs variant: devel",
        ),
        (
            "name: x\nframework: pytorch\nvariant: gpu\n",
            RecipeError,
            "'gpu' is not one of: runtime | cuda-runtime | devel",
        ),
    ],
)
def test_impossible_shapes_are_refused(text: str, error: type[Exception], message: str, tmp_path: Path) -> None:
    with pytest.raises(error) as info:
        spec_for(text, tmp_path)
    shown = str(info.value) + " ".join(getattr(info.value, "details", []))
    assert message in shown


def test_wheelhouse_is_used_in_the_builder_only_and_offline_means_no_index(tmp_path: Path) -> None:
    spec = spec_for("name: x\nframework: sklearn\npython: '3.11'\npackages: [pandas]\n", tmp_path)
    text = render(spec, settings=BuildSettings(wheelhouse=tmp_path, offline=True))
    assert "COPY wheelhouse/ /tmp/wheelhouse/" in text.split("\nFROM ")[1]
    assert "wheelhouse" not in text.split("\nFROM ")[-1].split("LABEL")[0]
