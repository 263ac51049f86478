"""Real servers for sharing tests: Debian's `docker-registry` on a free 127.0.0.1 port (plain,
htpasswd auth, or TLS with a self-signed CA), and a second dockerd, the "teammate", with its
own data root on a TCP loopback port. Each has a stop(); fixtures call it in finalizers."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from required_tools import tool


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes], log: Path, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited ({proc.returncode}): {log.read_text()[-800:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {seconds} s: {log.read_text()[-800:]}")


def _stop(proc: subprocess.Popen[bytes] | None, grace: float = 15) -> None:
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def htpasswd_file(folder: Path, user: str, password: str) -> Path:
    """bcrypt entries, the only kind the registry accepts."""
    out = subprocess.run([tool("htpasswd"), "-Bbn", user, password], check=True, capture_output=True, text=True)
    path = folder / "htpasswd"
    path.write_text(out.stdout)
    return path


@dataclass(frozen=True)
class Tls:
    ca: Path
    cert: Path
    key: Path


def make_tls(folder: Path, name: str = "ca") -> Tls:
    """A self-signed CA and a server certificate for 127.0.0.1 and localhost signed by it."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca = folder / f"{name}.key", folder / f"{name}.crt"
    key, csr, cert = folder / "server.key", folder / "server.csr", folder / "server.crt"
    ext = folder / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n")

    def ossl(*args: str) -> None:
        subprocess.run([tool("openssl"), *args], check=True, capture_output=True)

    ossl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        f"/CN=mlbuild test {name}",
        "-keyout",
        str(ca_key),
        "-out",
        str(ca),
    )
    ossl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        str(key),
        "-out",
        str(csr),
    )
    ossl(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca),
        "-CAkey",
        str(ca_key),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        str(ext),
        "-out",
        str(cert),
    )
    return Tls(ca, cert, key)


@dataclass
class Registry:
    folder: Path
    port: int
    htpasswd: Path | None = None
    tls: Tls | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> Registry:
        http: dict[str, object] = {"addr": self.host, "secret": secrets.token_hex(16)}
        if self.tls:
            http["tls"] = {"certificate": str(self.tls.cert), "key": str(self.tls.key)}
        config: dict[str, object] = {
            "version": 0.1,
            "log": {"level": "warn"},
            "storage": {"filesystem": {"rootdirectory": str(self.folder / "data")}},
            "http": http,
        }
        if self.htpasswd:
            config["auth"] = {"htpasswd": {"realm": "mlbuild-test", "path": str(self.htpasswd)}}
        path = self.folder / "config.yml"
        path.write_text(yaml.safe_dump(config))
        log = self.folder / "registry.log"
        self.proc = subprocess.Popen(
            [tool("docker-registry"), "serve", str(path)],
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        _wait_port(self.port, self.proc, log, 20)
        return self

    def stop(self, kill: bool = False) -> None:
        if kill and self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        _stop(self.proc, 5)


def start_registry(
    folder: Path, *, user: str | None = None, password: str | None = None, tls: Tls | None = None
) -> Registry:
    folder.mkdir(parents=True, exist_ok=True)
    pw = htpasswd_file(folder, user, password) if user and password else None
    return Registry(folder, free_port(), pw, tls).start()


@dataclass
class Teammate:
    """A second Docker engine with an empty data root and a bridge of its own.

    Never `--bridge none`: a daemon started that way deletes the host's docker0, which the
    main engine's containers need. Pulls need no NAT (the daemon pulls, not a container).
    """

    folder: Path
    port: int
    bridge: str = ""
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def base_url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def start(self) -> Teammate:
        for sub in ("data", "exec"):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)
        self.bridge = self.bridge or f"mlbtm{secrets.token_hex(3)}"
        subnet, ip = _free_subnet(), tool("ip")
        for cmd in (
            [ip, "link", "add", self.bridge, "type", "bridge"],
            [ip, "addr", "add", f"{subnet}.1/24", "dev", self.bridge],
            [ip, "link", "set", self.bridge, "up"],
        ):
            subprocess.run(cmd, check=True, capture_output=True)
        log = self.folder / "dockerd.log"
        self.proc = subprocess.Popen(
            [
                tool("dockerd"),
                "--data-root",
                str(self.folder / "data"),
                "--exec-root",
                str(self.folder / "exec"),
                "--pidfile",
                str(self.folder / "dockerd.pid"),
                "-H",
                self.base_url,
                "--bridge",
                self.bridge,
                "--iptables=false",
                "--ip-masq=false",
            ],
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        _wait_port(self.port, self.proc, log, 60)
        deadline = time.monotonic() + 60
        env = {**os.environ, "DOCKER_HOST": self.base_url}
        while subprocess.run(["docker", "info"], env=env, capture_output=True).returncode != 0:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the teammate engine does not answer: {log.read_text()[-800:]}")
            time.sleep(0.3)
        return self

    def stop(self) -> None:
        _stop(self.proc, 20)
        if self.bridge:
            subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
        shutil.rmtree(self.folder, ignore_errors=True)


def _free_subnet() -> str:
    used = subprocess.run(["ip", "-4", "addr"], capture_output=True, text=True).stdout
    for x in range(200, 250):
        if f"172.31.{x}." not in used:
            return f"172.31.{x}"
    raise RuntimeError("no free 172.31.x.0/24 subnet for the teammate engine's bridge")


def start_teammate(folder: Path) -> Teammate:
    return Teammate(folder, free_port()).start()


def manifest_layers(host: str, repo: str, tag: str) -> list[tuple[str, int]]:
    """(digest, compressed size) of each layer of repo:tag, asked of the registry's HTTP API."""
    import json
    import urllib.request

    req = urllib.request.Request(
        f"http://{host}/v2/{repo}/manifests/{tag}",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        doc = json.load(resp)
    return [(layer["digest"], int(layer["size"])) for layer in doc["layers"]]


def pull_seen(engine: Any, ref: str) -> tuple[set[str], float]:
    """Pull ref on `engine`; returns the short IDs (12 hex digits) of the layers the engine
    said it already had, and the pull's seconds."""
    start = time.perf_counter()
    seen = pull_statuses(engine, ref)
    return {k for k, v in seen.items() if "Already exists" in v}, time.perf_counter() - start


def pull_statuses(engine: Any, ref: str) -> dict[str, set[str]]:
    """Pull ref on `engine`; returns what the engine said of each layer it named (short ID ->
    statuses: "Already exists", "Downloading", "Pull complete"...). A layer of the image the
    engine does not name at all (the empty layer, once it has it) was not fetched either."""
    seen: dict[str, set[str]] = {}

    def on_progress(ev: Any) -> None:
        seen.setdefault(ev.layer, set()).add(ev.status)

    engine.pull_ref(ref, on_progress=on_progress)
    return seen
