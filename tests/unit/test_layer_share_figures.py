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
    newest = max((ROOT / "benchmarks" / "results").glob("layers-*.json"))
    block = "\n".join(bench.readme_block(json.loads(newest.read_text()), newest))
    assert block in (ROOT / "README.md").read_text(), "run: python benchmarks/layer_share.py --readme " + str(newest)
