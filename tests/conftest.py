"""Shared fixtures and the skip rule.

Integration tests share one Debian base image and one built image, so a whole run builds the
example recipe once.

Skips: a tool the test extras or scripts/setup-host.sh install is required (a missing one fails:
tests/required_tools.py). Only GPU tests (marker `gpu`, no GPU here) and opt-in heavy builds
(marker `slow`, run with MLBUILD_SLOW=1) may skip; under CI any other skip is a failure.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BASE_TAG = os.environ.get("MLBUILD_TEST_BASE", "mlbuild-test/debian:bookworm")
QUICKSTART_BASE = "mlbuild/debian:bookworm"
ARM_BASE = "mlbuild-test/debian:bookworm-arm64"


MAY_SKIP = ("gpu", "slow")


@pytest.fixture(autouse=True)
def _own_host_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test its own builder.hostcache folder: a fake engine's image IDs repeat across tests.
    uv's and pip's wheels (builder.toolwheels) are shared: content-addressed, never stale."""
    folder = tmp_path_factory.mktemp("mlbuild-cache")
    shared = tmp_path_factory.getbasetemp() / "mlbuild-tools"
    shared.mkdir(exist_ok=True)
    (folder / "tools").symlink_to(shared)
    monkeypatch.setenv("MLBUILD_CACHE_DIR", str(folder))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if os.environ.get("MLBUILD_SLOW"):
        return
    opt_in = pytest.mark.skip(reason="opt-in heavy build: MLBUILD_SLOW=1 runs it")
    for item in items:
        if item.get_closest_marker("slow"):
            item.add_marker(opt_in)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.skipped and not hasattr(report, "wasxfail") and not any(map(item.get_closest_marker, MAY_SKIP)):
        _no_skip_in_ci(report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    report = yield
    if report.skipped and "gpu" not in Path(str(collector.path)).parts:
        _no_skip_in_ci(report)
    return report


def _no_skip_in_ci(report: pytest.TestReport | pytest.CollectReport) -> None:
    if os.environ.get("CI"):
        why = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under CI, where only {' and '.join(MAY_SKIP)} tests may skip: {why}"


@pytest.fixture(scope="session")
def engine():  # type: ignore[no-untyped-def]
    from builder.engine import Engine
    from builder.errors import EngineError

    try:
        return Engine.connect()
    except EngineError as exc:
        pytest.fail(f"no Docker engine: {exc.message}; bash scripts/setup-host.sh starts one", pytrace=False)


@pytest.fixture(scope="session")
def bookworm_base(engine) -> str:  # type: ignore[no-untyped-def]
    """A Debian bookworm base made by `mlbuild base bootstrap` (once per machine)."""
    if engine.image_id(BASE_TAG):
        return BASE_TAG
    made = engine.image_id(QUICKSTART_BASE)
    if made:  # the quickstart (run first by .ci/run) made one already: same image, same cache
        repo, _, tag = BASE_TAG.rpartition(":")
        engine.tag(made, repo, tag)
        return BASE_TAG
    from builder.base import bootstrap

    bootstrap(engine, "bookworm", BASE_TAG, None, say=lambda _: None)
    return BASE_TAG


@pytest.fixture(scope="session")
def arm64_base(engine) -> str:  # type: ignore[no-untyped-def]
    """A Debian bookworm arm64 base made by `mlbuild base bootstrap --arch arm64` (once per machine)."""
    import time

    from required_tools import root, tool

    tool("qemu-aarch64-static")  # arm64 programs run under QEMU here (scripts/setup-host.sh)
    found = engine.image_id(ARM_BASE)
    if found and engine.inspect(found).get("Architecture") == "arm64":
        return ARM_BASE
    if found:  # left by an older mlbuild that imported it as the engine's architecture
        engine.remove_image(ARM_BASE, force=True)
    root("debootstrap")
    tool("debootstrap")
    from builder.base import bootstrap

    started = time.monotonic()
    made = bootstrap(engine, "bookworm", ARM_BASE, None, say=lambda _: None, arch="arm64")
    print(f"arm64 bootstrap: {time.monotonic() - started:.0f} s, {made['size_bytes'] / 1e6:.0f} MB")
    return ARM_BASE


@pytest.fixture(scope="session")
def settings():  # type: ignore[no-untyped-def]
    from builder.settings import load_settings

    return load_settings()


@pytest.fixture(scope="session")
def sklearn_build(engine, bookworm_base, settings):  # type: ignore[no-untyped-def]
    """recipes/sklearn-cpu.yaml built, smoke-tested and tagged, once per test session."""
    from builder.pipeline import BuildOptions, build

    return build(
        ROOT / "recipes" / "sklearn-cpu.yaml",
        engine=engine,
        settings=settings,
        options=BuildOptions(base_image=bookworm_base),
    )


@pytest.fixture
def recipe_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path


def write_recipe(folder: Path, text: str, name: str = "recipe.yaml") -> Path:
    path = folder / name
    path.write_text(text)
    return path
