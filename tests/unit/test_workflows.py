"""The shipped workflows pass actionlint, and the matrix that `mlbuild matrix-plan` emits is one
that GitHub Actions accepts and that the reusable workflow can read."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from required_tools import tool

from builder.cli import main

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
REUSABLE = ROOT / ".github" / "workflows" / "mlbuild-build.yml"
CONFIG = ROOT / ".github" / "actionlint.yaml"  # declares the self-hosted GPU runner label


def lint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("actionlint"), "-no-color", "-config-file", str(CONFIG), str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def plan(*args: str) -> dict[str, Any]:
    result = CliRunner().invoke(main, ["matrix-plan", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


MATRIX_RECIPE = """\
name: train
framework: sklearn
matrix:
  python: ["3.11", "3.12", "3.9"]
  cuda: ["12.4", "cpu"]
  exclude:
    - {python: "3.12", cuda: "cpu"}
"""


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflows_pass_actionlint(path: Path) -> None:
    result = lint(path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_is_not_a_no_op(tmp_path: Path) -> None:
    bad = tmp_path / ".github" / "workflows" / "bad.yml"
    bad.parent.mkdir(parents=True)
    bad.write_text(REUSABLE.read_text().replace("runs-on: ${{ matrix.runner }}", "runs-on: ${{ matrix.runnr }}"))
    bad.write_text(
        bad.read_text().replace(
            "matrix: ${{ fromJSON(needs.plan.outputs.matrix) }}",
            'matrix: {include: [{runner: "x"}]}',
        )
    )
    result = lint(bad)
    assert result.returncode != 0 and "runnr" in result.stdout


def test_emitted_matrix_is_what_github_accepts(tmp_path: Path) -> None:
    recipe = tmp_path / "train.yaml"
    recipe.write_text(MATRIX_RECIPE)
    matrix = plan(str(recipe), str(ROOT / "recipes"), "--gpu-runner", "linux-gpu")
    assert set(matrix) == {"include"}  # include-only: no cross product of keys
    include = matrix["include"]
    assert 0 < len(include) <= 256  # "A matrix can generate a maximum of 256 jobs per workflow run"
    for entry in include:
        assert all(isinstance(k, str) and re.match(r"^[A-Za-z_][A-Za-z0-9_-]*$", k) for k in entry)
        assert all(isinstance(v, (str, bool, int)) for v in entry.values())
        assert entry["runner"] == ("linux-gpu" if entry["gpu"] else "ubuntu-latest")
    names = [(e["recipe"], e["variant"]) for e in include]
    assert len(names) == len(set(names))  # each job builds one distinct variant
    ours = [e for e in include if e["recipe"] == str(recipe)]
    # scikit-learn has no CUDA builds: those variants are left out, not failed; 3.12 excluded
    assert {(e["python"], e["cuda"]) for e in ours} == {("3.11", "cpu"), ("3.9", "cpu")}
    assert any(e["gpu"] for e in include)  # recipes/pytorch-gpu.yaml


def test_workflow_reads_only_keys_every_entry_has(tmp_path: Path) -> None:
    """Inline a real matrix into the reusable workflow: actionlint then checks every
    `matrix.*` the workflow reads against the entries' keys and types."""
    recipe = tmp_path / "train.yaml"
    recipe.write_text(MATRIX_RECIPE)
    matrix = plan(str(recipe), str(ROOT / "recipes"))
    used = set(re.findall(r"matrix\.([A-Za-z_][A-Za-z0-9_-]*)", REUSABLE.read_text()))
    for entry in matrix["include"]:
        assert used <= set(entry), used - set(entry)
    inlined = tmp_path / ".github" / "workflows" / "inlined.yml"
    inlined.parent.mkdir(parents=True)
    text = REUSABLE.read_text().replace("${{ fromJSON(needs.plan.outputs.matrix) }}", json.dumps(matrix))
    assert json.dumps(matrix) in text
    inlined.write_text(text)
    yaml.safe_load(text)
    result = lint(inlined)
    assert result.returncode == 0, result.stdout + result.stderr


def test_too_many_jobs_is_refused(tmp_path: Path) -> None:
    values = ", ".join(f'"{v}"' for v in ["1.5", "1.6", "1.7", "1.8", "1.9"])
    # 5 framework versions x 6 Pythons x 9 CUDAs = 270 > 256 variants
    recipe = tmp_path / "big.yaml"
    recipe.write_text(
        "name: big\nframework: sklearn\nmatrix:\n"
        f"  framework_version: [{values}]\n"
        '  python: ["3.9", "3.10", "3.11", "3.12", "3.13", "3.14"]\n'
        '  cuda: ["cpu", "11.8", "12.1", "12.2", "12.3", "12.4", "12.6", "12.8", "13.0"]\n'
    )
    result = CliRunner().invoke(main, ["matrix-plan", str(recipe)])
    assert result.exit_code == 2 and "256" in result.output


def test_ci_reaches_the_tests() -> None:
    """Under CI a skip is a failure (tests/conftest.py): .ci/run sets CI, and the workflow's
    sudo, which drops the environment, keeps it."""
    run = (ROOT / ".ci" / "run").read_text()
    assert run.index("export CI=true") < run.index("bash scripts/")
    steps = [
        step["run"]
        for path in WORKFLOWS
        for job in yaml.safe_load(path.read_text())["jobs"].values()
        for step in job.get("steps", [])
        if "scripts/test.sh" in step.get("run", "") or ".ci/run" in step.get("run", "")
    ]
    assert steps, "no workflow runs the tests"
    for command in steps:
        assert "sudo " not in command or re.search(r"sudo (--preserve-env=CI|env CI=true) ", command), command
