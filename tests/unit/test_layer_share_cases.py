"""benchmarks/layer_share.py: the recipe variants it builds, and results files with one section
per recipe (a later run of the day replaces its own section only; old flat files still render)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("layer_share_cases", ROOT / "benchmarks" / "layer_share.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_torch_variants_pin_numpy_add_one_package_and_change_the_pin(bench: ModuleType) -> None:
    texts = bench.variant_texts(bench.CASES["torch-cpu"], pin=True)
    assert "  - numpy==2.4.6\n" in texts["v1"] and "numpy<3" not in texts["v1"]
    assert texts["v2"] == texts["v1"].replace("  - numpy==2.4.6\n", f"  - numpy==2.4.6\n  - {bench.ADD}\n")
    assert "  - numpy==2.4.5\n" in texts["v3"] and "2.4.6" not in texts["v3"]
    assert set(bench.variant_texts(bench.CASES["sklearn"], pin=False)) == {"v1", "v2"}


def test_the_torch_wheel_must_be_in_the_wheelhouse(bench: ModuleType, tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match=r"no torch-2\.13\.0\+cpu-cp311-\*\.whl"):
        bench.framework_wheel(bench.CASES["torch-cpu"], tmp_path)
    wheel = tmp_path / "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"
    wheel.write_bytes(b"")
    assert bench.framework_wheel(bench.CASES["torch-cpu"], tmp_path) == wheel


def change(downloaded: int) -> dict[str, object]:
    return {"downloaded_bytes": downloaded, "downloaded_layers": 2, "changed_distributions_compressed_bytes": 1000,
            "downloaded_vs_changed_distributions": downloaded / 1000, "image_compressed_bytes": 10**8,
            "new_layer_bytes": 3000, "image_bytes": 3 * 10**8}  # fmt: skip


def section(recipe: str, date: str, downloaded: int) -> dict[str, object]:
    return {"date": date, "recipe": recipe, "changes": {"add_package": "+ tabulate==0.9.0"},
            "add_package": change(downloaded)}  # fmt: skip


def test_a_run_replaces_its_recipe_section_and_keeps_the_others(bench: ModuleType, tmp_path: Path) -> None:
    path = tmp_path / "layers-2026-12-02.json"
    old = section("recipes/sklearn-cpu.yaml", "2026-12-02T07:00:00Z", 1100)
    path.write_text(json.dumps(old))  # a flat file from before there were sections
    doc = bench.merged(path, "torch-cpu", section("recipes/pytorch-cpu.yaml", "2026-12-02T09:00:00Z", 2000))
    assert list(doc["recipes"]) == ["sklearn", "torch-cpu"] and doc["recipes"]["sklearn"] == old
    path.write_text(json.dumps(doc))
    again = bench.merged(path, "sklearn", section("recipes/sklearn-cpu.yaml", "2026-12-02T10:00:00Z", 1200))
    assert again["recipes"]["sklearn"]["add_package"]["downloaded_bytes"] == 1200
    assert again["recipes"]["torch-cpu"] == doc["recipes"]["torch-cpu"]
    rows = bench.readme_block(again, path)
    assert [r.split(" | ")[0] for r in rows if r.startswith("| recipes/")] == [
        "| recipes/sklearn-cpu.yaml", "| recipes/pytorch-cpu.yaml"]  # fmt: skip
    assert "2026-12-02," not in rows[1]  # one date, shown once
    figures = "| 1.2 kB (2 layers) | 1.0 kB | 1.2 | 0.00% of 100.0 MB | 0.00% of 300.0 MB |"
    assert rows[-3] == f"| recipes/sklearn-cpu.yaml | + tabulate==0.9.0 {figures}"
