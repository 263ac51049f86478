"""Registries: tag names, credentials, digests, push with retries, pull by record.

The image record
----------------
After a push, mlbuild writes `<recipe stem>.image.json` next to the recipe (for
`recipes/train.yaml`: `recipes/train.image.json`), so that the recipe names the exact image::

    {"schema": 1, "repository": "registry.example.com/team/train",
     "digest": "sha256:...", "reference": "registry.example.com/team/train@sha256:...",
     "tags": ["sklearn1.5.2-py3.11-cpu", "spec-0123456789abcdef"],
     "content_tag": "spec-0123456789abcdef", "image_id": "sha256:...", "platform": "linux/amd64",
     "spec": {"name": ..., "framework": ..., ...}, "spec_digest": "...", "mlbuild_version": ...}

It is written atomically (a temporary file, then a rename) and never holds credentials. Commit
it with the recipe; `mlbuild pull RECIPE` pulls `reference` by digest and checks the image's
labels against it and against the recipe.

Tags
----
`spec-<hash>` content tags are immutable: before a push, the registry's manifest for that tag
is looked up (HTTP API v2); when it exists and holds another image, the push is refused with
both digests. Readable tags (`latest`, version tags) may move.

Credentials, strongest first
----------------------------
1. `MLBUILD_REGISTRY_USER_<HOST>` / `MLBUILD_REGISTRY_PASSWORD_<HOST>`, HOST being the registry
   upper-cased with every other character `_` (`127.0.0.1:5000` -> `127_0_0_1_5000`);
2. `MLBUILD_REGISTRY_USER` / `MLBUILD_REGISTRY_PASSWORD` (CI: any registry);
3. the Docker config (`$DOCKER_CONFIG/config.json` or `~/.docker/config.json`): `credHelpers`,
   then `credsStore`, through `docker-credential-<helper> get`, then `auths` (base64 `auth`).
`mlbuild login` stores into the same Docker config (through the helper where one is set).
Credentials go to the engine in the X-Registry-Auth header and to the registry in an
Authorization header, never in URLs, output, logs, images or records.

Transport
---------
Registries on 127.0.0.1 / localhost / ::1 are spoken to over http unless a CA is known for
them; any other registry needs TLS. A registry's CA comes from `--registry-ca`, the site
config (`registry_ca: FILE` or `registry_ca: {HOST: FILE}`), or
`/etc/docker/certs.d/HOST/ca.crt`, where the Docker engine itself looks for it.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from builder.errors import RegistryError, UsageError
from builder.fileio import write_atomic
from builder.labels import CONTENT_LABEL
from builder.refs import DOCKER_HUB, Reference, parse_reference
from builder.settings import redact

if TYPE_CHECKING:
    from builder.engine_api import Engine

RECORD_SUFFIX = ".image.json"
RECORD_SCHEMA = 1
CONTENT_TAG_RE = re.compile(r"^spec-[0-9a-f]{16}$")
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


def env_key(registry: str) -> str:
    return re.sub(r"[^A-Z0-9]", "_", registry.upper())


# -- credentials ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)  # or an identity token; never printed
    source: str = ""  # where they came from, for messages: "$MLBUILD_REGISTRY_PASSWORD"
    identity_token: bool = False

    def auth_config(self) -> dict[str, str]:
        """What the engine's X-Registry-Auth header carries."""
        if self.identity_token:
            return {"identitytoken": self.password}
        return {"username": self.username, "password": self.password}

    def secrets(self) -> list[str]:
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return [self.password, token]


Runner = Callable[..., "subprocess.CompletedProcess[str]"]


def docker_config_path(env: Mapping[str, str] | None = None) -> Path:
    environ = os.environ if env is None else env
    folder = environ.get("DOCKER_CONFIG")
    return (Path(folder) if folder else Path(environ.get("HOME") or Path.home()) / ".docker") / "config.json"


def normalize_registry(key: str) -> str:
    """auths keys: "https://index.docker.io/v1/", "host:5000", "https://host:5000/" -> host."""
    host = re.sub(r"^[a-z]+://", "", key).split("/", 1)[0]
    return DOCKER_HUB if host in ("index.docker.io", "registry-1.docker.io") else host


