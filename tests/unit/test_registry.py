"""builder/registry.py without a registry: transport, retries and the HTTP API (through a fake
session)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from builder import registry as reg
from builder.credentials import Credentials
from builder.engine import PushError
from builder.errors import RegistryError, UsageError

IMG = "sha256:" + "a" * 64
OTHER = "sha256:" + "b" * 64
DIGEST = "sha256:" + "d" * 64
TAG = "spec-0123456789abcdef"


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1:5000", True),
        ("localhost:5000", True),
        ("localhost", True),
        ("[::1]:5000", True),
        ("127.3.4.5", True),
        ("reg.example.com:5000", False),
        ("10.0.0.1:5000", False),
    ],
)
def test_loopback_means_http(host: str, loopback: bool) -> None:
    assert reg.is_loopback(host) is loopback
    client = reg.RegistryClient(host, session=FakeSession([]))
    assert client.base.startswith("http://" if loopback else "https://")


def test_loopback_with_a_ca_uses_tls(tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("x")
    assert reg.RegistryClient("127.0.0.1:5000", ca=ca, session=FakeSession([])).base.startswith("https://")


# -- retries ---------------------------------------------------------------------------------
def test_retry_policy_is_bounded() -> None:
    assert reg.RetryPolicy(5, 1.0, 3.0).delays() == [1.0, 2.0, 3.0, 3.0]
    p = reg.RetryPolicy.from_env({"MLBUILD_REGISTRY_ATTEMPTS": "1000", "MLBUILD_REGISTRY_BACKOFF": "0.1"})
    assert p.attempts == 10 and p.backoff == 0.1


def test_with_retries_retries_transient_then_gives_up() -> None:
    slept: list[float] = []
    calls = []

    def flaky() -> str:
        calls.append(1)
        raise PushError("push failed", transient=True)

    with pytest.raises(PushError, match="gave up after 3 attempts"):
        reg.with_retries(flaky, reg.RetryPolicy(3, 0.5), "push", sleep=slept.append)
    assert len(calls) == 3 and slept == [0.5, 1.0]


def test_with_retries_recovers_and_does_not_retry_permanent() -> None:
    attempts = iter([PushError("x", transient=True), "sha256:ok"])

    def once() -> str:
        v = next(attempts)
        if isinstance(v, Exception):
            raise v
        return str(v)

    assert reg.with_retries(once, reg.RetryPolicy(3, 0), "push", sleep=lambda _: None) == "sha256:ok"
    calls = []

    def denied() -> str:
        calls.append(1)
        raise PushError("denied", transient=False)

    with pytest.raises(PushError):
        reg.with_retries(denied, reg.RetryPolicy(3, 0), "push", sleep=lambda _: None)
    assert len(calls) == 1


# -- the HTTP API through a fake session -----------------------------------------------------
class FakeResponse:
    def __init__(self, status: int, doc: Any = None, headers: dict[str, str] | None = None, text: str = ""):
        self.status_code = status
        self._doc = doc
        self.headers = headers or {}
        self.text = text or (json.dumps(doc) if doc is not None else "")
        self.content = self.text.encode()

    def json(self) -> Any:
        return self._doc


class FakeSession:
    """Answers requests in order; records each request's URL and headers."""

    def __init__(self, answers: list[Any]):
        self.answers = list(answers)
        self.seen: list[tuple[str, dict[str, str]]] = []
        self.trust_env = True

    def request(self, method: str, url: str, headers: dict[str, str], **kw: Any) -> Any:
        self.seen.append((url, dict(headers)))
        return self._next()

    def get(self, url: str, params: Any = None, auth: Any = None, **kw: Any) -> Any:
        self.seen.append((url, {"auth": repr(auth), "params": json.dumps(params)}))
        return self._next()

    def _next(self) -> Any:
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def manifest(config: str = IMG) -> FakeResponse:
    doc = {"schemaVersion": 2, "mediaType": reg.MANIFEST_TYPES[0], "config": {"digest": config}}
    return FakeResponse(200, doc, {"Docker-Content-Digest": DIGEST, "Content-Type": reg.MANIFEST_TYPES[0]})


BASIC = FakeResponse(401, {}, {"WWW-Authenticate": 'Basic realm="Registry Realm"'})


