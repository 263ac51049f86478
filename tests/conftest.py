"""Shared fixtures. Integration tests share one Debian base image and one built image, so a
whole run builds the example recipe once."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BASE_TAG = os.environ.get("MLBUILD_TEST_BASE", "mlbuild-test/debian:bookworm")
QUICKSTART_BASE = "mlbuild/debian:bookworm"


@pytest.fixture(scope="session")
def engine():  # type: ignore[no-untyped-def]
    from builder.engine import Engine
    from builder.errors import EngineError

    try:
        return Engine.connect()
    except EngineError as exc:
        if os.environ.get("CI"):
            raise  # CI always has an engine: a missing one is a failure, not a skip
        pytest.skip(f"no Docker engine: {exc.message}")


@pytest.fixture(scope="session")
def bookworm_base(engine) -> str:  # type: ignore[no-untyped-def]
    """A Debian bookworm base made by `mlbuild base bootstrap` (once per machine)."""
    if engine.image_id(BASE_TAG):
        return BASE_TAG
    made = engine.image_id(QUICKSTART_BASE)
    if made:  # the quickstart (run first by .ci/run) made one already: same image, same cache
        repo, _, tag = BASE_TAG.rpartition(":")
        engine.tag(made, repo, tag)
        return BASE_TAG
    from builder.base import bootstrap

    bootstrap(engine, "bookworm", BASE_TAG, None, say=lambda _: None)
    return BASE_TAG


@pytest.fixture(scope="session")
def settings():  # type: ignore[no-untyped-def]
    from builder.settings import load_settings

    return load_settings()


@pytest.fixture(scope="session")
def sklearn_build(engine, bookworm_base, settings):  # type: ignore[no-untyped-def]
    """recipes/sklearn-cpu.yaml built, smoke-tested and tagged, once per test session."""
    from builder.pipeline import BuildOptions, build

    return build(
        ROOT / "recipes" / "sklearn-cpu.yaml",
        engine=engine,
        settings=settings,
        options=BuildOptions(base_image=bookworm_base),
    )


@pytest.fixture
def recipe_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path


def write_recipe(folder: Path, text: str, name: str = "recipe.yaml") -> Path:
    path = folder / name
    path.write_text(text)
    return path
