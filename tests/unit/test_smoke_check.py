"""The pure smoke verdict on canned probe output, including a framework replaced by a CPU build."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from builder.engine_api import RunResult
from builder.probe import arch_covers, base_version
from builder.resolve import load_and_resolve
from builder.smoke import check, parse_probe
from builder.spec import ResolvedSpec

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def torch_spec() -> ResolvedSpec:
    _, spec = load_and_resolve(ROOT / "recipes" / "pytorch-gpu.yaml")
    return spec


def probe_doc(
    version: str,
    cuda: str | None,
    gpu: dict[str, Any] | None = None,
    checks: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    return {
        "probe": 1, "ok": True,
        "python": {"version": "3.12.7"},
        "framework": {"version": version, "cuda_build": cuda},
        "gpu": gpu or {"status": "not-run", "reason": "no /dev/nvidia* device", "devices": []},
        "checks": checks or [{"name": "framework.import", "status": "passed", "detail": ""}],
    }  # fmt: skip


def test_matching_build_passes(torch_spec: ResolvedSpec) -> None:
    report = check(torch_spec, probe_doc("2.5.1+cu124", "12.4"), "auto")
    assert report.passed and report.gpu_status == "not-run"


def test_framework_replaced_by_cpu_build_fails(torch_spec: ResolvedSpec) -> None:
    doc = probe_doc("2.5.1+cpu", None, checks=[
        {"name": "framework.build", "status": "failed",
         "detail": "pytorch 2.5.1 (CUDA 12.4) expected, found 2.5.1+cpu (no CUDA)"},
    ])  # fmt: skip
    report = check(torch_spec, doc, "auto")
    assert not report.passed
    assert "found 2.5.1+cpu" in report.failures()[0].detail


def test_other_version_fails_even_if_the_probe_said_ok(torch_spec: ResolvedSpec) -> None:
    report = check(torch_spec, probe_doc("2.4.0", "12.4"), "auto")
    assert not report.passed
    assert report.failures()[0].name == "spec.framework_build"
    assert "2.5.1 (CUDA 12.4) expected, found 2.4.0" in report.failures()[0].detail


def test_gpu_required_but_not_run_fails(torch_spec: ResolvedSpec) -> None:
    report = check(torch_spec, probe_doc("2.5.1", "12.4"), "required")
    assert not report.passed
    assert "--gpu required" in report.failures()[0].detail


def test_gpu_not_run_is_never_passed(torch_spec: ResolvedSpec) -> None:
    report = check(torch_spec, probe_doc("2.5.1", "12.4"), "auto")
    assert report.gpu_status == "not-run"
    assert report.to_dict()["gpu"]["status"] != "passed"


def test_cpu_image_gpu_is_not_applicable() -> None:
    _, spec = load_and_resolve(ROOT / "recipes" / "sklearn-cpu.yaml")
    doc = probe_doc("1.5.2", None)
    doc["python"]["version"] = "3.11.2"
    report = check(spec, doc, "auto")
    assert report.passed and report.gpu_status == "not-applicable"


def test_failed_smoke_command_fails(torch_spec: ResolvedSpec) -> None:
    report = check(torch_spec, probe_doc("2.5.1", "12.4"), "auto", (("false", RunResult(1, "", "boom")),))
    assert not report.passed and report.failures()[0].name == "run: false"


def test_missing_probe_output_fails(torch_spec: ResolvedSpec) -> None:
    report = check(torch_spec, None, "auto", probe_error="exit 127: python: not found")
    assert not report.passed and "not found" in report.failures()[0].detail


def test_python_mismatch_fails(torch_spec: ResolvedSpec) -> None:
    doc = probe_doc("2.5.1", "12.4")
    doc["python"]["version"] = "3.11.9"
    assert not check(torch_spec, doc, "auto").passed


def test_parse_probe_skips_framework_noise() -> None:
    out = 'Warning: something\n{"not": "probe"}\n{"checks": [], "ok": true}\n'
    assert parse_probe(out) == {"checks": [], "ok": True}
    assert parse_probe("garbage") is None


@pytest.mark.parametrize(
    ("cap", "archs", "covered"),
    [
        ((9, 0), ["sm_80", "sm_90"], True),
        ((9, 0), ["sm_80", "sm_86"], False),
        ((9, 0), ["sm_80", "compute_80"], True),  # PTX JIT-compiles forward
        ((8, 0), ["sm_90", "compute_90"], False),
        ((12, 0), ["sm_90"], False),
    ],
)
def test_arch_coverage(cap: tuple[int, int], archs: list[str], covered: bool) -> None:
    assert arch_covers(cap, archs) is covered


def test_base_version() -> None:
    assert base_version("2.5.1+cu124") == "2.5.1"
    assert base_version("1.5.2") == "1.5.2"


def test_from_labels_round_trip(torch_spec: ResolvedSpec) -> None:
    from builder.labels import SPEC_LABEL

    again = ResolvedSpec.from_labels({SPEC_LABEL: torch_spec.to_json()})
    assert again == torch_spec
    assert dataclasses.asdict(again) == dataclasses.asdict(torch_spec)


def test_smoke_results_are_remembered_for_inspect(torch_spec: ResolvedSpec, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from builder.smoke import last_result, save_result

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    report = check(torch_spec, probe_doc("2.5.1+cpu", None), "auto")
    save_result("sha256:" + "ab" * 32, report)
    got = last_result("sha256:" + "ab" * 32)
    assert got is not None and got["passed"] is False and got["gpu"] == "not-run"
    assert last_result("sha256:" + "cd" * 32) is None


def test_cpu_build_is_caught_even_when_the_probe_reported_nothing(torch_spec: ResolvedSpec) -> None:
    """The verdict holds the probe's facts to the spec from the labels, not to the probe's word."""
    report = check(torch_spec, probe_doc("2.5.1+cpu", None), "auto")
    assert not report.passed
    assert report.failures()[0].detail == "pytorch 2.5.1 (CUDA 12.4) expected, found 2.5.1+cpu (no CUDA)"
