"""The two builders on the example recipe, measured in one run: BuildKit against the classic builder.

    python benchmarks/builders.py            # about 6 builds; writes benchmarks/results/builders-<date>.json

For each builder (the example recipe, recipes/sklearn-cpu.yaml, no smoke test, build avoidance
off):
  cold         no layer cache: the run's own base (the given base plus one file naming the run,
               a layer of its own) and, for BuildKit, its download caches (cache mounts) emptied
               first (`docker builder prune --filter type=exec.cachemount`: every cache mount on
               the engine);
  warm         the same build again: every step cached;
  one package  one package added to the recipe (a small pure-Python wheel), warm cache: the
               classic builder reruns the packages step and downloads all its packages again;
               BuildKit's cache mount serves the unchanged ones, so only the new one downloads.
Ratios are BuildKit / classic, and each one-package rebuild / that builder's cold build.
At the end the run removes the images it made (mlbuild/bench-builders-<run>) and its base.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from builder.engine import Engine  # noqa: E402
from builder.fileio import write_atomic  # noqa: E402
from builder.pipeline import BuildOptions, build  # noqa: E402
from builder.settings import load_settings  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
EXAMPLE = ROOT / "recipes" / "sklearn-cpu.yaml"
ADDED = "tabulate==0.9.0"  # the one package added
BUILDERS = ("classic", "buildkit")


def unique_base(engine: Engine, given: str, token: str) -> str:
    """The given base plus one file naming the run: a layer of its own, so that no layer cached
    by an earlier build (BuildKit keys a local base by its layers, not its labels) can match."""
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "run").write_text(token + "\n")
        (Path(tmp) / "Dockerfile").write_text(f"FROM {given}\nCOPY run /etc/mlbuild-bench-run\n")
        image_id = engine.build(Path(tmp))
    engine.tag(image_id, "mlbuild-bench/base", token)
    return f"mlbuild-bench/base:{token}"


def recipe_text(extra: str | None, token: str) -> str:
    text = EXAMPLE.read_text().replace("name: sklearn-cpu", f"name: bench-builders-{token}")
    return text.replace("  - pandas==2.2.3", "  - pandas==2.2.3" + (f"\n  - {extra}" if extra else ""))


def timed(engine: Engine, recipe: Path, base: str, builder: str) -> float:
    started = time.monotonic()
    options = BuildOptions(base_image=base, builder=builder, run_smoke=False, reuse=False)
    result = build(recipe, engine=engine, settings=load_settings(), options=options)
    assert result.builder == builder
    return round(time.monotonic() - started, 1)


def measure(engine: Engine, base: str, folder: Path, token: str) -> dict[str, dict[str, float]]:
    recipe, changed = folder / "bench.yaml", folder / "bench-changed.yaml"
    recipe.write_text(recipe_text(None, token))
    changed.write_text(recipe_text(ADDED, token))
    out: dict[str, dict[str, float]] = {}
    for builder in BUILDERS:
        if builder == "buildkit":
            subprocess.run(["docker", "builder", "prune", "-af", "--filter", "type=exec.cachemount"],
                           check=True, capture_output=True, timeout=300)  # fmt: skip
        cold = timed(engine, recipe, base, builder)
        warm = timed(engine, recipe, base, builder)
        one = timed(engine, changed, base, builder)
        out[builder] = {"cold_s": cold, "warm_s": warm, "one_package_s": one}
        print(f"{builder:9} cold {cold:6.1f} s   warm {warm:5.1f} s   one package {one:5.1f} s "
              f"({one / cold:.2f}x cold)", flush=True)  # fmt: skip
    return out


def cleanup(engine: Engine, token: str) -> None:
    for image in engine.list_images():
        for ref in image.get("RepoTags") or []:
            if ref in (f"mlbuild-bench/base:{token}",) or ref.startswith(f"mlbuild/bench-builders-{token}:"):
                engine.remove_image(ref, force=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", default="mlbuild-test/debian:bookworm")
    args = parser.parse_args()
    engine = Engine.connect()
    token = secrets.token_hex(4)
    base = unique_base(engine, args.base, token)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            times = measure(engine, base, Path(tmp), token)
    finally:
        cleanup(engine, token)
    kit, classic = times["buildkit"], times["classic"]
    ratios = {f"buildkit_over_classic_{k[:-2]}": round(kit[k] / classic[k], 2) for k in kit}
    ratios |= {f"{b}_one_package_over_cold": round(times[b]["one_package_s"] / times[b]["cold_s"], 2) for b in BUILDERS}
    doc: dict[str, Any] = {
        "when": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
        "host": {"machine": platform.machine(), "engine": engine.version().get("Version")},
        "recipe": "recipes/sklearn-cpu.yaml", "added_package": ADDED, "seconds": times, "ratios": ratios,
    }  # fmt: skip
    path = RESULTS / f"builders-{dt.date.today().isoformat()}.json"
    write_atomic(path, json.dumps(doc, indent=2, sort_keys=True) + "\n")
    for key, value in ratios.items():
        print(f"{key:40} {value:.2f}x")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
