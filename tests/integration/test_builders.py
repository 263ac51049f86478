"""Both builders on a real engine: the example recipe built by BuildKit and by the classic
builder gives the same image (smoke-tested, tagged, labelled, the same packages, no caches
left), and a failing step is reported the same way. The session's example build is one of the
two (whichever `auto` picks here); this module builds the other once.

Locked reproducibility (test_repro.py) and secrets (test_secrets.py) run on both builders
through their own fixtures; --cache-from has its own module (test_warm_cache_from.py).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from builder.labels import BUILDER_LABEL, CONTENT_LABEL, OCI_CREATED, OCI_REVISION, SPEC_LABEL
from builder.pipeline import BuildOptions, BuildResult, build
from builder.refs import split_tag

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "recipes" / "sklearn-cpu.yaml"
BUILDERS = ("buildkit", "classic")
# What the image holds, read inside it: the venv's distributions, the caches a build could leave.
LOOK = (
    "import importlib.metadata as m, os, json; print(json.dumps({"
    "'dists': sorted(f\"{d.metadata['Name']}=={d.version}\" for d in m.distributions()), "
    "'apt_lists': sorted(os.listdir('/var/lib/apt/lists')), "
    "'archives': sorted(f for f in os.listdir('/var/cache/apt/archives') if f.endswith('.deb')), "
    "'root_cache': os.path.exists('/root/.cache'), 'build_settings': os.path.exists('/tmp/mlbuild-build')}))"
)


@pytest.fixture(scope="module")
def by_builder(engine, bookworm_base, settings, sklearn_build) -> Iterator[dict[str, BuildResult]]:  # type: ignore[no-untyped-def]
    other = "classic" if sklearn_build.builder == "buildkit" else "buildkit"
    started = time.monotonic()
    built = build(EXAMPLE, engine=engine, settings=settings,
                  options=BuildOptions(base_image=bookworm_base, builder=other))  # fmt: skip
    print(f"the example with the {other} builder: {time.monotonic() - started:.1f} s")
    yield {sklearn_build.builder: sklearn_build, other: built}
    for ref in sklearn_build.tags:  # the readable tag moved to this module's image: give it back
        engine.tag(sklearn_build.image_id, *split_tag(ref))


@pytest.mark.parametrize("builder", BUILDERS)
def test_each_builder_builds_smokes_tags_and_labels_the_example(by_builder, engine, builder: str) -> None:  # type: ignore[no-untyped-def]
    r = by_builder[builder]
    assert r.builder == builder
    assert r.smoke is None or r.smoke.passed  # None: up to date (built and tested before)
    assert r.tags[1] == f"mlbuild/sklearn-cpu:{r.content_tag}" and engine.image_id(r.tags[1]) == r.image_id
    labels = engine.labels(r.image_id)
    assert labels[CONTENT_LABEL] == r.content_tag and labels["org.opencontainers.image.title"] == "sklearn-cpu"
    assert engine.inspect(r.image_id)["Config"]["User"] == "10001"


@pytest.mark.parametrize("builder", BUILDERS)
def test_each_builders_image_holds_no_cache_and_no_build_settings(by_builder, engine, builder: str) -> None:  # type: ignore[no-untyped-def]
    seen = json.loads(engine.run(by_builder[builder].image_id, ["python", "-c", LOOK]).stdout)
    assert seen["apt_lists"] in ([], ["partial"]) and seen["archives"] == [], seen
    assert not seen["root_cache"] and not seen["build_settings"]


def test_both_builders_make_the_same_image(by_builder, engine) -> None:  # type: ignore[no-untyped-def]
    kit, classic = (by_builder[b] for b in BUILDERS)
    assert kit.content_tag != classic.content_tag  # each builder's Dockerfile has its own tag
    differ = (CONTENT_LABEL, OCI_CREATED, BUILDER_LABEL, OCI_REVISION)  # revision: the checkout's HEAD then
    labels = [{k: v for k, v in engine.labels(r.image_id).items() if k not in differ} for r in (kit, classic)]
    assert labels[0] == labels[1] and SPEC_LABEL in labels[0]
    configs = [engine.inspect(r.image_id)["Config"] for r in (kit, classic)]
    for key in ("User", "Env", "Cmd", "WorkingDir", "Entrypoint"):
        assert configs[0].get(key) == configs[1].get(key), key
    dists = [json.loads(engine.run(r.image_id, ["python", "-c", LOOK]).stdout)["dists"] for r in (kit, classic)]
    assert dists[0] == dists[1] and "scikit-learn==1.5.2" in dists[0]
    sizes = [r.size_bytes for r in (kit, classic)]
    assert abs(sizes[0] - sizes[1]) < 0.02 * sizes[1], sizes


@pytest.fixture(scope="module")
def failing_recipe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("failing-step")
    recipe = folder / "failing.yaml"
    recipe.write_text(EXAMPLE.read_text().replace("name: sklearn-cpu", "name: failing-step")
                      .replace("pandas==2.2.3", "mlbuild-no-such-package==0.0.1"))  # fmt: skip
    return recipe


@pytest.mark.parametrize("builder", BUILDERS)
def test_a_failing_step_is_reported_the_same_by_both_builders(
    failing_recipe: Path, bookworm_base: str, builder: str
) -> None:
    done = subprocess.run([sys.executable, "-m", "builder", "build", str(failing_recipe), "--base-image",
                           bookworm_base, "--builder", builder],
                          capture_output=True, text=True, timeout=900, cwd=ROOT)  # fmt: skip
    assert done.returncode == 1, done.stderr[-2000:]
    # mlbuild's own error line starts a line; the step's streamed output may hold uv's "error:"
    found = re.search(r"^error: ", done.stderr, re.M)
    assert found, done.stderr[-2000:]
    error = done.stderr[found.start() :]
    assert "Traceback" not in done.stderr
    first = error.splitlines()[0]
    assert first.startswith("error: build failed at ") and "requirements-1.txt" in first, first  # the step, named
    assert "mlbuild-no-such-package" in error.split("\n", 1)[1]  # the installer's own last lines name it
    assert "hint: the lines above are the failing step's last output" in error
