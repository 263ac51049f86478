"""`mlbuild init`: every framework's starter recipe loads and resolves as written."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from builder.cli import main
from builder.commands.starter import starter_recipe
from builder.matrix import framework_names, load_matrix
from builder.recipe import load_recipe
from builder.resolve import load_and_resolve

FRAMEWORKS = framework_names()


def test_init_offers_every_framework_of_the_data() -> None:
    assert set(FRAMEWORKS) == set(load_matrix().frameworks)
    r = CliRunner().invoke(main, ["init", "--help"])
    assert f"[{'|'.join(FRAMEWORKS)}]" in r.output


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_starter_recipe_written_by_the_cli_loads_and_resolves(framework: str, tmp_path: Path) -> None:
    out = tmp_path / f"{framework}.yaml"
    r = CliRunner().invoke(main, ["init", "--framework", framework, "-o", str(out)])
    assert r.exit_code == 0, r.output
    recipe = load_recipe(out)
    assert recipe.framework == framework
    assert recipe.cuda == "cpu"
    _, spec = load_and_resolve(out)
    assert spec.framework == framework and spec.cuda == "cpu"
    # The resolver's picks are written down, so the file means the same thing next month.
    assert spec.framework_version.startswith(recipe.framework_version or "none")
    assert recipe.python == spec.python
    assert out.read_text().count("\n# ") >= 3  # a commented starter, not a bare mapping


@pytest.mark.parametrize(
    ("framework", "cuda", "python"),
    [("pytorch", "12.4", "3.11"), ("jax", "12.4", None), ("tensorflow", "12.3", "3.11")],
)
def test_gpu_starters_resolve_to_the_asked_cuda(framework: str, cuda: str, python: str | None, tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(starter_recipe(framework, "gpu-job", python, cuda))
    _, spec = load_and_resolve(path)
    assert spec.cuda == cuda
    assert spec.is_gpu
    if python:
        assert spec.python == python


def test_every_commented_line_is_valid_yaml_when_uncommented_examples_are_added(
    tmp_path: Path,
) -> None:
    """The commented package examples sit under `packages:`: uncommenting them gives a list."""
    text = starter_recipe("sklearn", "demo")
    uncommented = text.replace("  # - ", "  - ")
    doc = yaml.safe_load(uncommented)
    assert doc["packages"] == ["pandas==2.2.3", "joblib"]
    path = tmp_path / "r.yaml"
    path.write_text(uncommented)
    _, spec = load_and_resolve(path)
    assert "joblib" in " ".join(spec.packages)


def test_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    out = tmp_path / "recipe.yaml"
    out.write_text("mine\n")
    runner = CliRunner()
    r = runner.invoke(main, ["init", "--framework", "sklearn", "-o", str(out)])
    assert r.exit_code == 2
    assert "exists already" in r.output
    assert out.read_text() == "mine\n"
    r = runner.invoke(main, ["init", "--framework", "sklearn", "-o", str(out), "--force"])
    assert r.exit_code == 0, r.output
    assert load_recipe(out).framework == "sklearn"
    assert [p.name for p in tmp_path.iterdir()] == ["recipe.yaml"]  # no temporary file left


def test_impossible_choice_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    out = tmp_path / "r.yaml"
    r = CliRunner().invoke(main, ["init", "--framework", "sklearn", "--cuda", "12.4", "-o", str(out)])
    assert r.exit_code == 2
    assert "CUDA" in r.output
    assert not out.exists()


def test_flags_name_and_stdout(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["init", "--framework", "jax", "--name", "my-job", "-o", "-"])
    assert r.exit_code == 0, r.output
    doc = yaml.safe_load(r.output)
    assert doc["name"] == "my-job" and doc["framework"] == "jax"


def test_prompts_when_stdin_is_a_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import builder.commands.init_cmd as init_cmd

    monkeypatch.setattr(init_cmd, "_interactive", lambda: True)
    out = tmp_path / "asked.yaml"
    # framework, CUDA, Python, name
    r = CliRunner().invoke(main, ["init", "-o", str(out)], input="sklearn\ncpu\n3.11\nasked\n")
    assert r.exit_code == 0, r.output
    recipe = load_recipe(out)
    assert (recipe.framework, recipe.python, recipe.name) == ("sklearn", "3.11", "asked")
