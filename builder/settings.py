"""Site build settings: CA bundle, pip index mirrors and proxies.

These are configuration of the site, not of the recipe: they come from command-line options,
then the environment, then a site config file (`$MLBUILD_CONFIG`, `~/.config/mlbuild/config.yaml`,
`/etc/mlbuild/config.yaml`). They reach only the builder stage (files in `build-settings/`) or
predefined proxy build arguments, which Docker keeps out of the image's history, so none of them
stays in the final image. URLs may carry credentials: `redact()` hides them in every output.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from builder.errors import UsageError
from builder.platforms import PLATFORMS
from builder.recipe import INSTALLERS

CA_ENV = ("MLBUILD_CA_BUNDLE", "PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")
PROXY_ENV = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")
BUILDERS = ("auto", "buildkit", "classic")  # builder.buildkit chooses among them
CONFIG_PATHS = ("~/.config/mlbuild/config.yaml", "/etc/mlbuild/config.yaml")
_CRED_RE = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<cred>[^/@\s]+)@")


def redact(text: str) -> str:
    """Hide user:password in every URL of `text`."""
    return _CRED_RE.sub(lambda m: f"{m.group('scheme')}***@", text)


@dataclass(frozen=True)
class BuildSettings:
    ca_bundle: Path | None = None
    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()
    trusted_hosts: tuple[str, ...] = ()
    proxies: tuple[tuple[str, str], ...] = ()
    variant_indexes: tuple[tuple[str, str], ...] = ()  # mirrors of framework variant indexes
    wheelhouse: Path | None = None  # a folder of wheels for the builder stage (never the image)
    offline: bool = False  # every Python package from the wheelhouse (pip --no-index)
    builder: str | None = None  # the site's builder: auto | buildkit | classic (--builder wins)
    installer: str | None = None  # the site config's `installer:` (uv | pip); None: the default
    sources: tuple[str, ...] = field(default=(), compare=False)  # where each setting came from
    # a native engine per platform (site config `engines:`), e.g. linux/arm64: ssh://ci@arm-builder;
    # a platform without one builds on the default engine (under QEMU when it is foreign)
    engines: tuple[tuple[str, str], ...] = ()

    def engine_for(self, platform: str) -> str | None:
        return dict(self.engines).get(platform)

    def secrets(self) -> list[str]:
        """Values that must never appear in output, images or records."""
        out = []
        for url in (self.index_url, *self.extra_index_urls, *(v for _, v in self.proxies)):
            if url:
                parts = urlsplit(url)
                if parts.password:
                    out.append(parts.password)
                if parts.username and parts.password:
                    out.append(f"{parts.username}:{parts.password}")
        return out

    def variant_index(self, variant: str, default: str | None) -> str | None:
        return dict(self.variant_indexes).get(variant, default)

    def build_args(self) -> dict[str, str]:
        """Only Docker's predefined proxy arguments: they are left out of `docker history`."""
        return dict(self.proxies)

    def write_build_settings(self, folder: Path, secrets: Path | None = None) -> None:
        """The builder stage's pip.conf (and CA bundle), copied into that stage only. With
        `secrets` (BuildKit), pip.conf, which may carry index credentials, goes there instead,
        outside the build context: BuildKit mounts it as a secret while a step runs, so it is in
        no layer, not even the builder stage's or the build cache's."""
        folder.mkdir(parents=True, exist_ok=True)
        lines = ["[global]"]
        if self.index_url:
            lines.append(f"index-url = {self.index_url}")
        if self.extra_index_urls:
            lines.append("extra-index-url = " + " ".join(self.extra_index_urls))
        if self.trusted_hosts:
            lines.append("trusted-host = " + " ".join(self.trusted_hosts))
        if self.ca_bundle:
            (folder / "ca.crt").write_bytes(self.ca_bundle.read_bytes())
            lines.append("cert = /tmp/mlbuild-build/ca.crt")
        for name, text in (("pip.conf", "\n".join(lines) + "\n"), ("uv.toml", self.uv_toml())):
            target = folder / name
            if secrets is not None:  # both may carry index credentials
                secrets.mkdir(parents=True, exist_ok=True)
                target = secrets / name
                target.touch(mode=0o600)
            target.write_text(text)

    def uv_toml(self) -> str:
        """The same settings in uv's own terms (uv reads no pip.conf). The CA bundle reaches
        uv as SSL_CERT_FILE and proxies as the proxy build arguments, in the builder stage."""
        lines = [
            # pip's behaviour: the best version across every index, so that a framework's
            # variant index wins for the builds only it carries (uv's default is first-index)
            'index-strategy = "unsafe-best-match"',
        ]
        if self.index_url:
            lines.append(f"index-url = {_toml(self.index_url)}")
        if self.extra_index_urls:
            lines.append("extra-index-url = [" + ", ".join(map(_toml, self.extra_index_urls)) + "]")
        if self.trusted_hosts:
            lines.append("allow-insecure-host = [" + ", ".join(map(_toml, self.trusted_hosts)) + "]")
        if self.offline:
            lines.append("offline = true")
        return "\n".join(lines) + "\n"

    def describe(self) -> list[str]:
        out = []
        if self.ca_bundle:
            out.append(f"CA bundle: {self.ca_bundle}")
        if self.index_url:
            out.append(f"pip index: {redact(self.index_url)}")
        for url in self.extra_index_urls:
            out.append(f"pip extra index: {redact(url)}")
        for k, v in self.proxies:
            out.append(f"{k}: {redact(v)}")
        return out


