"""What the library needs from a container engine, as a Protocol.

builder.engine.Engine implements it on the Docker SDK; unit tests implement it in memory
(tests/unit/fakes.py). Library code annotates with this protocol, never with the SDK-backed
class, so it runs the same on either, and the only module that needs `docker` is the engine.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

LineSink = Callable[[str], None]  # one line of build output


@dataclass(frozen=True)
class RunResult:
    exit_code: int
    stdout: str
    stderr: str


@dataclass(frozen=True)
class LayerProgress:
    """One event of a push or pull stream, for one layer."""

    layer: str
    status: str  # Preparing, Waiting, Pushing, Pushed, Layer already exists, Retrying in 5 seconds
    current: int | None = None
    total: int | None = None


ProgressSink = Callable[[LayerProgress], None]


@dataclass(frozen=True)
class BuilderProbe:
    """A docker CLI that can drive BuildKit against this engine (builder.buildkit probes it);
    `cli` is None when none can, and `reason` says why (or how the found one does it)."""

    cli: str | None = None
    argv: tuple[str, ...] = ()  # the build command, e.g. (cli, "build") with DOCKER_BUILDKIT=1
    env: tuple[tuple[str, str], ...] = ()
    reason: str = ""


@dataclass(frozen=True)
class BuildKitRun:
    """A build through BuildKit instead of the classic builder: the CLI to run, secrets (id,
    file outside the context), images whose inline cache may be reused, and whether the new
    image carries inline cache itself."""

    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    secrets: tuple[tuple[str, str], ...] = ()
    cache_from: tuple[str, ...] = ()
    inline_cache: bool = True


class Engine(Protocol):
    """A connected engine. Errors are builder.errors types: EngineError, BuildError (build),
    RegistryError (push, pull_ref; `transient` when a retry may succeed)."""

    @property
    def base_url(self) -> str:
        """Where the engine is reached, e.g. http+docker://localhost or tcp://host:2376."""
        ...

    def info(self) -> dict[str, Any]: ...

    def version(self) -> dict[str, Any]: ...

    # -- images ----------------------------------------------------------------------------------
    def image_id(self, ref: str) -> str | None:
        """The local image's ID, or None when the engine does not have it."""
        ...

    def inspect(self, ref: str) -> dict[str, Any]:
        """`docker image inspect`: Id, RepoTags, RepoDigests, Size, Config.Labels, RootFS ..."""
        ...

    def labels(self, ref: str) -> dict[str, str]: ...

    def history(self, ref: str) -> list[dict[str, Any]]: ...

    def images_with_label(self, label: str) -> list[dict[str, Any]]:
        """`docker images --filter label=KEY=VALUE`."""
        ...

    def list_images(self) -> list[dict[str, Any]]:
        """The images `docker images` lists (not the classic builder's intermediate ones)."""
        ...

    def disk_usage(self) -> dict[str, Any]:
        """`docker system df -v`: per image Size, SharedSize and UniqueSize (bytes)."""
        ...

    def tag(self, image_id: str, repository: str, tag: str) -> None: ...

    def remove_image(self, ref: str, force: bool = False) -> None:
        """Remove a name (or, by ID, the image); nothing when it is gone already."""
        ...

    def import_rootfs(self, tar_stream: Any, repository: str, tag: str, changes: list[str]) -> str:
        """`docker import` of a root file system tarball; returns the image ID."""
        ...

    def save(self, ref: str) -> Iterator[bytes]:
        """`docker save REF` as a stream of tar chunks."""
        ...

    def load(self, chunks: Iterator[bytes]) -> list[str]:
        """`docker load`; returns the engine's "Loaded image" lines."""
        ...

    # -- build and run ---------------------------------------------------------------------------
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
        """Build the context's Dockerfile (classic builder, or BuildKit with `kit`; `platform`: for
        another os/arch, its RUN steps emulated where the host cannot run it); returns the image ID."""
        ...

    def buildkit_probe(self) -> BuilderProbe:
        """Which docker CLI can drive BuildKit against this engine (probed once per engine)."""
        ...

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
        """Run a command to completion in a fresh container, which is always removed.
        `shm_size` ("1g"): /dev/shm for GPU work (NCCL's buffers live there; the engine's
        default is 64 MB)."""
        ...

    def gpu_device_request(self) -> Any:
        """The device request of the NVIDIA container toolkit (--gpus all)."""
        ...

    def cdi_device_request(self) -> Any:
        """The device request of CDI (nvidia.com/gpu=all)."""
        ...

    # -- registries ------------------------------------------------------------------------------
    def pull(self, ref: str) -> str:
        """Pull with the engine's own credentials; EngineError when it cannot."""
        ...

    def pull_ref(
        self,
        ref: str,
        *,
        auth_config: dict[str, str] | None = None,
        on_progress: ProgressSink | None = None,
    ) -> str:
        """Pull by tag or digest with explicit credentials; returns the image ID."""
        ...

    def push(
        self,
        repository: str,
        tag: str,
        *,
        auth_config: dict[str, str] | None = None,
        on_progress: ProgressSink | None = None,
    ) -> str:
        """Push one tag; returns the registry's manifest digest."""
        ...
