"""builder.fanout without Docker: matrix expansion, planning, the parallel runner (with a fake
pipeline), layer accounting, and the status board."""

from __future__ import annotations

import hashlib
import io
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from builder import fanout
from builder.commands.many import StatusBoard, github_matrix, summary_table
from builder.errors import RecipeError, ResolveError, SmokeFailed, UsageError
from builder.pipeline import BuildOptions
from builder.recipe import load_recipe

MATRIX = """\
name: skm
framework: sklearn
cuda: cpu
matrix:
  python: ["3.9", "3.11", "3.13"]
  framework_version: ["1.5", "1.9"]
  exclude:
    - {python: "3.13", framework_version: "1.5"}
image:
  tags: ["v1"]
"""


def write(folder: Path, text: str, name: str = "recipe.yaml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


# ---- recipe matrix: validation ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("matrix:\n  python: [3.11]\n", "matrix.python[0]: 3.11 is a YAML number"),
        ('matrix:\n  cuda: ["12.x"]\n', "matrix.cuda[0]: '12.x' is not allowed"),
        ("matrix:\n  python: []\n", "matrix.python: is empty"),
        ('matrix:\n  pyhton: ["3.11"]\n', "matrix.pyhton: unknown key (did you mean 'python'?)"),
        ('matrix:\n  python: ["3.11", "3.11"]\n', "listed twice"),
        ('matrix:\n  framework_version: [">=x"]\n', "neither a version prefix"),
        ('python: "3.11"\nmatrix:\n  python: ["3.11"]\n', "also set at the top level"),
        ('matrix:\n  python: ["3.11"]\n  exclude: [{python: "3.9"}]\n', "not among matrix.python"),
        (
            'matrix:\n  python: ["3.11"]\n  exclude: [{cuda: "cpu"}]\n',
            "is not an axis of this matrix",
        ),
        ('matrix:\n  python: ["3.11"]\n  exclude: ["3.11"]\n', "expected a mapping"),
        ("matrix: {}\n", "names no axis"),
    ],
)
def test_matrix_problems_are_reported(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, "name: x\nframework: sklearn\n" + text)
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    assert any(expected in d for d in info.value.details), info.value.details


def test_matrix_is_read(tmp_path: Path) -> None:
    r = load_recipe(write(tmp_path, MATRIX))
    assert r.matrix is not None
    assert r.matrix.axes == (
        ("python", ("3.9", "3.11", "3.13")),
        ("framework_version", ("1.5", "1.9")),
    )
    assert r.matrix.exclude == ((("framework_version", "1.5"), ("python", "3.13")),)


# ---- expansion and planning ------------------------------------------------------------------
def test_expand_crosses_axes_less_excluded(tmp_path: Path) -> None:
    variants = fanout.expand(load_recipe(write(tmp_path, MATRIX)))
    assert [v.id for v in variants] == [
        "py3.9-fw1.5",
        "py3.9-fw1.9",
        "py3.11-fw1.5",
        "py3.11-fw1.9",
        "py3.13-fw1.9",
    ]
    v = variants[3]
    assert (v.recipe.python, v.recipe.framework_version, v.recipe.matrix) == ("3.11", "1.9", None)
    assert v.recipe.image.tags == ("v1-py3.11-fw1.9",)  # one tag per variant, not one for all
    assert v.label == "skm:py3.11-fw1.9"


def test_expand_without_matrix_is_one_variant(tmp_path: Path) -> None:
    r = load_recipe(write(tmp_path, "name: one\nframework: sklearn\n"))
    [v] = fanout.expand(r)
    assert v.id == "default" and v.recipe == r and v.label == "one"


def test_exclude_everything_is_a_recipe_error(tmp_path: Path) -> None:
    text = 'name: x\nframework: sklearn\nmatrix:\n  python: ["3.11"]\n  exclude: [{python: "3.11"}]\n'
    with pytest.raises(RecipeError, match="problem"):
        fanout.expand(load_recipe(write(tmp_path, text)))


def test_variant_ids_fit_docker_tags() -> None:
    vid = fanout.variant_id([("python", "3.12"), ("cuda", "12.4"), ("framework_version", ">=2.3,<2.5")])
    assert vid == "py3.12-cuda12.4-fwge2.3_lt2.5"
    assert fanout.variant_id([]) == "default"


