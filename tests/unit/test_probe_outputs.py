"""The probe's GPU checks as the smoke verdict reads them, on canned probe outputs of each
framework (tests/fixtures/probe: what the probe prints on a GPU host), and the probe's own
architecture logic: CUDA's binary compatibility and the fat-binary reader."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from builder.probe import arch_covers, coverage, fatbin_archs, library_archs
from builder.resolve import load_and_resolve
from builder.smoke import check, parse_probe

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
CASES = {  # fixture -> (recipe, the GPU computations it must have run and passed)
    "torch": (
        "pytorch-gpu",
        ("gpu.arch", "gpu.matmul", "gpu.cudnn_conv", "gpu.nccl_allreduce", "gpu.nccl_process_group"),
    ),
    "tf": ("tensorflow-gpu", ("gpu.arch", "gpu.matmul", "gpu.cudnn_conv", "gpu.nccl_allreduce")),
    "jax": ("jax-gpu", ("gpu.arch", "gpu.jit")),
}


def canned(name: str) -> tuple[Any, dict[str, Any]]:
    recipe, _ = CASES[name]
    _, spec = load_and_resolve(ROOT / "recipes" / f"{recipe}.yaml")
    doc = parse_probe((FIXTURES / "probe" / f"{name}-gpu.out").read_text())
    assert doc is not None
    return spec, doc


def failing(doc: dict[str, Any], name: str, detail: str) -> dict[str, Any]:
    """The same output with one check failed (and the probe's own summary saying so)."""
    checks = [dict(c, status="failed", detail=detail) if c["name"] == name else c for c in doc["checks"]]
    return {**doc, "ok": False, "checks": checks, "gpu": {**doc["gpu"], "status": "failed"}}


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_gpu_run_that_computed_passes_required(name: str) -> None:
    spec, doc = canned(name)
    report = check(spec, doc, "required", access="devices")
    assert report.passed, report.failures()
    assert report.gpu_status == "passed"
    statuses = {c.name: c.status for c in report.checks}
    for wanted in CASES[name][1]:
        assert statuses.get(wanted) == "passed", wanted
    out = report.to_dict()["gpu"]
    assert out["devices"] and all(d["arch_covered"] for d in out["devices"]) and out["driver"]


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("mode", ["auto", "required"])
def test_one_failed_gpu_computation_fails_the_smoke_test(name: str, mode: str) -> None:
    spec, doc = canned(name)
    last = CASES[name][1][-1]  # the collective for PyTorch and TensorFlow, the jit for JAX
    report = check(spec, failing(doc, last, "device 1: all-reduce gave 1.0..1.0, expected 3.0"), mode)
    assert not report.passed and report.gpu_status == "failed"
    assert last in [c.name for c in report.failures()]


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_gpu_status_without_any_gpu_computation_does_not_pass_required(name: str) -> None:
    """A probe (or a tampered report) that says "passed" but ran no gpu.* check."""
    spec, doc = canned(name)
    doc = {**doc, "checks": [c for c in doc["checks"] if not c["name"].startswith("gpu.")]}
    report = check(spec, doc, "required")
    assert not report.passed
    assert [c.name for c in report.failures()] == ["gpu.required"]
    assert "ran no GPU computation" in report.failures()[0].detail


def test_required_on_a_cpu_image_never_passes() -> None:
    _, spec = load_and_resolve(ROOT / "recipes" / "sklearn-cpu.yaml")
    doc = {"probe": 1, "ok": True, "python": {"version": "3.11.2"}, "framework": {"version": "1.5.2"},
           "gpu": {"status": "passed"}, "checks": [{"name": "gpu.fake", "status": "passed"}]}  # fmt: skip
    report = check(spec, doc, "required")
    assert not report.passed
    assert "this image has no GPU build" in report.failures()[0].detail


def test_an_uncovered_device_fails_the_arch_check() -> None:
    devices = [{"index": 0, "name": "B200", "capability": "10.0", "arch_covered": False}]
    with pytest.raises(AssertionError, match=r"no kernel image for B200 \(sm_100\)"):
        coverage(devices, ["sm_80", "sm_90"], "TensorFlow's build")
    with pytest.raises(AssertionError, match="reports no CUDA architectures"):
        coverage([], [], "jaxlib's CUDA kernels")


@pytest.mark.parametrize(
    ("cap", "archs", "covered"),
    [
        ((8, 6), ["sm_80"], True),  # SASS runs on later minors of its major
        ((8, 9), ["sm_80", "sm_86"], True),
        ((8, 0), ["sm_86"], False),  # not on earlier minors
        ((9, 0), ["sm_86"], False),  # nor on another major
        ((10, 0), ["compute_80"], True),  # PTX is JIT-compiled for any later device
        ((9, 0), ["sm_90a"], True),
        ((10, 0), ["sm_90a", "compute_90a"], False),  # arch-specific: exactly 9.0
        ((10, 3), ["sm_100f"], True),  # family: same major, later minor
        ((12, 0), ["sm_100f"], False),
        ((12, 0), ["sm_120"], True),
        ((12, 1), ["sm_120"], True),
        ((12, 0), ["bogus", ""], False),
    ],
)
def test_cuda_binary_compatibility(cap: tuple[int, int], archs: list[str], covered: bool) -> None:
    assert arch_covers(cap, archs) is covered


@pytest.mark.parametrize(
    ("fixture", "archs"),
    [
        ("sm80-sm90a-ptx90.fatbin", {"sm_80", "sm_90a", "compute_90"}),
        ("sm80-ptx90-compressed.fatbin", {"sm_80", "compute_90"}),
        ("sm100f-ptx90a.fatbin", {"sm_100f", "compute_90a"}),
    ],
)
def test_fatbin_reader(fixture: str, archs: set[str], tmp_path: Path) -> None:
    data = (FIXTURES / "fatbin" / fixture).read_bytes()
    assert fatbin_archs(data) == archs
    # inside a shared library: between other bytes, next to a second fat binary, and a stray magic
    lib = tmp_path / "libkernels.so"
    other = (FIXTURES / "fatbin" / "sm80-ptx90-compressed.fatbin").read_bytes()
    lib.write_bytes(b"\x7fELF" + bytes(1000) + data + b"\x50\xed\x55\xba junk" + bytes(77) + other + bytes(10))
    found = library_archs([str(lib), str(tmp_path / "missing.so")])
    assert set(found[str(lib)]) == archs | {"sm_80", "compute_90"}
    assert library_archs([str(FIXTURES / "fatbin" / "README.md")]) == {}  # no kernels: not listed


def test_canned_outputs_are_what_the_probe_prints() -> None:
    """Each fixture is one JSON line after the framework's own noise, as parse_probe expects."""
    for name in CASES:
        text = (FIXTURES / "probe" / f"{name}-gpu.out").read_text()
        assert json.loads(text.strip().splitlines()[-1]) == parse_probe(text)
