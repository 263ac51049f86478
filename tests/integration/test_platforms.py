"""One recipe, two architectures, one tag, on the real engine and a real registry.

The scikit-learn example with `platforms: [linux/amd64, linux/arm64]`: the amd64 image is the
session's (sklearn_build: same spec, same content tag, nothing rebuilt); the arm64 image is
built ONCE per session (arm64_build), on a Debian bookworm arm64 base from `mlbuild base
bootstrap --arch arm64`, under QEMU user emulation, and smoke-tested there (CPU checks). Both
are pushed as one image index, read back with skopeo, pulled with plain `docker pull
--platform linux/arm64` and run under emulation; `mlbuild pull` of the record takes the host's
platform, or the one it is asked for, each by its own manifest digest: an engine keeps one image
per REPO@DIGEST reference, so once one platform came through the index's digest (as `docker pull
--platform` of the tag records it), pulling another by that digest fails ("Cannot overwrite
digest"). A fast test does the same over two label-only images of the two bases (tiny_index).
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import registry_server as rs  # this folder is on sys.path (pytest's default import mode)
from required_tools import tool

ROOT = Path(__file__).resolve().parents[2]
DOCKER = "/usr/bin/docker"  # the Debian 20.10 CLI: pull --platform, run --platform


def _multi_recipe(folder: Path) -> Path:
    """recipes/sklearn-cpu.yaml with both platforms: its amd64 spec is the session image's."""
    text = (ROOT / "recipes" / "sklearn-cpu.yaml").read_text()
    path = folder / "sklearn-cpu.yaml"
    path.write_text(text + "platforms: [linux/amd64, linux/arm64]\n")
    return path


@pytest.fixture(scope="session")
def arm64_build(engine: Any, arm64_base: str, sklearn_build: Any, settings: Any, tmp_path_factory: Any) -> Any:
    """The arm64 half of the two-platform sklearn example, built once per session; the amd64
    half is sklearn_build, found by its content tag."""
    from builder.multiarch import build_platforms
    from builder.pipeline import BuildOptions

    folder = tmp_path_factory.mktemp("multiarch")
    recipe = _multi_recipe(folder)
    lines: list[str] = []
    started = time.monotonic()
    both = build_platforms(
        recipe, ("linux/amd64",), engine=engine, settings=settings,
        options=BuildOptions(base_image=sklearn_build.base.ref), say=lines.append,
    )  # fmt: skip
    assert both.results[0].content_tag == sklearn_build.content_tag, "the amd64 half is the session's image"
    arm = build_platforms(
        recipe, ("linux/arm64",), engine=engine, settings=settings,
        options=BuildOptions(base_image=arm64_base), say=lines.append,
    )  # fmt: skip
    arm64 = arm.results[0]
    if arm64.up_to_date:  # an engine that kept the image from an earlier run: test it as a push would
        from builder.publish import require_smoke

        arm64 = dataclasses.replace(arm64, smoke=require_smoke(engine, arm64.image_id, say=lines.append))
    print(f"arm64 emulated build + smoke: {time.monotonic() - started:.0f} s (up to date: {arm64.up_to_date})")
    return recipe, both.results[0], arm64, lines


@pytest.fixture(scope="module")
def registry(tmp_path_factory: Any) -> Iterator[rs.Registry]:
    reg = rs.start_registry(tmp_path_factory.mktemp("platforms-registry") / "registry")
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def pushed(engine: Any, arm64_build: Any, registry: rs.Registry) -> Any:
    from builder.multiarch import publish_index

    recipe, amd, arm, _ = arm64_build
    repo = f"{registry.host}/team/sklearn-multi"
    index, record = publish_index(engine, (amd, arm), recipe, repository=repo)
    return repo, index, record


def test_arm64_image_is_arm64_and_passed_its_emulated_smoke(engine: Any, arm64_build: Any) -> None:
    _, amd, arm, lines = arm64_build
    assert engine.inspect(arm.image_id)["Architecture"] == "arm64"
    assert engine.inspect(amd.image_id)["Architecture"] == "amd64"
    assert arm.spec.platform == "linux/arm64" and arm.spec.framework_version == amd.spec.framework_version
    assert arm.smoke is not None and arm.smoke.passed
    assert arm.smoke.probe["machine"] == "aarch64"
    assert any(c.name == "platform" and c.status == "passed" for c in arm.smoke.checks)
    assert any("under emulation: linux/arm64 on a amd64 engine (QEMU), CPU checks only" in line for line in lines)
    assert all(t.endswith("-arm64") for t in arm.tags if "spec-" not in t), arm.tags  # one image per tag here