def test_manifest_with_basic_auth() -> None:
    s = FakeSession([BASIC, manifest()])
    client = reg.RegistryClient("127.0.0.1:5000", Credentials("alice", "pw"), session=s)
    m = client.manifest("team/x", TAG)
    assert m == reg.RemoteManifest(DIGEST, reg.MANIFEST_TYPES[0], IMG)
    assert s.seen[0][0] == f"http://127.0.0.1:5000/v2/team/x/manifests/{TAG}"
    assert "Authorization" not in s.seen[0][1]
    assert s.seen[1][1]["Authorization"] == "Basic " + base64.b64encode(b"alice:pw").decode()
    assert s.trust_env is False


def test_manifest_missing_is_none() -> None:
    s = FakeSession([FakeResponse(404, {"errors": []})])
    assert reg.RegistryClient("127.0.0.1:5000", session=s).manifest("team/x", TAG) is None


def test_wrong_password_names_registry_and_user_not_password() -> None:
    s = FakeSession([BASIC, BASIC])
    client = reg.RegistryClient("127.0.0.1:5000", Credentials("alice", "hunter2", "$X"), session=s)
    with pytest.raises(RegistryError) as info:
        client.manifest("team/x", TAG)
    text = " ".join([info.value.message, *info.value.details, info.value.hint or ""])
    assert "127.0.0.1:5000" in text and "alice" in text and "mlbuild login" in text
    assert "hunter2" not in text


def test_no_credentials_says_how_to_get_them() -> None:
    with pytest.raises(RegistryError, match="needs credentials") as info:
        reg.RegistryClient("127.0.0.1:5000", session=FakeSession([BASIC])).ping()
    assert "MLBUILD_REGISTRY_USER" in (info.value.hint or "")


def test_bearer_token_flow() -> None:
    challenge = FakeResponse(
        401, {}, {"WWW-Authenticate": 'Bearer realm="https://auth.example.com/token",service="reg"'}
    )
    s = FakeSession([challenge, FakeResponse(200, {"token": "T0K"}), manifest()])
    client = reg.RegistryClient("reg.example.com", Credentials("u", "p"), session=s)
    assert client.manifest("team/x", TAG) is not None
    assert s.seen[1][0] == "https://auth.example.com/token"
    assert json.loads(s.seen[1][1]["params"]) == {
        "service": "reg",
        "scope": "repository:team/x:pull",
    }
    assert s.seen[2][1]["Authorization"] == "Bearer T0K"


def test_unreachable_is_retried_then_clear() -> None:
    import requests

    s = FakeSession([requests.exceptions.ConnectionError("Connection refused")] * 3)
    client = reg.RegistryClient("127.0.0.1:1", policy=reg.RetryPolicy(3, 0), session=s)
    with pytest.raises(RegistryError, match=r"cannot reach registry 127\.0\.0\.1:1") as info:
        client.ping()
    assert len(s.seen) == 3 and "gave up after 3" in info.value.message
    assert "Connection refused" in info.value.details[0]


def test_untrusted_certificate_says_which_ca_to_give() -> None:
    import requests

    s = FakeSession([requests.exceptions.SSLError("certificate verify failed: self-signed")])
    with pytest.raises(RegistryError, match="not trusted") as info:
        reg.RegistryClient("reg.example.com:5000", session=s).ping()
    assert "--registry-ca" in (info.value.hint or "")


def test_http_to_a_tls_registry() -> None:
    s = FakeSession([FakeResponse(400, None, text="Client sent an HTTP request to an HTTPS server.")])
    with pytest.raises(RegistryError, match="speaks TLS"):
        reg.RegistryClient("127.0.0.1:5000", session=s).ping()


def test_ca_for(tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("x")
    certs = tmp_path / "certs.d"
    assert reg.ca_for("h:1", certs_d=certs) is None
    (certs / "h:1").mkdir(parents=True)
    (certs / "h:1" / "ca.crt").write_text("x")
    assert reg.ca_for("h:1", certs_d=certs) == certs / "h:1" / "ca.crt"
    assert reg.ca_for("h:1", ca, certs_d=certs) == ca
    assert reg.ca_for("h:1", None, {"h:1": str(ca)}, certs_d=tmp_path) == ca
    with pytest.raises(UsageError):
        reg.ca_for("h:1", tmp_path / "missing.crt")
