"""builder.fanout without Docker: the parallel runner (with a fake pipeline) and the status
board that draws it."""

from __future__ import annotations

import hashlib
import io
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from builder import fanout, variants
from builder.commands.many import StatusBoard, summary_table
from builder.errors import SmokeFailed
from builder.pipeline import BuildOptions


def write(folder: Path, text: str, name: str = "recipe.yaml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


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
    planned: list[variants.Planned],
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
    planned = variants.plan([write(tmp_path, text)])
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
    planned = variants.plan([write(tmp_path, text)])  # 3.9 is impossible with 1.9
    outcomes, _, _ = run_fake(monkeypatch, planned, jobs=3, fail={"3.13": SmokeFailed("probe failed")})
    assert [o.result for o in outcomes] == ["impossible", "built", "smoke-failed"]
    err = fanout.FanoutFailed(outcomes)
    assert err.exit_code == 3 and "1 of 3 variants failed" in err.message
    outcomes, _, _ = run_fake(monkeypatch, planned, jobs=3, fail={"3.13": RuntimeError("bug")})
    assert outcomes[2].result == "failed" and fanout.FanoutFailed(outcomes).exit_code == 1
    lines = summary_table(outcomes)
    assert lines[0].split() == ["VARIANT", "RESULT", "SIZE", "TIME", "TAGS"]
    assert "impossible" in lines[1] and "mlbuild/skm:3.11" in lines[2]


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
    planned = variants.plan([write(tmp_path, text)])
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
