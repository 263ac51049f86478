"""Registry credentials without Docker or a registry: builder/credentials.py."""

from __future__ import annotations

import base64
import json
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from builder import credentials as cred
from builder.errors import RegistryError


def _config(tmp_path: Path, doc: dict[str, Any]) -> dict[str, str]:
    (tmp_path / "config.json").write_text(json.dumps(doc))
    return {"DOCKER_CONFIG": str(tmp_path)}


def test_credentials_precedence(tmp_path: Path) -> None:
    auth = base64.b64encode(b"cfguser:cfgpass").decode()
    env = _config(tmp_path, {"auths": {"https://127.0.0.1:5000/": {"auth": auth}}})
    c = cred.find_credentials("127.0.0.1:5000", env)
    assert c and (c.username, c.password, c.source) == ("cfguser", "cfgpass", "the Docker config")
    env |= {"MLBUILD_REGISTRY_USER": "ci", "MLBUILD_REGISTRY_PASSWORD": "cipass"}
    c = cred.find_credentials("127.0.0.1:5000", env)
    assert c and (c.username, c.password) == ("ci", "cipass")
    env |= {
        "MLBUILD_REGISTRY_USER_127_0_0_1_5000": "one",
        "MLBUILD_REGISTRY_PASSWORD_127_0_0_1_5000": "p1",
    }
    c = cred.find_credentials("127.0.0.1:5000", env)
    assert c and (c.username, c.password) == ("one", "p1")
    assert cred.find_credentials("other:5000", _config(tmp_path, {})) is None


def test_credentials_never_in_repr() -> None:
    c = cred.Credentials("alice", "s3cret-pw", "x")
    assert "s3cret-pw" not in repr(c)
    assert c.auth_config() == {"username": "alice", "password": "s3cret-pw"}


def test_docker_hub_auths_key_and_identity_token(tmp_path: Path) -> None:
    env = _config(tmp_path, {"auths": {"https://index.docker.io/v1/": {"identitytoken": "tok"}}})
    c = cred.find_credentials("docker.io", env)
    assert c and c.identity_token and c.auth_config() == {"identitytoken": "tok"}


def test_credential_helper_is_run(tmp_path: Path) -> None:
    env = _config(tmp_path, {"credHelpers": {"reg.example.com": "fake"}, "credsStore": "other"})
    calls: list[tuple[list[str], str]] = []

    def run(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        calls.append((cmd, kw["input"]))
        return subprocess.CompletedProcess(cmd, 0, json.dumps({"Username": "u", "Secret": "s"}), "")

    c = cred.find_credentials("reg.example.com", env, run)
    assert c and (c.username, c.password, c.source) == ("u", "s", "docker-credential-fake")
    assert calls == [(["docker-credential-fake", "get"], "reg.example.com")]
    # credsStore applies to registries without their own helper; "not found" means anonymous
    missing = cred.find_credentials(
        "x.example.com", env, lambda cmd, **kw: subprocess.CompletedProcess(cmd, 1, "", "not found")
    )
    assert missing is None


def test_missing_helper_program_is_a_clear_error(tmp_path: Path) -> None:
    env = _config(tmp_path, {"credsStore": "nonexistent-helper-xyz"})
    with pytest.raises(RegistryError, match="docker-credential-nonexistent-helper-xyz"):
        cred.find_credentials("reg.example.com", env)


def test_store_credentials_roundtrip_private_file(tmp_path: Path) -> None:
    env = _config(tmp_path, {"auths": {"keep.example.com": {"auth": "eDp5"}}, "other": 1})
    where = cred.store_credentials("127.0.0.1:5000", cred.Credentials("bob", "pw"), env)
    assert where == str(tmp_path / "config.json")
    assert stat.S_IMODE((tmp_path / "config.json").stat().st_mode) == 0o600
    doc = json.loads((tmp_path / "config.json").read_text())
    assert doc["other"] == 1 and "keep.example.com" in doc["auths"]
    c = cred.find_credentials("127.0.0.1:5000", env)
    assert c and (c.username, c.password) == ("bob", "pw")
