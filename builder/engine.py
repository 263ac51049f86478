"""The Docker engine, reached through the docker SDK. The only module that imports `docker`.

Everything else talks to an `Engine`; unit tests pass a fake with the same methods. The SDK is
imported lazily so that commands which need no engine (resolve, render, matrix) start fast.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from builder.errors import BuildError, EngineError
from builder.settings import redact

if TYPE_CHECKING:
    import docker

LineSink = Callable[[str], None]
_STEP_RE = re.compile(r"^Step (\d+)/(\d+) : (.*)$")


@dataclass(frozen=True)
class RunResult:
    exit_code: int
    stdout: str
    stderr: str


@dataclass
class BuildLog:
    """What the build printed, kept to explain a failure: the current step and last lines."""

    step: str = ""
    lines: list[str] = field(default_factory=list)

    def add(self, line: str) -> None:
        m = _STEP_RE.match(line)
        if m:
            self.step = line
            self.lines = []
        self.lines.append(line)
        del self.lines[:-40]


class Engine:
    """A connected Docker engine."""

    def __init__(self, client: docker.DockerClient):
        self.client = client
        self.api = client.api

    # -- connection ------------------------------------------------------------------------------
    @classmethod
    def connect(cls, timeout: int = 600) -> Engine:
        try:
            import docker
            import docker.errors
        except ImportError as exc:  # pragma: no cover - a packaging error
            raise EngineError(f"the docker SDK is missing: {exc}", hint="pip install docker") from None
        try:
            client = docker.from_env(timeout=timeout)
            client.ping()
        except docker.errors.DockerException as exc:
            raise EngineError(
                "no Docker engine answers" + _where(),
                details=[_short(exc)],
                hint="start one (apt-get install -y docker.io && dockerd &), "
                "or point DOCKER_HOST at a running engine",
            ) from None
        return cls(client)

    def info(self) -> dict[str, Any]:
        return dict(self.client.info())

    def version(self) -> dict[str, Any]:
        return dict(self.client.version())

    # -- images ----------------------------------------------------------------------------------
    def image_id(self, ref: str) -> str | None:
        """The local image's ID, or None when the engine does not have it."""
        import docker.errors

        try:
            return str(self.api.inspect_image(ref)["Id"])
        except docker.errors.ImageNotFound:
            return None
        except docker.errors.APIError as exc:
            if exc.status_code == 404:
                return None
            raise EngineError(f"cannot inspect {ref}", details=[_short(exc)]) from None

    def inspect(self, ref: str) -> dict[str, Any]:
        import docker.errors

        try:
            return dict(self.api.inspect_image(ref))
        except docker.errors.ImageNotFound:
            raise EngineError(
                f"image {ref} is not on this engine", hint="check the name with `docker images`"
            ) from None
        except docker.errors.APIError as exc:
            raise EngineError(f"cannot inspect {ref}", details=[_short(exc)]) from None

    def labels(self, ref: str) -> dict[str, str]:
        return dict((self.inspect(ref).get("Config") or {}).get("Labels") or {})

    def history(self, ref: str) -> list[dict[str, Any]]:
        return list(self.api.history(ref))

    def images_with_label(self, label: str) -> list[dict[str, Any]]:
        return list(self.api.images(filters={"label": label}))

    def pull(self, ref: str) -> str:
        """Pull and return the image ID; EngineError when the registry cannot be reached."""
        import docker.errors

        try:
            for chunk in self.api.pull(ref, stream=True, decode=True):
                if "error" in chunk:
                    raise EngineError(f"cannot pull {ref}", details=[redact(str(chunk["error"]))])
        except docker.errors.APIError as exc:
            raise EngineError(f"cannot pull {ref}", details=[_short(exc)]) from None
        image_id = self.image_id(ref)
        if not image_id:
            raise EngineError(f"pulled {ref} but the engine does not list it")
        return image_id

    def tag(self, image_id: str, repository: str, tag: str) -> None:
        if not self.api.tag(image_id, repository, tag):
            raise EngineError(f"the engine refused to tag {image_id[:19]} as {repository}:{tag}")

    def remove_image(self, ref: str, force: bool = False) -> None:
        import docker.errors

        with contextlib.suppress(docker.errors.ImageNotFound, docker.errors.NotFound):
            self.api.remove_image(ref, force=force, noprune=False)

    def import_rootfs(self, tar_stream: Any, repository: str, tag: str, changes: list[str]) -> str:
        """`docker import`: a root file system tarball becomes an image."""
        result = self.api.import_image_from_data(
            tar_stream, repository=repository, tag=tag, changes=changes
        )
        text = result if isinstance(result, str) else str(result)
        image_id = self.image_id(f"{repository}:{tag}")
        if not image_id:
            raise EngineError(f"import of {repository}:{tag} failed", details=[text[-500:]])
        return image_id

    # -- build -----------------------------------------------------------------------------------
    def build(
        self,
        context: Path,
        *,
        labels: dict[str, str] | None = None,
        buildargs: dict[str, str] | None = None,
        on_line: LineSink | None = None,
        nocache: bool = False,
    ) -> str:
        """Build with the classic builder, streaming output; return the image ID."""
        import docker.errors

        log = BuildLog()
        image_id: str | None = None
        try:
            stream = self.api.build(
                path=str(context),
                rm=True,
                forcerm=True,  # remove intermediate containers on failure too
                pull=False,
                nocache=nocache,
                labels=labels or {},
                buildargs=buildargs or {},
                decode=True,
            )
            for chunk in stream:
                if "stream" in chunk:
                    for line in str(chunk["stream"]).splitlines():
                        if line.strip():
                            log.add(line)
                            if on_line:
                                on_line(line)
                if "aux" in chunk and isinstance(chunk["aux"], dict) and "ID" in chunk["aux"]:
                    image_id = str(chunk["aux"]["ID"])
                if "error" in chunk:
                    message = str(chunk.get("error") or "").strip()
                    raise BuildError(
                        f"build failed at {log.step or 'the first step'}",
                        details=[*log.lines[-15:], message],
                        hint="the lines above are the failing step's last output",
                    )
        except docker.errors.APIError as exc:
            raise BuildError("the engine refused the build", details=[_short(exc)]) from None
        except docker.errors.DockerException as exc:
            raise EngineError("lost the Docker engine during the build", details=[_short(exc)]) from None
        if not image_id:
            ids = [line for line in log.lines if line.startswith("Successfully built ")]
            if not ids:
                raise BuildError("the build ended without an image", details=log.lines[-10:])
            image_id = self.image_id(ids[-1].split()[-1])
            if not image_id:
                raise BuildError("the build's image vanished", details=log.lines[-10:])
        return image_id

    # -- containers ------------------------------------------------------------------------------
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
    ) -> RunResult:
        """Run a command to completion in a fresh container, which is always removed."""
        import docker.errors

        container = None
        try:
            container = self.client.containers.create(
                image,
                command=command,
                entrypoint=entrypoint,
                user=user,
                network_mode=network,
                devices=devices or [],
                volumes=volumes or {},
                environment=environment or {},
                device_requests=device_requests or None,
                labels={"org.mlbuild.temporary": "1"},
            )
            container.start()
            result = container.wait(timeout=timeout)
            stdout = container.logs(stdout=True, stderr=False).decode(errors="replace")
            stderr = container.logs(stdout=False, stderr=True).decode(errors="replace")
            return RunResult(int(result.get("StatusCode", 1)), stdout, stderr)
        except docker.errors.APIError as exc:
            raise EngineError(f"cannot run {image}", details=[_short(exc)]) from None
        except docker.errors.DockerException as exc:
            raise EngineError(f"lost the engine while running {image}", details=[_short(exc)]) from None
        except Exception as exc:
            if "timed out" in str(exc).lower():
                raise EngineError(f"{image}: the command ran past {timeout:.0f} s") from None
            raise
        finally:
            if container is not None:
                with contextlib.suppress(Exception):
                    container.remove(force=True)

    def remove_temporary_containers(self) -> int:
        """Containers left by an interrupted mlbuild run."""
        n = 0
        for c in self.client.containers.list(all=True, filters={"label": "org.mlbuild.temporary=1"}):
            with contextlib.suppress(Exception):
                c.remove(force=True)
                n += 1
        return n

    def gpu_device_request(self) -> Any:
        import docker.types

        return docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])

    def cdi_device_request(self) -> Any:
        import docker.types

        return docker.types.DeviceRequest(driver="cdi", device_ids=["nvidia.com/gpu=all"])


def _short(exc: BaseException) -> str:
    text = getattr(exc, "explanation", None) or str(exc)
    return redact(str(text).strip().splitlines()[0][:400]) if str(text).strip() else type(exc).__name__


def _where() -> str:
    import os

    host = os.environ.get("DOCKER_HOST")
    return f" at {redact(host)}" if host else " at /var/run/docker.sock"


@contextlib.contextmanager
def timed() -> Iterator[Callable[[], float]]:
    start = time.monotonic()
    yield lambda: time.monotonic() - start
