"""builder/registry.py without Docker or a registry: references, credentials, retries, the HTTP
API (through a fake session), immutable tags, push orchestration and records."""

from __future__ import annotations

import base64
import json
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from builder import registry as reg
from builder.engine import PushError
from builder.errors import RegistryError, UsageError

IMG = "sha256:" + "a" * 64
OTHER = "sha256:" + "b" * 64
DIGEST = "sha256:" + "d" * 64
TAG = "spec-0123456789abcdef"


# -- references ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("ref", "registry", "path", "tag", "digest"),
    [
        ("ubuntu", "docker.io", "library/ubuntu", None, None),
        ("mlbuild/sklearn-cpu:latest", "docker.io", "mlbuild/sklearn-cpu", "latest", None),
        ("127.0.0.1:5000/team/x:spec-1", "127.0.0.1:5000", "team/x", "spec-1", None),
        ("localhost/x", "localhost", "x", None, None),
        ("reg.example.com/a/b/c@sha256:abc", "reg.example.com", "a/b/c", None, "sha256:abc"),
    ],
)
def test_parse_reference(ref: str, registry: str, path: str, tag: str | None, digest: str | None) -> None:
    r = reg.parse_reference(ref)
    assert (r.registry, r.path, r.tag, r.digest) == (registry, path, tag, digest)
    assert r.explicit_registry == (registry != "docker.io")


def test_parse_reference_rejects_upper_case() -> None:
    with pytest.raises(UsageError):
        reg.parse_reference("reg.example.com/Team/x")


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


# -- credentials -----------------------------------------------------------------------------
def _config(tmp_path: Path, doc: dict[str, Any]) -> dict[str, str]:
    (tmp_path / "config.json").write_text(json.dumps(doc))
    return {"DOCKER_CONFIG": str(tmp_path)}


def test_credentials_precedence(tmp_path: Path) -> None:
    auth = base64.b64encode(b"cfguser:cfgpass").decode()
    env = _config(tmp_path, {"auths": {"https://127.0.0.1:5000/": {"auth": auth}}})
    c = reg.find_credentials("127.0.0.1:5000", env)
    assert c and (c.username, c.password, c.source) == ("cfguser", "cfgpass", "the Docker config")
    env |= {"MLBUILD_REGISTRY_USER": "ci", "MLBUILD_REGISTRY_PASSWORD": "cipass"}
    c = reg.find_credentials("127.0.0.1:5000", env)
    assert c and (c.username, c.password) == ("ci", "cipass")
    env |= {
        "MLBUILD_REGISTRY_USER_127_0_0_1_5000": "one",
        "MLBUILD_REGISTRY_PASSWORD_127_0_0_1_5000": "p1",
    }
    c = reg.find_credentials("127.0.0.1:5000", env)
    assert c and (c.username, c.password) == ("one", "p1")
    assert reg.find_credentials("other:5000", _config(tmp_path, {})) is None


def test_credentials_never_in_repr() -> None:
    c = reg.Credentials("alice", "s3cret-pw", "x")
    assert "s3cret-pw" not in repr(c)
    assert c.auth_config() == {"username": "alice", "password": "s3cret-pw"}


def test_docker_hub_auths_key_and_identity_token(tmp_path: Path) -> None:
    env = _config(tmp_path, {"auths": {"https://index.docker.io/v1/": {"identitytoken": "tok"}}})
    c = reg.find_credentials("docker.io", env)
    assert c and c.identity_token and c.auth_config() == {"identitytoken": "tok"}


