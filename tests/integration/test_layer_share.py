"""Layers that follow change (issue 13), on the real engine and registry: the sklearn image and
the same recipe with one small package added share every unchanged layer, the new image's new
layers are a few percent of it, and a teammate's engine holding the first image pulls only the
new layers of the second.

The first image is the session's `sklearn_build`; the second is built once here (its framework
step comes from the cache)."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import registry_server as rs  # this folder is on sys.path (pytest's default import mode)

from builder.layers import ABOVE, image_layers, layer_groups
from builder.layersplit import RECIPE_SLOT, SLOTS

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
NEW_BYTES_MAX = 0.05  # issue 13: at most 5% of the new image's bytes are new layers
EMPTY_LAYER = "sha256:4f4fb700ef54461cfa02571ae0db9a0dc1e0cdb5577484a6d75e68dc38e8acc1"  # gzip of an empty tar


@pytest.fixture(scope="module")
def with_tabulate(engine: Any, bookworm_base: str, settings: Any, sklearn_build: Any, tmp_path_factory: Any) -> Any:
    from builder.pipeline import BuildOptions, build

    text = (ROOT / "recipes" / "sklearn-cpu.yaml").read_text()
    changed = text.replace("name: sklearn-cpu", "name: sklearn-layers").replace(
        "  - pandas==2.2.3\n", "  - pandas==2.2.3\n  - tabulate==0.9.0\n"
    )
    assert changed.count("tabulate") == 1 and "sklearn-layers" in changed
    recipe = tmp_path_factory.mktemp("layers") / "sklearn-layers.yaml"
    recipe.write_text(changed)
    result = build(recipe, engine=engine, settings=settings, options=BuildOptions(base_image=bookworm_base))
    yield result
    for tag in result.tags:
        engine.remove_image(tag)


def test_one_added_package_changes_only_the_recipe_layer(engine: Any, sklearn_build: Any, with_tabulate: Any) -> None:
    a = layer_groups(image_layers(engine, sklearn_build.image_id))
    b = layer_groups(image_layers(engine, with_tabulate.image_id))
    assert [g.name for g in a][1:-1] == list(SLOTS) == [g.name for g in b][1:-1]
    differ = [x.name for x, y in zip(a, b, strict=True) if x.diff_ids != y.diff_ids]
    assert differ == [RECIPE_SLOT, ABOVE]  # the framework, the large wheels, pandas: same layers
    old = {lay.diff_id for lay in image_layers(engine, sklearn_build.image_id)}
    new = [lay for lay in image_layers(engine, with_tabulate.image_id) if lay.diff_id not in old]
    new_bytes = sum(lay.size for lay in new)
    assert new_bytes <= NEW_BYTES_MAX * with_tabulate.size_bytes, (new_bytes, with_tabulate.size_bytes)
    # inspect shows the groups with their sizes (the CLI, as a user runs it)
    out = subprocess.run(
        [sys.executable, "-m", "builder", "inspect", with_tabulate.image_id, "--json"],
        capture_output=True, text=True, timeout=120, cwd=ROOT, check=True,
    ).stdout  # fmt: skip
    groups = json.loads(out)["layer_groups"]
    assert [g["name"] for g in groups][1:-1] == list(SLOTS)
    assert sum(g["size"] for g in groups) == with_tabulate.size_bytes
    recipe_layer = next(g for g in groups if g["name"] == RECIPE_SLOT)
    assert 0 < recipe_layer["size"] < 5_000_000  # tabulate, not pandas: pandas has a layer of its own


@pytest.fixture(scope="module")
def registry(tmp_path_factory: Any) -> Iterator[rs.Registry]:
    reg = rs.start_registry(tmp_path_factory.mktemp("layer-registry"))
    yield reg
    reg.stop()


def test_teammate_pulls_only_the_new_layers(
    engine: Any, sklearn_build: Any, with_tabulate: Any, registry: rs.Registry
) -> None:
    from builder.engine import Engine

    repo = f"{registry.host}/team/layers"
    for tag, build in (("v1", sklearn_build), ("v2", with_tabulate)):
        engine.tag(build.image_id, repo, tag)
        engine.push(repo, tag)
    v1 = dict(rs.manifest_layers(registry.host, "team/layers", "v1"))
    v2 = rs.manifest_layers(registry.host, "team/layers", "v2")
    new = [(digest, size) for digest, size in v2 if digest not in v1]
    assert 0 < len(new) <= 3  # the recipe slot, mlbuild's metadata, the user step
    mate = rs.start_teammate(Path(tempfile.mkdtemp(prefix="mlb-ly-", dir="/tmp")))  # short: socket paths
    try:
        b = Engine.connect(base_url=mate.base_url)
        had_none, _ = rs.pull_seen(b, f"{repo}:v1")
        assert not had_none
        said = rs.pull_statuses(b, f"{repo}:v2")
        fetched = [(d, s) for d, s in v2 if said.get(d[7:19], set()) & {"Downloading", "Pull complete"}]
        # an engine keeps no empty layer (a step that changed no file): it fetches its 32 bytes anew
        fetched = [(d, s) for d, s in fetched if d != EMPTY_LAYER or d not in v1]
        assert fetched == new  # exactly the layers v1 lacks, nothing re-downloaded
        assert sum(s for _, s in fetched) <= NEW_BYTES_MAX * sum(s for _, s in v2)
        assert b.image_id(f"{repo}:v2") == with_tabulate.image_id
    finally:
        mate.stop()
        for tag in ("v1", "v2"):
            engine.remove_image(f"{repo}:{tag}")
