"""In-memory stand-ins for an engine and a registry, for unit tests of the library.

`FakeEngine` implements builder.engine_api.Engine (mypy checks it: pyproject's mypy `files`
include this module, and `_implements` below holds the class to the protocol). It keeps images,
tags and containers in dicts; a build makes an image whose labels are the Dockerfile's LABEL
lines plus the build's labels, and running the smoke probe answers what a good image would,
from the image's own spec label, unless a test scripts another answer.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from builder import engine_api
from builder.credentials import Credentials
from builder.engine_api import BuilderProbe, BuildKitRun, LineSink, ProgressSink, RunResult
from builder.errors import BuildError, EngineError, RegistryError
from builder.labels import SPEC_LABEL
from builder.refs import parse_reference
from builder.registry import Access, RemoteManifest, RetryPolicy
from builder.spec import PROBE_PATH

MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
_LABEL_LINE = re.compile(r'^LABEL "((?:[^"\\]|\\.)*)"="((?:[^"\\]|\\.)*)"$')


def sha(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _unquote(text: str) -> str:
    """The inverse of builder.render.dockerfile_string's escaping."""
    return re.sub(r"\\(.)", r"\1", text)


def passing_probe(spec: dict[str, Any]) -> dict[str, Any]:
    """What the probe prints in a good image of `spec` on a host without a GPU."""
    cuda = spec.get("cuda")
    return {
        "probe": 1,
        "ok": True,
        "python": {"version": f"{spec.get('python')}.1"},
        "framework": {
            "version": spec.get("framework_version"),
            "cuda_build": None if cuda in (None, "cpu") else cuda,
        },
        "gpu": {"status": "not-run", "reason": "no /dev/nvidia* device", "devices": []},
        "checks": [{"name": "framework.import", "status": "passed", "detail": ""}],
    }


@dataclass
class FakeRegistry:
    """Manifests by repository name (as pushed) and tag: what pushes put there, what clients
    (by registry host and path, as the HTTP API asks) read back."""

    manifests: dict[tuple[str, str], RemoteManifest] = field(default_factory=dict)
    forget_pushes: bool = False  # a registry that acknowledges pushes but keeps nothing
    creds: Credentials | None = None  # what `access` says the user's credentials are

    def put(self, repository: str, tag: str, image_id: str) -> str:
        digest = sha(f"manifest of {image_id}")
        if not self.forget_pushes:
            self.manifests[(repository, tag)] = RemoteManifest(digest, MANIFEST, image_id)
        return digest

    def access(self, registry: str) -> Access:
        """For builder.publish's `access=`: this registry, `creds`, no delay between retries."""
        fake = self

        class Client:
            def manifest(self, path: str, tag: str, say: Any = None) -> RemoteManifest | None:
                for (name, known), remote in fake.manifests.items():
                    ref = parse_reference(name)
                    if (ref.registry, ref.path, known) == (registry, path, tag):
                        return remote
                return None

        acc = Access(self.creds, None, RetryPolicy(3, 0))
        object.__setattr__(acc, "client", lambda host, timeout=10.0: Client())
        return acc


