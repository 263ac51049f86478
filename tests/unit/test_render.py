"""Rendering: golden Dockerfiles for the example recipes, determinism, and inert values."""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path

import pytest

from builder.layersplit import SLOTS
from builder.render import dockerfile_string, render, write_context
from builder.resolve import load_and_resolve
from builder.settings import BuildSettings

ROOT = Path(__file__).resolve().parents[2]
RECIPES = sorted((ROOT / "recipes").glob("*.yaml"))
GOLDEN = ROOT / "tests" / "golden"


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_example_recipes_render_like_their_golden_file(recipe: Path) -> None:
    """Reviewed diffs: UPDATE_GOLDEN=1 rewrites the files, and git shows what changed."""
    _, spec = load_and_resolve(recipe)
    text = render(spec)
    golden = GOLDEN / f"{recipe.stem}.Dockerfile"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(text)
    assert golden.exists(), f"no golden file for {recipe.name}: run with UPDATE_GOLDEN=1"
    assert text == golden.read_text()


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_every_build_stage_runs_as_root_whatever_the_base_says(recipe: Path) -> None:
    """A base that ends with a non-root USER would make apt and the venv steps fail."""
    _, spec = load_and_resolve(recipe)
    stages = render(spec).split("\nFROM ")[1:]
    running = [stage for stage in stages if "\nRUN " in stage]  # a uv image's stage only lends a file
    assert running and all("\nUSER 0\n" in stage.split("\nRUN ", 1)[0] for stage in running)
    assert stages[-1].rstrip().splitlines()[-2] == f"USER {spec.uid}"  # the image's own user, last


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_render_is_deterministic(recipe: Path) -> None:
    _, a = load_and_resolve(recipe)
    _, b = load_and_resolve(recipe)
    assert render(a) == render(b)


def test_dockerfile_string_makes_dollar_quote_and_backslash_literal() -> None:
    assert dockerfile_string('a"b') == '"a\\"b"'
    assert dockerfile_string("$HOME") == '"\\$HOME"'
    assert dockerfile_string("a\\b") == '"a\\\\b"'


def test_hostile_env_value_stays_one_inert_line() -> None:
    _, spec = load_and_resolve(ROOT / "recipes" / "sklearn-cpu.yaml")
    evil = '$(touch /pwned) `id` "; RUN touch /pwned2 {{ 7*7 }} {% raw %}'
    spec = dataclasses.replace(spec, env=(("EVIL", evil),))
    text = render(spec)
    env_lines = [line for line in text.splitlines() if line.startswith("ENV EVIL=")]
    assert env_lines == ['ENV EVIL="\\$(touch /pwned) `id` \\"; RUN touch /pwned2 {{ 7*7 }} {% raw %}"']
    assert "RUN touch /pwned2" not in [line.strip() for line in text.splitlines()]


def test_final_stage_has_no_build_settings_and_runs_as_numeric_user() -> None:
    _, spec = load_and_resolve(ROOT / "recipes" / "sklearn-cpu.yaml")
    text = render(spec)
    final = text.split("\nFROM ")[-1]
    assert "build-settings" not in final and "mlbuild-build" not in final
    assert "PIP_CONFIG_FILE" not in final
    assert "USER 10001" in final
    # the venv arrives as one layer per slot (builder/layersplit.py), never as one
    assert "COPY --from=builder /opt/venv /opt/venv" not in final
    assert [line for line in final.splitlines() if line.startswith("COPY --from=builder /opt/mlbuild-layers/")] == [
        f"COPY --from=builder /opt/mlbuild-layers/{slot}/ /" for slot in SLOTS
    ]
    assert "rm -rf /var/lib/apt/lists/*" in final


def test_spec_label_round_trips(tmp_path: Path) -> None:
    _, spec = load_and_resolve(ROOT / "recipes" / "sklearn-cpu.yaml")
    text = render(spec)
    label = next(line for line in text.splitlines() if line.startswith('LABEL "org.mlbuild.spec"='))
    raw = label.split("=", 1)[1]
    unquoted = raw[1:-1].replace('\\"', '"').replace("\\$", "$").replace("\\\\", "\\")
    assert json.loads(unquoted) == spec.to_dict()