def find_credentials(
    registry: str, env: Mapping[str, str] | None = None, run: Runner = subprocess.run
) -> Credentials | None:
    environ = os.environ if env is None else env
    key = env_key(registry)
    for user_var, pass_var in (
        (f"MLBUILD_REGISTRY_USER_{key}", f"MLBUILD_REGISTRY_PASSWORD_{key}"),
        ("MLBUILD_REGISTRY_USER", "MLBUILD_REGISTRY_PASSWORD"),
    ):
        if environ.get(user_var) and environ.get(pass_var):
            return Credentials(environ[user_var], environ[pass_var], f"${pass_var}")
    config = _read_docker_config(docker_config_path(environ))
    helper = _helper_for(config, registry)
    if helper:
        return _helper_get(helper, registry, run)
    for k, entry in (config.get("auths") or {}).items():
        if normalize_registry(k) != registry or not isinstance(entry, dict):
            continue
        if entry.get("identitytoken"):
            return Credentials("<token>", str(entry["identitytoken"]), "the Docker config", True)
        raw = entry.get("auth")
        if raw:
            try:
                user, _, password = base64.b64decode(raw).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                raise RegistryError(
                    f"the Docker config's entry for {registry} is not valid base64",
                    hint=f"run: mlbuild login {registry}",
                ) from None
            return Credentials(user, password, "the Docker config")
    return None


