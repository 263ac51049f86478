"""Registry credentials: where they come from, how they are stored, what a refusal says.

Strongest first
---------------
1. `MLBUILD_REGISTRY_USER_<HOST>` / `MLBUILD_REGISTRY_PASSWORD_<HOST>`, HOST being the registry
   upper-cased with every other character `_` (`127.0.0.1:5000` -> `127_0_0_1_5000`);
2. `MLBUILD_REGISTRY_USER` / `MLBUILD_REGISTRY_PASSWORD` (CI: any registry);
3. the Docker config (`$DOCKER_CONFIG/config.json` or `~/.docker/config.json`): `credHelpers`,
   then `credsStore`, through `docker-credential-<helper> get`, then `auths` (base64 `auth`).
`mlbuild login` stores into the same Docker config (through the helper where one is set).
Credentials go to the engine in the X-Registry-Auth header and to the registry in an
Authorization header, never in URLs, output, logs, images or records.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from builder.errors import RegistryError
from builder.fileio import write_atomic
from builder.refs import DOCKER_HUB


def env_key(registry: str) -> str:
    return re.sub(r"[^A-Z0-9]", "_", registry.upper())


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
    config = read_docker_config(docker_config_path(environ))
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


def read_docker_config(path: Path) -> dict[str, Any]:
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
    config = read_docker_config(path)
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
