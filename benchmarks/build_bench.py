"""Build benchmarks for mlbuild, every figure measured against a reference in the same run.

    python benchmarks/build_bench.py                 # everything (about 10 minutes)
    python benchmarks/build_bench.py --skip share    # leave out a section (see below)
    python benchmarks/build_bench.py --docs benchmarks/results/2026-05-10.json   # docs only

Sections (each prints ratios; all land in benchmarks/results/<date>.json and docs/benchmarks.md):
  cold     cold `mlbuild build` of each buildable example recipe: time and image size, against a
           naive one-stage Dockerfile built in the same run (apt-get install python3 python3-venv
           python3-pip, pip install, no cleanup) and against the payload (base image size plus
           the installed files: the venv and the Debian packages the image adds to its base);
  floor    the cold build against pip installing the same pinned set into a fresh virtual
           environment on this host (the same index and CA settings, no pip cache);
  rebuild  no-op rebuild and one-package-changed rebuild against a plain `docker build` of the
           same rendered context with a warm cache;
  share    bytes a teammate's engine downloads for the one-package-changed image against the
           whole image (Debian's docker-registry on 127.0.0.1, a second dockerd:
           tests/integration/registry_server.py); against the changed distributions' own
           bytes, and for an added package too: benchmarks/layer_share.py;
  cli      `mlbuild --help`, `mlbuild resolve`, `mlbuild render` against `python -c pass`.

Cold, without touching anyone else's cache: the run makes its own base image, the given base
plus one LABEL naming the run (no bytes added), so no layer cached by earlier builds can match;
the classic builder's cache is its intermediate images, and they all descend from that base.
At the end the run removes exactly the images that descend from its base (and the base),
never the base it was given nor anything else. Images are tagged mlbuild-bench/*.

Needs root (the teammate engine makes a network bridge), a Docker engine, docker-registry and
the base image (default mlbuild-test/debian:bookworm, made by `mlbuild base bootstrap`).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import os
import platform
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
DOCS = ROOT / "docs" / "benchmarks.md"
SECTIONS = ("cold", "floor", "rebuild", "share", "cli")
# Example recipes and why some cannot be built here.
RECIPES = {
    "sklearn-cpu": None,
    "pytorch-cpu": "it resolves to a torch +cpu build from the PyTorch CPU index, and mlbuild has "
    "no wheelhouse option yet that would let a build use the torch wheel on this host's disk",
    "pytorch-gpu": "several GB of CUDA wheels; built on GPU machines only",
    "tensorflow-gpu": "several GB of CUDA wheels; built on GPU machines only",
    "jax-gpu": "several GB of CUDA wheels; built on GPU machines only",
}
ENV = {**os.environ, "DOCKER_BUILDKIT": "0"}  # the classic builder, as mlbuild uses


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def sh(
    cmd: list[str],
    *,
    env: dict[str, str] | None = None,
    check: bool = True,
    cwd: Path = ROOT,
    input_text: str | None = None,
) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(cmd, capture_output=True, text=True, env=env or ENV, cwd=cwd, input=input_text)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}):\n{(r.stderr or r.stdout)[-3000:]}")
    return r


def timed(cmd: list[str], **kw: Any) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.perf_counter()
    r = sh(cmd, **kw)
    return time.perf_counter() - start, r


def mlbuild_cmd() -> list[str]:
    found = shutil.which("mlbuild")
    return [found] if found else [sys.executable, "-m", "builder"]


def image_size(ref: str) -> int:
    return int(sh(["docker", "image", "inspect", "--format", "{{.Size}}", ref]).stdout.strip())


def docker_build(context: Path, tag: str | None = None) -> tuple[float, str]:
    """A plain `docker build` (classic builder); returns seconds and the image ID."""
    cmd = ["docker", "build", "-q", "--force-rm", *(["-t", tag] if tag else []), str(context)]
    seconds, r = timed(cmd)
    return seconds, r.stdout.strip().splitlines()[-1]


def ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None


# -- the run's own images ------------------------------------------------------------------------
@dataclasses.dataclass
class Run:
    run_id: str
    given_base: str
    base: str  # the run's own base: given base + a LABEL
    base_id: str = ""

    @property
    def repo_prefix(self) -> str:
        return f"mlbuild-bench/{self.run_id}"


def make_run_base(given: str, run_id: str) -> Run:
    run = Run(run_id, given, f"mlbuild-bench/base:{run_id}")
    with tempfile.TemporaryDirectory(prefix="mlbuild-bench-base-") as tmp:
        # The suite label is overwritten: mlbuild falls back to the newest image labelled with
        # a suite when a build's base cannot be pulled, and other users' builds on this engine
        # must never pick this run's images (which all inherit the label) as their base.
        (Path(tmp) / "Dockerfile").write_text(
            f'FROM {given}\nLABEL org.mlbuild.bench.run={run_id} org.mlbuild.base.suite="none (benchmark)"\n'
        )
        sh(["docker", "build", "-q", "-t", run.base, tmp])
    run.base_id = sh(["docker", "image", "inspect", "--format", "{{.Id}}", run.base]).stdout.strip()
    return run


def cleanup(run: Run) -> int:
    """Remove the images that descend from the run's base, leaves first, then the base."""
    ids = sh(["docker", "images", "-aq", "--no-trunc"]).stdout.split()
    if not ids:
        return 0
    info = json.loads(sh(["docker", "image", "inspect", *ids]).stdout)
    parent = {i["Id"]: i.get("Parent") or "" for i in info}
    tags = {i["Id"]: i.get("RepoTags") or [] for i in info}

    def descends(image: str) -> bool:
        seen = 0
        while image and seen < 500:
            if image == run.base_id:
                return True
            image, seen = parent.get(image, ""), seen + 1
        return False

    mine = [i for i in parent if i != run.base_id and descends(i)]
    ours = (f"{run.repo_prefix}/", f"mlbuild-bench/base:{run.run_id}")
    foreign = {i: [t for t in tags[i] if not t.startswith(ours) and run.run_id not in t] for i in mine}
    # A failed step's stopped container outlives the build and holds its image.
    containers = sh(["docker", "ps", "-aq", "--no-trunc", "--filter", "status=exited"]).stdout.split()
    if containers:
        for c in json.loads(sh(["docker", "container", "inspect", *containers]).stdout):
            if c.get("Image") in mine and not foreign[c["Image"]]:
                sh(["docker", "rm", c["Id"]], check=False)
    depth = {i: _depth(i, parent) for i in mine}
    for image in sorted(mine, key=lambda i: -depth[i]):
        if foreign[image]:  # someone else's image on this run's base: never removed
            log(f"left {image[:19]} ({', '.join(foreign[image])}): not made by this run")
            continue
        for t in tags[image]:
            sh(["docker", "rmi", t], check=False)
        sh(["docker", "rmi", image], check=False)
    sh(["docker", "rmi", run.base], check=False)
    sh(["docker", "rmi", run.base_id], check=False)
    left = set(sh(["docker", "images", "-aq", "--no-trunc"]).stdout.split())
    return sum(1 for i in [*mine, run.base_id] if i not in left)