class FakeEngine:
    """An engine in memory. Scripting: `probe` answers the smoke probe from an image's spec;
    `push_errors` are raised by the next pushes; `pullable` maps the references a pull finds
    to the labels of the image it gets; `build_error` fails the next builds."""

    base_url = "fake://engine"

    def __init__(self, registry: FakeRegistry | None = None) -> None:
        self.images: dict[str, dict[str, Any]] = {}
        self.histories: dict[str, list[dict[str, Any]]] = {}
        self.refs: dict[str, str] = {}  # repo:tag -> image ID
        self.registry = registry or FakeRegistry()
        self.pullable: dict[str, dict[str, str]] = {}
        self.push_errors: list[Exception] = []
        self.probe: Callable[[dict[str, Any]], dict[str, Any]] = passing_probe
        self.builds: list[str] = []  # Dockerfiles built, in order
        self.runs: list[tuple[str, list[str]]] = []
        self.run_options: list[dict[str, Any]] = []  # per run: devices, environment, shm_size
        self.pushed: list[tuple[str, str, dict[str, str] | None]] = []
        self.build_error: BuildError | None = None
        self.kits: list[BuildKitRun | None] = []  # per build: BuildKit's run, or None (classic)
        self.probe_result = BuilderProbe(reason="a fake engine: no docker CLI")  # what buildkit_probe says

    # -- helpers for tests -----------------------------------------------------------------------
    def add_image(
        self, ref: str | None, labels: dict[str, str] | None = None, *, layers: int | list[tuple[str, int]] = 1
    ) -> str:
        """An image with `layers` layers of 1000 bytes, or these (diff ID, size) layers."""
        image_id = sha(f"image {len(self.images)} {ref} {json.dumps(labels, sort_keys=True)}")
        if isinstance(layers, int):
            layers = [(sha(f"{image_id} layer {i}"), 1000) for i in range(layers)]
        self.images[image_id] = {
            "Id": image_id,
            "RepoTags": [],
            "RepoDigests": [],
            "Size": sum(size for _, size in layers),
            "Created": len(self.images),
            "Os": "linux",
            "Architecture": "amd64",
            "Config": {"Labels": dict(labels or {})},
            "RootFS": {"Layers": [diff for diff, _ in layers]},
        }
        # `docker history`, newest first: one step per layer (only a bare root file system, as
        # `mlbuild base bootstrap` imports, has a single entry)
        self.histories[image_id] = [{"Size": size, "CreatedBy": "RUN step"} for _, size in reversed(layers)]
        if ref:
            self.tag(image_id, *_split(ref))
        return image_id

    def tags_of(self, image_id: str) -> list[str]:
        return sorted(r for r, i in self.refs.items() if i == image_id)

    def _resolve(self, ref: str) -> str | None:
        if ref in self.images:
            return ref
        name = ref if ":" in ref.rsplit("/", 1)[-1] else f"{ref}:latest"
        return self.refs.get(name)

    # -- engine_api.Engine -----------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        return {"Runtimes": {"runc": {}}}

    def version(self) -> dict[str, Any]:
        return {"ApiVersion": "1.41"}

    def image_id(self, ref: str) -> str | None:
        return self._resolve(ref)

    def inspect(self, ref: str) -> dict[str, Any]:
        image_id = self._resolve(ref)
        if image_id is None:
            raise EngineError(f"image {ref} is not on this engine")
        return {**self.images[image_id], "RepoTags": self.tags_of(image_id)}

    def labels(self, ref: str) -> dict[str, str]:
        return dict(self.inspect(ref)["Config"]["Labels"])

    def history(self, ref: str) -> list[dict[str, Any]]:
        return list(self.histories[self.inspect(ref)["Id"]])

    def images_with_label(self, label: str) -> list[dict[str, Any]]:
        key, _, value = label.partition("=")
        found = []
        for image_id in self.images:
            attrs = self.inspect(image_id)
            labels = attrs["Config"]["Labels"]
            if key in labels and (not value or labels[key] == value):
                found.append({**attrs, "Labels": labels})
        return found

    def list_images(self) -> list[dict[str, Any]]:
        return [self.inspect(i) for i in self.images]

    def disk_usage(self) -> dict[str, Any]:
        return {"Images": [{"Id": i, "Size": a["Size"], "SharedSize": 0} for i, a in self.images.items()]}

    def tag(self, image_id: str, repository: str, tag: str) -> None:
        resolved = self._resolve(image_id)
        if resolved is None:
            raise EngineError(f"no image {image_id} to tag")
        self.refs[f"{repository}:{tag}"] = resolved

    def remove_image(self, ref: str, force: bool = False) -> None:
        if ref in self.images:
            del self.images[ref], self.histories[ref]
            self.refs = {r: i for r, i in self.refs.items() if i != ref}
        else:
            self.refs.pop(ref if ":" in ref.rsplit("/", 1)[-1] else f"{ref}:latest", None)

    def import_rootfs(self, tar_stream: Any, repository: str, tag: str, changes: list[str]) -> str:
        for _ in tar_stream:
            pass
        labels = dict(line[6:].split("=", 1) for line in changes if line.startswith("LABEL "))
        return self.add_image(f"{repository}:{tag}", labels)

    def save(self, ref: str) -> Iterator[bytes]:
        image_id = self._resolve(ref)
        if image_id is None:
            raise EngineError(f"cannot save {ref}")
        saved = {"image": self.images[image_id], "history": self.histories[image_id]}
        return iter([json.dumps(saved).encode()])

    def load(self, chunks: Iterator[bytes]) -> list[str]:
        saved = json.loads(b"".join(chunks))
        image_id = saved["image"]["Id"]
        self.images[image_id], self.histories[image_id] = saved["image"], saved["history"]
        return [f"Loaded image ID: {image_id}"]

    def build(
        self,
        context: Path,
        *,
        labels: dict[str, str] | None = None,
        buildargs: dict[str, str] | None = None,
        on_line: LineSink | None = None,
        nocache: bool = False,
        network: str | None = None,
        kit: BuildKitRun | None = None,
        platform: str | None = None,
    ) -> str:
        dockerfile = (context / "Dockerfile").read_text()
        self.builds.append(dockerfile)
        self.kits.append(kit)
        steps = [line for line in dockerfile.splitlines() if line and not line.startswith("#")]
        for i, step in enumerate(steps, 1):
            if on_line:
                on_line(f"Step {i}/{len(steps)} : {step}")
        if self.build_error:
            raise self.build_error
        found = {}
        for line in steps:
            m = _LABEL_LINE.match(line)
            if m:
                found[_unquote(m.group(1))] = _unquote(m.group(2))
        image_id = self.add_image(None, {**found, **(labels or {})}, layers=3)
        if platform:
            self.images[image_id]["Architecture"] = platform.split("/")[1]
        return image_id

    def buildkit_probe(self) -> BuilderProbe:
        return self.probe_result

    def run(
        self,
        image: str,
        command: list[str],
        *,
        user: str | None = None,
        network: str = "none",
        devices: list[str] | None = None,
        volumes: dict[str, dict[str, str]] | None = None,
        environment: dict[str, str] | None = None,
        device_requests: list[Any] | None = None,
        timeout: float = 600,
        entrypoint: list[str] | None = None,
        shm_size: str | None = None,
    ) -> RunResult:
        self.runs.append((image, command))
        self.run_options.append({"devices": devices, "environment": environment, "shm_size": shm_size})
        if PROBE_PATH in command:
            spec = json.loads(self.labels(image).get(SPEC_LABEL) or "{}")
            return RunResult(0, json.dumps(self.probe(spec)) + "\n", "")
        return RunResult(0, "", "")

    def gpu_device_request(self) -> Any:
        return "gpu"

    def cdi_device_request(self) -> Any:
        return "cdi"

    def pull(self, ref: str) -> str:
        try:
            return self.pull_ref(ref)
        except RegistryError as exc:
            raise EngineError(exc.message, details=exc.details, hint=exc.hint) from None

    def pull_ref(
        self,
        ref: str,
        *,
        auth_config: dict[str, str] | None = None,
        on_progress: ProgressSink | None = None,
    ) -> str:
        if ref not in self.pullable:
            raise RegistryError(f"cannot pull {ref}", details=["manifest unknown"])
        return self.add_image(ref if "@" not in ref else None, self.pullable[ref])

    def push(
        self,
        repository: str,
        tag: str,
        *,
        auth_config: dict[str, str] | None = None,
        on_progress: ProgressSink | None = None,
    ) -> str:
        self.pushed.append((repository, tag, auth_config))
        if self.push_errors:
            raise self.push_errors.pop(0)
        image_id = self.refs.get(f"{repository}:{tag}")
        if image_id is None:
            raise RegistryError(f"push of {repository}:{tag} failed", details=["An image does not exist locally"])
        if on_progress:
            on_progress(engine_api.LayerProgress(image_id[7:19], "Pushed"))
        return self.registry.put(repository, tag, image_id)


def _split(ref: str) -> tuple[str, str]:
    parsed = parse_reference(ref)
    return parsed.name, parsed.tag_or_latest


_implements: type[engine_api.Engine] = FakeEngine  # mypy holds the fake to the protocol
