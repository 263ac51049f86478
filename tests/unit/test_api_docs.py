"""docs/api.md's notebook runs: its Python cells, in order, in one namespace, from the checkout's
root; a ```text block right after a cell is that cell's output, exactly. Cells that say
`# needs a Docker engine` build and push: tests/integration/test_python_api.py does that."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NEEDS_ENGINE = "# needs a Docker engine"


def cells() -> list[tuple[str, str | None]]:
    """(code, the output shown after it or None), in the document's order."""
    blocks = re.findall(r"```(\w+)\n(.*?)```", (ROOT / "docs" / "api.md").read_text(), flags=re.S)
    out: list[tuple[str, str | None]] = []
    for i, (kind, body) in enumerate(blocks):
        if kind == "python":
            after = blocks[i + 1] if i + 1 < len(blocks) else None
            out.append((body, after[1] if after and after[0] == "text" else None))
    return out


def test_the_notebook_cells_run_and_print_what_the_page_shows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    namespace: dict[str, object] = {}
    pure = [(code, shown) for code, shown in cells() if not code.startswith(NEEDS_ENGINE)]
    assert len(pure) >= 4 and len(cells()) - len(pure) >= 2
    for code, shown in pure:
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(compile(code, "docs/api.md", "exec"), namespace)
        if shown is not None:
            assert printed.getvalue() == shown, code
    assert "tabulate==0.9.0" in namespace["project"].packages  # type: ignore[attr-defined]