def _depth(image: str, parent: dict[str, str]) -> int:
    n = 0
    while parent.get(image):
        image, n = parent[image], n + 1
    return n


def bench_recipe(src: Path, run: Run, folder: Path, change: str | None = None, suffix: str = "") -> Path:
    """A copy of the recipe whose images go to mlbuild-bench/...; `change` replaces the pin of
    one package (name==version) or adds it."""
    doc = yaml.safe_load(src.read_text())
    doc["image"] = {"repository": f"{run.repo_prefix}/{doc['name']}"}
    if change:
        name = change.split("==")[0].lower()
        pkgs = [p for p in doc.get("packages") or [] if p.split("=")[0].split("<")[0].split(">")[0].lower() != name]
        doc["packages"] = [*pkgs, change]
    path = folder / f"{src.stem}{suffix}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def rendered_context(recipe: Path, base: str, folder: Path) -> Any:
    """The build context mlbuild would use for `recipe` on `base`: for plain `docker build`."""
    from builder.recipe import load_recipe
    from builder.render import write_context
    from builder.resolve import load_and_resolve
    from builder.settings import load_settings

    _, spec = load_and_resolve(recipe, base)
    spec = dataclasses.replace(spec, base_image=base)
    folder.mkdir(parents=True, exist_ok=True)
    write_context(spec, folder, load_recipe(recipe).folder, load_settings())
    return spec


