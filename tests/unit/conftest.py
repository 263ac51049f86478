"""Unit tests never fetch: builds on the fake engine get stand-ins for uv and pip's wheel
(tests/unit/test_toolwheels.py tests the fetching itself)."""

from __future__ import annotations

import pytest

from builder import pipeline
from builder.render import pip_wheel_name


@pytest.fixture(autouse=True)
def _no_tool_fetch(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path_factory.mktemp("tools")
    uv = folder / "uv"
    uv.write_text("#!/bin/sh\nexit 0\n")
    uv.chmod(0o755)
    (folder / pip_wheel_name()).write_bytes(b"PK\x05\x06" + bytes(18))  # an empty zip
    monkeypatch.setattr(pipeline, "fetch_tools", lambda spec, settings, say: (uv, folder / pip_wheel_name()))
