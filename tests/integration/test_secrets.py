"""Secrets: canaries in every place a site puts credentials, searched for everywhere after a real
build and push.

- a registry password (MLBUILD_REGISTRY_PASSWORD, for `build --push` to an htpasswd registry);
- a private index token (`http://user:TOKEN@127.0.0.1:PORT/simple` as an extra index);
- a proxy password (HTTP_PROXY=http://user:PASSWORD@127.0.0.1:PORT);
- a marker line inside the site CA bundle (--ca-bundle).

The index and the proxy are one tiny local server that answers 404 to everything and records
what it was sent: pip falls back to the default index, and the test proves that the token and
the proxy password did reach the build's pip (so their absence elsewhere means something).
Searched: every place in PLACES (the image's files, the saved image, its history, labels and
environment, the printed and the saved Dockerfile, the build log, the JSON report, the push
record and the registry's stored blobs), one test each.
"""

from __future__ import annotations

import base64
import gzip
import http.server
import json
import os
import secrets
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import imagescan
import pytest
import registry_server as rs

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
TAG = secrets.token_hex(4)
REGISTRY_USER, REGISTRY_PASSWORD = "ci-bot", f"mlbcanary-registry-{TAG}"
INDEX_USER, INDEX_TOKEN = "idx", f"mlbcanary-index-{TAG}"
PROXY_USER, PROXY_PASSWORD = "px", f"mlbcanary-proxy-{TAG}"
CA_MARKER = f"mlbcanary-ca-{TAG}"