def naive_context(spec: Any, folder: Path) -> None:
    """What a person writes by hand: one stage, no cleanup. The same pip settings (CA, index)
    as mlbuild's, since without them pip cannot reach the index from a build on this host."""
    from builder.settings import load_settings

    folder.mkdir(parents=True, exist_ok=True)
    load_settings().write_build_settings(folder / "build-settings")
    pins = " ".join(spec.packages)
    (folder / "Dockerfile").write_text(
        f"FROM {spec.base_image}\n"
        "RUN apt-get update && apt-get install -y python3 python3-venv python3-pip\n"
        "COPY build-settings/ /tmp/mlbuild-build/\n"
        "ENV PIP_CONFIG_FILE=/tmp/mlbuild-build/pip.conf\n"
        "RUN python3 -m venv /opt/venv\n"
        f"RUN /opt/venv/bin/pip install {pins}\n"
        'ENV PATH=/opt/venv/bin:$PATH\nCMD ["python"]\n'
    )


# -- sections ------------------------------------------------------------------------------------
def payload(image: str, base: str) -> dict[str, int]:
    """Base size plus what the image installs on it: the venv and the added Debian packages."""
    from builder.spec import VENV

    def run(ref: str, *cmd: str) -> str:
        return sh(
            [
                "docker",
                "run",
                "--rm",
                "--network",
                "none",
                "--user",
                "0",
                "--entrypoint",
                cmd[0],
                ref,
                *cmd[1:],
            ]
        ).stdout

    venv = int(run(image, "du", "-sb", VENV).split()[0])
    fmt = "${Package}\t${Installed-Size}\n"

    def pkgs(ref: str) -> dict[str, int]:
        out = {}
        for line in run(ref, "dpkg-query", "-W", "-f", fmt).splitlines():
            name, _, size = line.partition("\t")
            out[name] = int(size or 0) * 1024  # Installed-Size is in KiB
        return out

    in_base, in_image = pkgs(base), pkgs(image)
    apt = sum(size for name, size in in_image.items() if name not in in_base)
    base_size = image_size(base)
    return {
        "base_bytes": base_size,
        "venv_bytes": venv,
        "apt_added_bytes": apt,
        "payload_bytes": base_size + venv + apt,
        "apt_added_packages": len(set(in_image) - set(in_base)),
    }


def section_cold(run: Run, recipe: Path, work: Path) -> dict[str, Any]:
    ml = mlbuild_cmd()
    log(f"cold mlbuild build of {recipe.name} (no smoke test, as the plain builds have none)")
    seconds, r = timed([*ml, "build", str(recipe), "--base-image", run.base, "--no-smoke", "--json"])
    built = json.loads(r.stdout)
    log(f"  {seconds:.1f} s, {built['size_bytes'] / 1e6:.1f} MB")
    image = built["image_id"]
    smoke_s, _ = timed([*ml, "smoke", image, "--gpu", "off"])
    spec = rendered_context(recipe, run.base, work / "ctx-cold")
    log("cold naive one-stage build of the same packages")
    naive_context(spec, work / "naive")
    naive_s, naive_id = docker_build(work / "naive", f"{run.repo_prefix}/naive:{recipe.stem}")
    naive_size = image_size(naive_id)
    log(f"  {naive_s:.1f} s, {naive_size / 1e6:.1f} MB")
    pay = payload(image, run.base)
    out = {
        "recipe": recipe.stem,
        "packages": list(spec.packages),
        "mlbuild_seconds": round(seconds, 1),
        "mlbuild_size_bytes": built["size_bytes"],
        "mlbuild_smoke_seconds": round(smoke_s, 1),
        "naive_seconds": round(naive_s, 1),
        "naive_size_bytes": naive_size,
        **pay,
        "time_vs_naive": ratio(seconds, naive_s),
        "size_vs_naive": ratio(built["size_bytes"], naive_size),
        "size_vs_payload": ratio(built["size_bytes"], pay["payload_bytes"]),
        "naive_size_vs_payload": ratio(naive_size, pay["payload_bytes"]),
        "image_id": image,
    }
    return out


