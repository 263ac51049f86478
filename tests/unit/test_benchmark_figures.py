"""The README's benchmark table is generated from the newest results files
(benchmarks/build_bench.py), never typed by hand: every figure in it matches a results file."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    sys.path.insert(0, str(ROOT / "benchmarks"))  # build_bench imports its neighbour baselines
    try:
        import build_bench
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return build_bench


def test_readme_table_is_the_one_the_newest_results_give(bench: ModuleType) -> None:
    text = (ROOT / "README.md").read_text()
    shown = text.split(bench.TABLE_BEGIN + "\n", 1)[1].split(bench.TABLE_END, 1)[0]
    latest = bench.latest_results()
    assert latest is not None
    expected = "\n".join(bench.readme_block()) + "\n"
    assert shown == expected, "run: python benchmarks/build_bench.py --docs " + str(latest.relative_to(ROOT))
    cuda_file = bench.latest_results("cuda-wheel-")
    cuda = json.loads(cuda_file.read_text()) if cuda_file else None
    assert "\n".join(bench.readme_table(json.loads(latest.read_text()), cuda)) in shown  # the classic run first


def test_the_buildkit_run_is_found_by_its_suffix_and_its_added_goal_is_015(bench: ModuleType) -> None:
    kit = bench.latest_results(suffix="-buildkit")
    if kit is not None:
        assert kit.name.endswith("-buildkit.json") and kit.name[:10] == json.loads(kit.read_text())["date"][:10]
    classic = bench.latest_results()
    assert classic is not None and classic.stem.count("-") == 2  # a date, no builder suffix
    doc = json.loads((ROOT / "benchmarks" / "results" / "2026-12-02.json").read_text())
    assert doc["builder"] == "classic"
    for builder, goal in (("classic", "| ≤ 0.3 |"), ("buildkit", "| ≤ 0.15 |")):
        rows = bench.readme_table({**doc, "builder": builder}, None)
        assert next(r for r in rows if r.startswith("| one package added")).endswith(goal)


def test_the_table_keeps_unfavourable_rows_and_the_naive_one_second(bench: ModuleType) -> None:
    doc = json.loads((ROOT / "benchmarks" / "results" / "2026-11-27.json").read_text())
    rows = bench.readme_table(doc, None)
    noop = next(r for r in rows if r.startswith("| no-op rebuild"))
    assert "| 3.846 | ≤ 1.0 |" in noop  # a ratio worse than its goal is shown as it is
    naive = [i for i, r in enumerate(rows) if "naive" in r]
    assert naive and min(naive) > max(i for i, r in enumerate(rows) if r.startswith("| no-op"))


def test_step_lines_of_mlbuild_and_docker_are_read_and_sorted_into_kinds(bench: ModuleType) -> None:
    import baselines  # on sys.path through build_bench's import: a module of its own

    mlbuild = '  | Step 10/32 [6.6s] RUN ["/tmp/mlbuild-uv/bin/uv", "pip", "install", "-r", "x"]'
    docker = "Step 3/9 : COPY --from=builder /opt/venv /opt/venv"
    texts = [m.group(3) for m in map(baselines.STEP_RE.search, (mlbuild, docker)) if m]
    assert texts == [mlbuild.split("] ", 1)[1], docker.split(" : ", 1)[1]]
    steps = [{"step": texts[0], "seconds": 10.0}, {"step": texts[1], "seconds": 4.0},
             {"step": "RUN apt-get update && apt-get install -y python3.11", "seconds": 6.0}]  # fmt: skip
    assert baselines.breakdown(steps, 25.0) == {
        "apt": 6.0, "install": 10.0, "compile": 0.0, "copy_venv": 4.0, "other_steps": 0.0, "before_first_step": 5.0,
    }  # fmt: skip


def test_buildkit_steps_are_read_from_mlbuilds_indented_lines_with_padded_numbers(bench: ModuleType) -> None:
    import baselines

    kit = baselines.KitSteps()
    for line in ("  | #8 [builder  3/13] COPY build-settings/ /tmp/mlbuild-build/", "  | #8 DONE 0.1s",
                 "  | #14 [builder  9/13] RUN [\"/tmp/mlbuild-uv/bin/uv\", \"pip\", \"install\"]", "  | #14 DONE 2.5s",
                 "#5 [2/5] RUN --mount=type=cache,target=/var/cache/apt apt-get update", "#5 DONE 6.0s",
                 "  | Step 13/13 [5.5s] RUN [\"/opt/venv/bin/python\", \"/tmp/mlbuild/layersplit.py\"]",
                 "  | #18 sha256:28d44f38f60f", "  | #18 DONE 4.2s"):  # fmt: skip
        kit.read(line.removeprefix("  | "))
    assert [(s["step"][:13], s["seconds"]) for s in kit.steps()] == [
        ("COPY build-se", 0.1), ('RUN ["/tmp/ml', 2.5), ("RUN apt-get u", 6.0), ('RUN ["/opt/ve', 4.2),
    ]  # fmt: skip