def _b64(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


# Each secret as written, and as HTTP basic auth would carry it.
CANARIES: dict[str, str] = {
    "registry password": REGISTRY_PASSWORD,
    "registry basic auth": _b64(REGISTRY_USER, REGISTRY_PASSWORD),
    "index token": INDEX_TOKEN,
    "index basic auth": _b64(INDEX_USER, INDEX_TOKEN),
    "proxy password": PROXY_PASSWORD,
    "proxy basic auth": _b64(PROXY_USER, PROXY_PASSWORD),
    "CA bundle marker": CA_MARKER,
}


class _Recorder(http.server.BaseHTTPRequestHandler):
    """An index and a proxy that know nothing: 404 for every request to it, headers kept.

    As a proxy it forwards requests for other hosts (apt's Debian mirror): BuildKit hands the
    proxy build arguments to every step in both spellings (HTTP_PROXY and http_proxy), so apt uses
    it too, and `--network host` is part of BuildKit's cache key, so apt's step runs here."""

    seen: ClassVar[list[dict[str, str]]] = []

    def do_GET(self) -> None:
        type(self).seen.append({"path": self.path, **{k.lower(): v for k, v in self.headers.items()}})
        host = urllib.parse.urlsplit(self.path).hostname if self.path.startswith("http://") else None
        if host and host != "127.0.0.1":
            self._forward()
            return
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _forward(self) -> None:
        direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with direct.open(urllib.request.Request(self.path), timeout=60) as answer:
                status, body = answer.status, answer.read()
        except urllib.error.HTTPError as exc:
            status, body = exc.code, b""
        except OSError:
            status, body = 502, b""
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module", params=["buildkit", "classic"])
def secret_build(
    request: pytest.FixtureRequest, bookworm_base: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """One build and push per builder: BuildKit gets pip.conf as a secret, the classic builder
    copies it into the builder stage; the same places are searched after each."""
    folder = tmp_path_factory.mktemp(f"secrets-{request.param}")
    _Recorder.seen.clear()  # what this builder's build sent, not the other's
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    registry = rs.start_registry(folder / "registry", user=REGISTRY_USER, password=REGISTRY_PASSWORD)
    try:
        from builder.settings import load_settings

        site_ca = load_settings().ca_bundle
        ca = folder / "corp-ca.pem"  # text outside PEM blocks is ignored by OpenSSL
        ca.write_bytes((site_ca.read_bytes() if site_ca else b"") + f"\n# {CA_MARKER}\n".encode())
        config = folder / "site.yaml"
        config.write_text(json.dumps({"trusted_hosts": [f"127.0.0.1:{port}"]}))
        recipe = folder / "secret-probe.yaml"
        recipe.write_text(
            "name: secret-probe\nframework: sklearn\nframework_version: '1.5'\npython: '3.11'\n"
            "cuda: cpu\npackages: [pandas==2.2.3]\n"
            f"image: {{repository: {registry.host}/team/secret-probe}}\n"
        )
        env = {
            **{k: v for k, v in os.environ.items() if "proxy" not in k.lower()},
            "MLBUILD_CONFIG": str(config),
            "MLBUILD_EXTRA_INDEX_URL": f"http://{INDEX_USER}:{INDEX_TOKEN}@127.0.0.1:{port}/simple",
            "HTTP_PROXY": f"http://{PROXY_USER}:{PROXY_PASSWORD}@127.0.0.1:{port}",
            "MLBUILD_REGISTRY_USER": REGISTRY_USER,
            "MLBUILD_REGISTRY_PASSWORD": REGISTRY_PASSWORD,
            "TMPDIR": str(folder),
        }

        def mlbuild(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "builder", *args], capture_output=True,
                                  text=True, cwd=ROOT, env=env, timeout=900)  # fmt: skip

        common = (
            "--base-image",
            bookworm_base,
            "--ca-bundle",
            str(ca),
            "--network",
            "host",
            "--push",
            "--builder",
            request.param,
        )
        # --json is quiet: the first run gives the log, the second (up to date) the JSON report
        built = mlbuild("build", str(recipe), *common, "--rebuild")
        assert built.returncode == 0, built.stderr[-4000:]
        assert f"builder: {request.param} " in built.stderr
        report = mlbuild("build", str(recipe), *common, "--json")
        assert report.returncode == 0, report.stderr[-4000:]
        printed = mlbuild("render", str(recipe), "--base-image", bookworm_base)
        saved = folder / "Dockerfile"
        mlbuild("render", str(recipe), "--base-image", bookworm_base, "-o", str(saved))
        yield {
            "result": json.loads(report.stdout), "log": built.stderr + built.stdout + report.stderr,
            "printed": printed.stdout,
            "saved": saved.read_text(), "record": recipe.with_suffix(".image.json"),
            "registry": registry, "requests": list(_Recorder.seen), "folder": folder,
        }  # fmt: skip
    finally:
        server.shutdown()
        registry.stop()


def test_the_secrets_reached_the_build(secret_build: dict[str, Any]) -> None:
    """Without this, their absence everywhere else would prove nothing."""
    seen = secret_build["requests"]
    assert seen, "pip never asked the private index"
    assert any(r.get("authorization") == "Basic " + CANARIES["index basic auth"] for r in seen)
    assert any(r.get("proxy-authorization") == "Basic " + CANARIES["proxy basic auth"] for r in seen)
    assert secret_build["record"].exists(), "the push wrote its record"


def _image(build: dict[str, Any]) -> str:
    return str(build["result"]["image_id"])


def _config(build: dict[str, Any], engine: Any, key: str) -> list[bytes]:
    return [json.dumps(engine.inspect(_image(build))["Config"].get(key)).encode()]


def _registry_blobs(build: dict[str, Any], engine: Any) -> list[bytes]:
    blobs = [b.read_bytes() for b in (build["registry"].folder / "data").rglob("data")]
    assert blobs, "the push stored nothing"
    return [gzip.decompress(b) if b[:2] == b"\x1f\x8b" else b for b in blobs]


# Every place a secret could land, and how to read it: one test each.
PLACES: dict[str, Callable[[dict[str, Any], Any], list[bytes]]] = {
    "every file of every layer": lambda b, e: [c for _, _, c in imagescan.layer_members(e, _image(b))],
    "the saved image (layer tars, config, manifest)": lambda b, e: [imagescan.image_tar(e, _image(b))],
    "the image history (engine API)": lambda b, e: [json.dumps(e.history(_image(b))).encode()],
    "the image labels": lambda b, e: _config(b, e, "Labels"),
    "the image environment": lambda b, e: _config(b, e, "Env"),
    "the printed Dockerfile": lambda b, e: [b["printed"].encode()],
    "the saved Dockerfile": lambda b, e: [b["saved"].encode()],
    "the build log": lambda b, e: [b["log"].encode()],
    "the JSON report": lambda b, e: [json.dumps(b["result"]).encode()],
    "the push record": lambda b, e: [b["record"].read_bytes()],
    "every blob the registry stored (decompressed)": _registry_blobs,
}


@pytest.mark.parametrize("place", PLACES)
def test_no_secret_in(place: str, secret_build: dict[str, Any], engine: Any) -> None:
    found = [name for name, value in CANARIES.items() for data in PLACES[place](secret_build, engine)
             if value.encode() in data]  # fmt: skip
    assert found == [], f"{', '.join(sorted(set(found)))} in {place}"


def test_proxy_arguments_stay_out_of_the_history_and_the_log_is_redacted(
    secret_build: dict[str, Any], engine: Any
) -> None:
    assert b"HTTP_PROXY" not in json.dumps(engine.history(_image(secret_build))).encode()
    assert "127.0.0.1" in secret_build["log"] and "***@" in secret_build["log"], "settings shown, redacted"


def test_no_context_left_behind(secret_build: dict[str, Any]) -> None:
    assert not list(secret_build["folder"].glob("mlbuild-context-*"))
