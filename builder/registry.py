"""The registry's HTTP API (distribution v2), just enough of it: ping and manifest lookups,
with credentials, TLS and bounded retries. Pushing and pulling go through the engine
(builder.publish, builder.pull); this is how mlbuild asks a registry what it holds.

Transport
---------
Registries on 127.0.0.1 / localhost / ::1 are spoken to over http unless a CA is known for
them; any other registry needs TLS. A registry's CA comes from `--registry-ca`, the site
config (`registry_ca: FILE` or `registry_ca: {HOST: FILE}`), or
`/etc/docker/certs.d/HOST/ca.crt`, where the Docker engine itself looks for it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from builder.credentials import Credentials, auth_error, find_credentials, normalize_registry, store_credentials
from builder.errors import RegistryError, UsageError
from builder.refs import DOCKER_HUB
from builder.settings import redact

CERTS_D = Path("/etc/docker/certs.d")
MANIFEST_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
)
INDEX_TYPES = MANIFEST_TYPES[1::2]
T = TypeVar("T")
Say = Callable[[str], None]


def is_loopback(registry: str) -> bool:
    if registry.startswith("["):  # [::1]:5000
        host = registry[1:].split("]", 1)[0]
    else:
        host = registry.rsplit(":", 1)[0] if registry.count(":") == 1 else registry
    return host in ("localhost", "::1") or host.startswith("127.")


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries with exponential backoff, for errors marked `transient`."""

    attempts: int = 4
    backoff: float = 1.0  # seconds before the second attempt; doubles each time
    max_backoff: float = 15.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RetryPolicy:
        environ = os.environ if env is None else env
        try:
            attempts = int(environ.get("MLBUILD_REGISTRY_ATTEMPTS", "4"))
            backoff = float(environ.get("MLBUILD_REGISTRY_BACKOFF", "1.0"))
        except ValueError:
            raise UsageError("MLBUILD_REGISTRY_ATTEMPTS / _BACKOFF must be numbers") from None
        return cls(max(1, min(attempts, 10)), max(0.0, min(backoff, 60.0)))

    def delays(self) -> list[float]:
        return [min(self.backoff * 2**i, self.max_backoff) for i in range(self.attempts - 1)]


