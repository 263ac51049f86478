"""`mlbuild init --from FILE`: a recipe for an existing project that points at its file, with
the framework guessed from the dependencies, and that resolves as written."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from builder.cli import main
from builder.recipe import load_recipe
from builder.resolve import load_and_resolve

PROJECT = Path(__file__).resolve().parents[2] / "recipes" / "project"  # a real uv.lock (uv lock)


def init(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(main, ["init", *args])
    return r.exit_code, r.output


@pytest.mark.parametrize(
    ("requirements", "framework", "version"),
    [
        ("torch==2.4.1\ntorchvision\nscikit-learn\n", "pytorch", "2.4.1"),
        ("tensorflow>=2.15,<2.17\npandas\n", "tensorflow", "<2.17,>=2.15"),
        ("jaxlib\nflax\n", "jax", None),
        ("scikit-learn==1.5.2\npandas==2.2.3\n", "sklearn", "1.5.2"),
        ("torchvision==0.20.1\n", "pytorch", None),
    ],
)
def test_framework_and_version_are_guessed_from_a_requirements_file(
    tmp_path: Path, requirements: str, framework: str, version: str | None
) -> None:
    (tmp_path / "requirements.txt").write_text(requirements)
    code, out = init("--from", str(tmp_path / "requirements.txt"))
    assert code == 0, out
    written = tmp_path / "recipe.yaml"  # next to the file
    doc = yaml.safe_load(written.read_text())
    assert doc["framework"] == framework and doc["requirements"] == "requirements.txt"
    if version:
        assert doc["framework_version"] == version
    recipe, spec = load_and_resolve(written)
    assert recipe.requirements is not None and spec.framework == framework
    assert spec.python == doc["python"]
    if framework == "pytorch" and version is None:
        assert spec.framework_version == "2.5.1"  # the torchvision pin chose its pairing


def test_uv_lock_and_pyproject_give_python_from_requires_python(tmp_path: Path) -> None:
    shutil.copy(PROJECT / "uv.lock", tmp_path / "uv.lock")
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "Vision_Train"\nversion = "1"\nrequires-python = ">=3.10,<3.12"\n'
        'dependencies = ["torch==2.5.1", "tabulate"]\n[project.optional-dependencies]\neval = ["rich"]\n'
    )
    code, out = init("--from", str(tmp_path / "pyproject.toml"), "--extra", "eval", "-o", str(tmp_path / "p.yaml"))
    assert code == 0, out
    doc = yaml.safe_load((tmp_path / "p.yaml").read_text())
    assert doc["name"] == "vision-train" and doc["python"] == "3.11" and doc["framework_version"] == "2.5.1"
    assert doc["requirements"] == {"path": "pyproject.toml", "extras": ["eval"]}
    _, spec = load_and_resolve(tmp_path / "p.yaml")
    assert "rich" in spec.requirements

    code, out = init("--from", str(tmp_path / "uv.lock"), "--framework", "sklearn", "-o", str(tmp_path / "u.yaml"))
    assert code == 0, out
    text = (tmp_path / "u.yaml").read_text()
    assert "uv.lock offers extras: cli; groups: dev" in text
    recipe, spec = load_and_resolve(tmp_path / "u.yaml")
    assert recipe.name == "tinyproj" and spec.hashed_requirements


def test_refusals_overwrite_outside_folder_and_no_framework(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("scikit-learn\n")
    assert init("--from", str(tmp_path / "requirements.txt"))[0] == 0
    code, out = init("--from", str(tmp_path / "requirements.txt"))
    assert code == 2 and "exists already" in out
    assert init("--from", str(tmp_path / "requirements.txt"), "--force")[0] == 0

    (tmp_path / "sub").mkdir()
    code, out = init("--from", str(tmp_path / "requirements.txt"), "-o", str(tmp_path / "sub" / "r.yaml"))
    assert code == 2 and "a recipe reads files from its own folder only" in out
    assert not (tmp_path / "sub" / "r.yaml").exists()

    (tmp_path / "plain.txt").write_text("requests\n")
    code, out = init("--from", str(tmp_path / "plain.txt"), "-o", "-")
    assert code == 2 and "names no framework mlbuild builds" in out and "--framework" in out

    (tmp_path / "two.txt").write_text("torch\ntensorflow\n")
    code, out = init("--from", str(tmp_path / "two.txt"), "-o", "-")
    assert code == 2 and "names pytorch and tensorflow" in out

    (tmp_path / "bad.txt").write_text("-i https://evil.example/simple\ntorch\n")
    code, out = init("--from", str(tmp_path / "bad.txt"), "-o", "-")
    assert code == 2 and "would choose where packages come from" in out

    code, out = init("--extra", "x", "--framework", "sklearn", "-o", "-")
    assert code == 2 and "--extra and --group go with --from" in out


def test_printing_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("scikit-learn==1.5.2\n")
    code, out = init("--from", str(tmp_path / "requirements.txt"), "-o", "-")
    assert code == 0 and 'requirements: "requirements.txt"' in out
    assert not (tmp_path / "recipe.yaml").exists()
    (tmp_path / "printed.yaml").write_text(out)  # what was printed is a recipe for that folder
    assert load_recipe(tmp_path / "printed.yaml").requirements is not None
