"""The Docker engine, reached through the docker SDK. The only module that imports `docker`.

`Engine` implements the protocol builder.engine_api.Engine, which is all the library asks of
an engine; unit tests pass an in-memory fake of the same protocol. The SDK is imported lazily
so that commands which need no engine (resolve, render, matrix) start fast.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from builder import buildkit, engine_api
from builder.engine_api import BuilderProbe, BuildKitRun, LayerProgress, LineSink, ProgressSink, RunResult
from builder.errors import BuildError, EngineError, RegistryError, step_details
from builder.labels import TEMPORARY_LABEL
from builder.refs import parse_reference
from builder.settings import redact

if TYPE_CHECKING:
    import docker

_STEP_RE = re.compile(r"^Step (\d+)/(\d+) : (.*)$")


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


class PushError(RegistryError):
    """The engine's push stream reported an error; `transient` when a retry may succeed."""

    def __init__(self, message: str, *, transient: bool, details: list[str] | None = None,
                 hint: str | None = None):  # fmt: skip
        super().__init__(message, details=details, hint=hint)
        self.transient = transient


# What the engine says when the registry, not the image, is the problem: worth another try.
_TRANSIENT_RE = re.compile(
    r"connection refused|connection reset|broken pipe|i/o timeout|timeout|EOF|"
    r"no such host|TLS handshake|503|502|504|429|too many requests|temporar",
    re.IGNORECASE,
)
_AUTH_RE = re.compile(r"unauthorized|authentication required|denied|401|403", re.IGNORECASE)