def _read_docker_config(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise RegistryError(f"cannot read the Docker config {path}", details=[str(exc)[:200]]) from None
    return doc if isinstance(doc, dict) else {}


def _helper_for(config: dict[str, Any], registry: str) -> str | None:
    for k, helper in (config.get("credHelpers") or {}).items():
        if normalize_registry(k) == registry:
            return str(helper)
    store = config.get("credsStore")
    return str(store) if store else None


def _helper_server(registry: str) -> str:
    return "https://index.docker.io/v1/" if registry == DOCKER_HUB else registry


def _helper_get(helper: str, registry: str, run: Runner) -> Credentials | None:
    program = f"docker-credential-{helper}"
    try:
        out = run(
            [program, "get"],
            input=_helper_server(registry),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RegistryError(
            f"the Docker config names the credential helper {program}, which cannot run",
            details=[type(exc).__name__],
            hint=f"install {program}, or remove it from the config",
        ) from None
    if out.returncode != 0:
        return None  # "credentials not found": anonymous, as docker does
    try:
        doc = json.loads(out.stdout)
        user, secret = str(doc["Username"]), str(doc["Secret"])
    except (ValueError, KeyError, TypeError):
        raise RegistryError(f"{program} answered something that is not credentials") from None
    return Credentials(user, secret, program, identity_token=user == "<token>")


def store_credentials(
    registry: str,
    creds: Credentials,
    env: Mapping[str, str] | None = None,
    run: Runner = subprocess.run,
) -> str:
    """Save for later commands (and for docker), as `docker login` does; returns where."""
    path = docker_config_path(env)
    config = _read_docker_config(path)
    helper = _helper_for(config, registry)
    if helper:
        program = f"docker-credential-{helper}"
        payload = json.dumps(
            {
                "ServerURL": _helper_server(registry),
                "Username": creds.username,
                "Secret": creds.password,
            }
        )
        try:
            out = run(
                [program, "store"],
                input=payload,
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            out = None
        if out is None or out.returncode != 0:
            raise RegistryError(f"{program} could not store the credentials for {registry}")
        return program
    auths = config.setdefault("auths", {})
    auth = base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
    auths[_helper_server(registry)] = {"auth": auth}
    write_atomic(path, json.dumps(config, indent=2) + "\n", mode=0o600)
    return str(path)


# -- retries --------------------------------------------------------------------------------------
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


# -- the registry's HTTP API ----------------------------------------------------------------------
@dataclass(frozen=True)
class RemoteManifest:
    digest: str  # the manifest's digest: what `repo@sha256:...` names
    media_type: str
    config_digest: str | None  # the image ID of a single-platform image
    children: tuple[tuple[str, str], ...] = ()  # index: (platform, manifest digest)


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
                return RemoteManifest(digest, media, None, children)
            return RemoteManifest(digest, media, (doc.get("config") or {}).get("digest"))

        return with_retries(get, self.policy, f"registry {self.registry}", say)

    def _request(
        self,
        method: str,
        url: str,
        *,
        scope: str | None,
        accept: str = "",
        missing_ok: bool = False,
    ) -> Any:
        import requests

        headers = {"Accept": accept} if accept else {}
        verify: str | bool = str(self.ca) if self.ca else True
        try:
            r = self._send(method, self.base + url, headers, verify)
            if r.status_code == 401:
                r = self._send(
                    method,
                    self.base + url,
                    {**headers, **self._authorize(r, scope, verify)},
                    verify,
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

    def _send(self, method: str, url: str, headers: dict[str, str], verify: str | bool) -> Any:
        return self.session.request(
            method, url, headers=headers, verify=verify, timeout=self.timeout, allow_redirects=True
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


def auth_error(registry: str, creds: Credentials | None) -> RegistryError:
    if creds is None:
        return RegistryError(
            f"registry {registry} needs credentials, and none were found",
            hint=f"run: mlbuild login {registry} -u USER  (password on stdin), or set "
            f"MLBUILD_REGISTRY_USER and MLBUILD_REGISTRY_PASSWORD",
        )
    return RegistryError(
        f"registry {registry} refused the credentials of user {creds.username!r} "
        f"(from {creds.source or 'the Docker config'})",
        hint=f"check the password, then run: mlbuild login {registry} -u {creds.username}",
    )


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


# -- push -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PushResult:
    repository: str
    digest: str
    tags: tuple[str, ...]
    image_id: str

    @property
    def reference(self) -> str:
        return f"{self.repository}@{self.digest}"


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


def group_refs(refs: tuple[str, ...] | list[str]) -> dict[str, list[str]]:
    """repository -> its tags, in order."""
    out: dict[str, list[str]] = {}
    for ref in refs:
        r = parse_reference(ref)
        out.setdefault(r.name, []).append(r.tag_or_latest)
    return out


def check_immutable(
    client: RegistryClient,
    ref: Reference,
    tag: str,
    image_id: str,
    platform: str,
    say: Say = lambda _: None,
) -> None:
    """Refuse to move a content tag that already names other content in the registry."""
    remote = client.manifest(ref.path, tag, say)
    if remote is None:
        return
    config = remote.config_digest
    if config is None:  # an index: compare the entry for our platform
        child = next((d for p, d in remote.children if p == "/".join(platform.split("/")[:2])), None)
        sub = client.manifest(ref.path, child, say) if child else None
        config = sub.config_digest if sub else None
    if config == image_id:
        return
    raise RegistryError(
        f"refusing to overwrite the immutable tag {ref.name}:{tag} with other content",
        details=[
            f"registry: {remote.digest} (image {config or 'unknown'})",
            f"local:    image {image_id}",
        ],
        hint="content tags never move; if the build changed, its content tag changes too "
        "(rebuild), or push under another repository",
    )


def push_image(
    engine: Engine,
    image_id: str,
    refs: tuple[str, ...] | list[str],
    *,
    registry_ca: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    say: Say = lambda _: None,
    on_progress: Any = None,
    access: Callable[[str], Access] | None = None,
) -> list[PushResult]:
    """Push every tag in `refs` (all naming `image_id`); content tags are checked first."""
    get_access = access or (lambda reg: access_for(reg, registry_ca, env))
    platform = platform_of(engine.inspect(image_id))
    groups = group_refs(refs)
    plans = []
    for name, tags in groups.items():  # every check before any push: all or nothing
        ref = parse_reference(name)
        acc = get_access(ref.registry)
        client = acc.client(ref.registry)
        for tag in tags:
            if CONTENT_TAG_RE.match(tag):
                check_immutable(client, ref, tag, image_id, platform, say)
        plans.append((ref, tags, acc))
    results = []
    for ref, tags, acc in plans:
        digests = set()
        for tag in tags:
            say(f"pushing {ref.name}:{tag}")
            auth = acc.creds.auth_config() if acc.creds else None

            def one(ref: Reference = ref, tag: str = tag, acc: Access = acc, auth: Any = auth) -> str:
                try:
                    return engine.push(ref.name, tag, auth_config=auth, on_progress=on_progress)
                except RegistryError as exc:
                    text = " ".join([exc.message, *exc.details]).lower()
                    if re.search(r"unauthorized|authentication required|denied", text):
                        raise auth_error(ref.registry, acc.creds) from None
                    raise

            digests.add(with_retries(one, acc.policy, f"push of {ref.name}:{tag}", say))
        if len(digests) != 1:
            raise RegistryError(f"the tags of {ref.name} got different digests", details=sorted(digests))
        digest = digests.pop()
        content = [t for t in tags if CONTENT_TAG_RE.match(t)]
        if content:  # the registry must now say what the push stream said
            remote = acc.client(ref.registry).manifest(ref.path, content[0], say)
            if remote is None or remote.digest != digest:
                raise RegistryError(
                    f"after the push, registry {ref.registry} does not hold {ref.name}:{content[0]} as {digest}",
                    details=[f"registry: {remote.digest if remote else 'nothing'}"],
                )
        results.append(PushResult(ref.name, digest, tuple(tags), image_id))
    return results


def platform_of(attrs: dict[str, Any]) -> str:
    parts = [str(attrs.get("Os") or "linux"), str(attrs.get("Architecture") or "amd64")]
    if attrs.get("Variant"):
        parts.append(str(attrs["Variant"]))
    return "/".join(parts)


# -- records --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ImageRecord:
    repository: str
    digest: str
    tags: tuple[str, ...]
    content_tag: str
    image_id: str
    platform: str
    spec: dict[str, Any]  # a summary of the resolved spec, for people and for checks
    spec_digest: str
    mlbuild_version: str = ""
    schema: int = RECORD_SCHEMA

    @property
    def reference(self) -> str:
        return f"{self.repository}@{self.digest}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "repository": self.repository,
            "digest": self.digest,
            "reference": self.reference,
            "tags": list(self.tags),
            "content_tag": self.content_tag,
            "image_id": self.image_id,
            "platform": self.platform,
            "spec": self.spec,
            "spec_digest": self.spec_digest,
            "mlbuild_version": self.mlbuild_version,
        }


SUMMARY_FIELDS = (
    "name",
    "framework",
    "framework_version",
    "python",
    "cuda",
    "cudnn",
    "variant",
    "base_image",
    "min_driver",
    "archs",
    "packages",
    "system_packages",
)


def spec_summary(spec_dict: dict[str, Any]) -> dict[str, Any]:
    return {k: spec_dict.get(k) for k in SUMMARY_FIELDS}


def record_path(recipe: str | Path) -> Path:
    p = Path(recipe)
    return p.with_name(p.stem + RECORD_SUFFIX)


def make_record(result: PushResult, labels: dict[str, str], platform: str) -> ImageRecord:
    from builder import __version__
    from builder.spec import ResolvedSpec

    spec = ResolvedSpec.from_labels(labels)
    if spec is None:
        raise RegistryError(f"{result.repository} was not built by mlbuild (no org.mlbuild.spec label)")
    return ImageRecord(
        repository=result.repository,
        digest=result.digest,
        tags=result.tags,
        content_tag=labels.get(CONTENT_LABEL, ""),
        image_id=result.image_id,
        platform=platform,
        spec=spec_summary(spec.to_dict()),
        spec_digest=spec.digest(),
        mlbuild_version=__version__,
    )


def write_record(path: Path, record: ImageRecord) -> None:
    write_atomic(path, json.dumps(record.to_dict(), indent=2, sort_keys=True) + "\n")


def read_record(recipe: str | Path) -> ImageRecord:
    path = record_path(recipe)
    if not path.is_file():
        raise RegistryError(
            f"no image record for {recipe}: {path} does not exist",
            hint=f"whoever built the image runs `mlbuild build {recipe} --push` (or `mlbuild push "
            f"IMAGE --recipe {recipe}`) and commits {path.name} next to the recipe",
        )
    try:
        doc = json.loads(path.read_text())
        return ImageRecord(
            repository=str(doc["repository"]),
            digest=str(doc["digest"]),
            tags=tuple(str(t) for t in doc.get("tags") or ()),
            content_tag=str(doc["content_tag"]),
            image_id=str(doc.get("image_id") or ""),
            platform=str(doc.get("platform") or ""),
            spec=dict(doc.get("spec") or {}),
            spec_digest=str(doc.get("spec_digest") or ""),
            mlbuild_version=str(doc.get("mlbuild_version") or ""),
            schema=int(doc.get("schema") or RECORD_SCHEMA),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise RegistryError(
            f"{path} is not a valid image record",
            details=[f"{type(exc).__name__}: {exc}"],
            hint="push again to rewrite it",
        ) from None


# Fields the recipe decides; the rest (reasons, base observation, versions of mlbuild) may differ.
CHECKED_FIELDS = (
    "name",
    "framework",
    "framework_version",
    "python",
    "cuda",
    "variant",
    "framework_requirement",
    "companions",
    "requirements",
    "system_packages",
    "env",
    "workdir",
    "user",
    "uid",
)


def check_labels(labels: dict[str, str], record: ImageRecord, expected: dict[str, Any] | None) -> list[str]:
    """Pure: what is wrong with a pulled image, against its record and the recipe's resolution."""
    from builder.spec import ResolvedSpec

    problems = []
    spec = ResolvedSpec.from_labels(labels)
    if spec is None:
        return ["the image has no org.mlbuild.spec label: it was not built by mlbuild"]
    if labels.get(CONTENT_LABEL) != record.content_tag:
        problems.append(f"content label {labels.get(CONTENT_LABEL)!r}, the record says {record.content_tag!r}")
    if record.spec_digest and spec.digest() != record.spec_digest:
        problems.append("the image's spec label differs from the one recorded at push time")
    if expected is not None:
        got = spec.to_dict()
        for key in CHECKED_FIELDS:
            want = expected.get(key)
            if key not in expected or want == "from-base":
                continue  # decided by the base at build time
            if got.get(key) != want:
                problems.append(f"{key}: the image has {got.get(key)!r}, the recipe resolves to {want!r}")
    return problems


# -- build avoidance ------------------------------------------------------------------------------
def pull_if_present(engine: Engine, repository: str, tag: str, say: Say = lambda _: None) -> str | None:
    """The content tag from the recipe's registry, pulled by digest; None when it is not there.

    Only repositories that name their registry are asked (never Docker Hub by default), with a
    short timeout and no retries: a registry that does not answer means "build it here".
    """
    ref = parse_reference(repository)
    if not ref.explicit_registry:
        return None
    try:
        acc = access_for(ref.registry)
        client = RegistryClient(ref.registry, acc.creds, acc.ca, RetryPolicy(attempts=1), timeout=3)
        remote = client.manifest(ref.path, tag)
        if remote is None:
            return None
        say(f"{repository}:{tag} is in the registry ({remote.digest}); pulling it")
        auth = acc.creds.auth_config() if acc.creds else None
        image_id = str(engine.pull_ref(f"{ref.name}@{remote.digest}", auth_config=auth))
    except (RegistryError, UsageError) as exc:
        say(f"registry {ref.registry} not checked: {exc.message}")
        return None
    labels = dict((engine.inspect(image_id).get("Config") or {}).get("Labels") or {})
    if labels.get(CONTENT_LABEL) != tag:  # a moved content tag: never trust it
        say(f"{repository}:{tag} in the registry carries content {labels.get(CONTENT_LABEL)!r}; building instead")
        return None
    return image_id