def test_plan_skips_impossible_variants_with_reasons(tmp_path: Path) -> None:
    planned = fanout.plan([write(tmp_path, MATRIX)])
    by_id = {p.variant.id: p for p in planned}
    assert not by_id["py3.9-fw1.9"].possible  # scikit-learn 1.9 has no Python 3.9 wheels
    assert "3.9" in by_id["py3.9-fw1.9"].reason
    ok = by_id["py3.11-fw1.9"]
    assert ok.spec is not None and ok.spec.python == "3.11" and ok.spec.framework_version.startswith("1.9")
    assert by_id["py3.9-fw1.5"].spec.framework_version.startswith("1.5")  # type: ignore[union-attr]
    fanout.check_strict(planned, strict=False)
    with pytest.raises(ResolveError, match="1 of 5 variants cannot be built") as info:
        fanout.check_strict(planned, strict=True)
    assert info.value.exit_code == 2 and "skm:py3.9-fw1.9" in info.value.details[0]


def test_plan_of_a_folder_and_variant_filter(tmp_path: Path) -> None:
    write(tmp_path, MATRIX, "a.yaml")
    write(tmp_path, "name: b\nframework: sklearn\n", "b.yml")
    (tmp_path / "notes.txt").write_text("not a recipe")
    planned = fanout.plan([tmp_path])
    assert len(planned) == 6
    only = fanout.plan([tmp_path], only=("py3.11-fw1.5", "b"))
    assert [p.variant.label for p in only] == ["skm:py3.11-fw1.5", "b"]
    with pytest.raises(UsageError, match="no variant 'py9'"):
        fanout.plan([tmp_path], only=("py9",))


def test_plan_refuses_two_recipes_with_one_name(tmp_path: Path) -> None:
    write(tmp_path, "name: same\nframework: sklearn\n", "a.yaml")
    write(tmp_path, "name: same\nframework: sklearn\n", "b.yaml")
    with pytest.raises(UsageError, match="two recipes are named 'same'"):
        fanout.plan([tmp_path])


def test_nothing_possible_fails_even_without_strict(tmp_path: Path) -> None:
    text = 'name: x\nframework: sklearn\nmatrix:\n  cuda: ["12.4", "12.6"]\n'
    with pytest.raises(ResolveError, match="no variant can be built"):
        fanout.check_strict(fanout.plan([write(tmp_path, text)]), strict=False)


def test_github_matrix_puts_gpu_smoke_on_gpu_runners(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2] / "recipes"
    planned = fanout.plan([root / "pytorch-gpu.yaml", root / "sklearn-cpu.yaml"])
    m = github_matrix(planned, "cpu-box", "gpu-box")
    runners = {e["name"]: (e["runner"], e["gpu"]) for e in m["include"]}
    assert runners == {"pytorch-gpu": ("gpu-box", True), "sklearn-cpu": ("cpu-box", False)}


# ---- the parallel runner, with a fake pipeline ------------------------------------------------
class FakeResult:
    def __init__(self, label: str, up_to_date: bool = False):
        self.image_id = "sha256:" + hashlib.sha256(label.encode()).hexdigest()
        self.tags = (f"mlbuild/skm:{label}",)
        self.size_bytes = 1000
        self.up_to_date = up_to_date
        self.smoke = None
        self.spec = None
        self.content_tag = "spec-x"
        self.published = None


def run_fake(
    monkeypatch: pytest.MonkeyPatch,
    planned: list[fanout.Planned],
    jobs: int,
    fail: dict[str, Exception] | None = None,
) -> tuple[list[fanout.Outcome], int, list[Any]]:
    running = 0
    peak = 0
    lock = threading.Lock()
    events: list[Any] = []

    def fake_build(path: Path, **kw: Any) -> FakeResult:
        nonlocal running, peak
        vid = kw["recipe"].python
        with lock:
            running += 1
            peak = max(peak, running)
        kw["say"]("resolved")
        kw["on_line"]("Step 1/9 : FROM base")
        time.sleep(0.05)
        with lock:
            running -= 1
        if fail and vid in fail:
            raise fail[vid]
        return FakeResult(vid)

    monkeypatch.setattr("builder.pipeline.build", fake_build)
    out = fanout.build_all(
        planned,
        connect=lambda: object(),
        settings=None,  # type: ignore[arg-type, return-value]
        options=BuildOptions(),
        jobs=jobs,
        on_event=lambda *e: events.append(e),
    )
    return out, peak, events


