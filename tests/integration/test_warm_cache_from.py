"""--cache-from on a real engine and registry: the example, built by BuildKit (which puts its
inline cache in the image) and pushed, lets a build on an engine without any local cache (no
image of the recipe, `docker builder prune -af`), as on a fresh CI runner, reuse its layers.

This module empties the engine's whole BuildKit cache, so it is named to run last.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import registry_server as rs
from required_tools import tool

from builder.pipeline import BuildOptions, build
from builder.refs import split_tag

pytestmark = pytest.mark.integration
EXAMPLE = Path(__file__).resolve().parents[2] / "recipes" / "sklearn-cpu.yaml"


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[rs.Registry]:
    reg = rs.start_registry(tmp_path_factory.mktemp("cache-from-registry"))
    yield reg
    reg.stop()


def _remove_with_children(engine, image_id: str) -> None:  # type: ignore[no-untyped-def]
    """The image gone from the engine: every name of it (other tests gave it some too: a
    registry's, a pull's) and the images a classic `docker build FROM` it made, whose parent
    it is (an untagged parent stays while a child lives)."""
    if engine.image_id(image_id) is None:  # gone already: removing a child prunes its untagged parents
        return
    for child in engine.client.images.list(all=True):
        if child.attrs.get("Parent") == image_id:
            _remove_with_children(engine, child.id)
    if engine.image_id(image_id) is None:
        return
    for ref in engine.inspect(image_id).get("RepoTags") or []:
        engine.remove_image(ref, force=True)
    engine.remove_image(image_id, force=True)


def test_a_pushed_image_seeds_a_build_on_an_engine_without_cache(  # type: ignore[no-untyped-def]
    engine, bookworm_base, settings, sklearn_build, registry
) -> None:
    first = sklearn_build
    if first.builder != "buildkit":  # auto picked the classic builder: build the example with BuildKit
        options = BuildOptions(base_image=bookworm_base, builder="buildkit", reuse=False)
        first = build(EXAMPLE, engine=engine, settings=settings, options=options)
    seeded = f"{registry.host}/ci/sklearn-cpu"
    engine.tag(first.image_id, seeded, "cache")
    engine.push(seeded, "cache")
    layers = engine.inspect(first.image_id)["RootFS"]["Layers"]
    # A runner without local cache: no image of the recipe, no BuildKit cache (cache mounts too).
    _remove_with_children(engine, first.image_id)
    assert engine.image_id(first.image_id) is None
    started = time.monotonic()  # the whole suite's build cache goes: many GB, minutes on a small disk
    pruned = subprocess.run([tool("docker"), "builder", "prune", "-af"], capture_output=True, text=True, timeout=1500)
    assert pruned.returncode == 0, pruned.stderr
    print(f"build cache pruned in {time.monotonic() - started:.0f} s: {pruned.stdout.strip().splitlines()[-1:]}")
    lines: list[str] = []
    started = time.monotonic()
    again = build(EXAMPLE, engine=engine, settings=settings, on_line=lines.append,
                  options=BuildOptions(base_image=bookworm_base, builder="buildkit", reuse=False,
                                       cache_from=(f"{seeded}:cache",)))  # fmt: skip
    seconds = time.monotonic() - started
    print(f"rebuilt from --cache-from in {seconds:.1f} s (first build {first.seconds:.1f} s)")
    log = "\n".join(lines)
    assert f"importing cache manifest from {seeded}:cache" in log
    # every layer of the pushed image reused, byte for byte; no package was downloaded
    assert engine.inspect(again.image_id)["RootFS"]["Layers"] == layers
    assert len(re.findall(r"^#\d+ CACHED$", log, re.MULTILINE)) >= 4, log[-3000:]
    fetched = re.search(r"Downloading|Collecting|Get:\d+ http", log)  # the step that ran, and what led to it
    assert not fetched, log[max(0, fetched.start() - 2500) : fetched.start() + 500] if fetched else ""
    assert again.smoke is not None and again.smoke.passed
    for ref in first.tags:  # the session's example keeps its tags (on this image of the same layers)
        engine.tag(again.image_id, *split_tag(ref))
