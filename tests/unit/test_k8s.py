"""Manifests from builder.k8s, validated against the Kubernetes API schema (kubernetes-validate
ships the JSON schemas of each Kubernetes release; strict mode refuses unknown field names)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import kubernetes_validate as kv
import pytest

from builder import k8s
from builder.recipe import load_recipe
from builder.resolve import resolve
from builder.spec import ResolvedSpec

ROOT = Path(__file__).resolve().parents[2]
DIGEST = "registry.example.com/team/app@sha256:" + "a" * 64


def spec_of(name: str) -> ResolvedSpec:
    return resolve(load_recipe(ROOT / "recipes" / name))


def validate(doc: dict[str, Any]) -> None:
    kv.validate(doc, kv.utils.latest_version(), strict=True)


@pytest.mark.parametrize("kind", ["Job", "Deployment"])
@pytest.mark.parametrize("recipe", ["pytorch-gpu.yaml", "sklearn-cpu.yaml"])
def test_manifests_pass_the_api_schema(recipe: str, kind: str) -> None:
    doc = k8s.manifest(spec_of(recipe), DIGEST, kind=kind, namespace="ml", gpus=2, command=("python", "train.py"))
    validate(doc)
    assert doc["kind"] == kind
    assert doc["apiVersion"] == ("batch/v1" if kind == "Job" else "apps/v1")


def test_schema_check_catches_a_wrong_field() -> None:
    """The validator is not a no-op: a misspelt field or a wrong type is refused."""
    doc = k8s.manifest(spec_of("sklearn-cpu.yaml"), DIGEST)
    doc["spec"]["template"]["spec"]["containers"][0]["imagee"] = "x"
    with pytest.raises(kv.ValidationError):
        validate(doc)
    doc = k8s.manifest(spec_of("sklearn-cpu.yaml"), DIGEST, kind="Deployment")
    doc["spec"]["replicas"] = "one"
    with pytest.raises(kv.ValidationError):
        validate(doc)


def test_gpu_image_requests_gpus_and_pins_nodes() -> None:
    spec = spec_of("pytorch-gpu.yaml")  # CUDA 12.4 wheels: sm_50 ... sm_90, driver >= 525
    assert spec.min_driver and spec.archs
    doc = k8s.manifest(spec, DIGEST, gpus=2)
    pod = doc["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == DIGEST
    assert pod["containers"][0]["resources"] == {"limits": {"nvidia.com/gpu": "2"}}
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    major = int(spec.min_driver.split(".")[0])
    allowed: set[tuple[int, int]] = set()
    for term in terms:
        exprs = {e["key"]: e for e in term["matchExpressions"]}
        driver = exprs["nvidia.com/cuda.driver.major"]
        assert driver["operator"] == "Gt" and int(driver["values"][0]) == major - 1
        cmaj = exprs["nvidia.com/gpu.compute.major"]
        cmin = exprs["nvidia.com/gpu.compute.minor"]
        assert cmaj["operator"] == cmin["operator"] == "In"
        allowed |= {(int(cmaj["values"][0]), int(m)) for m in cmin["values"]}
    wanted = {(int(a[3:-1]), int(a[-1])) for a in spec.archs if a.startswith("sm_")}
    assert allowed == wanted


def test_node_affinity_admits_exactly_the_right_nodes() -> None:
    """Evaluate the affinity the way the scheduler does, on GFD-labelled nodes."""
    spec = dataclasses.replace(
        spec_of("pytorch-gpu.yaml"), min_driver="535.104.05", archs=("sm_80", "sm_90", "compute_90")
    )
    terms = k8s.node_affinity(spec)["nodeAffinity"][  # type: ignore[index]
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]["nodeSelectorTerms"]

    def admits(labels: dict[str, str]) -> bool:
        def ok(e: dict[str, Any]) -> bool:
            v = labels.get(e["key"])
            if v is None:
                return False
            if e["operator"] == "In":
                return v in e["values"]
            return int(v) > int(e["values"][0])  # Gt

        return any(all(ok(e) for e in t["matchExpressions"]) for t in terms)

    def node(driver: int, cc: str) -> dict[str, str]:
        major, minor = cc.split(".")
        return {
            "nvidia.com/cuda.driver.major": str(driver),
            "nvidia.com/gpu.compute.major": major,
            "nvidia.com/gpu.compute.minor": minor,
        }

    assert admits(node(535, "8.0")) and admits(node(550, "9.0"))
    assert admits(node(570, "10.0"))  # PTX compute_90 is JIT-compiled on newer GPUs
    assert not admits(node(525, "9.0"))  # driver too old
    assert not admits(node(550, "8.6"))  # no sm_86 kernels, and no PTX at or below it
    assert not admits(node(550, "7.5"))
    assert not admits({})  # a CPU node without GFD labels


def test_cpu_image_gets_no_gpu_request() -> None:
    doc = k8s.manifest(spec_of("sklearn-cpu.yaml"), DIGEST)
    pod = doc["spec"]["template"]["spec"]
    assert "resources" not in pod["containers"][0]
    assert "affinity" not in pod and "tolerations" not in pod
    assert pod["restartPolicy"] == "Never"


def test_names_become_rfc1123_labels() -> None:
    assert k8s.k8s_name("My_Model.v2") == "my-model-v2"
    assert len(k8s.k8s_name("x" * 100)) == 63
    assert k8s.k8s_name("___") == "mlbuild"
