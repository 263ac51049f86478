"""`mlbuild matrix refresh` against a local package index served on 127.0.0.1 from fixtures
(tests/fixtures/pypi): the JSON simple API, PEP 658 .metadata files, and a real tiny wheel read
through HTTP range requests."""

from __future__ import annotations

import re
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
import yaml
from click.testing import CliRunner

from builder.cli import main
from builder.matrix import MatrixDataError, load_matrix
from builder.recipe import Recipe
from builder.refresh import (
    SIMPLE_JSON,
    Index,
    build_from_metadata,
    default_index_url,
    http_fetch,
    parse_wheel_name,
    refresh_framework,
)
from builder.resolve import resolve

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "pypi"
DATA = Path(__file__).resolve().parent.parent.parent / "builder" / "data"


class _IndexHandler(BaseHTTPRequestHandler):
    """/simple/<project>/ -> index.json (or HTML when the server is told to), /files/<name>
    with Range support; records every request so tests can see what was read."""

    html_only = False
    requests: ClassVar[list[tuple[str, str]]] = []

    def log_message(self, *args: object) -> None:  # keep pytest's output clean
        pass

    def do_GET(self) -> None:
        type(self).requests.append((self.path, self.headers.get("Range", "")))
        m = re.fullmatch(r"/simple/([a-z0-9-]+)/", self.path)
        if m:
            page = FIXTURES / "simple" / m[1] / "index.json"
            if not page.is_file():
                return self._send(404, "text/plain", b"not found")
            if self.html_only:
                return self._send(200, "text/html", b"<html><body></body></html>")
            assert SIMPLE_JSON in (self.headers.get("Accept") or "")
            return self._send(200, SIMPLE_JSON, page.read_bytes())
        m = re.fullmatch(r"/files/([^/]+)", self.path)
        path = FIXTURES / "files" / m[1] if m else None
        if path is None or not path.is_file():
            return self._send(404, "text/plain", b"not found")
        body = path.read_bytes()
        rng = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range") or "")
        if not rng:
            return self._send(200, "application/octet-stream", body)
        size = len(body)
        if rng[1]:
            start, end = int(rng[1]), min(int(rng[2] or size - 1), size - 1)
        else:
            start, end = max(size - int(rng[2]), 0), size - 1
        self._send(206, "application/zip", body[start : end + 1], f"bytes {start}-{end}/{size}")

    def _send(self, status: int, ctype: str, body: bytes, content_range: str = "") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        if content_range:
            self.send_header("Content-Range", content_range)
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture()
def index_url() -> Iterator[str]:
    _IndexHandler.html_only = False
    _IndexHandler.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _IndexHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/simple/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture()
def data(tmp_path: Path) -> Path:
    """A data folder: the shipped cuda/bases files and the trimmed framework fixtures."""
    folder = tmp_path / "data"
    folder.mkdir()
    for name in ("cuda.yaml", "bases.yaml"):
        shutil.copy(DATA / name, folder / name)
    for name in ("pytorch.yaml", "sklearn.yaml"):
        shutil.copy(FIXTURES / "data" / name, folder / name)
    load_matrix.cache_clear()
    load_matrix(str(folder))  # the fixtures themselves are consistent data
    return folder


def _index(url: str) -> Index:
    return Index(url, http_fetch())


def test_sklearn_diff(index_url: str, data: Path) -> None:
    d = refresh_framework("sklearn", _index(index_url), data, today="2030-01-02")
    assert [(a.version, a.pythons, a.carried_from, a.todo) for a in d.added] == [
        ("1.6.0", ("3.9", "3.10", "3.11", "3.12", "3.13", "3.14"), "1.5.2", None)
    ]
    assert [(c.version, c.old_pythons, c.new_pythons) for c in d.changed] == [
        ("1.5.2", ("3.9", "3.10", "3.11", "3.12"), ("3.9", "3.10", "3.11", "3.12", "3.13"))
    ]
    # 1.3.0 is older than anything on file, 1.6.1rc1 is a pre-release, 1.4.1 has no wheel
    assert d.removed == ["1.4.2"]
    text = "\n".join(d.lines())
    assert "+ 1.6.0" in text and "~ 1.5.2" in text and "(+3.13)" in text and "- 1.4.2" in text
    assert d.has_changes