def section_floor(spec_recipe: Path, run: Run, work: Path, cold: dict[str, Any] | None) -> dict[str, Any]:
    """pip into a fresh venv on the host: the same two installs as the image, same settings."""
    from builder.settings import load_settings

    spec = rendered_context(spec_recipe, run.base, work / "ctx-floor")
    ctx = work / "ctx-floor" / "mlbuild"
    settings_dir = work / "floor-settings"
    load_settings().write_build_settings(settings_dir)
    conf = settings_dir / "pip.conf"
    text = conf.read_text().replace("/tmp/mlbuild-build/ca.crt", str(settings_dir / "ca.crt"))
    conf.write_text(text)
    # Only the build's settings: no host pip config, find-links or cache.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=str(conf), PIP_NO_CACHE_DIR="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    venv = work / "floor-venv"
    python = f"python{spec.python}"
    if not shutil.which(python):
        return {"skipped": f"{python} is not on this host"}
    log(f"floor: pip install of the same pins into a fresh venv ({python})")
    venv_s, _ = timed([python, "-m", "venv", str(venv)], env=env)
    pip = str(venv / "bin" / "pip")
    pip_s = 0.0
    if spec.framework_requirement:
        s, _ = timed([pip, "install", "-r", str(ctx / "requirements-framework.txt")], env=env)
        pip_s += s
    if spec.requirements:
        s, _ = timed(
            [
                pip,
                "install",
                "-c",
                str(ctx / "constraints.txt"),
                "-r",
                str(ctx / "requirements.txt"),
            ],
            env=env,
        )
        pip_s += s
    venv_bytes = int(sh(["du", "-sb", str(venv)]).stdout.split()[0])
    shutil.rmtree(venv, ignore_errors=True)
    out: dict[str, Any] = {
        "python": python,
        "venv_seconds": round(venv_s, 1),
        "pip_seconds": round(pip_s, 1),
        "floor_seconds": round(venv_s + pip_s, 1),
        "host_venv_bytes": venv_bytes,
    }
    if cold:
        out["cold_vs_floor"] = ratio(cold["mlbuild_seconds"], venv_s + pip_s)
        out["naive_vs_floor"] = ratio(cold["naive_seconds"], venv_s + pip_s)
    log(f"  {venv_s + pip_s:.1f} s")
    return out


def section_rebuild(
    run: Run, src: Path, recipe: Path, work: Path, runs: int, changes: tuple[str, str]
) -> dict[str, Any]:
    ml = mlbuild_cmd()
    build = [*ml, "build", str(recipe), "--base-image", run.base, "--no-smoke", "--json"]
    timed(build)  # makes sure the image exists (a no-op after the cold section)
    ctx = work / "ctx-rebuild"
    rendered_context(recipe, run.base, ctx)
    docker_build(ctx)  # the plain build's cache for exactly this context
    log(f"no-op rebuild: mlbuild build vs docker build, warm cache, median of {runs}")
    ml_s, dk_s = [], []
    for _ in range(runs):  # interleaved, so load from other users hits both alike
        s, r = timed(build)
        if not json.loads(r.stdout).get("up_to_date"):
            raise RuntimeError("the no-op mlbuild build was not up to date")
        ml_s.append(s)
        dk_s.append(docker_build(ctx)[0])
    noop_ml, noop_dk = statistics.median(ml_s), statistics.median(dk_s)
    log(f"one-package-changed rebuild: {changes[0]} (mlbuild) / {changes[1]} (docker build)")
    changed = bench_recipe(src, run, work, changes[0], "-changed")
    changed_s, r = timed([*ml, "build", str(changed), "--base-image", run.base, "--no-smoke", "--json"])
    changed_image = json.loads(r.stdout)
    other = bench_recipe(src, run, work, changes[1], "-changed-docker")
    rendered_context(other, run.base, work / "ctx-changed-docker")
    changed_dk, _ = docker_build(work / "ctx-changed-docker")
    return {
        "runs": runs,
        "noop_mlbuild_seconds": round(noop_ml, 3),
        "noop_docker_seconds": round(noop_dk, 3),
        "noop_mlbuild_all": [round(x, 3) for x in ml_s],
        "noop_docker_all": [round(x, 3) for x in dk_s],
        "noop_vs_docker": ratio(noop_ml, noop_dk),
        "changed_package_mlbuild": changes[0],
        "changed_package_docker": changes[1],
        "changed_mlbuild_seconds": round(changed_s, 1),
        "changed_docker_seconds": round(changed_dk, 1),
        "changed_vs_docker": ratio(changed_s, changed_dk),
        "changed_image_id": changed_image["image_id"],
        "changed_recipe": str(changed),
    }