def load_settings(
    *,
    ca_bundle: str | None = None,
    index_url: str | None = None,
    extra_index_urls: tuple[str, ...] = (),
    env: Mapping[str, str] | None = None,
    config_path: str | None = None,
    wheelhouse: Path | None = None,
    offline: bool = False,
) -> BuildSettings:
    """Options win over the environment, which wins over the site config file."""
    environ = os.environ if env is None else env
    config = _read_config(config_path or environ.get("MLBUILD_CONFIG"))
    sources: list[str] = []

    ca: str | None = ca_bundle
    if ca:
        sources.append("CA bundle from --ca-bundle")
    else:
        for name in CA_ENV:
            if environ.get(name):
                ca = environ[name]
                sources.append(f"CA bundle from ${name}")
                break
        else:
            ca = config.get("ca_bundle")
            if ca:
                sources.append("CA bundle from the site config")
    ca_path = Path(ca).expanduser() if ca else None
    if ca_path and not ca_path.is_file():
        raise UsageError(f"CA bundle {ca_path} is not a readable file", hint="give --ca-bundle FILE")

    index = index_url or environ.get("MLBUILD_INDEX_URL") or _http(environ.get("PIP_INDEX_URL"))
    index = index or config.get("index_url")
    extras = (
        tuple(extra_index_urls)
        or tuple(
            u
            for u in (environ.get("MLBUILD_EXTRA_INDEX_URL") or environ.get("PIP_EXTRA_INDEX_URL") or "").split()
            if _http(u)
        )
        or tuple(config.get("extra_index_urls") or ())
    )
    for url in (index, *extras):
        if url and not _http(url):
            raise UsageError(
                f"index URL {redact(url)!r} is not an http(s) URL",
                hint="a folder of wheels is a wheelhouse, not an index",
            )
    proxies = tuple((k, environ[k]) for k in PROXY_ENV if environ.get(k))
    # An apt mirror reaches every apt step as a caching proxy for http (apt-cacher-ng,
    # Artifactory and Nexus remote repositories work so): `http_proxy` is one of Docker's
    # predefined build arguments, which image history leaves out. Rewriting the image's apt
    # sources instead would leave the mirror in the final stage's history.
    apt_proxy = environ.get("MLBUILD_APT_PROXY") or config.get("apt_proxy")
    if apt_proxy:
        if not _http(str(apt_proxy)):
            raise UsageError(f"apt_proxy {redact(str(apt_proxy))!r} is not an http(s) URL")
        proxies = (*tuple(p for p in proxies if p[0] != "http_proxy"), ("http_proxy", str(apt_proxy)))
    builder = environ.get("MLBUILD_BUILDER") or config.get("builder")
    if builder is not None and builder not in BUILDERS:
        raise UsageError(
            f"site config builder: {str(builder)[:40]!r} is not one of {', '.join(BUILDERS)}",
            hint="builder: auto (BuildKit where the docker CLI can drive it, else the classic builder)",
        )
    trusted = tuple(config.get("trusted_hosts") or ())
    variant_indexes = tuple(sorted((str(k), str(v)) for k, v in (config.get("indexes") or {}).items()))
    engines = _engines(config.get("engines"))
    if engines:
        sources.append("engines per platform from the site config: " + ", ".join(p for p, _ in engines))
    return BuildSettings(
        ca_bundle=ca_path,
        index_url=index,
        extra_index_urls=extras,
        trusted_hosts=trusted,
        proxies=proxies,
        variant_indexes=variant_indexes,
        wheelhouse=Path(wheelhouse) if wheelhouse else None,
        offline=offline,
        builder=builder,
        installer=_installer(config),
        sources=tuple(sources),
        engines=engines,
    )


ENGINE_URL_RE = re.compile(r"^(?:unix:///[A-Za-z0-9_./-]+|(?:tcp|ssh)://[A-Za-z0-9_.@:\[\]-]+)$")


def _engines(value: Any) -> tuple[tuple[str, str], ...]:
    """`engines: {linux/arm64: ssh://user@host}` of the site config, checked."""
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise UsageError("site config engines: must be a mapping of platform to engine URL")
    out = []
    for platform, url in value.items():
        if platform not in PLATFORMS:
            raise UsageError(f"site config engines: {platform!r} is not one of: {', '.join(PLATFORMS)}")
        if not isinstance(url, str) or not ENGINE_URL_RE.fullmatch(url):
            raise UsageError(
                f"site config engines.{platform}: {redact(str(url))!r} is not an engine URL",
                hint="unix:///var/run/docker.sock, tcp://host:2376 or ssh://user@host",
            )
        out.append((str(platform), url))
    return tuple(sorted(out))
def _toml(text: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's)."""
    return json.dumps(text)


def _installer(config: Mapping[str, Any]) -> str | None:
    value = config.get("installer")
    if value is None:
        return None
    if value not in INSTALLERS:
        raise UsageError(
            f"site config installer: {value!r} is not one of: {' | '.join(INSTALLERS)}",
            hint="uv (the default) or pip for sites that need pip",
        )
    return str(value)


def _http(url: str | None) -> str | None:
    return url if url and url.startswith(("http://", "https://")) else None


def _read_config(explicit: str | None) -> dict[str, Any]:
    candidates = [explicit] if explicit else list(CONFIG_PATHS)
    for candidate in candidates:
        path = Path(candidate).expanduser()
        if path.is_file():
            try:
                doc = yaml.safe_load(path.read_text()) or {}
            except yaml.YAMLError as exc:
                raise UsageError(f"site config {path} is not valid YAML: {exc}") from None
            if not isinstance(doc, dict):
                raise UsageError(f"site config {path} must be a mapping")
            return doc
        if explicit:
            raise UsageError(f"site config {path} does not exist")
    return {}
