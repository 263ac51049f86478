"""SECURITY.md's figures are what scripts/security_figures.py prints now, so they cannot drift
from the tests: a test added, removed or re-parametrized changes a count, and this fails until
`python scripts/security_figures.py --write` (and, for the last run, `--run --write`) is rerun."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def figures() -> ModuleType:
    spec = importlib.util.spec_from_file_location("security_figures", ROOT / "scripts" / "security_figures.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_security_md_shows_the_figures_the_script_prints_now(figures: ModuleType) -> None:
    shown = figures.section_in((ROOT / "SECURITY.md").read_text(), figures.FIGURES)
    assert shown == figures.figures_section(), "run: python scripts/security_figures.py --write"


def test_the_last_run_ran_every_test_there_is_now_and_all_passed(figures: ModuleType) -> None:
    shown = figures.section_in((ROOT / "SECURITY.md").read_text(), figures.LAST_RUN)
    assert shown, "SECURITY.md has no last-run section"
    rows = re.findall(r"^\| (\S+) \| (\d+) \| (\d+) \| (\d+) \| (\d+) \|", shown, flags=re.M)
    ran = {path: int(total) for path, total, _, _, _ in rows}
    assert ran == figures.collected_per_file(), "rerun: python scripts/security_figures.py --run --write"
    assert all(int(passed) == int(total) for _, total, passed, _, _ in rows), shown
    assert "all passed" in shown
