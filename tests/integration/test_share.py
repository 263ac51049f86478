"""Sharing on real servers: push to a real registry (htpasswd, TLS with a self-signed CA),
`mlbuild pull RECIPE` on a second engine, failures, immutable tags and build avoidance.

The image pushed is the `sklearn_build` fixture's; "other content" is a tiny image made from
the bookworm base. Every server is stopped by a finalizer."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import registry_server as rs  # this folder is on sys.path (pytest's default import mode)
from required_tools import tool

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
USER, PASSWORD = "alice", "correct-horse-7"


def mlbuild(
    *args: str, env: dict[str, str] | None = None, stdin: str | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "builder", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("share")


@pytest.fixture(scope="module")
def auth_registry(work: Path) -> Iterator[rs.Registry]:
    registry = rs.start_registry(work / "auth-registry", user=USER, password=PASSWORD)
    yield registry
    registry.stop()


@pytest.fixture(scope="module")
def teammate() -> Iterator[rs.Teammate]:
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="mlb-tm-", dir="/tmp"))  # short: socket paths
    engine = rs.start_teammate(folder)
    yield engine
    engine.stop()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A private Docker config, fast retries, and no credentials unless a test adds them."""
    e = {k: v for k, v in os.environ.items() if not k.startswith("MLBUILD_REGISTRY")}
    e.update(
        DOCKER_CONFIG=str(tmp_path / "docker-config"),
        MLBUILD_REGISTRY_ATTEMPTS="2",
        MLBUILD_REGISTRY_BACKOFF="0.2",
    )
    return e


@pytest.fixture
def recipe(tmp_path: Path) -> Path:
    path = tmp_path / "team" / "sklearn-cpu.yaml"
    path.parent.mkdir()
    shutil.copy(ROOT / "recipes" / "sklearn-cpu.yaml", path)
    return path


CREATED: list[str] = []  # registry-named tags made on the main engine, removed at the end


@pytest.fixture(scope="module", autouse=True)
def _remove_tags(engine: Any) -> Iterator[None]:
    yield
    for ref in CREATED:
        engine.remove_image(ref)


def tag_into(engine: Any, build: Any, repository: str) -> str:
    """The fixture's image under `repository` with its content tag; returns that ref."""
    engine.tag(build.image_id, repository, build.content_tag)
    CREATED.append(f"{repository}:{build.content_tag}")
    return f"{repository}:{build.content_tag}"


