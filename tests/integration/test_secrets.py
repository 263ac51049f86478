"""Secrets: canaries in every place a site puts credentials, searched for everywhere after a real
build and push.

- a registry password (MLBUILD_REGISTRY_PASSWORD, for `build --push` to an htpasswd registry);
- a private index token (`http://user:TOKEN@127.0.0.1:PORT/simple` as an extra index);
- a proxy password (HTTP_PROXY=http://user:PASSWORD@127.0.0.1:PORT);
- a marker line inside the site CA bundle (--ca-bundle).

The index and the proxy are one tiny local server that answers 404 to everything and records
what it was sent: pip falls back to the default index, and the test proves that the token and
the proxy password did reach the build's pip (so their absence elsewhere means something).
Searched: every byte of the saved image (each layer's files, config, history, labels), the
history and labels through the engine API, the printed and the saved Dockerfile, the build's
log (stderr), its JSON report (stdout), the push record, and the registry's stored blobs.
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
from collections.abc import Iterator
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
NEEDLES = [v.encode() for v in CANARIES.values()]


class _Recorder(http.server.BaseHTTPRequestHandler):
    """An index and a proxy that know nothing: 404 for every request, headers kept."""

    seen: ClassVar[list[dict[str, str]]] = []

    def do_GET(self) -> None:
        type(self).seen.append({"path": self.path, **{k.lower(): v for k, v in self.headers.items()}})
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def found_in(haystacks: dict[str, bytes]) -> list[str]:
    return [f"{name} in {where}" for where, data in haystacks.items()
            for name, value in CANARIES.items() if value.encode() in data]  # fmt: skip


@pytest.fixture(scope="module")
def secret_build(bookworm_base: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    folder = tmp_path_factory.mktemp("secrets")
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
        )
        # --json is quiet: the first run gives the log, the second (up to date) the JSON report
        built = mlbuild("build", str(recipe), *common, "--rebuild")
        assert built.returncode == 0, built.stderr[-4000:]
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


def test_no_secret_in_the_image(secret_build: dict[str, Any], engine: Any) -> None:
    image = secret_build["result"]["image_id"]
    assert imagescan.find_in_image(engine, image, NEEDLES) == []
    raw = imagescan.image_tar(engine, image)  # every layer tar, the config, the manifest
    assert found_in({"saved image": raw}) == []


def test_no_secret_in_history_or_labels(secret_build: dict[str, Any], engine: Any) -> None:
    image = secret_build["result"]["image_id"]
    history = json.dumps(engine.history(image)).encode()
    attrs = engine.inspect(image)
    labels = json.dumps(attrs["Config"].get("Labels")).encode()
    env = json.dumps(attrs["Config"].get("Env")).encode()
    assert found_in({"history": history, "labels": labels, "env": env}) == []
    assert b"HTTP_PROXY" not in history, "proxy build arguments stay out of the history"


def test_no_secret_in_dockerfiles_logs_reports_or_records(secret_build: dict[str, Any]) -> None:
    places = {
        "printed Dockerfile": secret_build["printed"].encode(),
        "saved Dockerfile": secret_build["saved"].encode(),
        "build log": secret_build["log"].encode(),
        "JSON report": json.dumps(secret_build["result"]).encode(),
        "push record": secret_build["record"].read_bytes(),
    }
    assert found_in(places) == []
    assert "127.0.0.1" in secret_build["log"] and "***@" in secret_build["log"], "settings shown, redacted"


def test_no_secret_in_the_registry(secret_build: dict[str, Any]) -> None:
    """What a teammate pulls: every blob the registry stored, layers decompressed."""
    blobs = list((secret_build["registry"].folder / "data").rglob("data"))
    assert blobs
    places = {}
    for blob in blobs:
        data = blob.read_bytes()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        places[str(blob)] = data
    assert found_in(places) == []


def test_no_context_left_behind(secret_build: dict[str, Any]) -> None:
    assert not list(secret_build["folder"].glob("mlbuild-context-*"))
