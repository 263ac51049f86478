"""Many images for real: a matrix of sklearn variants on Debian bases of three Python versions
(bullseye 3.9, bookworm 3.11, trixie 3.13) built in parallel, the shared-bytes figure held to
`docker system df -v`, and a second engine on a TCP loopback socket (build there, smoke there,
and --gpu-host: smoke only there).

Kept small: scikit-learn without extra packages, four variants, one build on the second engine.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import required_tools

pytestmark = pytest.mark.integration

SUITES = {"bullseye": "mlbuild-test/debian:bullseye", "trixie": "mlbuild-test/debian:trixie"}
RECIPE = """\
# Three Pythons on three Debian bases; two scikit-learn releases on bookworm share its layers.
name: many-skl
framework: sklearn
cuda: cpu
matrix:
  python: ["3.9", "3.11", "3.13"]
  framework_version: ["1.5", "1.6", "1.7"]
  exclude:
    - {python: "3.9", framework_version: "1.5"}
    - {python: "3.13", framework_version: "1.5"}
    - {python: "3.11", framework_version: "1.7"}
    - {python: "3.13", framework_version: "1.7"}
smoke:
  run:
    - python -c 'import sklearn; print(sklearn.__version__)'
"""
BUILT = {"py3.9-fw1.6", "py3.11-fw1.5", "py3.11-fw1.6", "py3.13-fw1.6"}
IMPOSSIBLE = "py3.9-fw1.7"  # scikit-learn 1.7 has no Python 3.9 wheels


def mlbuild(*args: str, env: dict[str, str] | None = None, timeout: int = 600) -> Any:
    proc = subprocess.run([sys.executable, "-m", "builder", *args], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})},
                          check=False)  # fmt: skip
    return proc


@pytest.fixture(scope="module")
def bases(engine, bookworm_base) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """bullseye and trixie bases made by `mlbuild base bootstrap` (about 30 s each, once)."""
    from builder.base import bootstrap

    for suite, tag in SUITES.items():
        if not engine.image_id(tag):
            bootstrap(engine, suite, tag, None, say=lambda _: None)
    return {**SUITES, "bookworm": bookworm_base}


@pytest.fixture(scope="module")
def recipe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("many") / "many-skl.yaml"
    path.write_text(RECIPE)
    return path


@pytest.fixture(scope="module")
def matrix_run(engine, bases, recipe: Path) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    proc = mlbuild("build", str(recipe), "-j", "4", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    doc["stderr"] = proc.stderr
    return doc


def test_matrix_builds_every_possible_variant(matrix_run: dict[str, Any], bases) -> None:  # type: ignore[no-untyped-def]
    by_id = {v["id"]: v for v in matrix_run["variants"]}
    assert set(by_id) == BUILT | {IMPOSSIBLE}
    assert by_id[IMPOSSIBLE]["result"] == "impossible" and "3.9" in by_id[IMPOSSIBLE]["reason"]
    for vid in BUILT:
        v = by_id[vid]
        assert v["result"] in ("built", "up-to-date"), v
        py = vid.split("-")[0][2:]
        assert any(f"-py{py}-cpu" in t for t in v["tags"]), v["tags"]
        if v["result"] == "built":
            assert v["smoke"]["passed"]
            assert v["smoke"]["probe"]["python"]["version"].startswith(py + ".")
    # each Python on the Debian suite that ships it
    labels = {vid: by_id[vid]["tags"][0] for vid in BUILT}
    assert "sklearn1.6.1-py3.9-cpu" in labels["py3.9-fw1.6"]
    assert "sklearn1.5.2-py3.11-cpu" in labels["py3.11-fw1.5"]


def test_strict_refuses_the_impossible_variant(recipe: Path) -> None:
    proc = mlbuild("build", str(recipe), "--strict", "--json")
    assert proc.returncode == 2
    assert f"many-skl:{IMPOSSIBLE}" in proc.stderr


def _df_table() -> dict[str, tuple[str, str]]:
    """`docker system df -v` as printed: image ID prefix -> (SIZE, SHARED SIZE)."""
    text = subprocess.run(["docker", "system", "df", "-v"], capture_output=True, text=True,
                          check=True, timeout=120).stdout  # fmt: skip
    rows: dict[str, tuple[str, str]] = {}
    section = text.split("Images space usage:")[1].split("Containers space usage:")[0]
    for line in section.strip().splitlines()[1:]:
        cols = re.split(r"\s{2,}", line.strip())
        # REPOSITORY TAG IMAGE-ID CREATED SIZE SHARED UNIQUE CONTAINERS
        if len(cols) >= 8:
            rows[cols[2]] = (cols[4], cols[5])
    return rows


def _bytes(human: str) -> float:
    """docker CLI sizes: decimal units, three significant digits (HumanSizeWithPrecision)."""
    m = re.match(r"^([\d.]+)\s*([kMGT]?B)$", human)
    assert m, human
    scale = {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}[m.group(2)]
    return float(m.group(1)) * scale


def test_shared_bytes_agree_with_docker_system_df(engine, matrix_run: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    from builder import layers

    share = matrix_run["sharing"]
    images = [v["image_id"] for v in matrix_run["variants"] if v["image_id"]]
    assert len(images) == 4
    # The two bookworm variants share at least the base and the runtime's python3 layer; the
    # other Pythons have bases of their own.
    base = int(engine.inspect("mlbuild-test/debian:bookworm")["Size"])
    assert share["shared_bytes"] >= base and share["shared_layers"] >= 2
    assert share["stored_bytes"] == share["total_bytes"] - share["saved_bytes"]
    assert matrix_run["df_agrees"] is True
    # ... and against the text of `docker system df -v` itself, another client's reading
    rows = layers.check_with_df(engine, images)
    table = _df_table()
    for row in rows:
        size, shared = table[row.image_id.split(":")[1][:12]]
        assert abs(_bytes(size) - row.size) <= max(row.size * 5e-3, 1e3), (size, row.size)
        assert abs(_bytes(shared) - row.shared) <= max(row.shared * 5e-3, 1e3), (shared, row)
    print(f"\nvariants share {share['shared_bytes'] / 1e6:.1f} MB in {share['shared_layers']} "
          f"layers; stored {share['stored_bytes'] / 1e6:.1f} MB for "
          f"{share['total_bytes'] / 1e6:.1f} MB of images")  # fmt: skip


def test_summary_table_on_stderr_free_stdout(recipe: Path, matrix_run: dict[str, Any]) -> None:
    proc = mlbuild("build", str(recipe), "-j", "4")  # everything up to date now: quick
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["VARIANT", "RESULT", "SIZE", "TIME", "TAGS"]
    assert sum("up-to-date" in line for line in lines) == 4
    assert any(line.startswith("shared ") for line in lines)
    assert "agree with `docker system df -v`" in proc.stdout
    assert f"skipped many-skl:{IMPOSSIBLE}" in proc.stdout
    # not a terminal: one plain line per change, no escape codes
    assert "\x1b[" not in proc.stderr and "many-skl:py3.11-fw1.6: up-to-date:" in proc.stderr


# ---- a second engine on a TCP loopback socket -------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _sh(*cmd: str) -> None:
    subprocess.run(cmd, check=False, capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def second_engine(engine, bases, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A second dockerd on tcp://127.0.0.1:PORT with its own bridge and NAT (so its build
    steps reach the package indexes), holding only the bookworm base (docker save | load)."""
    required_tools.root("a second engine (its own bridge and NAT rules)")
    dockerd, ip, iptables_ = (required_tools.tool(t) for t in ("dockerd", "ip", "iptables"))
    from builder.engine import Engine
    from builder.errors import EngineError

    root = tmp_path_factory.mktemp("engine2")
    port, bridge, net = _free_port(), "mlb-many0", "172.31.251"
    _sh(ip, "link", "add", bridge, "type", "bridge")
    _sh(ip, "addr", "add", f"{net}.1/24", "dev", bridge)
    _sh(ip, "link", "set", bridge, "up")
    rules = [
        ["-t", "nat", "POSTROUTING", "-s", f"{net}.0/24", "!", "-o", bridge, "-j", "MASQUERADE"],
        ["FORWARD", "-i", bridge, "-j", "ACCEPT"],
        ["FORWARD", "-o", bridge, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j",
         "ACCEPT"],
    ]  # fmt: skip

    def iptables(op: str, rule: list[str]) -> None:
        table = rule[:2] if rule[0] == "-t" else []
        rest = rule[2:] if table else rule
        _sh(iptables_, *table, op, *rest)

    for rule in rules:
        iptables("-I", rule)
    log = (root / "dockerd.log").open("w")
    proc = subprocess.Popen(
        [dockerd, "--data-root", str(root / "data"), "--exec-root", str(root / "exec"),
         "--pidfile", str(root / "pid"), "-H", f"tcp://127.0.0.1:{port}", "--bridge", bridge,
         "--iptables=false"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"tcp://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                other = Engine.connect(base_url=url, timeout=30)
                break
            except EngineError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.5)
        other.load(engine.save(bases["bookworm"]))
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        for rule in rules:
            iptables("-D", rule)
        _sh(ip, "link", "delete", bridge)
        shutil.rmtree(root / "data", ignore_errors=True)


def test_build_and_smoke_on_an_engine_through_docker_host(
    second_engine: str,
    recipe: Path,
    bases,  # type: ignore[no-untyped-def]
) -> None:
    from builder.engine import Engine

    proc = mlbuild("build", str(recipe), "--variant", "py3.11-fw1.6", "--json",
                   env={"DOCKER_HOST": second_engine})  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    [v] = json.loads(proc.stdout)["variants"]
    assert v["result"] == "built" and v["smoke"]["passed"]  # a fresh engine: built there
    other = Engine.connect(base_url=second_engine)
    assert other.image_id(v["image_id"]) == v["image_id"]
    tags = other.inspect(v["image_id"])["RepoTags"]
    assert any(t.endswith("sklearn1.6.1-py3.11-cpu") for t in tags)
    # the smoke test ran there too: its temporary containers were that engine's
    assert other.remove_temporary_containers() == 0


def test_gpu_host_sends_only_the_smoke_step(
    engine,
    second_engine: str,
    recipe: Path,
    matrix_run: dict[str, Any],  # type: ignore[no-untyped-def]
) -> None:
    from builder.engine import Engine

    other = Engine.connect(base_url=second_engine)
    proc = mlbuild("build", str(recipe), "--variant", "py3.13-fw1.6", "--gpu-host", second_engine,
                   "--rebuild", "--json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    [v] = json.loads(proc.stdout)["variants"]
    assert v["smoked_on"] == second_engine.replace("tcp://", "http://")
    assert v["smoke"]["passed"]
    assert v["smoke"]["probe"]["python"]["version"].startswith("3.13.")
    # built on the first engine, copied to the second only for the smoke test
    assert engine.image_id(v["image_id"]) == v["image_id"]
    assert other.image_id(v["image_id"]) == v["image_id"]
    assert other.image_id("mlbuild-test/debian:trixie") is None  # no base there: not built there
