"""Publishing without Docker or a registry: builder/publish.py (immutable content tags, every
tag pushed, the record), builder/records.py and builder/pull.py, on the in-memory engine and
registry of fakes.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fakes import MANIFEST, FakeEngine, FakeRegistry

from builder import publish as pub
from builder import records
from builder.credentials import Credentials
from builder.engine import PushError
from builder.errors import RegistryError, SmokeFailed, UsageError
from builder.labels import CONTENT_LABEL, SPEC_LABEL
from builder.pull import pull_if_present
from builder.registry import RemoteManifest

DIGEST = "sha256:" + "d" * 64
OTHER = "sha256:" + "b" * 64
TAG = "spec-0123456789abcdef"
REPO = "127.0.0.1:5000/t/x"


def _labels(tag: str = TAG) -> dict[str, str]:
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


def image(engine: FakeEngine, *refs: str) -> str:
    """An mlbuild image on the engine, tagged as `refs`."""
    image_id = engine.add_image(refs[0] if refs else None, _labels())
    for ref in refs[1:]:
        engine.tag(image_id, *ref.rsplit(":", 1))
    return image_id


# -- immutable tags and push -----------------------------------------------------------------
def test_content_tag_with_other_content_is_refused_before_any_push() -> None:
    registry = FakeRegistry()
    registry.manifests[(REPO, TAG)] = RemoteManifest("sha256:" + "e" * 64, MANIFEST, OTHER)
    engine = FakeEngine(registry)
    img = image(engine, f"{REPO}:latest", f"{REPO}:{TAG}")
    with pytest.raises(RegistryError, match="immutable") as info:
        pub.push_image(engine, img, [f"{REPO}:latest", f"{REPO}:{TAG}"], access=registry.access)
    assert engine.pushed == []
    assert any("e" * 64 in d for d in info.value.details) and any(img in d for d in info.value.details)


def test_same_content_and_readable_tags_push() -> None:
    registry = FakeRegistry(creds=Credentials("u", "p"))
    engine = FakeEngine(registry)
    img = image(engine, f"{REPO}:{TAG}", f"{REPO}:latest")
    digest = registry.put(REPO, TAG, img)  # pushed before: the same content may be pushed again
    out = pub.push_image(engine, img, [f"{REPO}:{TAG}", f"{REPO}:latest"], access=registry.access)
    assert out == [pub.PushResult(REPO, digest, (TAG, "latest"), img)]
    assert [p[:2] for p in engine.pushed] == [(REPO, TAG), (REPO, "latest")]
    assert engine.pushed[0][2] == {"username": "u", "password": "p"}


def test_push_failing_midway_is_retried_then_reported() -> None:
    engine = FakeEngine()
    img = image(engine, f"{REPO}:latest")
    engine.push_errors = [PushError("push failed: uploading layer abc failed midway", transient=True)] * 3
    with pytest.raises(PushError, match="gave up after 3 attempts"):
        pub.push_image(engine, img, [f"{REPO}:latest"], access=engine.registry.access)
    assert len(engine.pushed) == 3


def test_push_auth_failure_says_what_to_do() -> None:
    registry = FakeRegistry(creds=Credentials("u", "pw"))
    engine = FakeEngine(registry)
    img = image(engine, f"{REPO}:v1")
    engine.push_errors = [PushError("push failed", transient=False, details=["unauthorized: authentication required"])]
    with pytest.raises(RegistryError, match="refused the credentials of user 'u'") as info:
        pub.push_image(engine, img, [f"{REPO}:v1"], access=registry.access)
    assert "mlbuild login 127.0.0.1:5000" in (info.value.hint or "")


def test_registry_not_holding_what_was_pushed_is_an_error() -> None:
    engine = FakeEngine(FakeRegistry(forget_pushes=True))
    img = image(engine, f"{REPO}:{TAG}")
    with pytest.raises(RegistryError, match="does not hold"):
        pub.push_image(engine, img, [f"{REPO}:{TAG}"], access=engine.registry.access)


# -- publish: tags, push, record ---------------------------------------------------------------
def test_publish_pushes_every_tag_and_records_the_content_tags_repository(tmp_path: Path) -> None:
    recipe = tmp_path / "train.yaml"
    recipe.write_text("name: demo\n")
    engine = FakeEngine()
    img = image(engine, f"mlbuild/demo:{TAG}")
    refs = ["other.example:5000/mirror/x:v1", f"{REPO}:{TAG}", f"{REPO}:latest"]
    done = pub.publish(engine, img, refs, recipe=recipe, access=engine.registry.access)
    assert sorted(engine.tags_of(img)) == sorted([*refs, f"mlbuild/demo:{TAG}"])  # tagged, then pushed
    assert [p[:2] for p in engine.pushed] == [("other.example:5000/mirror/x", "v1"), (REPO, TAG), (REPO, "latest")]
    assert [r.repository for r in done.pushed] == ["other.example:5000/mirror/x", REPO]
    assert done.record == tmp_path / "train.image.json"
    record = records.read_record(recipe)
    assert (record.repository, record.content_tag, record.image_id) == (REPO, TAG, img)
    assert record.digest == engine.registry.manifests[(REPO, TAG)].digest
    assert done.to_dict()["pushed"][1]["reference"] == f"{REPO}@{record.digest}"


def test_publish_without_a_recipe_writes_no_record(tmp_path: Path) -> None:
    engine = FakeEngine()
    img = image(engine, f"{REPO}:{TAG}")
    done = pub.publish(engine, img, [f"{REPO}:{TAG}"], access=engine.registry.access)
    assert done.record is None and len(done.pushed) == 1


def test_a_failed_push_writes_no_record(tmp_path: Path) -> None:
    recipe = tmp_path / "train.yaml"
    engine = FakeEngine()
    img = image(engine, f"{REPO}:{TAG}")
    engine.push_errors = [PushError("push failed", transient=False, details=["denied"])]
    with pytest.raises(RegistryError):
        pub.publish(engine, img, [f"{REPO}:{TAG}"], recipe=recipe, access=engine.registry.access)
    assert not records.record_path(recipe).exists()


def test_require_smoke_refuses_a_failing_image_and_images_not_built_by_mlbuild() -> None:
    engine = FakeEngine()
    img = image(engine, f"{REPO}:{TAG}")
    assert pub.require_smoke(engine, img).passed
    engine.probe = lambda spec: {"checks": [{"name": "framework.import", "status": "failed", "detail": "boom"}]}
    with pytest.raises(SmokeFailed, match="not pushed") as info:
        pub.require_smoke(engine, img)
    assert info.value.exit_code == 3 and info.value.details == ["framework.import: boom"]
    with pytest.raises(UsageError, match="not built by mlbuild"):
        pub.require_smoke(engine, engine.add_image("plain:1"))


def test_push_refs_keeps_the_tags_and_always_takes_the_content_tag() -> None:
    engine = FakeEngine()
    img = image(engine, "mlbuild/demo:latest", "mlbuild/demo:v1", "elsewhere/x:v9")
    assert pub.push_refs(engine, "mlbuild/demo:latest") == (
        img,
        [f"mlbuild/demo:{TAG}", "mlbuild/demo:latest", "mlbuild/demo:v1"],
    )
    assert pub.push_refs(engine, "mlbuild/demo:latest", REPO)[1] == [f"{REPO}:{TAG}", f"{REPO}:latest", f"{REPO}:v1"]
    with pytest.raises(UsageError, match="names no repository"):
        pub.push_refs(engine, img)


# -- records ---------------------------------------------------------------------------------
def test_record_roundtrip_is_atomic_and_credential_free(tmp_path: Path) -> None:
    recipe = tmp_path / "train.yaml"
    recipe.write_text("name: demo\n")
    result = pub.PushResult(REPO, DIGEST, (TAG, "latest"), OTHER)
    record = pub.make_record(result, _labels(), "linux/amd64")
    path = records.record_path(recipe)
    assert path.name == "train.image.json"
    records.write_record(path, record)
    assert records.read_record(recipe) == record
    doc = json.loads(path.read_text())
    assert doc["reference"] == f"{REPO}@{DIGEST}"
    assert not any(k in path.read_text().lower() for k in ("password", "auth", "secret"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.image.json", "train.yaml"]


def test_missing_record_says_how_to_get_one(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="no image record") as info:
        records.read_record(tmp_path / "train.yaml")
    assert "--push" in (info.value.hint or "") and "train.image.json" in (info.value.hint or "")


def test_check_labels() -> None:
    record = pub.make_record(pub.PushResult("r/x", DIGEST, (TAG,), OTHER), _labels(), "linux/amd64")
    expected = json.loads(_labels()[SPEC_LABEL])
    assert records.check_labels(_labels(), record, expected) == []
    problems = records.check_labels(_labels("spec-ffffffffffffffff"), record, expected | {"framework_version": "1.5.3"})
    assert any("content label" in p for p in problems)
    assert any(p.startswith("framework_version:") for p in problems)
    assert records.check_labels({}, record, None) != []


def test_pull_if_present_never_asks_docker_hub() -> None:
    engine = FakeEngine()
    engine.pullable["mlbuild/sklearn-cpu@" + DIGEST] = _labels()  # never reached
    assert pull_if_present(engine, "mlbuild/sklearn-cpu", TAG) is None
    assert engine.images == {}