def test_build_all_bounds_parallelism_and_keeps_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pythons = '["3.10", "3.11", "3.12", "3.13", "3.14"]'
    text = f"name: skm\nframework: sklearn\nmatrix:\n  python: {pythons}\n"
    planned = fanout.plan([write(tmp_path, text)])
    outcomes, peak, events = run_fake(monkeypatch, planned, jobs=2)
    assert peak == 2
    assert [o.planned.variant.id for o in outcomes] == [p.variant.id for p in planned]
    assert all(o.result == "built" for o in outcomes)
    states = {(e[0], e[1]) for e in events}
    assert ("skm:py3.12", "building") in states and ("skm:py3.12", "built") in states
    _, peak1, _ = run_fake(monkeypatch, planned, jobs=1)
    assert peak1 == 1


def test_failures_are_collected_with_exit_codes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = 'name: skm\nframework: sklearn\nmatrix:\n  python: ["3.9", "3.11", "3.13"]\n  framework_version: ["1.9"]\n'
    planned = fanout.plan([write(tmp_path, text)])  # 3.9 is impossible with 1.9
    outcomes, _, _ = run_fake(monkeypatch, planned, jobs=3, fail={"3.13": SmokeFailed("probe failed")})
    assert [o.result for o in outcomes] == ["impossible", "built", "smoke-failed"]
    err = fanout.FanoutFailed(outcomes)
    assert err.exit_code == 3 and "1 of 3 variants failed" in err.message
    outcomes, _, _ = run_fake(monkeypatch, planned, jobs=3, fail={"3.13": RuntimeError("bug")})
    assert outcomes[2].result == "failed" and fanout.FanoutFailed(outcomes).exit_code == 1
    lines = summary_table(outcomes)
    assert lines[0].split() == ["VARIANT", "RESULT", "SIZE", "TIME", "TAGS"]
    assert "impossible" in lines[1] and "mlbuild/skm:3.11" in lines[2]


# ---- layers ----------------------------------------------------------------------------------
def test_chain_ids_follow_the_oci_rule() -> None:
    a, b = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    chain = fanout.chain_ids([a, b])
    assert chain[0] == a
    assert chain[1] == "sha256:" + hashlib.sha256(f"{a} {b}".encode()).hexdigest()
    assert fanout.chain_ids([b, b])[1] != fanout.chain_ids([a, b])[1]  # same content, other parent


def h(size: int, by: str) -> dict[str, Any]:
    return {"Size": size, "CreatedBy": by}


def test_layer_sizes_from_history() -> None:
    history = [
        h(0, '/bin/sh -c #(nop)  CMD ["python"]'),
        h(887, "RUN useradd"),
        h(0, "/bin/sh -c #(nop) WORKDIR /w"),
        h(372, "/bin/sh -c #(nop) COPY dir"),
        h(0, "/bin/sh -c #(nop)  ENV A=1"),
        h(117, ""),
    ]  # newest first
    assert fanout.layer_sizes(history, 3) == [117, 372, 887]
    assert fanout.layer_sizes(history, 4) == [117, 372, 0, 887]  # WORKDIR made an empty layer
    assert fanout.layer_sizes(history, 6) is None  # cannot be told apart: say so, never guess


