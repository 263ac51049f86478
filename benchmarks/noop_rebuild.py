"""No-op rebuild: `mlbuild build` of an image that exists already, against a plain
`docker build` of the same Dockerfile and context with a warm cache, measured in the same run.

    python benchmarks/noop_rebuild.py [--recipe RECIPE] [--base-image REF] [--runs 5]

Prints medians and ratios. The first `mlbuild build` makes sure the image exists (a full build
when it does not); it is not counted.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def timed(cmd: list[str], runs: int, check_json: bool = False) -> list[float]:
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        out.append(time.perf_counter() - start)
        if r.returncode != 0:
            sys.exit(f"{' '.join(cmd)} failed:\n{r.stderr[-2000:]}")
        if check_json and not json.loads(r.stdout).get("up_to_date"):
            sys.exit("the rebuild was not a no-op (up_to_date is false)")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", default=str(ROOT / "recipes" / "sklearn-cpu.yaml"))
    ap.add_argument("--base-image", default=os.environ.get("MLBUILD_TEST_BASE", "mlbuild-test/debian:bookworm"))
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    mlbuild = [sys.executable, "-m", "builder"]
    build = [*mlbuild, "build", args.recipe, "--base-image", args.base_image]

    print("preparing: mlbuild build (not counted)", file=sys.stderr)
    timed([*build, "-q"], 1)

    from builder.pipeline import write_build_context
    from builder.recipe import load_recipe
    from builder.resolve import load_and_resolve
    from builder.settings import load_settings

    recipe = load_recipe(args.recipe)
    _, spec = load_and_resolve(args.recipe, args.base_image)
    spec = dataclasses.replace(spec, base_image=args.base_image)
    with tempfile.TemporaryDirectory(prefix="mlbuild-bench-") as tmp:
        write_build_context(spec, Path(tmp), recipe.folder, load_settings())
        docker_build = ["docker", "build", "-q", tmp]
        timed(docker_build, 1)  # warm the cache for exactly this context
        start_s = timed([*mlbuild, "--version"], args.runs)
        noop_s = timed([*build, "--json"], args.runs, check_json=True)
        docker_s = timed(docker_build, args.runs)

    start, noop, docker = (statistics.median(x) for x in (start_s, noop_s, docker_s))
    rows = [
        ("process start (mlbuild --version)", start),
        ("mlbuild build, no-op (up to date)", noop),
        ("  of which beyond process start", noop - start),
        ("docker build, same context, warm cache", docker),
    ]
    print(f"median of {args.runs} runs each, recipe {Path(args.recipe).name}, base {args.base_image}")
    for label, value in rows:
        print(f"  {label:42} {value:7.3f} s")
    print(f"  ratio no-op / docker build                 {noop / docker:7.2f}")
    print(f"  ratio (no-op - start) / docker build       {(noop - start) / docker:7.2f}")


if __name__ == "__main__":
    main()
