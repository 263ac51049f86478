"""PyTorch (CPU) built offline from a wheelhouse holding the torch wheel found on this machine:
what the wheelhouse lacks is listed before any build; a complete one builds with pip
--no-index, and the wheels stay out of the image. Skipped where no torch wheel lies on disk."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
FIND_LINKS = Path(os.environ.get("PIP_FIND_LINKS", "/opt/wheels"))
TORCH = sorted(FIND_LINKS.glob("torch-2.13.0+cpu-cp311-*.whl")) if FIND_LINKS.is_dir() else []
needs_torch = pytest.mark.skipif(not TORCH, reason=f"no torch 2.13.0 CPU wheel in {FIND_LINKS}")


def mlbuild(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "builder", *args], capture_output=True, text=True,
                          timeout=1200, cwd=ROOT)  # fmt: skip


@needs_torch
def test_an_incomplete_wheelhouse_is_listed_before_any_build(tmp_path: Path, bookworm_base: str) -> None:
    (tmp_path / TORCH[0].name).symlink_to(TORCH[0])
    done = mlbuild("build", "recipes/pytorch-cpu.yaml", "--wheelhouse", str(tmp_path), "--offline",
                   "--base-image", bookworm_base)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "lacks" in done.stderr and "filelock (needed by torch 2.13.0+cpu)" in done.stderr
    assert "numpy<3" in done.stderr and "Step 1/" not in done.stderr


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("wheelhouse")
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "--dest", str(dest),
                    "--find-links", str(FIND_LINKS), "torch==2.13.0+cpu", "numpy<3"], check=True)  # fmt: skip
    return dest


@needs_torch
def test_pytorch_cpu_builds_offline_from_the_wheelhouse(engine, bookworm_base, wheelhouse) -> None:  # type: ignore[no-untyped-def]
    from imagescan import layer_members

    done = mlbuild("build", "recipes/pytorch-cpu.yaml", "--wheelhouse", str(wheelhouse), "--offline",
                   "--base-image", bookworm_base, "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    if not report.get("up_to_date"):
        checks = {c["name"]: c for c in report["smoke"]["checks"]}
        assert checks["framework.build"]["status"] == "passed"
        assert "2.13.0+cpu" in checks["framework.build"]["detail"]
    paths = [p for _, p, _ in layer_members(engine, report["image_id"])]
    assert not [p for p in paths if "wheelhouse" in p or p.endswith(".whl")]
    assert any(p.startswith("opt/venv/lib/python3.11/site-packages/torch/") for p in paths)