def section_share(run: Run, original: str, changed: str, work: Path) -> dict[str, Any]:
    """Push the original and the changed image; the teammate pulls one, then the other."""
    sys.path[:0] = [str(ROOT / "tests" / "integration"), str(ROOT / "tests")]  # registry_server, required_tools
    from registry_server import manifest_layers, start_registry, start_teammate

    from builder.engine import Engine

    if os.geteuid() != 0:
        return {"skipped": "needs root: the teammate engine makes a network bridge"}
    if not shutil.which("docker-registry"):
        return {"skipped": "docker-registry is not installed (apt-get install docker-registry)"}
    registry = start_registry(work / "registry")
    teammate = None
    try:
        teammate = start_teammate(Path(tempfile.mkdtemp(prefix="mlbuild-bench-teammate-")))
        repo = f"{registry.host}/bench/{run.run_id}"
        refs = {}
        for name, image in (("v1", original), ("v2", changed)):
            ref = f"{repo}:{name}"
            sh(["docker", "tag", image, ref])
            log(f"push {name} to the local registry")
            refs[name] = (ref, timed(["docker", "push", ref])[0])
        mate = Engine.connect(base_url=teammate.base_url)
        out: dict[str, Any] = {}
        for name in ("v1", "v2"):
            log(f"teammate pulls {name}")
            seen: dict[str, set[str]] = {}
            totals: dict[str, int] = {}

            def on_progress(ev: Any, seen: dict[str, set[str]] = seen, totals: dict[str, int] = totals) -> None:
                seen.setdefault(ev.layer, set()).add(ev.status)
                if ev.total:
                    totals[ev.layer] = max(totals.get(ev.layer, 0), int(ev.total))

            start = time.perf_counter()
            mate.pull_ref(refs[name][0], on_progress=on_progress)
            pull_s = time.perf_counter() - start
            layers = manifest_layers(registry.host, f"bench/{run.run_id}", name)
            existed = {k for k, v in seen.items() if "Already exists" in v}
            downloaded = sum(size for digest, size in layers if digest[7:19] not in existed)
            out[name] = {
                "push_seconds": round(refs[name][1], 1),
                "pull_seconds": round(pull_s, 1),
                "layers": len(layers),
                "compressed_bytes": sum(s for _, s in layers),
                "downloaded_bytes": downloaded,
                "layers_already_there": len(existed),
                "progress_total_bytes": sum(totals.values()),
            }
        v1 = dict(manifest_layers(registry.host, f"bench/{run.run_id}", "v1"))
        v2 = manifest_layers(registry.host, f"bench/{run.run_id}", "v2")
        changed_bytes = sum(size for digest, size in v2 if digest not in v1)
        out["changed_layers"] = sum(1 for digest, _ in v2 if digest not in v1)
        out["changed_layer_bytes"] = changed_bytes
        out["downloaded_vs_whole_image"] = ratio(out["v2"]["downloaded_bytes"], out["v2"]["compressed_bytes"])
        out["changed_layer_sizes"] = [
            {"created_by": h["CreatedBy"][-90:], "bytes": h["Size"]} for h in history(changed) if h["Size"]
        ][:8]
        for name in ("v1", "v2"):
            sh(["docker", "rmi", refs[name][0]], check=False)
        return out
    finally:
        if teammate:
            teammate.stop()
        registry.stop()
        shutil.rmtree(work / "registry", ignore_errors=True)