class Engine:
    """A connected Docker engine (implements builder.engine_api.Engine)."""

    def __init__(self, client: docker.DockerClient):
        self.client = client
        self.api = client.api
        self._buildkit_probe: BuilderProbe | None = None
        self._host: str | None = None  # an engine named by URL: the CLI must reach the same one

    # -- connection ------------------------------------------------------------------------------
    @classmethod
    def connect(cls, timeout: int = 600, base_url: str | None = None) -> Engine:
        """The engine of DOCKER_HOST (or the local socket), or the one at `base_url`."""
        try:
            import docker
            import docker.errors
        except ImportError as exc:  # pragma: no cover - a packaging error
            raise EngineError(f"the docker SDK is missing: {exc}", hint="pip install docker") from None
        try:
            if base_url:
                client = docker.DockerClient(base_url=base_url, timeout=timeout)
            else:
                client = docker.from_env(timeout=timeout)
            client.ping()
        except docker.errors.DockerException as exc:
            raise EngineError(
                "no Docker engine answers" + (f" at {redact(base_url)}" if base_url else _where()),
                details=[_short(exc)],
                hint="start one (apt-get install -y docker.io && dockerd &), or point DOCKER_HOST at a running engine",
            ) from None
        engine = cls(client)
        engine._host = base_url
        return engine

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
        try:
            return self.pull_ref(ref)  # the one reading of the pull stream (errors, progress)
        except RegistryError as exc:
            raise EngineError(exc.message, details=exc.details, hint=exc.hint) from None

    def tag(self, image_id: str, repository: str, tag: str) -> None:
        if not self.api.tag(image_id, repository, tag):
            raise EngineError(f"the engine refused to tag {image_id[:19]} as {repository}:{tag}")

    def remove_image(self, ref: str, force: bool = False) -> None:
        import docker.errors

        with contextlib.suppress(docker.errors.ImageNotFound, docker.errors.NotFound):
            self.api.remove_image(ref, force=force, noprune=False)

    def import_rootfs(self, tar_stream: Any, repository: str, tag: str, changes: list[str]) -> str:
        """`docker import`: a root file system tarball becomes an image."""
        result = self.api.import_image_from_data(tar_stream, repository=repository, tag=tag, changes=changes)
        text = result if isinstance(result, str) else str(result)
        image_id = self.image_id(f"{repository}:{tag}")
        if not image_id:
            raise EngineError(f"import of {repository}:{tag} failed", details=[text[-500:]])
        return image_id

    # -- build -----------------------------------------------------------------------------------
    def _stopping(self) -> bool:
        """Whether the engine stopped answering: a stopping engine fails its running step
        (overlay mounts refused, containers killed) before its API closes, so ask twice."""
        for attempt in range(2):
            try:
                self.client.ping()
            except Exception:
                return True
            if attempt == 0:
                time.sleep(1)
        return False

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
        """Build with the classic builder (or, with `kit`, BuildKit through the docker CLI),
        streaming output; return the image ID."""
        import docker.errors

        if kit is not None:
            if self._host:
                kit = dataclasses.replace(kit, env=(*kit.env, ("DOCKER_HOST", self._host)))
            try:
                return buildkit.build_with_cli(kit, context, labels=labels, buildargs=buildargs, on_line=on_line,
                                               nocache=nocache, network=network, platform=platform)  # fmt: skip
            except BuildError as exc:
                try:  # the CLI only says its connection broke: name the engine, as the classic path does
                    self.client.ping()
                except Exception:
                    raise EngineError("lost the Docker engine during the build" + _where(),
                                      details=[exc.message, *exc.details[-3:]]) from None  # fmt: skip
                raise

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
                network_mode=network,
                decode=True,
                **({"platform": platform} if platform else {}),
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
                    if self._stopping():  # a step cut short by the engine's own shutdown
                        raise EngineError("lost the Docker engine during the build" + _where(),
                                          details=[*log.lines[-3:], message])  # fmt: skip
                    raise BuildError(
                        f"build failed at {log.step or 'the first step'}",
                        details=[*step_details(log.lines), message],
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

    def buildkit_probe(self) -> BuilderProbe:
        """The docker CLI that can drive BuildKit against this engine, probed once."""
        if self._buildkit_probe is None:
            why_not = buildkit.engine_supports(self.version())
            found = BuilderProbe(reason=why_not) if why_not else buildkit.probe_clis_remembered(buildkit.docker_clis())
            self._buildkit_probe = found
        return self._buildkit_probe

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
        shm_size: str | None = None,
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
                labels={TEMPORARY_LABEL: "1"},
                **({"shm_size": shm_size} if shm_size else {}),
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

    @staticmethod
    def transport_error(exc: BaseException) -> EngineError | None:
        """An engine that vanished mid-call (stopped, crashed, its socket gone) surfaces as a
        requests/urllib3 error from inside a stream, which the SDK does not wrap: name it."""
        import requests.exceptions
        import urllib3.exceptions

        transport = (requests.exceptions.RequestException, urllib3.exceptions.HTTPError)
        if not isinstance(exc, transport):
            return None
        request = getattr(exc, "request", None)
        url = str(getattr(request, "url", "") or "")
        engine_url = url.startswith("http+docker://") or not url
        host = os.environ.get("DOCKER_HOST", "").split("://")[-1]
        if url and host and host in url:
            engine_url = True
        if engine_url:
            return EngineError(
                "lost the Docker engine" + _where(), details=[_short(exc)],
                hint="check that the engine still runs (docker info); then run the command again",
            )  # fmt: skip
        return EngineError(
            f"lost the connection to {redact(url)}", details=[_short(exc)],
            hint="check the network and the server; then run the command again",
        )  # fmt: skip

    def remove_temporary_containers(self) -> int:
        """Containers left by an interrupted mlbuild run."""
        n = 0
        for c in self.client.containers.list(all=True, filters={"label": f"{TEMPORARY_LABEL}=1"}):
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

    # -- registries ------------------------------------------------------------------------------
    def push(
        self,
        repository: str,
        tag: str,
        *,
        auth_config: dict[str, str] | None = None,
        on_progress: ProgressSink | None = None,
    ) -> str:
        """Push one tag and return the registry's manifest digest.

        The SDK's push never raises for registry errors: they arrive as "error"/"errorDetail"
        chunks in the stream, so every chunk is read. The engine retries a failed layer itself
        after 5, 10, 15, 20 s; that is too slow to be useful, so the first "Retrying in" aborts
        this push (closing the stream cancels it in the engine) as a transient failure, and the
        caller's own bounded retry takes over.
        """
        import docker.errors

        ref = f"{repository}:{tag}"
        digest = ""
        response = None
        try:
            # The SDK's push() hides the response, which must be closed to cancel a push.
            response = self.api._post_json(
                self.api._url("/images/{0}/push", repository), None,
                headers={"X-Registry-Auth": _auth_header(auth_config)},
                stream=True, params={"tag": tag},
            )  # fmt: skip
            self.api._raise_for_status(response)
            for chunk in self.api._stream_helper(response, decode=True):
                if "error" in chunk or "errorDetail" in chunk:
                    detail = chunk.get("errorDetail") or {}
                    text = redact(str(chunk.get("error") or detail.get("message") or chunk))
                    auth = bool(_AUTH_RE.search(text))
                    raise PushError(
                        f"push of {ref} failed",
                        transient=not auth and bool(_TRANSIENT_RE.search(text)),
                        details=[text],
                    )
                aux = chunk.get("aux")
                if isinstance(aux, dict) and aux.get("Digest"):
                    digest = str(aux["Digest"])
                status = str(chunk.get("status") or "")
                layer = str(chunk.get("id") or "")
                if layer and status.startswith("Retrying in"):
                    raise PushError(
                        f"push of {ref} failed: uploading layer {layer} failed midway",
                        transient=True,
                        details=["the registry stopped answering during the upload"],
                    )
                if layer and on_progress and status:
                    pd = chunk.get("progressDetail") or {}
                    on_progress(LayerProgress(layer, status, pd.get("current"), pd.get("total")))
        except docker.errors.APIError as exc:
            text = _short(exc)
            raise PushError(
                f"push of {ref} failed", transient=bool(_TRANSIENT_RE.search(text))
                and not _AUTH_RE.search(text), details=[text],
            ) from None  # fmt: skip
        except docker.errors.DockerException as exc:
            raise EngineError(f"lost the engine while pushing {ref}", details=[_short(exc)]) from None
        finally:
            if response is not None:
                response.close()
        if not digest:
            raise PushError(f"push of {ref} ended without a digest", transient=True)
        return digest

    def pull_ref(
        self,
        ref: str,
        *,
        auth_config: dict[str, str] | None = None,
        on_progress: ProgressSink | None = None,
    ) -> str:
        """Pull `ref` (by tag or digest) with explicit credentials; return the image ID."""
        import docker.errors

        parsed = parse_reference(ref)
        repository, tag = parsed.name, parsed.digest or parsed.tag_or_latest
        try:
            stream = self.api.pull(repository, tag=tag, stream=True, decode=True,
                                   auth_config=auth_config or {})  # fmt: skip
            for chunk in stream:
                if "error" in chunk or "errorDetail" in chunk:
                    detail = chunk.get("errorDetail") or {}
                    text = redact(str(chunk.get("error") or detail.get("message") or chunk))
                    raise RegistryError(f"cannot pull {ref}", details=[text])
                layer, status = str(chunk.get("id") or ""), str(chunk.get("status") or "")
                if layer and on_progress and status:
                    pd = chunk.get("progressDetail") or {}
                    on_progress(LayerProgress(layer, status, pd.get("current"), pd.get("total")))
        except docker.errors.APIError as exc:
            raise RegistryError(f"cannot pull {ref}", details=[_short(exc)]) from None
        image_id = self.image_id(ref)
        if not image_id:
            raise RegistryError(f"pulled {ref} but the engine does not list it")
        return image_id

    # -- many images (builder.fanout) -------------------------------------------------------------
    @property
    def base_url(self) -> str:
        """Where this engine is reached, e.g. http+docker://localhost or tcp://host:2376."""
        return str(self.api.base_url)

    def list_images(self) -> list[dict[str, Any]]:
        """The images `docker images` lists (and `docker system df` counts): tagged ones and
        dangling ones without children, not the classic builder's intermediate images."""
        return list(self.api.images())

    def disk_usage(self) -> dict[str, Any]:
        """`docker system df -v`: per image Size, SharedSize and UniqueSize (bytes)."""
        import docker.errors

        try:
            return dict(self.api.df())
        except docker.errors.APIError as exc:
            raise EngineError("cannot read the engine's disk usage", details=[_short(exc)]) from None

    def save(self, ref: str) -> Iterator[bytes]:
        """`docker save REF`: the image as a stream of tar chunks."""
        import docker.errors

        try:
            return iter(self.api.get_image(ref))
        except docker.errors.APIError as exc:
            raise EngineError(f"cannot save {ref}", details=[_short(exc)]) from None

    def load(self, chunks: Iterator[bytes]) -> list[str]:
        """`docker load`: read a `save` stream; returns the engine's "Loaded image" lines."""
        import docker.errors

        loaded: list[str] = []
        try:
            for msg in self.api.load_image(chunks):
                if isinstance(msg, dict) and ("error" in msg or "errorDetail" in msg):
                    detail = msg.get("errorDetail") or {}
                    raise EngineError("docker load failed",
                                      details=[redact(str(msg.get("error") or detail))])  # fmt: skip
                text = str(msg.get("stream") or "").strip() if isinstance(msg, dict) else ""
                if text:
                    loaded.append(text)
        except docker.errors.APIError as exc:
            raise EngineError("docker load failed", details=[_short(exc)]) from None
        return loaded


def _auth_header(auth_config: dict[str, str] | None) -> str:
    """X-Registry-Auth: base64url JSON; "{}" means anonymous (never the SDK's own config)."""
    import base64

    raw = json.dumps(auth_config or {}).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _short(exc: BaseException) -> str:
    text = getattr(exc, "explanation", None) or str(exc)
    return redact(str(text).strip().splitlines()[0][:400]) if str(text).strip() else type(exc).__name__


def _where() -> str:
    import os

    host = os.environ.get("DOCKER_HOST")
    return f" at {redact(host)}" if host else " at /var/run/docker.sock"


if TYPE_CHECKING:
    _implements: type[engine_api.Engine] = Engine  # mypy holds the class to the protocol
