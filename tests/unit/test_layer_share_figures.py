"""The README's sharing figures are generated from the newest layer-share results file
(benchmarks/layer_share.py --readme), never typed by hand."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_readme_sharing_figures_come_from_the_newest_results() -> None:
    spec = importlib.util.spec_from_file_location("layer_share", ROOT / "benchmarks" / "layer_share.py")
    assert spec and spec.loader
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    readme = (ROOT / "README.md").read_text()
    assert readme.count(bench.BEGIN) == 1 and readme.count(bench.END) == 1
    results = sorted((ROOT / "benchmarks" / "results").glob("layers-*.json"))
    if not results:  # no run yet: the README shows no figure rather than a typed one
        assert f"{bench.BEGIN}\n{bench.END}" in readme
        return
    block = "\n".join(bench.readme_block(json.loads(results[-1].read_text()), results[-1]))
    assert block in readme, f"run: python benchmarks/layer_share.py --readme {results[-1]}"
