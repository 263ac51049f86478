"""The Python API (builder/api.py, `import builder`): a mapping meets exactly a recipe file's
validation, resolve/render/build/push give what the CLI gives, errors are typed, nothing prints,
and `import builder` stays light. Builds and pushes run on the in-memory engine of fakes.py."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from fakes import FakeEngine, FakeRegistry

import builder
from builder import api, publish
from builder.errors import RecipeError, UsageError
from builder.render import render as render_module_render
from builder.resolve import load_and_resolve
from builder.settings import BuildSettings

ROOT = Path(__file__).resolve().parents[2]
RECIPES = ROOT / "recipes"
DEMO: dict[str, Any] = {
    "name": "demo",
    "framework": "sklearn",
    "framework_version": "1.5",
    "python": "3.11",
    "cuda": "cpu",
    "packages": ["pandas==2.2.3"],
    "smoke": {"run": ["python -c 'import pandas'"]},
}
BASE = "debian:bookworm-slim"


@pytest.fixture(autouse=True)
def _state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))  # smoke results go here


@pytest.fixture
def engine() -> FakeEngine:
    fake = FakeEngine()
    fake.add_image(BASE)
    return fake


# -- import builder ------------------------------------------------------------------------------
def _python(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd=ROOT).stdout.strip()  # fmt: skip


def test_import_builder_loads_neither_the_library_nor_docker() -> None:
    loaded = json.loads(_python("import builder, json, sys; print(json.dumps(sorted(sys.modules)))"))
    assert [m for m in loaded if m.startswith("builder")] == ["builder", "builder.version"]
    assert "docker" not in loaded and "yaml" not in loaded and "jinja2" not in loaded


def test_resolve_and_render_stay_the_api_after_their_modules_are_imported() -> None:
    # importing a submodule binds it on the package; builder/__init__.py keeps the API names
    out = _python(
        "import builder.resolve, builder.render, builder.api, builder.pipeline, sys\n"
        "print(builder.resolve.__module__, builder.render.__module__, builder.build.__module__,\n"
        "      'docker' in sys.modules)"
    )
    assert out == "builder.api builder.api builder.api False"
    assert builder.resolve is api.resolve and builder.render is api.render and builder.push is api.push


def test_no_code_reaches_a_shadowed_module_through_the_package_attribute() -> None:
    """`from builder import resolve` or `import builder.render as r` would get the API
    function; the modules are imported as `from builder.resolve import ...`."""
    shadowed = {"resolve", "render"}
    wrong = []
    for path in [*ROOT.joinpath("builder").rglob("*.py"), *ROOT.joinpath("tests").rglob("*.py"),
                 *ROOT.joinpath("benchmarks").rglob("*.py")]:  # fmt: skip
        text = path.read_text()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ImportFrom) and node.module == "builder" and not node.level:
                wrong += [f"{path.name}: from builder import {a.name}" for a in node.names if a.name in shadowed]
            if isinstance(node, ast.Import):
                wrong += [f"{path.name}: import {a.name} as" for a in node.names
                          if a.asname and a.name in {f"builder.{s}" for s in shadowed}]  # fmt: skip
        wrong += [f"{path.name}: {m}" for m in re.findall(r"[\"']builder\.(?:resolve|render)\.\w+[\"']", text)]
    assert wrong == []


# -- resolve: a mapping is a recipe --------------------------------------------------------------
def test_a_mapping_resolves_as_the_same_recipe_file_does(tmp_path: Path) -> None:
    file = tmp_path / "demo.yaml"
    file.write_text(yaml.safe_dump(DEMO))
    _, from_file = load_and_resolve(file)
    assert builder.resolve(DEMO).to_dict() == from_file.to_dict()
    assert builder.resolve(file) == from_file and builder.resolve(str(file)) == from_file


def test_requirements_of_a_mapping_are_read_from_base_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    doc = yaml.safe_load((RECIPES / "sklearn-project.yaml").read_text())
    _, from_file = load_and_resolve(RECIPES / "sklearn-project.yaml")
    assert builder.resolve(doc, base_dir=RECIPES).to_dict() == from_file.to_dict()
    assert from_file.hashed_requirements  # the uv.lock's pins were read
    monkeypatch.chdir(RECIPES)  # base_dir defaults to the current directory
    assert builder.resolve(doc).hashed_requirements == from_file.hashed_requirements
    with pytest.raises(RecipeError) as err:
        builder.resolve(doc, base_dir=ROOT)  # project/uv.lock is not there
    assert any(p.field.startswith("requirements") for p in err.value.problems)


@pytest.mark.parametrize(
    "bad",
    [
        {**DEMO, "name": "Not An Image Name", "python": 3.10, "cuda": "12"},
        {**DEMO, "framework": "sklearnn", "packages": ["pandas; rm -rf /"]},
        {**DEMO, "files": [{"src": "../../etc/passwd", "dest": "/x"}], "requirements": "../outside.txt"},
        {**DEMO, "env": {"PATH": "/evil"}, "unknown_key": 1},
        {"name": "x"},
    ],
)
def test_a_bad_mapping_gets_exactly_the_problems_of_the_same_file(tmp_path: Path, bad: dict[str, Any]) -> None:
    file = tmp_path / "recipe.yaml"
    file.write_text(yaml.safe_dump(bad, sort_keys=False))
    with pytest.raises(RecipeError) as from_file:
        load_and_resolve(file)
    with pytest.raises(RecipeError) as from_mapping:
        builder.resolve(bad, base_dir=tmp_path)
    assert from_mapping.value.problems == from_file.value.problems
    assert from_mapping.value.path == "recipe mapping" and from_mapping.value.exit_code == 2


def test_values_no_recipe_file_can_hold_are_named() -> None:
    bad = {**DEMO, "files": [{"src": Path("model.bin"), "dest": "/m"}], 3: "x", "packages": {"a"}}
    with pytest.raises(RecipeError) as err:
        builder.resolve(bad)
    details = "\n".join(err.value.details)
    assert "files[0].src: a PosixPath is not a recipe value" in details
    assert "key 3 is not text" in details and "packages: a set is not a recipe value" in details
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(40):
        node["a"] = {}
        node = node["a"]
    with pytest.raises(RecipeError, match="recipe mapping"):
        builder.resolve({**DEMO, "env": deep})


def test_wrong_arguments_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="a path or a mapping, not a list"):
        builder.resolve([("name", "x")])  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="base_dir= is for a recipe given as a mapping"):
        builder.resolve(RECIPES / "sklearn-cpu.yaml", base_dir=tmp_path)
    with pytest.raises(RecipeError) as err:
        builder.resolve(tmp_path / "missing.yaml")
    assert err.value.details == ["file not found"]
    with pytest.raises(UsageError, match="base_image= 'Not A Ref' is not an image reference"):
        builder.resolve(DEMO, base_image="Not A Ref")


# -- render --------------------------------------------------------------------------------------
def test_render_gives_the_command_lines_dockerfile() -> None:
    spec = builder.resolve(RECIPES / "sklearn-cpu.yaml")
    text = builder.render(spec)
    assert text == render_module_render(spec) == (ROOT / "tests/golden/sklearn-cpu.Dockerfile").read_text()
    assert builder.render(RECIPES / "sklearn-cpu.yaml") == text
    assert builder.render(DEMO).startswith('# Rendered by mlbuild 0.1.0 for recipe "demo"')


# -- build and push on the fake engine -----------------------------------------------------------
@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> FakeRegistry:
    fake = FakeRegistry()
    monkeypatch.setattr(publish, "access_for", lambda host, *a, **k: fake.access(host))
    return fake


def test_build_from_a_mapping_returns_the_image_tags_size_and_smoke_report(
    engine: FakeEngine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    said: list[str] = []
    result = builder.build(DEMO, engine=engine, settings=BuildSettings(), base_dir=tmp_path, say=said.append,
                           extra_tags=["127.0.0.1:5000/team/demo:v1"])  # fmt: skip
    assert result.image_id == engine.image_id("mlbuild/demo:sklearn1.5.2-py3.11-cpu")
    assert result.tags == ("mlbuild/demo:sklearn1.5.2-py3.11-cpu", f"mlbuild/demo:{result.content_tag}",
                           "127.0.0.1:5000/team/demo:v1")  # fmt: skip
    assert result.size_bytes == engine.inspect(result.image_id)["Size"] and result.size_bytes > 0
    assert result.smoke is not None and result.smoke.passed
    assert result.spec == builder.resolve(DEMO) and len(engine.builds) == 1
    assert any(line.startswith("resolved: sklearn 1.5.2") for line in said)
    assert capsys.readouterr() == ("", "")  # the library never prints


def test_build_options_come_as_keywords_or_as_build_options(engine: FakeEngine) -> None:
    builder.build(DEMO, builder.BuildOptions(run_smoke=False), engine=engine, settings=BuildSettings())
    with pytest.raises(UsageError, match="not both"):
        builder.build(DEMO, builder.BuildOptions(), engine=engine, push=True)
    with pytest.raises(UsageError, match=r"unknown build option\(s\): smoke") as err:
        builder.build(DEMO, engine=engine, smoke=False)
    assert err.value.hint and "run_smoke" in err.value.hint
    with pytest.raises(UsageError, match="--push needs the smoke test"):
        builder.build(DEMO, engine=engine, push=True, run_smoke=False)
    with pytest.raises(UsageError, match="locked= builds from the lock beside a recipe file"):
        builder.build(DEMO, engine=engine, locked=True)
    with pytest.raises(UsageError, match="matrix:"):
        matrix = {k: v for k, v in DEMO.items() if k != "python"}
        builder.build({**matrix, "matrix": {"python": ["3.10", "3.11"]}}, engine=engine)
    with pytest.raises(RecipeError):
        builder.build({**DEMO, "python": "three"}, engine=engine)
    assert len(engine.builds) == 1


def test_push_publishes_a_tested_image_and_a_mapping_writes_no_record(tmp_path: Path, registry: FakeRegistry) -> None:
    engine = FakeEngine(registry)
    engine.add_image(BASE)
    result = builder.build(DEMO, engine=engine, settings=BuildSettings(), base_dir=tmp_path, push=True)
    assert result.published is not None and result.published.record is None
    assert list(tmp_path.iterdir()) == [tmp_path / "state"]  # nothing written beside a mapping
    recipe = tmp_path / "demo.yaml"
    recipe.write_text(yaml.safe_dump(DEMO))
    published = builder.push(result.tags[0], to="127.0.0.1:5000/team/demo", recipe=recipe, engine=engine)
    assert {p.repository for p in published.pushed} == {"127.0.0.1:5000/team/demo"}
    assert published.record is not None and published.record.is_file()
    assert ("127.0.0.1:5000/team/demo", result.content_tag) in registry.manifests
    with pytest.raises(UsageError, match="does not exist"):
        builder.push(result.tags[0], recipe=tmp_path / "missing.yaml", engine=engine)
