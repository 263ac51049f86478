"""builder.contextdigest: what changes a build context's digest, what does not, and a large
file's digest remembered by its identity."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from builder import contextdigest, hostcache
from builder.contextdigest import BUILD_SETTINGS, context_digest


def make(folder: Path) -> Path:
    (folder / "mlbuild").mkdir(parents=True)
    (folder / "mlbuild" / "probe.py").write_text("print('probe')\n")
    (folder / "files" / "0").mkdir(parents=True)
    (folder / "files" / "0" / "serve.sh").write_text("#!/bin/sh\n")
    (folder / BUILD_SETTINGS).mkdir()
    (folder / BUILD_SETTINGS / "pip.conf").write_text("[global]\nindex-url = https://one.example/simple\n")
    (folder / "Dockerfile").write_text("FROM scratch\n")
    return folder


def test_the_same_files_elsewhere_give_the_same_digest(tmp_path: Path) -> None:
    assert context_digest(make(tmp_path / "a")) == context_digest(make(tmp_path / "b"))


@pytest.mark.parametrize(
    "change",
    [
        lambda f: (f / "mlbuild" / "probe.py").write_text("print('newer probe')\n"),
        lambda f: (f / "files" / "0" / "serve.sh").chmod(0o755),
        lambda f: (f / "files" / "0" / "serve.sh").rename(f / "files" / "0" / "run.sh"),
        lambda f: (f / "files" / "0" / "empty").mkdir(),
        lambda f: (f / "mlbuild" / "lock.json").write_text("{}\n"),
    ],
    ids=["content", "executable bit", "name", "an empty folder", "a new file"],
)
def test_what_the_build_copies_changes_the_digest(tmp_path: Path, change) -> None:  # type: ignore[no-untyped-def]
    folder = make(tmp_path / "ctx")
    before = context_digest(folder)
    change(folder)
    assert context_digest(folder) != before


def test_the_sites_build_settings_are_left_out(tmp_path: Path) -> None:
    folder = make(tmp_path / "ctx")
    before = context_digest(folder)
    (folder / BUILD_SETTINGS / "pip.conf").write_text("[global]\nindex-url = https://two.example/simple\n")
    (folder / BUILD_SETTINGS / "ca.crt").write_text("another CA\n")
    assert context_digest(folder) == before
    shutil.rmtree(folder / BUILD_SETTINGS)
    assert context_digest(folder) == before
    (folder / "files" / BUILD_SETTINGS).mkdir()  # only the context's own folder of that name
    assert context_digest(folder) != before


def test_a_large_files_digest_is_remembered_by_its_identity(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(contextdigest, "_REMEMBER_FROM", 4)
    wheel = tmp_path / "torch-2.13.0-cp311-none-any.whl"
    wheel.write_bytes(b"wheel bytes")
    first = contextdigest.file_sha256(wheel, wheel.stat().st_size)
    entry = hostcache.key("sha256", hostcache.file_identity(str(wheel)))
    assert hostcache.get("sha256", entry) == first
    hostcache.put("sha256", entry, "remembered")  # proof that the second call reads the cache
    assert contextdigest.file_sha256(wheel, wheel.stat().st_size) == "remembered"
    wheel.write_bytes(b"other wheel bytes")  # rewritten: another identity, read again
    assert contextdigest.file_sha256(wheel, wheel.stat().st_size) not in (first, "remembered")
    small = tmp_path / "a"
    small.write_bytes(b"abc")
    contextdigest.file_sha256(small, 3)
    assert hostcache.get("sha256", hostcache.key("sha256", hostcache.file_identity(str(small)))) is None


def test_sources_are_read_where_they_are_through_symlinks(tmp_path: Path) -> None:
    """The recipe's files and the wheels, not yet in the folder: their bytes count, as the
    copy the build makes would hold them (a copy follows symlinks)."""
    folder = make(tmp_path / "ctx")
    app = tmp_path / "app"
    (app / "conf").mkdir(parents=True)
    (tmp_path / "real.yaml").write_text("a: 1\n")
    (app / "conf" / "settings.yaml").symlink_to(tmp_path / "real.yaml")
    (app / "main.py").write_text("print(1)\n")
    sources = [("files/0/app", app)]
    before = context_digest(folder, sources=sources)
    assert before != context_digest(folder) and before == context_digest(folder, sources=sources)
    (tmp_path / "real.yaml").write_text("a: 2\n")  # the link's target changed: the copy would differ
    after_link = context_digest(folder, sources=sources)
    assert after_link != before
    (app / "main.py").write_text("print(2)\n")
    assert context_digest(folder, sources=sources) != after_link
    assert context_digest(folder, sources=[("files/1/app", app)]) != context_digest(folder, sources=sources)
