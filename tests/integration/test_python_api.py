"""The Python API and images that teammates extend, on the real engine, reusing the session's
sklearn image (`sklearn_build`, recipes/sklearn-cpu.yaml on the shared Debian base).

- `builder.build({...})`: the example recipe as a mapping under another name, so only the
  final LABEL steps are new (every RUN step comes from the build cache) and the session's
  tags stay where they are; the result carries the real smoke report.
- A derived image (`FROM` the session's image, a plain `docker build`): pip may not replace the
  framework (scikit-learn===1.5.2 in /opt/mlbuild/constraints.txt, PIP_CONSTRAINT) but installs
  an unrelated package. About 40 s on an idle machine.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import registry_server as rs  # this folder is on sys.path (pytest's default import mode)
import yaml
from required_tools import tool

import builder

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
RECIPES = ROOT / "recipes"
FRAMEWORK_PIN = "scikit-learn===1.5.2"


@pytest.fixture(scope="module")
def api_build(engine, settings, bookworm_base, sklearn_build) -> Iterator[Any]:  # type: ignore[no-untyped-def]
    doc = yaml.safe_load((RECIPES / "sklearn-cpu.yaml").read_text())
    doc["name"] = "sklearn-cpu-api"
    said: list[str] = []
    result = builder.build(doc, base_dir=RECIPES, engine=engine, settings=settings, base_image=bookworm_base,
                           say=said.append, reuse=False)  # fmt: skip
    yield result, said
    for ref in result.tags:
        engine.remove_image(ref, force=True)


def test_build_from_a_mapping_returns_image_tags_size_and_smoke_report(  # type: ignore[no-untyped-def]
    engine, settings, api_build, sklearn_build
) -> None:
    result, said = api_build
    assert result.tags[0] == "mlbuild/sklearn-cpu-api:sklearn1.5.2-py3.11-cpu" and not result.up_to_date
    assert all(engine.image_id(tag) == result.image_id for tag in result.tags)
    assert result.size_bytes == engine.inspect(result.image_id)["Size"]
    assert abs(result.size_bytes - sklearn_build.size_bytes) < 1_000_000  # the same layers, other labels
    assert result.smoke is not None and result.smoke.passed and result.smoke.probe["framework"]["version"] == "1.5.2"
    assert result.spec.name == "sklearn-cpu-api" and result.spec.packages == sklearn_build.spec.packages
    assert any(line.startswith("smoke test of sha256:") for line in said)
    # the builder auto chose (BuildKit where a CLI drives it) is named on the image
    kit = engine.labels(result.image_id).get("org.mlbuild.builder") == "buildkit"
    assert result.dockerfile == builder.render(result.spec, settings=settings, buildkit=kit)


def test_push_sends_the_tested_image_to_a_registry_and_records_it(  # type: ignore[no-untyped-def]
    engine, api_build, tmp_path_factory: pytest.TempPathFactory
) -> None:
    result, _ = api_build
    reg = rs.start_registry(tmp_path_factory.mktemp("api-registry"))
    try:
        folder = tmp_path_factory.mktemp("api-record")
        recipe = folder / "sklearn-cpu-api.yaml"
        recipe.write_text((RECIPES / "sklearn-cpu.yaml").read_text().replace("sklearn-cpu", "sklearn-cpu-api"))
        said: list[str] = []
        published = builder.push(result.image_id, to=f"{reg.host}/team/api", recipe=recipe, engine=engine,
                                 say=said.append)  # fmt: skip
        assert any(line.startswith("smoke test of") for line in said)  # tested again before it is shared
        pushed = published.pushed[0]
        assert pushed.repository == f"{reg.host}/team/api" and result.content_tag in pushed.tags
        layers = rs.manifest_layers(reg.host, "team/api", result.content_tag)
        assert [d for d, _ in layers][-1:] and len(layers) == len(engine.inspect(result.image_id)["RootFS"]["Layers"])
        record = json.loads(Path(str(published.record)).read_text())
        assert record["digest"] == pushed.digest and record["content_tag"] == result.content_tag
        with pytest.raises(builder.UsageError):  # not an mlbuild image: refused, nothing pushed
            builder.push(engine.client.images.get(result.base.ref).id, to=f"{reg.host}/team/api", engine=engine)
    finally:
        reg.stop()
        for tag in result.tags:  # push_refs tags the image in the other repository too
            engine.remove_image(tag.replace(result.spec.repository, f"{reg.host}/team/api"))


def test_the_image_carries_its_constraints(engine, sklearn_build) -> None:  # type: ignore[no-untyped-def]
    run = engine.run(sklearn_build.image_id, ["sh", "-c", 'cat /opt/mlbuild/constraints.txt; echo "$PIP_CONSTRAINT"'])
    assert run.exit_code == 0, run.stderr
    lines = run.stdout.splitlines()
    assert [line for line in lines if line and not line.startswith("#")] == [
        FRAMEWORK_PIN,
        "/opt/mlbuild/constraints.txt",
    ]
    env = engine.inspect(sklearn_build.image_id)["Config"]["Env"]
    assert "UV_CONSTRAINT=/opt/mlbuild/constraints.txt" in env


def derived_build(folder: Path, image: str, settings: Any, steps: list[str]) -> subprocess.CompletedProcess[str]:
    """`docker build` of FROM `image` + `steps`, as a teammate writes it; pip reaches the index
    through the site's settings (a pip.conf, the CA bundle), like mlbuild's own builder stage."""
    settings.write_build_settings(folder / "build-settings")
    (folder / "Dockerfile").write_text("\n".join([
        f"FROM {image}",
        "USER root",
        "COPY build-settings/ /tmp/mlbuild-build/",
        "ENV PIP_CONFIG_FILE=/tmp/mlbuild-build/pip.conf PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1",
        *steps,
        "USER 10001",
    ]) + "\n")  # fmt: skip
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}  # the classic builder, as the engine's default here
    return subprocess.run([tool("docker"), "build", "--rm", "--force-rm", "-q", str(folder)], capture_output=True,
                          text=True, timeout=600, env=env)  # fmt: skip


def test_a_derived_images_pip_cannot_replace_the_framework(tmp_path: Path, sklearn_build, settings) -> None:  # type: ignore[no-untyped-def]
    built = derived_build(tmp_path, sklearn_build.image_id, settings, ["RUN pip install scikit-learn==1.5.1"])
    assert built.returncode != 0, built.stdout
    out = built.stdout + built.stderr
    assert "The user requested scikit-learn==1.5.1" in out and f"The user requested (constraint) {FRAMEWORK_PIN}" in out


def test_a_derived_images_uv_cannot_replace_the_framework_either(tmp_path: Path, sklearn_build, settings) -> None:  # type: ignore[no-untyped-def]
    steps = [
        "RUN pip install uv==0.13.9",  # not in the image: a teammate adds it
        "ENV UV_CONFIG_FILE=/tmp/mlbuild-build/uv.toml SSL_CERT_FILE=/tmp/mlbuild-build/ca.crt UV_NO_CACHE=1",
        "RUN uv pip install scikit-learn==1.5.1",  # into $VIRTUAL_ENV, under $UV_CONSTRAINT
    ]
    built = derived_build(tmp_path, sklearn_build.image_id, settings, steps)
    assert built.returncode != 0, built.stdout
    out = built.stdout + built.stderr
    assert "you require scikit-learn==1.5.1 and scikit-learn==1.5.2" in out and "unsatisfiable" in out, out[-2000:]


def test_a_derived_image_installs_unrelated_packages(tmp_path: Path, engine, sklearn_build, settings) -> None:  # type: ignore[no-untyped-def]
    check = "import json, sklearn, tabulate; print(json.dumps([sklearn.__version__, tabulate.__version__]))"
    built = derived_build(tmp_path, sklearn_build.image_id, settings, ["RUN pip install tabulate"])
    assert built.returncode == 0, built.stdout + built.stderr
    image = built.stdout.strip().splitlines()[-1]
    try:
        run = engine.run(image, ["python", "-c", check])
        assert run.exit_code == 0, run.stderr
        versions = json.loads(run.stdout.strip().splitlines()[-1])
        assert versions[0] == "1.5.2" and versions[1]
        assert engine.inspect(image)["Config"]["User"] == "10001"
    finally:
        engine.remove_image(image, force=True)
