"""Identical bytes on another engine: one lock, built on the main engine (A) and on a second,
empty engine (B, the "teammate" of the sharing tests), gives the same image ID; pushed from
each engine to a registry, the same manifest digest.

Engine B has its own data root: no image, no build cache, nothing in common with A but the
base image, which is moved there with save/load (same image ID, checked) the way a site
without a registry would share it. The two builds run side by side (about 2-3 minutes in all
on an idle machine, the lock included). Every server and firewall rule is removed by a
finalizer.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import registry_server as rs  # this folder is on sys.path (pytest's default import mode)
import requests
from locking import lock_recipe

from builder.lock import lock_path, sbom_path
from builder.pipeline import BuildOptions, BuildResult, build

pytestmark = pytest.mark.integration

# A name of its own: the CI runs test_repro.py against the same engine at the same time, and
# its repro-tiny tags must not be this module's (the name is in the labels, so the IDs differ).
RECIPE = """\
name: repro-engines
framework: sklearn
framework_version: "1.5"
python: "3.11"
cuda: cpu
"""
SCHEMA2 = "application/vnd.docker.distribution.manifest.v2+json"


@pytest.fixture(scope="module")
def locked_recipe(engine: Any, bookworm_base: str, settings: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("repro-engines-a")
    return lock_recipe(folder, RECIPE, engine=engine, settings=settings, base_image=bookworm_base)


def _iptables(*args: str) -> None:
    subprocess.run(["iptables", *args], check=True, capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def teammate() -> Iterator[rs.Teammate]:
    """Engine B, with NAT for its bridge: `start_teammate` runs dockerd with --iptables=false
    --ip-masq=false, so without these rules its build containers reach neither Debian's archive
    nor PyPI (pulls from 127.0.0.1 need none: the daemon pulls, not a container). The rules name
    only B's bridge and subnet, and go again in the finalizer."""
    folder = Path(tempfile.mkdtemp(prefix="mlb-tm-", dir="/tmp"))  # short: socket paths
    engine_b = rs.start_teammate(folder)
    added: list[tuple[str, ...]] = []
    try:
        addr = subprocess.run(
            ["ip", "-4", "-o", "addr", "show", "dev", engine_b.bridge],
            check=True, capture_output=True, text=True,
        ).stdout.split()  # fmt: skip
        subnet = addr[addr.index("inet") + 1].rsplit(".", 1)[0] + ".0/24"
        rules: list[tuple[str, str, tuple[str, ...]]] = [
            ("nat", "POSTROUTING", ("-s", subnet, "!", "-o", engine_b.bridge, "-j", "MASQUERADE")),
            ("filter", "FORWARD", ("-i", engine_b.bridge, "-j", "ACCEPT")),
            ("filter", "FORWARD",
             ("-o", engine_b.bridge, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT")),
        ]  # fmt: skip
        for table, chain, rule in rules:
            _iptables("-t", table, "-I", chain, *rule)
            added.append(("-t", table, "-D", chain, *rule))
        yield engine_b
    finally:
        for rule in reversed(added):
            subprocess.run(["iptables", *rule], capture_output=True, timeout=30)
        engine_b.stop()


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[rs.Registry]:
    reg = rs.start_registry(tmp_path_factory.mktemp("repro-registry"))
    yield reg
    reg.stop()


@dataclass(frozen=True)
class Built:
    result: BuildResult
    raw_id: str  # the classic builder's own image, before normalisation
    seconds: float
    sbom: bytes


def _build(engine: Any, settings: Any, recipe: Path) -> Built:
    said: list[str] = []
    started = time.monotonic()
    options = BuildOptions(locked=True, reuse=False, run_smoke=False)
    result = build(recipe, engine=engine, settings=settings, options=options, say=said.append)
    raw = next(line.split()[1] for line in said if line.startswith("normalised "))
    return Built(result, raw, time.monotonic() - started, sbom_path(recipe).read_bytes())


@pytest.fixture(scope="module")
def builds(
    engine: Any,
    settings: Any,
    locked_recipe: Path,
    bookworm_base: str,
    teammate: rs.Teammate,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Built, Built, Any]]:
    """The same lock built on A and on B, side by side; each build in a folder of its own (a
    locked build writes its SBOM beside the lock), the recipe and lock copied byte for byte."""
    from builder.engine import Engine

    engine_b = Engine.connect(base_url=teammate.base_url)
    assert engine_b.image_id(bookworm_base) is None  # an empty engine: nothing cached there
    started = time.monotonic()
    engine_b.load(engine.save(bookworm_base))  # streamed from A's engine into B's
    base_id = engine.image_id(bookworm_base)
    assert base_id and engine_b.image_id(bookworm_base) == base_id, "the base must be the same image on B"
    print(f"base {base_id} moved to B: {time.monotonic() - started:.1f} s")

    recipe_b = tmp_path_factory.mktemp("repro-engines-b") / locked_recipe.name
    shutil.copy(locked_recipe, recipe_b)
    shutil.copy(lock_path(locked_recipe), lock_path(recipe_b))
    with ThreadPoolExecutor(2) as pool:
        on_a = pool.submit(_build, engine, settings, locked_recipe)
        on_b = pool.submit(_build, engine_b, settings, recipe_b)
        a = on_a.result()
        try:
            b = on_b.result()
        except BaseException:
            _untag(engine, a)
            raise
    print(f"built on A in {a.seconds:.1f} s: {a.result.image_id} (raw {a.raw_id})")
    print(f"built on B in {b.seconds:.1f} s: {b.result.image_id} (raw {b.raw_id})")
    try:
        yield a, b, engine_b
    finally:
        _untag(engine, a)  # B's image goes with its engine


def _untag(engine: Any, built: Built) -> None:
    for ref in built.result.tags:  # the last tag removes the image
        engine.remove_image(ref)


def test_same_lock_gives_the_same_image_id_on_another_engine(builds: tuple[Built, Built, Any]) -> None:
    a, b, engine_b = builds
    if b.result.image_id != a.result.image_id:  # say where: B's image next to A's, compared
        from builder.engine import Engine
        from builder.imagediff import diff_images

        engine_a = Engine.connect()
        engine_a.load(engine_b.save(b.result.image_id))
        try:
            where = diff_images(engine_a, a.result.image_id, b.result.image_id).lines()
        finally:
            engine_a.remove_image(b.result.image_id, force=True)
        pytest.fail("the same lock gave another image on B:\n" + "\n".join(where[:60]))
    # the control: what each engine's classic builder made before normalisation differs
    assert a.raw_id != b.raw_id
    assert a.sbom == b.sbom  # and the SBOM each build wrote beside its lock is the same file


def _manifest(host: str, path: str, tag: str) -> tuple[str, dict[str, Any]]:
    """Digest and document as the registry serves them, read with plain HTTP (not mlbuild's
    client); the digest is checked against the bytes."""
    r = requests.get(f"http://{host}/v2/{path}/manifests/{tag}", headers={"Accept": SCHEMA2}, timeout=30)
    r.raise_for_status()
    digest = "sha256:" + hashlib.sha256(r.content).hexdigest()
    assert r.headers.get("Docker-Content-Digest") == digest
    return digest, json.loads(r.content)


def test_pushed_from_either_engine_the_registry_digest_is_the_same(
    builds: tuple[Built, Built, Any], engine: Any, registry: rs.Registry
) -> None:
    a, b, engine_b = builds
    pushed = {}
    for side, eng, built in (("a", engine, a), ("b", engine_b, b)):
        repository = f"{registry.host}/repro/engine-{side}"
        eng.tag(built.result.image_id, repository, "locked")
        started = time.monotonic()
        try:
            pushed[side] = eng.push(repository, "locked")
        finally:
            eng.remove_image(f"{repository}:locked")  # untag only: other tags keep the image
        print(f"pushed from {side.upper()} in {time.monotonic() - started:.1f} s: {pushed[side]}")
    digest_a, doc_a = _manifest(registry.host, "repro/engine-a", "locked")
    digest_b, doc_b = _manifest(registry.host, "repro/engine-b", "locked")
    print("layers:", " ".join(layer["digest"][:19] for layer in doc_a["layers"]))
    assert (digest_a, digest_b) == (pushed["a"], pushed["b"])
    assert doc_a["config"]["digest"] == a.result.image_id
    assert digest_b == digest_a
    assert doc_b == doc_a
