"""A lock of two platforms, on the real engine, through the CLI: `mlbuild lock` of the
scikit-learn example with `platforms: [linux/amd64, linux/arm64]` resolves each platform inside
its own base (arm64 under QEMU), a locked arm64 build follows the lock's arm64 entry, and
`mlbuild verify --platform linux/arm64` rebuilds it without cache to the same image ID.

Opt-in (MLBUILD_SLOW=1): three emulated arm64 installs, 15-20 minutes on this 2-CPU machine.
test_platforms.py covers the unlocked two-platform build, push and pull in every run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
ARM = "linux/arm64"


def _mlbuild(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "builder", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=3600)  # fmt: skip


def test_two_platform_lock_gives_an_identical_locked_arm64_image(
    engine: Any, bookworm_base: str, arm64_base: str, tmp_path: Path
) -> None:
    recipe = tmp_path / "sklearn-cpu.yaml"
    recipe.write_text((ROOT / "recipes" / "sklearn-cpu.yaml").read_text() + "platforms: [linux/amd64, linux/arm64]\n")
    locked = _mlbuild("lock", recipe.name, "--json", cwd=tmp_path)
    assert locked.returncode == 0, locked.stderr[-3000:]
    doc = json.loads((tmp_path / "sklearn-cpu.lock.json").read_text())
    entries = {doc["spec"].get("platform", "linux/amd64"), *doc.get("platforms", {})}
    assert entries == {"linux/amd64", ARM}, sorted(doc)

    built = _mlbuild("build", recipe.name, "--locked", "--platform", ARM, "--json", cwd=tmp_path)
    assert built.returncode == 0, built.stderr[-3000:]
    image = json.loads(built.stdout)["image_id"]
    assert engine.inspect(image)["Architecture"] == "arm64"

    again = _mlbuild("verify", image, "--recipe", recipe.name, "--json", cwd=tmp_path)
    result = json.loads(again.stdout)
    assert again.returncode == 0, json.dumps(result.get("diff"))[:5000] or again.stderr[-3000:]
    assert result["identical"] and result["rebuilt"] == image