def history(image: str) -> list[dict[str, Any]]:
    text = sh(["docker", "history", "--no-trunc", "--format", "{{json .}}", image]).stdout
    rows = [json.loads(line) for line in text.splitlines()]
    out = []
    for r in rows:
        out.append({"CreatedBy": r.get("CreatedBy", ""), "Size": _bytes(r.get("Size", "0B"))})
    return out


def _bytes(text: str) -> int:
    units = {"kB": 1e3, "MB": 1e6, "GB": 1e9, "B": 1}
    for unit, mult in units.items():
        if text.endswith(unit):
            return int(float(text[: -len(unit)]) * mult)
    return 0


def section_cli(n: int) -> dict[str, Any]:
    ml = mlbuild_cmd()
    recipe = str(ROOT / "recipes" / "sklearn-cpu.yaml")
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "mlbuild --help": [*ml, "--help"],
        "mlbuild resolve": [*ml, "resolve", recipe],
        "mlbuild render": [*ml, "render", recipe],
    }
    for cmd in commands.values():  # warm the page cache once
        sh(cmd)
    times: dict[str, list[float]] = {k: [] for k in commands}
    log(f"CLI latency, median of {n}, interleaved")
    for _ in range(n):
        for k, cmd in commands.items():
            times[k].append(timed(cmd)[0])
    med = {k: statistics.median(v) for k, v in times.items()}
    bare = med["python -c pass"]
    return {
        "runs": n,
        "median_ms": {k: round(v * 1000, 1) for k, v in med.items()},
        "over_bare_ms": {k: round((v - bare) * 1000, 1) for k, v in med.items() if k != "python -c pass"},
        "vs_bare": {k: ratio(v, bare) for k, v in med.items() if k != "python -c pass"},
    }


# -- machine, report -----------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem = int(Path("/proc/meminfo").read_text().split()[1]) * 1024
    info = json.loads(sh(["docker", "info", "--format", "{{json .}}"]).stdout)
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "memory_bytes": mem,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "docker": info.get("ServerVersion"),
        "storage_driver": info.get("Driver"),
        "load_average": list(os.getloadavg()),
    }


def mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB"


