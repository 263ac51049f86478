"""The suite cannot be green by skipping: the tools the tests need are the ones the setup
installs, scripts/test.sh puts them on PATH, and only GPU tests may skip on their own (opt-in
heavy builds are skipped by tests/conftest.py, never by the test)."""

from __future__ import annotations

import re
from pathlib import Path

import required_tools

ROOT = Path(__file__).resolve().parents[2]
SKIPPING = re.compile(r"pytest\.skip\(|\.skipif\(|importorskip\(|mark\.skip\(")


def test_every_required_command_is_installed_by_setup_host() -> None:
    setup = (ROOT / "scripts" / "setup-host.sh").read_text()
    for name in required_tools.FROM_SETUP_HOST:
        assert f"command -v {name} " in setup, f"scripts/setup-host.sh does not install {name}"


def test_every_required_pip_tool_is_a_test_extra_and_found() -> None:
    [extras] = re.findall(r"^test = \[(.*)\]$", (ROOT / "pyproject.toml").read_text(), flags=re.M)
    names = {re.split(r"[<>=\[ ;]", e.strip(' "'), maxsplit=1)[0].lower() for e in extras.split(",")}
    for command, dist in required_tools.FROM_PIP.items():
        assert dist in names, f"{dist} (for {command}) is not in the test extras"
        assert Path(required_tools.tool(command)).is_file()


def test_the_test_script_puts_the_venv_tools_on_path() -> None:
    script = (ROOT / "scripts" / "test.sh").read_text()
    assert script.index('export PATH="$PWD/.venv/bin:$PATH"') < script.index("pytest")


def test_only_gpu_tests_skip_themselves() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for path in sorted((ROOT / "tests").rglob("*.py"))
        if "gpu" not in path.relative_to(ROOT / "tests").parts[:1] and path.name != "conftest.py"
        and path != Path(__file__)
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if SKIPPING.search(line)
    ]  # fmt: skip
    assert offenders == [], "a needed tool must fail the test when missing (tests/required_tools.py)"
