"""Every command the README shows is run: the `$ ...` lines of its console blocks, in order,
in a scratch folder holding a copy of recipes/ (records and locks are written there, not in the
checkout), with `localhost:5000` pointing at a registry started for the test."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import registry_server as rs

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
FIND_LINKS = Path(os.environ.get("PIP_FIND_LINKS", "/opt/wheels"))


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```console\n(.*?)```", text, flags=re.S)
    return [line[2:].strip() for block in blocks for line in block.splitlines() if line.startswith("$ ")]


def test_the_quickstart_commands_are_what_ci_runs() -> None:
    """The two quickstart commands are run by .ci/run, on a fresh machine, before the tests."""
    commands = readme_commands()
    assert commands[:2] == ["bash scripts/quickstart.sh", "bash scripts/test.sh"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert ci.index("bash scripts/quickstart.sh") < ci.index("bash scripts/test.sh")


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    reg = rs.start_registry(tmp_path_factory.mktemp("readme-registry"))
    yield reg
    reg.stop()


def test_every_readme_command_runs(tmp_path: Path, registry, sklearn_build) -> None:  # type: ignore[no-untyped-def]
    shutil.copytree(ROOT / "recipes", tmp_path / "recipes")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    host = registry.host
    ran = 0
    for command in readme_commands()[2:]:  # the quickstart pair: see the test above
        if "--wheelhouse /opt/wheels" in command and not any(FIND_LINKS.glob("torch-2.13.0+cpu-*.whl")):
            continue  # the torch wheel lies on this kind of machine only
        command, _, note = command.partition("#")
        expected = int(m.group(1)) if (m := re.match(r"\s*exit (\d+)", note)) else 0
        line = command.strip().replace("localhost:5000", host)
        argv = line.split()
        assert argv[0] == "mlbuild", line
        done = subprocess.run([sys.executable, "-m", "builder", *argv[1:]], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=1200)  # fmt: skip
        assert done.returncode == expected, f"{line}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        assert "Traceback" not in done.stderr, line
        ran += 1
    assert ran >= 15
