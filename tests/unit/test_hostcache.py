"""What mlbuild remembers between runs (builder/hostcache.py): never a fact about something
that changed since, and an unusable cache folder only makes a run slower."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from builder import buildkit, hostcache
from tests.unit.test_buildkit import DEBIAN_HELP, NO_BUILDX, fake_runner
from tests.unit.test_pipeline import HOST_BASE, PY312_RECIPE, PythonBase, run


def test_entries_round_trip_and_a_broken_one_reads_as_missing(tmp_path: Path) -> None:
    entry = hostcache.key("x", [1, 2])
    assert hostcache.get("facts", entry) is None
    hostcache.put("facts", entry, {"a": [1, 2]})
    assert hostcache.get("facts", entry) == {"a": [1, 2]}
    assert hostcache.key("x", [1, 2]) == entry != hostcache.key("x", [1, 3])
    (hostcache.cache_dir() / "facts" / f"{entry}.json").write_text("{half")
    assert hostcache.get("facts", entry) is None
    assert [p.name for p in (hostcache.cache_dir() / "facts").iterdir()] == [f"{entry}.json"]  # no temp files left


def test_an_unwritable_cache_folder_is_only_slower(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(hostcache.CACHE_ENV, str(blocker / "cache"))
    hostcache.put("facts", "k", 1)  # no error
    assert hostcache.get("facts", "k") is None


def test_the_folder_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(hostcache.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert hostcache.cache_dir() == tmp_path / "xdg" / "mlbuild"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert hostcache.cache_dir() == tmp_path / "home" / ".cache" / "mlbuild"


def test_the_cli_probe_is_remembered_until_the_cli_or_a_buildx_plugin_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    cli = tmp_path / "docker"
    cli.write_text("v1")
    answers = {(str(cli), "buildx", "version"): (1, NO_BUILDX), (str(cli), "build", "--help"): (0, DEBIAN_HELP)}
    run1 = fake_runner(answers)
    first = buildkit.probe_clis_remembered([str(cli)], run1)
    assert first.cli == str(cli) and len(run1.asked) == 2  # type: ignore[attr-defined]
    again = fake_runner(answers)
    assert buildkit.probe_clis_remembered([str(cli)], again) == first
    assert again.asked == []  # type: ignore[attr-defined]
    cli.write_text("v2, a new binary")  # an upgraded CLI is probed again
    upgraded = fake_runner(answers)
    buildkit.probe_clis_remembered([str(cli)], upgraded)
    assert len(upgraded.asked) == 2  # type: ignore[attr-defined]
    plugin = tmp_path / "docker-config" / "cli-plugins" / "docker-buildx"
    plugin.parent.mkdir(parents=True)
    plugin.write_text("buildx")  # a buildx plugin installed since: probed again
    with_plugin = fake_runner({**answers, (str(cli), "buildx", "version"): (0, "github.com/docker/buildx v0.17.1")})
    assert buildkit.probe_clis_remembered([str(cli)], with_plugin).argv[1] == "buildx"
    assert len(with_plugin.asked) == 1  # type: ignore[attr-defined]


def test_what_a_base_carries_is_observed_once_per_image_id(tmp_path: Path) -> None:
    path = tmp_path / "py312.yaml"
    path.write_text(PY312_RECIPE)
    engine = PythonBase({"python3.12": ("/usr/bin/python3.12", "3.12.3")})
    engine.add_image(HOST_BASE)
    first, _, _ = run(engine, path, base_image=HOST_BASE, reuse=False)
    second, _, _ = run(engine, path, base_image=HOST_BASE, reuse=False)
    assert engine.tried == ["python3.12"]  # the second build remembered it
    assert first.spec.python_bin == second.spec.python_bin == "/usr/bin/python3.12"
    engine.remove_image(HOST_BASE, force=True)
    engine.add_image(HOST_BASE, {"rebuilt": "yes"})  # the same name, another image
    run(engine, path, base_image=HOST_BASE, reuse=False)
    assert engine.tried == ["python3.12", "python3.12"]
    assert len(os.listdir(hostcache.cache_dir() / "observed")) == 2