class FakeEngine:
    """Three images: two variants on one base (sharing base + apt), one on another base."""

    def __init__(self) -> None:
        d = {n: "sha256:" + n * 64 for n in "abcdef"}
        self.images = {
            "sha256:v1": ([d["a"], d["b"], d["c"]], [100, 50, 7]),
            "sha256:v2": ([d["a"], d["b"], d["d"]], [100, 50, 9]),
            "sha256:v3": ([d["e"], d["b"], d["f"]], [80, 50, 5]),  # d[b] on another parent
            "sha256:base": ([d["a"]], [100]),
        }

    def inspect(self, ref: str) -> dict[str, Any]:
        diffs, sizes = self.images[ref]
        return {"Id": ref, "RootFS": {"Layers": diffs}, "Size": sum(sizes)}

    def history(self, ref: str) -> list[dict[str, Any]]:
        return [h(s, "RUN x") for s in reversed(self.images[ref][1])]

    def list_images(self) -> list[dict[str, Any]]:
        return [{"Id": i} for i in self.images]

    def disk_usage(self) -> dict[str, Any]:
        return {
            "Images": [
                {"Id": "sha256:v1", "Size": 157, "SharedSize": 150},
                {"Id": "sha256:v2", "Size": 159, "SharedSize": 150},
                {"Id": "sha256:v3", "Size": 135, "SharedSize": 999},
            ]
        }


def test_sharing_counts_layers_by_chain() -> None:
    s = fanout.sharing(FakeEngine(), ["sha256:v1", "sha256:v2", "sha256:v3", "sha256:v1"])  # type: ignore[arg-type]
    assert s.images == ("sha256:v1", "sha256:v2", "sha256:v3")
    assert s.total_bytes == 157 + 159 + 135
    assert s.shared_bytes == 150 and s.shared_layers == 2  # base + apt of v1/v2, not v3's b
    assert s.stored_bytes == 100 + 50 + 7 + 9 + 80 + 50 + 5
    assert s.saved_bytes == 150


def test_check_with_df_compares_to_the_engine() -> None:
    rows = fanout.check_with_df(FakeEngine(), ["sha256:v1", "sha256:v2", "sha256:v3"])  # type: ignore[arg-type]
    assert [(r.shared, r.df_shared, r.agrees) for r in rows] == [
        (150, 150, True),
        (150, 150, True),
        (0, 999, False),
    ]


# ---- status lines ----------------------------------------------------------------------------
def test_status_board_plain_and_live() -> None:
    plain = io.StringIO()
    board = StatusBoard(["a", "bb"], plain, live=False, quiet=False)
    board("a", "starting", "connecting")
    board("bb", "building", "Step 1/9 :  FROM   x")
    assert plain.getvalue().splitlines() == [
        "a: starting: connecting",
        "bb: building: Step 1/9 : FROM x",
    ]
    live = io.StringIO()
    board = StatusBoard(["a", "bb"], live, live=True, quiet=False)
    board("a", "starting", "x")
    board("a", "built", "10 MB")
    text = live.getvalue()
    assert text.count("\x1b[2F") == 1 and text.count("\n") == 4  # two lines, drawn twice
    assert "ok" in text.splitlines()[-2] and "built" in text.splitlines()[-2]
    quiet = io.StringIO()
    StatusBoard(["a"], quiet, live=True, quiet=True)("a", "built", "x")
    assert quiet.getvalue() == ""


def test_variants_on_one_base_wait_for_the_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first variant of a base builds alone, so the others reuse its cached OS layers."""
    text = 'name: skm\nframework: sklearn\npython: "3.11"\nmatrix:\n  framework_version: ["1.5", "1.6", "1.7"]\n'
    planned = fanout.plan([write(tmp_path, text)])
    spans: dict[str, tuple[float, float]] = {}

    def fake_build(path: Path, **kw: Any) -> FakeResult:
        start = time.monotonic()
        time.sleep(0.05)
        spans[kw["recipe"].framework_version] = (start, time.monotonic())
        return FakeResult(kw["recipe"].framework_version)

    monkeypatch.setattr("builder.pipeline.build", fake_build)
    outcomes = fanout.build_all(
        planned,
        connect=lambda: object(),
        settings=None,  # type: ignore[arg-type, return-value]
        options=BuildOptions(),
        jobs=3,
    )
    assert [o.result for o in outcomes] == ["built"] * 3
    first_end = spans["1.5"][1]
    assert spans["1.6"][0] >= first_end and spans["1.7"][0] >= first_end
    assert spans["1.7"][0] < spans["1.6"][1]  # the followers run side by side