def summary_lines(doc: dict[str, Any]) -> list[str]:
    """The figures as text rows: printed at the end of a run and used for the docs."""
    rows: list[str] = []
    for c in doc.get("cold", []):
        rows += [
            f"cold build, {c['recipe']}: mlbuild {c['mlbuild_seconds']} s, naive Dockerfile "
            f"{c['naive_seconds']} s (ratio {c['time_vs_naive']}); "
            f"smoke test {c['mlbuild_smoke_seconds']} s more",
            f"image size, {c['recipe']}: mlbuild {mb(c['mlbuild_size_bytes'])}, naive "
            f"{mb(c['naive_size_bytes'])} (ratio {c['size_vs_naive']}), "
            f"payload {mb(c['payload_bytes'])} = base {mb(c['base_bytes'])} "
            f"+ venv {mb(c['venv_bytes'])} + {c['apt_added_packages']} Debian "
            f"packages {mb(c['apt_added_bytes'])}; mlbuild/payload {c['size_vs_payload']}, "
            f"naive/payload {c['naive_size_vs_payload']}",
        ]
    for name, why in doc.get("skipped_recipes", {}).items():
        rows.append(f"not built: {name}: {why}")
    f = doc.get("floor")
    if f and "skipped" not in f:
        rows.append(
            f"floor (pip into a fresh venv on the host, {f['python']}): {f['floor_seconds']} s "
            f"(venv {f['venv_seconds']} s + pip {f['pip_seconds']} s); cold mlbuild / floor "
            f"{f.get('cold_vs_floor')}, naive / floor {f.get('naive_vs_floor')}"
        )
    elif f:
        rows.append(f"floor: skipped ({f['skipped']})")
    r = doc.get("rebuild")
    if r:
        rows += [
            f"no-op rebuild (median of {r['runs']}): "
            f"mlbuild {r['noop_mlbuild_seconds']} s, docker build "
            f"warm cache {r['noop_docker_seconds']} s (ratio {r['noop_vs_docker']})",
            f"one package changed ({r['changed_package_mlbuild']} / "
            f"{r['changed_package_docker']}): "
            f"mlbuild {r['changed_mlbuild_seconds']} s, docker build warm cache "
            f"{r['changed_docker_seconds']} s (ratio {r['changed_vs_docker']})",
        ]
    s = doc.get("share")
    if s and "skipped" not in s:
        rows += [
            f"teammate pull after one package changed: "
            f"downloaded {mb(s['v2']['downloaded_bytes'])} of "
            f"{mb(s['v2']['compressed_bytes'])} (compressed); "
            f"changed layers {s['changed_layers']}, "
            f"{mb(s['changed_layer_bytes'])}; downloaded/whole image {s['downloaded_vs_whole_image']} "
            "(against the changed distributions: benchmarks/layer_share.py)",
            f"first pull: {mb(s['v1']['downloaded_bytes'])} in {s['v1']['pull_seconds']} s; "
            f"second pull {s['v2']['pull_seconds']} s",
        ]
    elif s:
        rows.append(f"share: skipped ({s['skipped']})")
    c = doc.get("cli")
    if c:
        med = c["median_ms"]
        rows.append(
            f"CLI latency (median of {c['runs']}): python -c pass {med['python -c pass']} ms; "
            + "; ".join(f"{k} {med[k]} ms (+{c['over_bare_ms'][k]} ms, {c['vs_bare'][k]}x)" for k in c["over_bare_ms"])
        )
    return rows


def write_docs(doc: dict[str, Any], json_path: Path, target: Path = DOCS) -> None:
    m = doc["machine"]
    lines = [
        "# Benchmarks",
        "",
        "Generated by `python benchmarks/build_bench.py` from "
        f"`{json_path.relative_to(ROOT) if json_path.is_relative_to(ROOT) else json_path}`; "
        "do not edit by hand (run `python benchmarks/build_bench.py --docs FILE.json`).",
        "Every ratio compares two figures measured in the same run on the same machine.",
        "",
        f"- date: {doc['date']}",
        f"- machine: {m['cpus']} CPUs ({m['cpu'] or 'unknown CPU'}), "
        f"{m['memory_bytes'] / 2**30:.0f} GiB, Linux {m['kernel']}, "
        f"Docker {m['docker']} ({m['storage_driver']}, classic builder), Python {m['python']}",
        f"- load average at start / end: {' '.join(f'{x:.2f}' for x in m['load_average'])} / "
        f"{' '.join(f'{x:.2f}' for x in doc.get('load_average_end', []))}",
        f"- base image: {doc['base_image']} (plus one LABEL per run, so that builds are cold)",
        f"- note: {doc['note']}",
        "",
        "## Results",
        "",
        *[f"- {row}" for row in summary_lines(doc)],
        "",
        "## What is measured",
        "",
        "- **cold build**: `mlbuild build --no-smoke` of a recipe on a base no earlier build used "
        "(so no cached layer can match), against a hand-written one-stage Dockerfile of the same "
        "pins on the same base (`apt-get install python3 python3-venv python3-pip`, `pip install`, "
        "no cleanup). Both get the same pip index and CA settings.",
        "- **payload**: the base image plus the files the image adds: the venv (`du -sb`) and the "
        "Debian packages not in the base (their Installed-Size).",
        "- **floor**: `python -m venv` and the same two `pip install` steps on the host, with the "
        "build's pip settings and no pip cache.",
        "- **no-op rebuild**: `mlbuild build` of an unchanged recipe (it finds the content tag) "
        "against `docker build` of the same rendered context, every layer cached.",
        "- **one package changed**: one pin changed; mlbuild and `docker build` each get a "
        "different change, so both start from the same warm cache.",
        "- **teammate pull**: both images pushed to Debian's `docker-registry` on 127.0.0.1; a "
        "second dockerd pulls the first, then the second. Downloaded = compressed size of the "
        "layers it did not have; changed layers = layers of the second manifest not in the first. "
        "Downloaded against the changed distributions' compressed files: `benchmarks/layer_share.py`, "
        "whose figures the README shows.",
        "- **CLI latency**: whole-process wall time, interleaved runs.",
        "",
    ]
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text("\n".join(lines))
    os.replace(tmp, target)