def test_context_holds_only_what_the_build_needs(tmp_path: Path) -> None:
    recipe_dir = tmp_path / "r"
    recipe_dir.mkdir()
    (recipe_dir / "train.py").write_text("print('hi')\n")
    (recipe_dir / "secret.env").write_text("TOKEN=x\n")
    (recipe_dir / "r.yaml").write_text(
        "name: ctx\nframework: sklearn\npython: '3.11'\nfiles: [{src: train.py, dest: /w/train.py}]\n"
    )
    _, spec = load_and_resolve(recipe_dir / "r.yaml")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nX\n-----END CERTIFICATE-----\n")
    write_context(spec, ctx, recipe_dir, BuildSettings(ca_bundle=ca, index_url="https://u:p@idx/simple"))
    names = sorted(str(p.relative_to(ctx)) for p in ctx.rglob("*") if p.is_file())
    assert names == [
        "Dockerfile",
        "build-settings/ca.crt",
        "build-settings/pip.conf",
        "build-settings/uv.toml",
        "files/0/train.py",
        "mlbuild/constraints.txt",
        "mlbuild/imagesetup.py",
        "mlbuild/layers.json",
        "mlbuild/layersplit.py",
        "mlbuild/probe.py",
        "mlbuild/requirements-framework.txt",
        "mlbuild/requirements.txt",
        "mlbuild/spec.json",
    ]
    assert "cert = /tmp/mlbuild-build/ca.crt" in (ctx / "build-settings/pip.conf").read_text()
    assert "u:p" not in (ctx / "Dockerfile").read_text()
    assert (ctx / "mlbuild/constraints.txt").read_text() == "scikit-learn==" + spec.framework_version + "\n"


def _packages_recipe(folder: Path, packages: list[str]) -> tuple[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    recipe = folder / "r.yaml"
    recipe.write_text(f"name: steps\nframework: sklearn\nframework_version: '1.5'\npackages: {packages}\n")
    _, spec = load_and_resolve(recipe)
    ctx = folder / "ctx"
    ctx.mkdir()
    return write_context(spec, ctx, folder, BuildSettings()), ctx


def test_a_package_added_at_the_end_is_one_more_step_after_the_same_steps(tmp_path: Path) -> None:
    """The everyday change: the steps (and files) before the new package are the same bytes, so
    every builder finds them cached; each step's file holds the packages listed up to its own."""
    before, ctx_before = _packages_recipe(tmp_path / "a", ["pandas==2.2.3", "rich"])
    after, ctx_after = _packages_recipe(tmp_path / "b", ["pandas==2.2.3", "rich", "tabulate==0.9.0"])
    steps_before = [line for line in before.splitlines() if "requirements-" in line and "framework" not in line]
    steps_after = [line for line in after.splitlines() if "requirements-" in line and "framework" not in line]
    assert steps_after[: len(steps_before)] == steps_before and len(steps_after) == len(steps_before) + 2
    for i in (1, 2):
        name = f"mlbuild/requirements-{i}.txt"
        assert (ctx_before / name).read_bytes() == (ctx_after / name).read_bytes()
    assert (ctx_after / "mlbuild/requirements-3.txt").read_text() == "pandas==2.2.3\nrich\ntabulate==0.9.0\n"


def test_the_last_package_step_takes_the_rest(tmp_path: Path) -> None:
    from builder.render import MAX_PACKAGE_STEPS

    names = [f"pkg{i}" for i in range(MAX_PACKAGE_STEPS + 3)]
    text, ctx = _packages_recipe(tmp_path, names)
    assert len(re.findall(r'"-r", "/tmp/mlbuild/requirements-\d+\.txt"', text)) == MAX_PACKAGE_STEPS
    assert (ctx / f"mlbuild/requirements-{MAX_PACKAGE_STEPS}.txt").read_text().split() == names
