"""Offline builds from a wheelhouse: what the wheelhouse lacks (dependencies included, for the
image's Python) is listed before any build; a complete one builds with uv (its pinned wheel in
the wheelhouse; pip without it) and --no-index, and the wheels stay out of the image.

scikit-learn always: its wheels are downloaded for the image's CPython 3.11 on Linux (whatever
Python runs the tests) from the index pip is configured with. PyTorch CPU from the torch wheel
a site keeps on disk (PIP_FIND_LINKS, /opt/wheels) is an opt-in heavy build: MLBUILD_SLOW=1;
then a missing wheel fails the test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
FIND_LINKS = Path(os.environ.get("PIP_FIND_LINKS", "/opt/wheels"))
TORCH_WHEEL = "torch-2.13.0+cpu-cp311-*.whl"
# The wheels a python:3.11 image on Debian bookworm (glibc 2.36) installs.
FOR_THE_IMAGE = [
    "--only-binary=:all:", "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311",
    "--platform", "manylinux2014_x86_64", *(f"--platform=manylinux_2_{n}_x86_64" for n in range(17, 37)),
]  # fmt: skip


def mlbuild(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "builder", *args], capture_output=True, text=True,
                          timeout=1200, cwd=ROOT)  # fmt: skip


def download(dest: Path, *requirements: str, deps: bool = True) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", *FOR_THE_IMAGE, "--dest", str(dest),
                    *([] if deps else ["--no-deps"]), *requirements], check=True, timeout=900)  # fmt: skip
    return dest


def assert_built_offline(engine: Any, done: subprocess.CompletedProcess[str], framework: str, package: str) -> None:
    from imagescan import layer_members

    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    if not report.get("up_to_date"):
        checks = {c["name"]: c for c in report["smoke"]["checks"]}
        assert checks["framework.build"]["status"] == "passed"
        assert framework in checks["framework.build"]["detail"]
    paths = [p for _, p, _ in layer_members(engine, report["image_id"])]
    assert not [p for p in paths if "wheelhouse" in p or p.endswith(".whl")]
    assert any(p.startswith(f"opt/venv/lib/python3.11/site-packages/{package}/") for p in paths)


# -- scikit-learn: always ----------------------------------------------------------------------
def test_an_incomplete_wheelhouse_is_listed_before_any_build(tmp_path: Path, bookworm_base: str) -> None:
    download(tmp_path, "scikit-learn==1.5.2", deps=False)
    done = mlbuild("build", "recipes/sklearn-cpu.yaml", "--wheelhouse", str(tmp_path), "--offline",
                   "--base-image", bookworm_base)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "lacks" in done.stderr and "pandas==2.2.3" in done.stderr
    assert "numpy" in done.stderr and "(needed by scikit-learn 1.5.2)" in done.stderr
    assert "Step 1/" not in done.stderr


def test_sklearn_builds_offline_from_the_wheelhouse(engine: Any, bookworm_base: str, tmp_path: Path) -> None:
    # a name of its own: the example's tags stay on the image the other tests share
    recipe = tmp_path / "offline-sklearn.yaml"
    recipe.write_text(
        (ROOT / "recipes" / "sklearn-cpu.yaml").read_text().replace("name: sklearn-cpu", "name: offline-sklearn")
    )
    from builder.matrix import load_matrix

    uv, pip = load_matrix().uv, load_matrix().pip
    assert uv and pip
    # with the pinned uv and pip wheels in the wheelhouse, uv installs offline too (uv.toml: offline)
    wheelhouse = download(tmp_path / "wheelhouse", "scikit-learn==1.5.2", "pandas==2.2.3", f"uv=={uv.version}",
                          f"pip=={pip.version}")  # fmt: skip
    done = mlbuild("build", str(recipe), "--wheelhouse", str(wheelhouse), "--offline",
                   "--base-image", bookworm_base, "--json")  # fmt: skip
    try:
        assert_built_offline(engine, done, "1.5.2", "sklearn")
        record = "/opt/venv/lib/python3.11/site-packages/scikit_learn-*.dist-info/INSTALLER"
        installer = engine.run(json.loads(done.stdout)["image_id"], ["/bin/sh", "-c", f"cat {record}"])
        assert installer.stdout.strip() == "uv", installer.stdout + installer.stderr
    finally:
        for tag in json.loads(done.stdout or "{}").get("tags", []):
            engine.remove_image(tag)


# -- PyTorch CPU from a wheel on disk: opt-in (MLBUILD_SLOW=1) --------------------------------------
@pytest.fixture(scope="module")
def torch_wheel() -> Path:
    found = sorted(FIND_LINKS.glob(TORCH_WHEEL)) if FIND_LINKS.is_dir() else []
    if not found:
        pytest.fail(f"MLBUILD_SLOW=1 builds PyTorch from {TORCH_WHEEL} in {FIND_LINKS}: none there", pytrace=False)
    return found[0]


@pytest.mark.slow
def test_pytorch_wheelhouse_lacking_its_dependencies_is_listed(
    torch_wheel: Path, tmp_path: Path, bookworm_base: str
) -> None:
    (tmp_path / torch_wheel.name).symlink_to(torch_wheel)
    done = mlbuild("build", "recipes/pytorch-cpu.yaml", "--wheelhouse", str(tmp_path), "--offline",
                   "--base-image", bookworm_base)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "lacks" in done.stderr and "filelock (needed by torch 2.13.0+cpu)" in done.stderr
    assert "numpy<3" in done.stderr and "Step 1/" not in done.stderr


@pytest.mark.slow
def test_pytorch_cpu_builds_offline_from_the_wheelhouse(
    torch_wheel: Path, engine: Any, bookworm_base: str, tmp_path: Path
) -> None:
    download(tmp_path, "--find-links", str(FIND_LINKS), "torch==2.13.0+cpu", "numpy<3")
    done = mlbuild("build", "recipes/pytorch-cpu.yaml", "--wheelhouse", str(tmp_path), "--offline",
                   "--base-image", bookworm_base, "--json")  # fmt: skip
    assert_built_offline(engine, done, "2.13.0+cpu", "torch")