def test_one_tag_holds_both_platforms_in_the_registry(pushed: Any, arm64_build: Any) -> None:
    repo, index, record = pushed
    _, amd, arm, _ = arm64_build
    skopeo = tool("skopeo")
    ref = f"docker://{repo}:{amd.spec.readable_tag}"
    raw = subprocess.run([skopeo, "inspect", "--raw", "--tls-verify=false", ref], capture_output=True, text=True)
    assert raw.returncode == 0, raw.stderr
    doc = json.loads(raw.stdout)
    assert {(m["platform"]["os"], m["platform"]["architecture"]) for m in doc["manifests"]} == {
        ("linux", "amd64"), ("linux", "arm64"),
    }  # fmt: skip
    arm_cfg = subprocess.run(
        [skopeo, "--override-arch", "arm64", "inspect", "--config", "--tls-verify=false", ref],
        capture_output=True, text=True,
    )  # fmt: skip
    assert arm_cfg.returncode == 0, arm_cfg.stderr
    assert json.loads(arm_cfg.stdout)["architecture"] == "arm64"
    saved = json.loads(Path(record).read_text())
    assert saved["reference"] == index.reference and saved["digest"] == index.digest
    assert {p["platform"]: p["content_tag"] for p in saved["platforms"]} == {
        "linux/amd64": amd.content_tag, "linux/arm64": arm.content_tag,
    }  # fmt: skip


def test_plain_docker_pulls_the_arm64_image_and_runs_it_emulated(pushed: Any, arm64_build: Any) -> None:
    repo, _, _ = pushed
    _, amd, _, _ = arm64_build
    ref = f"{repo}:{amd.spec.readable_tag}"
    subprocess.run([DOCKER, "rmi", "-f", ref], capture_output=True)
    pull = subprocess.run([DOCKER, "pull", "--platform", "linux/arm64", ref], capture_output=True, text=True)
    assert pull.returncode == 0, pull.stderr
    code = "import platform, sklearn; print(platform.machine(), sklearn.__version__)"
    run = subprocess.run(
        [DOCKER, "run", "--rm", "--platform", "linux/arm64", "--network", "none", ref, "python", "-c", code],
        capture_output=True, text=True,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["aarch64", amd.spec.framework_version]
    subprocess.run([DOCKER, "rmi", "-f", ref], capture_output=True)


def test_mlbuild_pull_checks_the_host_platforms_image(engine: Any, pushed: Any, arm64_build: Any) -> None:
    from builder.pull import pull_recorded

    _, index, _ = pushed
    recipe, amd, arm, _ = arm64_build
    pulled = pull_recorded(engine, recipe)  # the host's platform, by its own manifest digest
    assert pulled.record.reference == index.reference
    assert pulled.image_id == amd.image_id and pulled.record.content_tag == amd.content_tag
    other = pull_recorded(engine, recipe, platform="linux/arm64")
    assert other.image_id == arm.image_id and other.record.content_tag == arm.content_tag


@pytest.fixture(scope="module")
def tiny_index(engine: Any, bookworm_base: str, arm64_base: str, registry: rs.Registry, tmp_path_factory: Any) -> Any:
    """The two-platform recipe's record over two tiny images: each platform's bookworm base
    with only the labels its spec gives (LABEL steps: nothing runs, nothing emulated),
    pushed with publish_index as `mlbuild build --push` pushes the real ones."""
    import io
    import types

    from builder.labels import CONTENT_LABEL, SPEC_LABEL
    from builder.multiarch import publish_index
    from builder.recipe import load_recipe
    from builder.resolve import resolve_platforms

    recipe = _multi_recipe(tmp_path_factory.mktemp("tiny-index"))
    results = []
    for n, spec in enumerate(resolve_platforms(load_recipe(recipe))):
        content = f"spec-{n:016x}"
        base = arm64_base if spec.platform == "linux/arm64" else bookworm_base
        image, _ = engine.client.images.build(
            fileobj=io.BytesIO(f"FROM {base}\n".encode()), labels={SPEC_LABEL: spec.to_json(), CONTENT_LABEL: content},
            platform=spec.platform, rm=True,
        )  # fmt: skip
        results.append(types.SimpleNamespace(image_id=image.id, content_tag=content, spec=spec))
    repo = f"{registry.host}/team/tiny-multi"
    index, _ = publish_index(engine, tuple(results), recipe, repository=repo)  # type: ignore[arg-type]
    return recipe, index, {r.spec.platform: r.image_id for r in results}


def test_mlbuild_pull_of_a_two_platform_record_takes_each_platform_by_its_digest(engine: Any, tiny_index: Any) -> None:
    from builder.pull import pull_recorded
    from builder.records import read_record

    recipe, index, ids = tiny_index
    entries = {p.platform: p for p in read_record(recipe).platforms}
    # the state that broke the pull by the index's digest: REPO@<index digest> names the arm64 image
    arm_first = subprocess.run([DOCKER, "pull", "--platform", "linux/arm64", f"{index.repository}:{index.tags[0]}"],
                               capture_output=True, text=True)  # fmt: skip
    assert arm_first.returncode == 0, arm_first.stderr
    said: list[str] = []
    pulled = pull_recorded(engine, recipe, say=said.append)  # the engine's own platform
    assert (pulled.image_id, pulled.record.platform) == (ids["linux/amd64"], "linux/amd64")
    assert pulled.record.reference == index.reference  # the record names the index...
    assert f"{index.repository}@{entries['linux/amd64'].digest}" in said[0]  # ...the pull its amd64 manifest
    arm = pull_recorded(engine, recipe, platform="linux/arm64")
    assert (arm.image_id, arm.record.content_tag) == (ids["linux/arm64"], entries["linux/arm64"].content_tag)
    assert engine.inspect(arm.image_id)["Architecture"] == "arm64"
    for tag in index.tags:  # the index's tags now name the last platform pulled on this engine
        assert engine.image_id(f"{index.repository}:{tag}") == arm.image_id
