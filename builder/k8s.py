"""A Kubernetes Job or Deployment for an image, from what the image needs (its resolved spec).

GPU images ask for `nvidia.com/gpu` (the NVIDIA device plugin's resource) and carry a node
affinity that admits only nodes whose driver and GPUs can run them, written with the node
labels of NVIDIA GPU feature discovery (GFD). The label names, from GFD's "Generated Labels"
table (NVIDIA/k8s-device-plugin, docs/gpu-feature-discovery/README.md):
  nvidia.com/cuda.driver.major   Integer  "Major of the version of NVIDIA driver"
  nvidia.com/gpu.compute.major   Integer  "Major of the compute capabilities"
  nvidia.com/gpu.compute.minor   Integer  "Minor of the compute capabilities"
Node affinity terms are ORed, the expressions inside one term ANDed, and Gt compares the label
value as an integer (Kubernetes API, NodeSelectorRequirement): one term per GPU generation.
"""

from __future__ import annotations

import re
from typing import Any

from builder.errors import UsageError
from builder.spec import ResolvedSpec

GPU_RESOURCE = "nvidia.com/gpu"
DRIVER_MAJOR = "nvidia.com/cuda.driver.major"
COMPUTE_MAJOR = "nvidia.com/gpu.compute.major"
COMPUTE_MINOR = "nvidia.com/gpu.compute.minor"
NODE_ARCH = "kubernetes.io/arch"  # the kubelet's own node label: amd64, arm64
KINDS = ("Job", "Deployment")
_NAME_RE = re.compile(r"[^a-z0-9-]+")
_ARCH_RE = re.compile(r"^(sm|compute)_(\d+)(\d)[a-z]?$")


def k8s_name(text: str) -> str:
    """An RFC 1123 label: lower-case alphanumerics and '-', at most 63, alphanumeric ends."""
    name = _NAME_RE.sub("-", text.lower()).strip("-")[:63].strip("-")
    return name or "mlbuild"


def node_affinity(spec: ResolvedSpec, platforms: tuple[str, ...] = ()) -> dict[str, Any] | None:
    """Nodes whose driver major is at least the image's minimum and whose GPU the image's
    kernels cover: SASS sm_XY runs on exactly X.Y, PTX compute_XY on X.Y and newer (the rule
    of builder.probe.arch_covers); and, for an image of other platforms than linux/amd64 alone
    (`platforms`: those its tag holds, default the spec's), nodes of those architectures
    (kubernetes.io/arch). None for a linux/amd64 CPU image."""
    archs = sorted({p.split("/")[1] for p in platforms or (spec.platform,)})
    base: list[dict[str, Any]] = []
    if archs != ["amd64"]:
        base.append({"key": NODE_ARCH, "operator": "In", "values": archs})
    if not spec.is_gpu:
        return _required([{"matchExpressions": base}]) if base else None
    if spec.min_driver:
        major = int(spec.min_driver.split(".")[0])
        base.append({"key": DRIVER_MAJOR, "operator": "Gt", "values": [str(major - 1)]})
    sass: dict[int, set[int]] = {}
    ptx: list[tuple[int, int]] = []
    for arch in spec.archs:
        m = _ARCH_RE.match(arch)
        if not m:
            continue
        cap = (int(m.group(2)), int(m.group(3)))
        if m.group(1) == "sm":
            sass.setdefault(cap[0], set()).add(cap[1])
        else:
            ptx.append(cap)
    terms: list[list[dict[str, Any]]] = []
    for major, minors in sorted(sass.items()):
        terms.append(
            [
                {"key": COMPUTE_MAJOR, "operator": "In", "values": [str(major)]},
                {
                    "key": COMPUTE_MINOR,
                    "operator": "In",
                    "values": [str(n) for n in sorted(minors)],
                },
            ]
        )
    if ptx:
        low = min(ptx)
        terms.append(
            [
                {"key": COMPUTE_MAJOR, "operator": "In", "values": [str(low[0])]},
                {"key": COMPUTE_MINOR, "operator": "Gt", "values": [str(low[1] - 1)]},
            ]
        )
        terms.append([{"key": COMPUTE_MAJOR, "operator": "Gt", "values": [str(low[0])]}])
    if not terms and not base:
        return None
    selector = [{"matchExpressions": base + t} for t in terms] or [{"matchExpressions": base}]
    return _required(selector)


def _required(terms: list[dict[str, Any]]) -> dict[str, Any]:
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}


def manifest(
    spec: ResolvedSpec,
    image: str,
    *,
    kind: str = "Job",
    name: str | None = None,
    namespace: str | None = None,
    gpus: int = 1,
    command: tuple[str, ...] = (),
    replicas: int = 1,
    platforms: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The Job or Deployment (a plain dict, as `kubectl apply` reads it). `platforms`: those
    the image's tag holds (an index), default the spec's own."""
    if kind not in KINDS:
        raise UsageError(f"--kind {kind!r}: expected one of {', '.join(KINDS)}")
    if gpus < 1:
        raise UsageError(f"--gpus {gpus}: give at least 1")
    app = k8s_name(name or spec.name)
    labels = {
        "app.kubernetes.io/name": app,
        "app.kubernetes.io/managed-by": "mlbuild",
        # a label value: at most 63 characters of [A-Za-z0-9_.-]
        "org.mlbuild/variant": re.sub(r"[^A-Za-z0-9_.-]", "_", spec.readable_tag)[:63].strip("_.-"),
    }
    container: dict[str, Any] = {
        "name": app,
        "image": image,
        # the image runs as its own non-root user; say so, so admission policies can check it
        "securityContext": {"runAsNonRoot": spec.uid != 0, "allowPrivilegeEscalation": False},
    }
    if spec.uid:
        container["securityContext"]["runAsUser"] = spec.uid
    if command:
        container["command"] = list(command)
    if spec.is_gpu:
        # Extended resources are set in limits (requests default to them) as whole numbers.
        container["resources"] = {"limits": {GPU_RESOURCE: str(gpus)}}
    pod: dict[str, Any] = {"containers": [container]}
    affinity = node_affinity(spec, platforms)
    if affinity:
        pod["affinity"] = affinity
    if spec.is_gpu:
        # GPU nodes are often tainted so that only GPU pods land there.
        pod["tolerations"] = [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}]
    metadata: dict[str, Any] = {"name": app, "labels": labels}
    if namespace:
        metadata["namespace"] = k8s_name(namespace)
    template = {"metadata": {"labels": labels}, "spec": pod}
    if kind == "Job":
        pod["restartPolicy"] = "Never"
        return {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": metadata,
            "spec": {"backoffLimit": 0, "template": template},
        }
    pod["restartPolicy"] = "Always"
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app.kubernetes.io/name": app}},
            "template": template,
        },
    }