@pytest.fixture(scope="module")
def tiny_image(
    engine: Any, bookworm_base: str, sklearn_build: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Other content carrying the sklearn image's labels: one file on the bookworm base."""
    ctx = tmp_path_factory.mktemp("tiny")
    (ctx / "hello.txt").write_text(f"other content {time.time()}\n")
    (ctx / "Dockerfile").write_text(f"FROM {bookworm_base}\nCOPY hello.txt /hello.txt\n")
    labels = {k: v for k, v in engine.labels(sklearn_build.image_id).items() if k.startswith("org.mlbuild")}
    image_id = engine.build(ctx, labels=labels)
    name = f"mlbuild-test/share-tiny-{os.getpid()}"
    engine.tag(image_id, name, "keep")  # untagging the last other tag must not delete it
    yield image_id
    engine.remove_image(f"{name}:keep", force=True)


def registry_digest(host: str, path: str, tag: str, creds: str | None = None) -> str:
    """Asked with skopeo: a client mlbuild did not write."""
    args = [
        tool("skopeo"),
        "inspect",
        "--tls-verify=false",
        *(["--creds", creds] if creds else []),
        f"docker://{host}/{path}:{tag}",
    ]
    out = subprocess.run(args, capture_output=True, text=True, timeout=60, check=True)
    return str(json.loads(out.stdout)["Digest"])


# -- failures first: they must leave nothing behind -----------------------------------------------
def test_wrong_password_fails_clearly_and_writes_nothing(
    engine: Any, sklearn_build: Any, auth_registry: rs.Registry, recipe: Path, env: dict[str, str]
) -> None:
    ref = tag_into(engine, sklearn_build, f"{auth_registry.host}/team/wrong")
    bad = {**env, "MLBUILD_REGISTRY_USER": USER, "MLBUILD_REGISTRY_PASSWORD": "wrong-pw-123"}
    r = mlbuild("push", ref, "--recipe", str(recipe), env=bad)
    assert r.returncode == 1, r.stderr
    assert f"registry {auth_registry.host} refused the credentials of user 'alice'" in r.stderr
    assert "mlbuild login" in r.stderr
    assert "wrong-pw-123" not in r.stdout + r.stderr
    assert not (recipe.parent / "sklearn-cpu.image.json").exists()
    # login with the wrong password: same message, and no Docker config written
    r = mlbuild("login", auth_registry.host, "-u", USER, env=env, stdin="wrong-pw-123\n")
    assert r.returncode == 1 and "refused the credentials" in r.stderr
    assert not Path(env["DOCKER_CONFIG"], "config.json").exists()


def test_unreachable_registry(engine: Any, sklearn_build: Any, env: dict[str, str]) -> None:
    port = rs.free_port()  # nothing listens there
    ref = tag_into(engine, sklearn_build, f"127.0.0.1:{port}/team/x")
    started = time.monotonic()
    r = mlbuild("push", ref, env=env)
    assert r.returncode == 1
    assert f"cannot reach registry 127.0.0.1:{port}" in r.stderr and "gave up after 2 attempts" in r.stderr
    assert "Traceback" not in r.stderr
    assert time.monotonic() - started < 60
    engine.remove_image(ref)


# -- the main flow: push on A, pull by recipe on B ------------------------------------------------
def test_push_then_teammate_pulls_by_recipe(
    engine: Any,
    sklearn_build: Any,
    auth_registry: rs.Registry,
    teammate: rs.Teammate,
    recipe: Path,
    env: dict[str, str],
) -> None:
    from builder.engine import Engine
    from builder.smoke import smoke
    from builder.spec import ResolvedSpec

    # a teammate without a record is told how to get one
    r = mlbuild("pull", str(recipe), env={**env, "DOCKER_HOST": teammate.base_url})
    assert r.returncode == 1 and "no image record" in r.stderr and "--push" in r.stderr

    r = mlbuild("login", auth_registry.host, "-u", USER, env=env, stdin=PASSWORD + "\n")
    assert r.returncode == 0, r.stderr
    assert PASSWORD not in r.stdout + r.stderr
    repo = f"{auth_registry.host}/team/sklearn-cpu"
    ref = tag_into(engine, sklearn_build, repo)
    r = mlbuild("push", ref, "--recipe", str(recipe), env=env)
    assert r.returncode == 0, r.stderr
    record_file = recipe.parent / "sklearn-cpu.image.json"
    record = json.loads(record_file.read_text())
    digest = record["digest"]
    assert f"{repo}@{digest}" in r.stdout
    assert record["content_tag"] == sklearn_build.content_tag and record["repository"] == repo
    assert digest == registry_digest(
        auth_registry.host, "team/sklearn-cpu", sklearn_build.content_tag, f"{USER}:{PASSWORD}"
    )
    assert PASSWORD not in record_file.read_text() and PASSWORD not in r.stderr
    assert ": pushed" in r.stderr.lower() or "layer already exists" in r.stderr.lower()  # per layer

    # the teammate: another engine, only the recipe and its record, credentials from CI vars
    b_env = {
        **env,
        "DOCKER_HOST": teammate.base_url,
        "MLBUILD_REGISTRY_USER": USER,
        "MLBUILD_REGISTRY_PASSWORD": PASSWORD,
        "DOCKER_CONFIG": str(recipe.parent / "empty"),
    }
    r = mlbuild("pull", str(recipe), env=b_env)
    assert r.returncode == 0, r.stderr
    line = r.stdout.strip()
    assert len(line.splitlines()) == 1 and f"{repo}@{digest}" in line and "sklearn 1.5" in line
    b = Engine.connect(base_url=teammate.base_url)
    attrs = b.inspect(f"{repo}@{digest}")
    assert attrs["Id"] == sklearn_build.image_id
    assert f"{repo}@{digest}" in attrs["RepoDigests"]
    spec = ResolvedSpec.from_labels(b.labels(attrs["Id"]))
    assert spec is not None
    report = smoke(b, attrs["Id"], spec, "auto")
    assert report.passed, report.failures()


def test_push_stopped_midway_then_succeeds(engine: Any, sklearn_build: Any, work: Path, env: dict[str, str]) -> None:
    registry = rs.start_registry(work / "flaky-registry")
    try:
        ref = tag_into(engine, sklearn_build, f"{registry.host}/team/flaky")
        proc = subprocess.Popen(
            [sys.executable, "-m", "builder", "push", ref],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        lines: list[str] = []
        killed = threading.Event()

        def watch() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                lines.append(line)
                if not killed.is_set() and "pushing" in line and "% of" in line:
                    registry.stop(kill=True)  # the registry dies while layers are uploading
                    killed.set()

        reader = threading.Thread(target=watch)
        reader.start()
        proc.wait(180)
        reader.join(10)
        err = "".join(lines)
        assert killed.is_set(), err
        assert proc.returncode == 1, err
        assert "push of" in err and "failed" in err and "gave up after 2 attempts" in err
        registry.start()  # same storage, same port
        r = mlbuild("push", ref, env=env)
        assert r.returncode == 0, r.stderr
        assert f"{registry.host}/team/flaky@sha256:" in r.stdout
    finally:
        registry.stop()


def test_immutable_tag_is_never_overwritten(
    engine: Any,
    sklearn_build: Any,
    tiny_image: str,
    auth_registry: rs.Registry,
    env: dict[str, str],
    pushed_to_auth_registry: None,
) -> None:
    from builder import publish
    from builder.errors import RegistryError

    repo = f"{auth_registry.host}/team/sklearn-cpu"
    creds = {**env, "MLBUILD_REGISTRY_USER": USER, "MLBUILD_REGISTRY_PASSWORD": PASSWORD}
    before = registry_digest(auth_registry.host, "team/sklearn-cpu", sklearn_build.content_tag, f"{USER}:{PASSWORD}")
    with pytest.raises(RegistryError, match="refusing to overwrite the immutable tag") as info:
        publish.push_image(engine, tiny_image, [f"{repo}:{sklearn_build.content_tag}"], env=creds)
    assert before in " ".join(info.value.details) and tiny_image in " ".join(info.value.details)
    after = registry_digest(auth_registry.host, "team/sklearn-cpu", sklearn_build.content_tag, f"{USER}:{PASSWORD}")
    assert after == before
    # a readable tag may move
    engine.tag(tiny_image, repo, "latest")
    moved = publish.push_image(engine, tiny_image, [f"{repo}:latest"], env=creds)
    assert moved[0].digest == registry_digest(auth_registry.host, "team/sklearn-cpu", "latest", f"{USER}:{PASSWORD}")
    engine.remove_image(f"{repo}:latest")


@pytest.fixture
def pushed_to_auth_registry(auth_registry: rs.Registry, sklearn_build: Any, engine: Any, env: dict[str, str]) -> None:
    """The fixture image in the auth registry (pushed here when the main flow did not run)."""
    from builder import publish, registry
    from builder.credentials import find_credentials

    repo = f"{auth_registry.host}/team/sklearn-cpu"
    creds = {**env, "MLBUILD_REGISTRY_USER": USER, "MLBUILD_REGISTRY_PASSWORD": PASSWORD}
    client = registry.RegistryClient(auth_registry.host, find_credentials(auth_registry.host, creds))
    if client.manifest("team/sklearn-cpu", sklearn_build.content_tag) is None:
        publish.push_image(engine, sklearn_build.image_id, [tag_into(engine, sklearn_build, repo)], env=creds)


def test_tls_registry_with_a_self_signed_ca(
    engine: Any, tiny_image: str, sklearn_build: Any, work: Path, env: dict[str, str]
) -> None:
    from builder import publish, registry
    from builder.errors import RegistryError

    tls = rs.make_tls(work / "tls")
    reg = rs.start_registry(work / "tls-registry", tls=tls)
    certs = Path("/etc/docker/certs.d") / reg.host  # where the engine looks for the CA
    try:
        certs.mkdir(parents=True, exist_ok=True)
        shutil.copy(tls.ca, certs / "ca.crt")
        repo = f"{reg.host}/team/tiny"
        engine.tag(tiny_image, repo, sklearn_build.content_tag)
        refs = [f"{repo}:{sklearn_build.content_tag}"]
        out = publish.push_image(engine, tiny_image, refs, registry_ca=tls.ca, env=env)
        remote = registry.RegistryClient(reg.host, ca=tls.ca).manifest("team/tiny", sklearn_build.content_tag)
        assert remote is not None and remote.digest == out[0].digest and remote.config_digest == tiny_image
        # another CA does not verify this registry: a clear error, not a traceback
        wrong = rs.make_tls(work / "tls-other", name="other")
        with pytest.raises(RegistryError, match="not trusted") as info:
            publish.push_image(engine, tiny_image, refs, registry_ca=wrong.ca, env=env)
        assert "--registry-ca" in (info.value.hint or "")
        engine.remove_image(refs[0])
    finally:
        reg.stop()
        shutil.rmtree(certs, ignore_errors=True)


# -- build avoidance ------------------------------------------------------------------------------
def test_noop_rebuild_says_up_to_date(sklearn_build: Any, bookworm_base: str, env: dict[str, str]) -> None:
    started = time.monotonic()
    r = mlbuild(
        "build",
        str(ROOT / "recipes" / "sklearn-cpu.yaml"),
        "--base-image",
        bookworm_base,
        "--json",
        env=env,
    )
    elapsed = time.monotonic() - started
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["up_to_date"] is True and doc["image_id"] == sklearn_build.image_id
    assert doc["content_tag"] == sklearn_build.content_tag
    assert elapsed < 10, elapsed  # process start included; the benchmark has the real figure
    r = mlbuild("build", str(ROOT / "recipes" / "sklearn-cpu.yaml"), "--base-image", bookworm_base, env=env)
    assert "up to date" in r.stderr and "up to date" in r.stdout


def test_build_push_then_up_to_date_from_the_registry(
    engine: Any,
    sklearn_build: Any,
    bookworm_base: str,
    auth_registry: rs.Registry,
    recipe: Path,
    env: dict[str, str],
) -> None:
    """`build --push` into the recipe's own registry repository; with the local image gone,
    the next build finds the content tag in the registry, pulls it and builds nothing."""
    repo = f"{auth_registry.host}/team/sklearn-built"
    recipe.write_text(recipe.read_text() + f"image:\n  repository: {repo}\n")
    creds = {**env, "MLBUILD_REGISTRY_USER": USER, "MLBUILD_REGISTRY_PASSWORD": PASSWORD}
    r = mlbuild("build", str(recipe), "--base-image", bookworm_base, "--push", "--json", env=creds)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    record = json.loads((recipe.parent / "sklearn-cpu.image.json").read_text())
    assert record["digest"] == doc["pushed"][0]["digest"] and record["repository"] == repo
    for tag in doc["tags"]:
        engine.remove_image(tag)
    engine.remove_image(doc["image_id"])
    r = mlbuild("build", str(recipe), "--base-image", bookworm_base, env=creds)
    assert r.returncode == 0, r.stderr
    assert "in the registry" in r.stderr and "up to date" in r.stdout
    assert engine.image_id(f"{repo}:{doc['content_tag']}") == doc["image_id"]
    for tag in doc["tags"]:
        engine.remove_image(tag)
