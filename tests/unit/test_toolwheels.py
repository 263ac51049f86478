"""builder.toolwheels: uv and pip for the builder stage, from the cache, the wheelhouse or the
index (a stand-in for `pip download`), always checked against the pinned sha256."""

from __future__ import annotations

import hashlib
import io
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest

from builder import toolwheels
from builder.errors import BuildError, UsageError
from builder.matrix import ToolPin
from builder.settings import BuildSettings

WHEEL = "uv-0.13.9-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"


@pytest.fixture(autouse=True)
def _own_tools_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Not the run's shared tools folder (tests/conftest.py): each test fetches for itself."""
    monkeypatch.setenv("MLBUILD_CACHE_DIR", str(tmp_path / "cache"))


def uv_wheel_bytes(script: bytes = b"#!/bin/sh\necho uv\n") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("uv-0.13.9.data/scripts/uv", script)
        z.writestr("uv-0.13.9.dist-info/METADATA", "Name: uv\nVersion: 0.13.9\n")
    return buf.getvalue()


def pin_for(data: bytes) -> ToolPin:
    return ToolPin("uv", "0.13.9", (("aarch64", "0" * 64), ("x86_64", hashlib.sha256(data).hexdigest())))


def no_download(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("nothing may be downloaded here")


def test_the_wheelhouse_wheel_is_checked_cached_and_its_binary_extracted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = uv_wheel_bytes()
    house = tmp_path / "house"
    house.mkdir()
    (house / WHEEL).write_bytes(data)
    monkeypatch.setattr(toolwheels, "_download", no_download)
    said: list[str] = []
    got = toolwheels.wheel(pin_for(data), "x86_64", "3.11", BuildSettings(wheelhouse=house, offline=True), said.append)
    assert got.parent.name == hashlib.sha256(data).hexdigest() and got.read_bytes() == data and said == []
    binary = toolwheels.uv_binary(got, pin_for(data))
    assert binary.read_bytes() == b"#!/bin/sh\necho uv\n" and binary.stat().st_mode & 0o111
    (house / WHEEL).unlink()  # the cache serves the next build, offline or not
    assert toolwheels.wheel(pin_for(data), "x86_64", "3.11", BuildSettings(), said.append) == got


def test_a_wheelhouse_file_of_other_bytes_is_not_used(tmp_path: Path) -> None:
    house = tmp_path / "house"
    house.mkdir()
    (house / WHEEL).write_bytes(uv_wheel_bytes(b"#!/bin/sh\necho tampered\n"))
    with pytest.raises(UsageError, match=rf"--offline: the wheelhouse {house} has no uv 0.13.9 wheel for x86_64"):
        toolwheels.wheel(pin_for(uv_wheel_bytes()), "x86_64", "3.11",
                         BuildSettings(wheelhouse=house, offline=True), lambda _: None)  # fmt: skip


def fake_pip(tmp_path: Path, payload: bytes, seen: dict[str, Any], rc: int = 0, stderr: str = "") -> Any:
    def run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        seen["cmd"], seen["env"] = cmd, kwargs["env"]
        dest = Path(cmd[cmd.index("--dest") + 1])
        if rc == 0:
            dest.mkdir(parents=True)
            (dest / WHEEL).write_bytes(payload)
        return subprocess.CompletedProcess(cmd, rc, "", stderr)

    return run


def test_a_download_uses_the_builds_index_settings_and_is_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, seen = uv_wheel_bytes(), {}  # type: ignore[var-annotated]
    monkeypatch.setattr(toolwheels.subprocess, "run", fake_pip(tmp_path, data, seen))
    ca = tmp_path / "corp.pem"
    settings = BuildSettings(ca_bundle=ca, index_url="https://u:p@mirror.example/simple",
                             trusted_hosts=("mirror.example",))  # fmt: skip
    said: list[str] = []
    got = toolwheels.wheel(pin_for(data), "x86_64", "3.11", settings, said.append)
    assert got.read_bytes() == data and said == ["fetching uv 0.13.9 for the builder stage (once on this machine)"]
    assert seen["env"]["PIP_INDEX_URL"] == "https://u:p@mirror.example/simple"
    assert seen["env"]["PIP_CERT"] == str(ca) and seen["env"]["PIP_TRUSTED_HOST"] == "mirror.example"
    cmd = seen["cmd"]
    assert "--require-hashes" in cmd and "--no-deps" in cmd and "manylinux_2_17_x86_64" in cmd
    assert "u:p@" not in " ".join(cmd)  # credentials travel in the environment, not the command line
    # bytes that do not match the pin never reach the cache
    bad = uv_wheel_bytes(b"#!/bin/sh\necho other\n")
    monkeypatch.setattr(toolwheels.subprocess, "run", fake_pip(tmp_path, bad, {}))
    other = ToolPin("uv", "0.13.9", (("x86_64", "f" * 64),))
    with pytest.raises(BuildError, match=r"its sha256 is not the one bases\.yaml pins"):
        toolwheels.wheel(other, "x86_64", "3.11", BuildSettings(), said.append)
    assert not list((tmp_path / "cache" / "tools" / ("f" * 64)).glob("*"))


def test_a_failed_download_says_why_without_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stderr = "ERROR: Could not find a version that satisfies uv==0.13.9 at https://u:secret@mirror.example/simple\n"
    monkeypatch.setattr(toolwheels.subprocess, "run", fake_pip(tmp_path, b"", {}, rc=1, stderr=stderr))
    with pytest.raises(BuildError) as info:
        toolwheels.wheel(pin_for(uv_wheel_bytes()), "x86_64", "3.11", BuildSettings(), lambda _: None)
    err = info.value
    assert err.message == "could not fetch uv 0.13.9 for the builder stage (pip download failed)"
    assert "secret" not in " ".join(err.details) and "mirror.example" in " ".join(err.details)
    assert err.hint and "installer: pip" in err.hint


def test_a_machine_without_a_pinned_wheel_is_refused() -> None:
    with pytest.raises(BuildError, match=r"tools\.uv has no wheel for riscv64"):
        toolwheels.wheel(ToolPin("uv", "0.13.9", (("x86_64", "a" * 64),)), "riscv64", "3.11", BuildSettings(),
                         lambda _: None)  # fmt: skip