def test_credential_helper_is_run(tmp_path: Path) -> None:
    env = _config(tmp_path, {"credHelpers": {"reg.example.com": "fake"}, "credsStore": "other"})
    calls: list[tuple[list[str], str]] = []

    def run(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        calls.append((cmd, kw["input"]))
        return subprocess.CompletedProcess(cmd, 0, json.dumps({"Username": "u", "Secret": "s"}), "")

    c = reg.find_credentials("reg.example.com", env, run)
    assert c and (c.username, c.password, c.source) == ("u", "s", "docker-credential-fake")
    assert calls == [(["docker-credential-fake", "get"], "reg.example.com")]
    # credsStore applies to registries without their own helper; "not found" means anonymous
    missing = reg.find_credentials(
        "x.example.com", env, lambda cmd, **kw: subprocess.CompletedProcess(cmd, 1, "", "not found")
    )
    assert missing is None


def test_missing_helper_program_is_a_clear_error(tmp_path: Path) -> None:
    env = _config(tmp_path, {"credsStore": "nonexistent-helper-xyz"})
    with pytest.raises(RegistryError, match="docker-credential-nonexistent-helper-xyz"):
        reg.find_credentials("reg.example.com", env)


def test_store_credentials_roundtrip_private_file(tmp_path: Path) -> None:
    env = _config(tmp_path, {"auths": {"keep.example.com": {"auth": "eDp5"}}, "other": 1})
    where = reg.store_credentials("127.0.0.1:5000", reg.Credentials("bob", "pw"), env)
    assert where == str(tmp_path / "config.json")
    assert stat.S_IMODE((tmp_path / "config.json").stat().st_mode) == 0o600
    doc = json.loads((tmp_path / "config.json").read_text())
    assert doc["other"] == 1 and "keep.example.com" in doc["auths"]
    c = reg.find_credentials("127.0.0.1:5000", env)
    assert c and (c.username, c.password) == ("bob", "pw")


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
    client = reg.RegistryClient("127.0.0.1:5000", reg.Credentials("alice", "pw"), session=s)
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
    client = reg.RegistryClient("127.0.0.1:5000", reg.Credentials("alice", "hunter2", "$X"), session=s)
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
    client = reg.RegistryClient("reg.example.com", reg.Credentials("u", "p"), session=s)
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


# -- immutable tags and push -----------------------------------------------------------------
class FakeClient:
    def __init__(self, remote: reg.RemoteManifest | None):
        self.remote = remote

    def manifest(self, path: str, tag: str, say: Any = None) -> reg.RemoteManifest | None:
        return self.remote


class FakeEngine:
    def __init__(self, results: list[Any]):
        self.results = list(results)
        self.pushed: list[tuple[str, str, Any]] = []

    def inspect(self, ref: str) -> dict[str, Any]:
        return {"Id": IMG, "Os": "linux", "Architecture": "amd64", "Config": {"Labels": {}}}

    def push(self, repository: str, tag: str, *, auth_config: Any = None, on_progress: Any = None) -> str:
        self.pushed.append((repository, tag, auth_config))
        r = self.results.pop(0)
        if isinstance(r, Exception):
            raise r
        return str(r)


def _access(remote: reg.RemoteManifest | None, creds: reg.Credentials | None = None) -> Any:
    acc = reg.Access(creds, None, reg.RetryPolicy(3, 0))
    object.__setattr__(acc, "client", lambda registry, timeout=10.0: FakeClient(remote))
    return lambda registry: acc


def test_content_tag_with_other_content_is_refused_before_any_push() -> None:
    engine = FakeEngine([])
    other = reg.RemoteManifest("sha256:" + "e" * 64, reg.MANIFEST_TYPES[0], OTHER)
    with pytest.raises(RegistryError, match="immutable") as info:
        reg.push_image(
            engine,
            IMG,
            ["127.0.0.1:5000/t/x:latest", f"127.0.0.1:5000/t/x:{TAG}"],
            access=_access(other),
        )
    assert engine.pushed == []
    assert any("e" * 64 in d for d in info.value.details) and any(IMG in d for d in info.value.details)


def test_same_content_and_readable_tags_push() -> None:
    same = reg.RemoteManifest(DIGEST, reg.MANIFEST_TYPES[0], IMG)
    engine = FakeEngine([DIGEST, DIGEST])
    creds = reg.Credentials("u", "p")
    out = reg.push_image(
        engine,
        IMG,
        [f"127.0.0.1:5000/t/x:{TAG}", "127.0.0.1:5000/t/x:latest"],
        access=_access(same, creds),
    )
    assert out == [reg.PushResult("127.0.0.1:5000/t/x", DIGEST, (TAG, "latest"), IMG)]
    assert [p[:2] for p in engine.pushed] == [
        ("127.0.0.1:5000/t/x", TAG),
        ("127.0.0.1:5000/t/x", "latest"),
    ]
    assert engine.pushed[0][2] == {"username": "u", "password": "p"}


def test_push_failing_midway_is_retried_then_reported() -> None:
    fail = PushError("push failed: uploading layer abc failed midway", transient=True)
    engine = FakeEngine([fail, fail, fail])
    with pytest.raises(PushError, match="gave up after 3 attempts"):
        reg.push_image(engine, IMG, ["127.0.0.1:5000/t/x:latest"], access=_access(None))
    assert len(engine.pushed) == 3


def test_push_auth_failure_says_what_to_do() -> None:
    engine = FakeEngine([PushError("push failed", transient=False, details=["unauthorized: authentication required"])])
    with pytest.raises(RegistryError, match="refused the credentials of user 'u'") as info:
        reg.push_image(engine, IMG, ["127.0.0.1:5000/t/x:v1"], access=_access(None, reg.Credentials("u", "pw")))
    assert "mlbuild login 127.0.0.1:5000" in (info.value.hint or "")


def test_registry_not_holding_what_was_pushed_is_an_error() -> None:
    engine = FakeEngine([DIGEST])
    with pytest.raises(RegistryError, match="does not hold"):
        reg.push_image(engine, IMG, [f"127.0.0.1:5000/t/x:{TAG}"], access=_access(None))


# -- records ---------------------------------------------------------------------------------
def _labels(tag: str = TAG) -> dict[str, str]:
    from builder.labels import CONTENT_LABEL, SPEC_LABEL

    spec = {
        "name": "demo",
        "framework": "sklearn",
        "framework_version": "1.5.2",
        "distribution": "scikit-learn",
        "import_name": "sklearn",
        "python": "3.11",
        "cuda": "cpu",
        "cudnn": None,
        "cuda_match": "exact",
        "variant": "cpu",
        "framework_requirement": "scikit-learn==1.5.2",
        "index_url": None,
        "companions": [],
        "requirements": ["pandas==2.2.3"],
        "base_image": "b:1",
        "base_os": "debian",
        "python_from": "distro",
        "python_bin": "python3",
        "min_driver": None,
        "archs": [],
    }
    return {SPEC_LABEL: json.dumps(spec), CONTENT_LABEL: tag}


def test_record_roundtrip_is_atomic_and_credential_free(tmp_path: Path) -> None:
    recipe = tmp_path / "train.yaml"
    recipe.write_text("name: demo\n")
    result = reg.PushResult("127.0.0.1:5000/t/x", DIGEST, (TAG, "latest"), IMG)
    record = reg.make_record(result, _labels(), "linux/amd64")
    path = reg.record_path(recipe)
    assert path.name == "train.image.json"
    reg.write_record(path, record)
    assert reg.read_record(recipe) == record
    doc = json.loads(path.read_text())
    assert doc["reference"] == f"127.0.0.1:5000/t/x@{DIGEST}"
    assert not any(k in path.read_text().lower() for k in ("password", "auth", "secret"))
    assert [p.name for p in tmp_path.iterdir()] == ["train.yaml", "train.image.json"] or sorted(
        p.name for p in tmp_path.iterdir()
    ) == ["train.image.json", "train.yaml"]


def test_missing_record_says_how_to_get_one(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="no image record") as info:
        reg.read_record(tmp_path / "train.yaml")
    assert "--push" in (info.value.hint or "") and "train.image.json" in (info.value.hint or "")


def test_check_labels() -> None:
    record = reg.make_record(reg.PushResult("r/x", DIGEST, (TAG,), IMG), _labels(), "linux/amd64")
    expected = json.loads(_labels()["org.mlbuild.spec"])
    assert reg.check_labels(_labels(), record, expected) == []
    problems = reg.check_labels(_labels("spec-ffffffffffffffff"), record, expected | {"framework_version": "1.5.3"})
    assert any("content label" in p for p in problems)
    assert any(p.startswith("framework_version:") for p in problems)
    assert reg.check_labels({}, record, None) != []


def test_pull_if_present_never_asks_docker_hub() -> None:
    class NoEngine:
        def pull_ref(self, *a: Any, **k: Any) -> str:
            raise AssertionError("must not pull")

    assert reg.pull_if_present(NoEngine(), "mlbuild/sklearn-cpu", TAG) is None