def with_retries(
    action: Callable[[], T],
    policy: RetryPolicy,
    what: str,
    say: Say = lambda _: None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    delays = policy.delays()
    for attempt in range(policy.attempts):
        try:
            return action()
        except RegistryError as exc:
            if not getattr(exc, "transient", False):
                raise
            if attempt == policy.attempts - 1:
                exc.message += f" (gave up after {policy.attempts} attempts)"
                exc.args = (exc.message,)
                raise
            say(f"{what}: {exc.message}; retrying in {delays[attempt]:.1f} s ({attempt + 2}/{policy.attempts})")
            sleep(delays[attempt])
    raise AssertionError("unreachable")  # pragma: no cover


class TransientRegistryError(RegistryError):
    transient = True


@dataclass(frozen=True)
class RemoteManifest:
    digest: str  # the manifest's digest: what `repo@sha256:...` names
    media_type: str
    config_digest: str | None  # the image ID of a single-platform image
    children: tuple[tuple[str, str], ...] = ()  # index: (platform, manifest digest)
    size: int = field(default=0, compare=False)  # bytes of the document (an index names each child with it)


def ca_for(registry: str, explicit: str | Path | None = None, site: Any = None, certs_d: Path = CERTS_D) -> Path | None:
    """The CA that signs `registry`'s certificate, if one was given or the engine has one."""
    if explicit:
        path = Path(explicit).expanduser()
    elif isinstance(site, dict) and site.get(registry):
        path = Path(str(site[registry])).expanduser()
    elif isinstance(site, str) and site:
        path = Path(site).expanduser()
    else:
        found = certs_d / registry / "ca.crt"
        return found if found.is_file() else None
    if not path.is_file():
        raise UsageError(f"registry CA {path} is not a readable file", hint="give --registry-ca FILE")
    return path


def site_registry_ca() -> Any:
    from builder.settings import _read_config

    try:
        return _read_config(os.environ.get("MLBUILD_CONFIG")).get("registry_ca")
    except UsageError:
        return None


class RegistryClient:
    """Just enough of the distribution API v2: ping and manifest lookups, with auth."""

    def __init__(
        self,
        registry: str,
        creds: Credentials | None = None,
        ca: Path | None = None,
        policy: RetryPolicy | None = None,
        timeout: float = 10.0,
        session: Any = None,
    ) -> None:
        import requests

        self.registry = registry
        self.creds = creds
        self.ca = ca
        self.policy = policy or RetryPolicy()
        self.timeout = timeout
        self.session = session or requests.Session()
        self.session.trust_env = False  # a proxy must not see registry credentials by accident
        self.scheme = "http" if is_loopback(registry) and ca is None else "https"
        api_host = "registry-1.docker.io" if registry == DOCKER_HUB else registry
        self.base = f"{self.scheme}://{api_host}/v2/"
        self._token: str | None = None

    def ping(self, say: Say = lambda _: None) -> None:
        """GET /v2/: checks the address, TLS and the credentials (login uses it)."""
        with_retries(
            lambda: self._request("GET", "", scope=None),
            self.policy,
            f"registry {self.registry}",
            say,
        )

    def manifest(self, path: str, tag: str, say: Say = lambda _: None) -> RemoteManifest | None:
        def get() -> RemoteManifest | None:
            r = self._request(
                "GET",
                f"{path}/manifests/{tag}",
                scope=f"repository:{path}:pull",
                accept=", ".join(MANIFEST_TYPES),
                missing_ok=True,
            )
            if r is None:
                return None
            doc = r.json()
            media = str(r.headers.get("Content-Type") or doc.get("mediaType") or "")
            digest = str(r.headers.get("Docker-Content-Digest") or "")
            if not digest:
                import hashlib

                digest = "sha256:" + hashlib.sha256(r.content).hexdigest()
            if media in INDEX_TYPES or "manifests" in doc:
                children = tuple(
                    (
                        "/".join(str((m.get("platform") or {}).get(k)) for k in ("os", "architecture")),
                        str(m.get("digest")),
                    )
                    for m in doc.get("manifests") or []
                )
                return RemoteManifest(digest, media, None, children, len(r.content))
            return RemoteManifest(digest, media, (doc.get("config") or {}).get("digest"), size=len(r.content))

        return with_retries(get, self.policy, f"registry {self.registry}", say)

    def put_index(self, path: str, tag: str, children: list[tuple[str, RemoteManifest]], say: Say) -> str:
        """PUT one image index naming each (os/arch, child manifest) under `tag`; returns its
        digest. Children pushed by a Docker engine (schema 2) go into a Docker manifest list,
        OCI ones into an OCI image index: one kind per document, as registries expect."""
        oci = any(m.media_type.startswith("application/vnd.oci.") for _, m in children)
        media = MANIFEST_TYPES[3] if oci else MANIFEST_TYPES[1]
        entries = []
        for platform, m in children:
            os_name, arch = platform.split("/")[:2]
            entries.append({"mediaType": m.media_type, "digest": m.digest, "size": m.size,
                            "platform": {"os": os_name, "architecture": arch}})  # fmt: skip
        body = json.dumps({"schemaVersion": 2, "mediaType": media, "manifests": entries}, indent=2).encode()
        with_retries(
            lambda: self._request(
                "PUT", f"{path}/manifests/{tag}", scope=f"repository:{path}:pull,push", body=body, content_type=media
            ),
            self.policy,
            f"registry {self.registry}",
            say,
        )
        return "sha256:" + hashlib.sha256(body).hexdigest()

    def _request(
        self,
        method: str,
        url: str,
        *,
        scope: str | None,
        accept: str = "",
        missing_ok: bool = False,
        body: bytes | None = None,
        content_type: str = "",
    ) -> Any:
        import requests

        headers = {"Accept": accept} if accept else {}
        if content_type:
            headers["Content-Type"] = content_type
        verify: str | bool = str(self.ca) if self.ca else True
        try:
            r = self._send(method, self.base + url, headers, verify, body)
            if r.status_code == 401:
                r = self._send(
                    method,
                    self.base + url,
                    {**headers, **self._authorize(r, scope, verify)},
                    verify,
                    body,
                )
        except requests.exceptions.SSLError as exc:
            raise RegistryError(
                f"TLS to registry {self.registry} failed: its certificate is not trusted",
                details=[_reason(exc)],
                hint=f"give the registry's CA with --registry-ca FILE (or put it in "
                f"{CERTS_D}/{self.registry}/ca.crt, where the Docker engine looks too)",
            ) from None
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
            raise TransientRegistryError(
                f"cannot reach registry {self.registry}",
                details=[_reason(exc)],
                hint="check that the registry runs and its address; registries other than "
                "127.0.0.1/localhost must speak TLS (https)",
            ) from None
        if r.status_code == 401:
            raise self._auth_failed()
        if r.status_code == 404 and missing_ok:
            return None
        if r.status_code == 400 and "HTTPS server" in r.text:
            raise RegistryError(
                f"registry {self.registry} speaks TLS, not http",
                hint=f"give its CA with --registry-ca FILE (or put it in {CERTS_D}/{self.registry}/ca.crt)",
            )
        if r.status_code in (429, 500, 502, 503, 504):
            raise TransientRegistryError(f"registry {self.registry} answered {r.status_code}")
        if r.status_code >= 400:
            raise RegistryError(
                f"registry {self.registry} answered {r.status_code} for {method} {url or '/v2/'}",
                details=[redact(r.text.strip()[:300])],
            )
        return r

    def _send(
        self, method: str, url: str, headers: dict[str, str], verify: str | bool, body: bytes | None = None
    ) -> Any:
        return self.session.request(
            method, url, headers=headers, verify=verify, timeout=self.timeout, allow_redirects=True, data=body
        )

    def _authorize(self, challenge: Any, scope: str | None, verify: str | bool) -> dict[str, str]:
        """Answer a 401: Basic with the credentials, or Bearer with a token fetched with them."""
        header = str(challenge.headers.get("WWW-Authenticate") or "")
        if not self.creds and not header.lower().startswith("bearer"):
            raise self._auth_failed()
        if header.lower().startswith("basic"):
            assert self.creds is not None
            raw = f"{self.creds.username}:{self.creds.password}".encode()
            return {"Authorization": "Basic " + base64.b64encode(raw).decode()}
        params = dict(re.findall(r'(\w+)="([^"]*)"', header))
        realm = params.pop("realm", "")
        if not realm:
            raise RegistryError(f"registry {self.registry} asked for an unknown kind of auth: {header[:80]}")
        query = {k: v for k, v in params.items() if k == "service"}
        if scope:
            query["scope"] = scope
        auth = (self.creds.username, self.creds.password) if self.creds and not self.creds.identity_token else None
        r = self.session.get(realm, params=query, auth=auth, verify=verify, timeout=self.timeout)
        if r.status_code in (401, 403):
            raise self._auth_failed()
        token = (r.json() or {}).get("token") or (r.json() or {}).get("access_token")
        if not token:
            raise RegistryError(f"registry {self.registry}: its token service gave no token")
        return {"Authorization": f"Bearer {token}"}

    def _auth_failed(self) -> RegistryError:
        return auth_error(self.registry, self.creds)


def _reason(exc: BaseException) -> str:
    text = str(exc)
    for pattern in (
        r"Connection refused",
        r"certificate verify failed[^)'\"]*",
        r"Name or service not known",
        r"timed out",
        r"No route to host",
    ):
        m = re.search(pattern, text)
        if m:
            return m.group(0)
    return redact(text[:200])


@dataclass(frozen=True)
class Access:
    """How to reach one registry: credentials, CA, retry policy."""

    creds: Credentials | None
    ca: Path | None
    policy: RetryPolicy

    def client(self, registry: str, timeout: float = 10.0) -> RegistryClient:
        return RegistryClient(registry, self.creds, self.ca, self.policy, timeout)


def access_for(registry: str, registry_ca: str | Path | None = None, env: Mapping[str, str] | None = None) -> Access:
    return Access(
        find_credentials(registry, env),
        ca_for(registry, registry_ca, site_registry_ca()),
        RetryPolicy.from_env(env),
    )


def login(registry: str, username: str, password: str, registry_ca: str | Path | None = None) -> tuple[str, str]:
    """`mlbuild login`: check the credentials against the registry, then store them as
    `docker login` does. Returns the registry's host and where the credentials went."""
    host = normalize_registry(registry)
    creds = Credentials(username, password, "mlbuild login")
    RegistryClient(host, creds, ca_for(host, registry_ca, site_registry_ca()), RetryPolicy.from_env()).ping()
    return host, store_credentials(host, creds)
