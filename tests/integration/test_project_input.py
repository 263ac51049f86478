"""Real projects as input on a real engine: a recipe whose `requirements:` is the example
project's requirements.txt (with an `-r` include), and one whose `requirements:` is its real
uv.lock (recipes/project, written by `uv lock`), built from the shared Debian base; inside each image the exact
pins are installed. The uv.lock recipe is also locked and built from its lock. Small pure-Python
packages keep it quick: about 4 minutes on an idle machine, most of it the locked build.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from locking import lock_recipe

from builder.lock import read_lock
from builder.pipeline import BuildOptions, build

pytestmark = pytest.mark.integration
PROJECT = Path(__file__).resolve().parents[2] / "recipes" / "project"
HEAD = 'framework: sklearn\nframework_version: "1.5"\npython: "3.11"\ncuda: cpu\n'
UV_PINS = {
    "tabulate": "0.9.0", "python-dateutil": "4.0.0", "markupsafe": "3.0.4", "tzdata": "2026.6",
    "click": "8.5.1", "iniconfig": "2.3.1",
}  # fmt: skip
VERSIONS = (
    "import importlib.metadata as m, json, sys; "
    "print(json.dumps({n: m.version(n) for n in sys.argv[1:]}))"
)  # fmt: skip


def installed(engine, image: str, names: list[str]) -> dict[str, str]:  # type: ignore[no-untyped-def]
    run = engine.run(image, ["python", "-c", VERSIONS, *names])
    assert run.exit_code == 0, run.stderr
    return dict(json.loads(run.stdout.strip().splitlines()[-1]))


@pytest.fixture(scope="module")
def cleanup(engine) -> Iterator[list[str]]:  # type: ignore[no-untyped-def]
    made: list[str] = []
    yield made
    for ref in made:
        engine.remove_image(ref, force=True)


def test_requirements_txt_with_include_builds_with_its_pins(engine, bookworm_base, settings, tmp_path, cleanup) -> None:  # type: ignore[no-untyped-def]
    shutil.copytree(PROJECT, tmp_path / "project")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "name: reqs-txt-test\n" + HEAD + "requirements: project/requirements.txt\npackages: [six==1.17.0]\n"
    )
    result = build(recipe, engine=engine, settings=settings, options=BuildOptions(base_image=bookworm_base))
    cleanup.extend(result.tags)
    assert result.smoke is None or result.smoke.passed
    assert dict(result.spec.requirement_sources) == {
        "six==1.17.0": "packages[0]",
        "pandas==2.2.3": "project/requirements-base.txt line 2",
        "tabulate==0.9.0": "project/requirements.txt line 4",
    }
    assert any(
        "scikit-learn==1.5.2 (project/requirements.txt line 3): the framework step" in r for r in result.spec.reasons
    )
    found = installed(engine, result.image_id, ["tabulate", "pandas", "six", "scikit-learn"])
    assert found == {"tabulate": "0.9.0", "pandas": "2.2.3", "six": "1.17.0", "scikit-learn": "1.5.2"}


def uv_recipe(folder: Path) -> str:
    for name in ("pyproject.toml", "uv.lock"):
        shutil.copy(PROJECT / name, folder / name)
    return "name: uvlock-test\n" + HEAD + "requirements: {path: uv.lock, extras: [cli], groups: [dev]}\n"


def test_uv_lock_builds_with_its_exact_pins_by_hash(engine, bookworm_base, settings, tmp_path, cleanup) -> None:  # type: ignore[no-untyped-def]
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(uv_recipe(tmp_path))
    said: list[str] = []
    result = build(
        recipe, engine=engine, settings=settings, options=BuildOptions(base_image=bookworm_base), say=said.append
    )
    cleanup.extend(result.tags)
    assert "--require-hashes" in result.dockerfile and "requirements-project.txt" in result.dockerfile
    assert {pin.split("==")[0]: pin.split("==")[1] for pin, _ in result.spec.hashed_requirements} == UV_PINS
    assert installed(engine, result.image_id, sorted(UV_PINS)) == UV_PINS
    # Python 3.11: python-dateutil 4 needs no six, and exceptiongroup is only for 3.10
    absent = engine.run(result.image_id, ["python", "-c", "import six"])
    assert absent.exit_code != 0


def test_uv_lock_recipe_locks_and_builds_locked(engine, bookworm_base, settings, tmp_path, cleanup) -> None:  # type: ignore[no-untyped-def]
    locked = lock_recipe(tmp_path, uv_recipe(tmp_path), engine=engine, settings=settings, base_image=bookworm_base)
    lock = read_lock(locked)
    project = {p.name: p for p in lock.python if p.step == "project"}
    assert {n: p.version for n, p in project.items()} == UV_PINS
    # the hashes pip recorded while locking are the uv.lock's own, for this platform's wheels
    text = (tmp_path / "uv.lock").read_text()
    assert all(h in text for p in project.values() for h in p.hashes)
    assert "scikit-learn" in {p.name for p in lock.python if p.step == "framework"}
    result = build(locked, engine=engine, settings=settings, options=BuildOptions(locked=True))
    cleanup.extend(result.tags)
    assert result.smoke and result.smoke.passed
    assert "locked-project.txt" in result.dockerfile
    assert installed(engine, result.image_id, sorted(UV_PINS)) == UV_PINS