def test_write_keeps_comments_and_loads(index_url: str, data: Path) -> None:
    (data / "pytorch.yaml").unlink()  # sklearn alone: its refresh needs no human review
    before = (data / "sklearn.yaml").read_text()
    result = CliRunner().invoke(
        main,
        ["matrix", "refresh", "--framework", "sklearn", "--index-url", index_url,
         "--data-dir", str(data), "--write"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    after = (data / "sklearn.yaml").read_text()
    assert after != before
    for line in before.splitlines():
        if line.lstrip().startswith("#") or "KEEP-ME" in line:
            assert line in after  # hand-written comments survive
    assert '  - version: "1.6.0"  # carried from 1.5.2' in after
    assert "wheels also for 3.15 (no base image in bases.yaml)" in after
    doc = yaml.safe_load(after)
    assert [r["version"] for r in doc["releases"]] == ["1.6.0", "1.5.2", "1.5.1", "1.4.2"]
    checked = {s["what"][:12]: s["checked"] for s in doc["sources"]}
    assert checked["release list"] != "2020-01-01"  # the re-read source is renewed
    assert checked["hand-written"] == "2020-01-01"  # the others are not
    load_matrix.cache_clear()
    m = load_matrix(str(data))
    spec = resolve(Recipe(name="x", framework="sklearn", python="3.14", cuda="cpu"), m)
    assert spec.framework_version == "1.6.0"
    # a second refresh finds nothing to do
    again = refresh_framework("sklearn", _index(index_url), data)
    assert not again.has_changes and not again.added and not again.changed


def test_dry_run_writes_nothing(index_url: str, data: Path) -> None:
    before = {p.name: p.read_bytes() for p in data.iterdir()}
    result = CliRunner().invoke(
        main, ["matrix", "refresh", "--index-url", index_url, "--data-dir", str(data),
               "--framework", "sklearn", "--framework", "pytorch"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "nothing written" in result.output
    assert {p.name: p.read_bytes() for p in data.iterdir()} == before


def test_torch_default_variants_and_review(index_url: str, data: Path) -> None:
    d = refresh_framework("pytorch", _index(index_url), data, today="2030-01-02")
    added = {a.version: a for a in d.added}
    assert set(added) == {"2.9.1", "2.16.0"}  # not 2.17.0rc1, 1.11.0, or the yanked 2.9.2
    # a patch release: builds carried from its minor, default read from the wheel by range
    assert added["2.9.1"].carried_from == "2.9.0" and added["2.9.1"].todo is None
    assert added["2.9.1"].default_variant == "cu128"
    assert any(rng for path, rng in _IndexHandler.requests if "2.9.1-cp314" in path)
    # a new minor: carried from the newest older release, but flagged for review
    assert added["2.16.0"].carried_from == "2.9.0" and added["2.16.0"].todo
    assert added["2.16.0"].default_variant == "cu132"  # cuda-toolkit==13.2.3 (PEP 658)
    assert added["2.16.0"].pythons == ("3.11", "3.12", "3.13", "3.14")
    assert any("cu132" in n and "no variant" in n for n in d.notes)
    # an existing release whose default_variant disagrees with its PEP 658 metadata
    changes = {c.version: c for c in d.changed}
    assert (changes["2.5.1"].old_default, changes["2.5.1"].new_default) == ("cu121", "cu124")
    assert "2.9.0" not in changes  # metadata agrees with the data
    doc = yaml.safe_load(d.new_text)
    rels = {r["version"]: r for r in doc["releases"]}
    assert list(rels) == ["2.16.0", "2.9.1", "2.9.0", "2.5.1"]
    assert rels["2.9.1"]["companions"] == {}  # unknown: the resolver refuses rather than guess
    assert [v["name"] for v in rels["2.9.1"]["variants"]] == [v["name"] for v in rels["2.9.0"]["variants"]]
    assert "# KEEP-ME: a hand-written note above 2.5.1" in d.new_text
    # written, the data is refused until a human reviews 2.16.0
    (data / "pytorch.yaml").write_text(d.new_text)
    load_matrix.cache_clear()
    with pytest.raises(MatrixDataError, match=r"pytorch 2\.16\.0: needs review"):
        load_matrix(str(data))


def test_html_index_is_refused(index_url: str, data: Path) -> None:
    _IndexHandler.html_only = True
    result = CliRunner().invoke(
        main, ["matrix", "refresh", "--index-url", index_url, "--data-dir", str(data),
               "--framework", "sklearn"],
    )  # fmt: skip
    assert result.exit_code == 1
    assert "does not serve the JSON simple API" in result.output


def test_missing_data_file_and_unknown_project(index_url: str, data: Path) -> None:
    args = ["matrix", "refresh", "--index-url", index_url, "--data-dir", str(data)]
    result = CliRunner().invoke(main, [*args, "--framework", "tensorflow"])
    assert result.exit_code == 2 and "declares framework 'tensorflow'" in result.output
    shutil.copy(DATA / "tensorflow.yaml", data / "tensorflow.yaml")
    result = CliRunner().invoke(main, [*args, "--framework", "tensorflow"])
    assert result.exit_code == 1 and "tensorflow is not on the index" in result.output


def test_index_url_comes_from_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLBUILD_INDEX_URL", raising=False)
    monkeypatch.setenv("PIP_INDEX_URL", "http://mirror.invalid/simple")
    assert default_index_url() == "http://mirror.invalid/simple"
    assert default_index_url("http://127.0.0.1:1/simple") == "http://127.0.0.1:1/simple"


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("torch-2.5.1-cp312-cp312-manylinux1_x86_64.whl", ("2.5.1", {"3.12"}, True)),
        ("torch-2.5.1-cp312-none-macosx_11_0_arm64.whl", ("2.5.1", {"3.12"}, False)),
        (
            "scikit_learn-1.5.2-cp313-cp313-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
            ("1.5.2", {"3.13"}, True),
        ),
        ("torch-2.9.0-cp314-cp314t-manylinux_2_28_x86_64.whl", ("2.9.0", {"3.14"}, True)),
        ("jax-0.4.30-py3-none-any.whl", ("0.4.30", set(), False)),
        ("torch-2.6.0rc1-cp312-cp312-manylinux1_x86_64.whl", None),
        ("torch-2.5.1+cu124-cp312-cp312-linux_x86_64.whl", None),
        ("torch-2.5.1.tar.gz", None),
    ],
)
def test_parse_wheel_name(filename: str, expected: object) -> None:
    assert parse_wheel_name(filename) == expected


@pytest.mark.parametrize(
    ("requires", "expected"),
    [
        (["nvidia-cuda-runtime-cu11==11.7.99"], ("cu117", None)),
        (["nvidia-cuda-runtime-cu12==12.4.127", "nvidia-cudnn-cu12==9.1.0.70"], ("cu124", "9.1")),
        (["cuda-toolkit[cudart]==13.0.3", "nvidia-cudnn-cu13==9.19.0.56"], ("cu130", "9.19")),
        (["filelock", "typing-extensions>=4"], (None, None)),  # 1.12: CUDA inside the wheel
        (['nvidia-cuda-runtime-cu12==12.1.105; extra == "cuda"'], (None, None)),
    ],
)
def test_build_from_metadata(requires: list[str], expected: tuple[str | None, str | None]) -> None:
    text = "Metadata-Version: 2.1\nName: torch\n" + "".join(f"Requires-Dist: {r}\n" for r in requires)
    assert build_from_metadata(text) == expected
