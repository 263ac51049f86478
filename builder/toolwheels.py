"""uv and pip for the builder stage, fetched on the host once per machine and hash-checked.

The builder stage used to make its venv with ensurepip (an apt package of its own) and then
pip-install uv into it: 4 s of every cold build, and an apt step that differed from the image's
own. Now mlbuild brings both in its build settings: uv's binary, taken from the wheel that
bases.yaml pins (tools.uv, per architecture), and pip's wheel (tools.pip), which uv installs into
the venv. Each wheel comes from this machine's cache, else from the wheelhouse, else from the
index through `pip download` with the build's own settings (index, CA bundle, trusted hosts,
proxies), and is checked against its pinned sha256 before anything uses it.

The cache: <hostcache>/tools/<sha256>/ holds the wheel (and uv's extracted binary), so a
folder's name is its content's digest and an entry can never be stale.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

from builder import hostcache
from builder.errors import BuildError, UsageError
from builder.fileio import sha256_of, write_atomic
from builder.matrix import ToolPin, load_matrix
from builder.platforms import platform_named
from builder.settings import BuildSettings, redact
from builder.spec import ResolvedSpec

Say = Callable[[str], None]
FETCH_TIMEOUT_S = 600


def fetch_tools(spec: ResolvedSpec, settings: BuildSettings, say: Say) -> tuple[Path, ...]:
    """uv's binary and pip's wheel for the spec's platform, ready to place in the context."""
    matrix = load_matrix()
    if matrix.uv is None or matrix.pip is None:
        raise BuildError("builder/data/bases.yaml pins no tools.uv or tools.pip: the builder stage has no installer")
    machine = platform_named(spec.platform).machine
    uv_wheel = wheel(matrix.uv, machine, spec.python, settings, say)
    return uv_binary(uv_wheel, matrix.uv), wheel(matrix.pip, machine, spec.python, settings, say)


def wheel(pin: ToolPin, machine: str, python: str, settings: BuildSettings, say: Say) -> Path:
    digest = pin.digest_for(machine)
    if digest is None:
        raise BuildError(f"bases.yaml tools.{pin.name} has no wheel for {machine}")
    folder = hostcache.cache_dir() / "tools" / digest
    cached = sorted(folder.glob(f"{pin.name}-{pin.version}-*.whl"))
    if cached:  # checked before it was written there, and written whole (write_atomic)
        return cached[0]
    with tempfile.TemporaryDirectory(prefix="mlbuild-tools-") as tmp:
        found = _from_wheelhouse(pin, digest, settings.wheelhouse)
        if found is None:
            if settings.offline:
                raise UsageError(
                    f"--offline: the wheelhouse {settings.wheelhouse} has no {pin.name} {pin.version} wheel "
                    f"for {machine}",
                    hint=f"add it: pip download --no-deps --only-binary=:all: {pin.name}=={pin.version} "
                    f"--dest {settings.wheelhouse}; or set installer: pip",
                )
            say(f"fetching {pin.name} {pin.version} for the builder stage (once on this machine)")
            found = _download(pin, machine, python, settings, Path(tmp))
        data = found.read_bytes()
    if hashlib.sha256(data).hexdigest() != digest:  # the bytes that go into the cache, checked
        raise BuildError(f"{found.name}: its sha256 is not the one bases.yaml pins ({digest})")
    target = folder / found.name
    write_atomic(target, data)
    return target


def uv_binary(wheel_path: Path, pin: ToolPin) -> Path:
    """The `uv` executable of the checked wheel, extracted beside it once."""
    target = wheel_path.parent / "uv"
    if not target.is_file():
        with zipfile.ZipFile(wheel_path) as z:
            data = z.read(f"uv-{pin.version}.data/scripts/uv")
        write_atomic(target, data, mode=0o755)
    return target


def _from_wheelhouse(pin: ToolPin, digest: str, wheelhouse: Path | None) -> Path | None:
    if wheelhouse is None or not wheelhouse.is_dir():
        return None
    for candidate in sorted(wheelhouse.glob(f"{pin.name}-{pin.version}-*.whl")):
        if sha256_of(candidate) == digest:
            return candidate
    return None


def _download(pin: ToolPin, machine: str, python: str, settings: BuildSettings, folder: Path) -> Path:
    """`pip download` of the one pinned file, with --require-hashes, into `folder`."""
    requirement = folder / "requirement.txt"
    requirement.write_text(pin.requirement + "\n")
    platforms = [f"manylinux_2_{n}_{machine}" for n in range(17, 41)] + [f"manylinux2014_{machine}"]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--require-hashes",
           "--python-version", python, *[a for p in platforms for a in ("--platform", p)],
           "--dest", str(folder / "out"), "-r", str(requirement)]  # fmt: skip
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, env=_pip_env(settings), timeout=FETCH_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BuildError(f"could not fetch {pin.name} {pin.version} for the builder stage: {exc}") from None
    wheels = sorted((folder / "out").glob("*.whl"))
    if done.returncode != 0 or not wheels:
        lines = [redact(line) for line in (done.stderr or done.stdout).strip().splitlines()[-8:]]
        raise BuildError(
            f"could not fetch {pin.name} {pin.version} for the builder stage (pip download failed)",
            details=lines,
            hint="check the index settings (`mlbuild doctor`), put the wheel in a --wheelhouse, "
            "or set installer: pip in the recipe",
        )
    return wheels[0]


def _pip_env(settings: BuildSettings) -> dict[str, str]:
    """The build's settings for the host's pip: the same index, CA bundle and proxies."""
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}
    if settings.index_url:
        env["PIP_INDEX_URL"] = settings.index_url
    if settings.extra_index_urls:
        env["PIP_EXTRA_INDEX_URL"] = " ".join(settings.extra_index_urls)
    if settings.trusted_hosts:
        env["PIP_TRUSTED_HOST"] = " ".join(settings.trusted_hosts)
    if settings.ca_bundle:
        env["PIP_CERT"] = str(settings.ca_bundle)
    env.update(settings.proxies)
    return env
