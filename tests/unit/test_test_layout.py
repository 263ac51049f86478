"""Test files are modules without packages (no __init__.py): pytest imports each by its base
name, so two files of one name in different folders stop the whole run at collection."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent


def test_every_test_file_name_is_unique_across_folders() -> None:
    names = Counter(p.name for p in TESTS.rglob("test_*.py"))
    assert names and not [n for n, count in names.items() if count > 1]