# -- main ----------------------------------------------------------------------------------------
@contextlib.contextmanager
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="mlbuild-bench-") as tmp:
        yield Path(tmp)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base-image", default=os.environ.get("MLBUILD_TEST_BASE", "mlbuild-test/debian:bookworm"))
    ap.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=SECTIONS,
        help="leave out a section (repeatable)",
    )
    ap.add_argument("--runs", type=int, default=5, help="no-op rebuild runs (median)")
    ap.add_argument("--cli-runs", type=int, default=21)
    ap.add_argument(
        "--change",
        nargs=2,
        default=("pandas==2.2.2", "pandas==2.2.1"),
        metavar=("MLBUILD", "DOCKER"),
        help="the one-package change for mlbuild and for docker build (two different ones)",
    )
    ap.add_argument(
        "--note",
        default="shared machine: other developers used the same Docker engine "
        "and the 2 CPUs during the run, so times carry noise of their work",
    )
    ap.add_argument(
        "--docs",
        type=Path,
        metavar="JSON",
        help="only write docs/benchmarks.md from a results file",
    )
    ap.add_argument("--keep", action="store_true", help="keep the run's images (for a look afterwards)")
    args = ap.parse_args()
    if args.docs:
        write_docs(json.loads(args.docs.read_text()), args.docs.resolve())
        print(f"wrote {DOCS}")
        return 0

    doc: dict[str, Any] = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine(),
        "base_image": args.base_image,
        "note": args.note,
        "skipped_recipes": {k: v for k, v in RECIPES.items() if v},
    }
    if sh(["docker", "image", "inspect", args.base_image], check=False).returncode != 0:
        sys.exit(
            f"{args.base_image} is not on this engine: mlbuild base bootstrap --suite bookworm --tag {args.base_image}"
        )
    run = make_run_base(args.base_image, secrets.token_hex(4))
    log(f"run {run.run_id}: base {run.base}")
    started = time.perf_counter()
    try:
        with workdir() as work:
            src = ROOT / "recipes" / "sklearn-cpu.yaml"
            recipe = bench_recipe(src, run, work)
            cold = None
            if "cold" not in args.skip:
                cold = section_cold(run, recipe, work)
                doc["cold"] = [cold]
            if "floor" not in args.skip:
                doc["floor"] = section_floor(recipe, run, work, cold)
            if "rebuild" not in args.skip:
                doc["rebuild"] = section_rebuild(run, src, recipe, work, args.runs, tuple(args.change))
            if "share" not in args.skip:
                if "rebuild" in args.skip or not cold:
                    doc["share"] = {"skipped": "needs the cold and rebuild sections (their two images)"}
                else:
                    doc["share"] = section_share(run, cold["image_id"], doc["rebuild"]["changed_image_id"], work)
            if "cli" not in args.skip:
                doc["cli"] = section_cli(args.cli_runs)
    finally:
        if not args.keep:
            log(f"removed {cleanup(run)} images of this run")
    doc["seconds"] = round(time.perf_counter() - started, 1)
    doc["load_average_end"] = list(os.getloadavg())
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{doc['date'][:10]}.json"
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, out)
    write_docs(doc, out)
    print(f"benchmark run {run.run_id}, {doc['seconds']} s, {doc['date']}")
    for row in summary_lines(doc):
        print("  " + row)
    print(f"wrote {out.relative_to(ROOT)} and {DOCS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
