"""N matrix variants built in parallel (-j N) versus one after another (-j 1), in the same run.

Each of the two runs starts from cold build caches: it builds on a base of its own (the
bookworm base plus one LABEL, so a new image ID, on which the classic builder has no cache),
and both build the same N scikit-learn variants (one framework release each, Python 3.11).

    python benchmarks/parallel_builds.py            # N=3, base mlbuild-test/debian:bookworm
    python benchmarks/parallel_builds.py -n 2 --base mlbuild/debian:bookworm
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path

from builder import fanout, variants
from builder.engine import Engine
from builder.pipeline import BuildOptions
from builder.settings import load_settings

RELEASES = ("1.5", "1.6", "1.7", "1.4", "1.3")


def fresh_base(engine: Engine, base: str, run: str) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "Dockerfile").write_text(f"FROM {base}\nLABEL org.mlbuild.bench={run}\n")
        image_id = engine.build(Path(tmp))
    engine.tag(image_id, "mlbuild-bench/base", run)
    return f"mlbuild-bench/base:{run}"


def run(engine: Engine, recipe: Path, base: str, jobs: int) -> tuple[float, list[str]]:
    run_id = uuid.uuid4().hex[:8]
    ref = fresh_base(engine, base, run_id)
    planned = variants.plan([recipe])
    started = time.monotonic()
    outcomes = fanout.build_all(
        planned,
        connect=Engine.connect,
        settings=load_settings(),
        options=BuildOptions(base_image=ref, reuse=False),
        jobs=jobs,
    )
    seconds = time.monotonic() - started
    bad = [o for o in outcomes if not o.ok]
    if bad:
        sys.exit(f"{len(bad)} variant(s) failed: {bad[0].error.message if bad[0].error else ''}")
    for o in outcomes:  # the images are throw-away: drop their tags, and the run's base
        for tag in o.build.tags if o.build else ():
            engine.remove_image(tag)  # the name only: the image goes with its last name
    engine.remove_image(ref)
    return seconds, [f"{o.planned.variant.label} {o.seconds:.0f}s" for o in outcomes]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=3, help="variants (at most 5)")
    parser.add_argument("--base", default="mlbuild-test/debian:bookworm")
    args = parser.parse_args()
    n = max(1, min(args.n, len(RELEASES)))
    engine = Engine.connect()
    with tempfile.TemporaryDirectory() as tmp:
        recipe = Path(tmp) / "bench.yaml"
        versions = ", ".join(f'"{v}"' for v in RELEASES[:n])
        recipe.write_text(
            "name: bench-par\nframework: sklearn\ncuda: cpu\n"
            f'matrix:\n  python: ["3.11"]\n  framework_version: [{versions}]\n'
        )
        parallel, p_lines = run(engine, recipe, args.base, jobs=n)
        serial, s_lines = run(engine, recipe, args.base, jobs=1)
    print(f"{n} variants, cold caches, engine {engine.base_url}")
    print(f"  parallel (-j {n}): {parallel:6.1f} s   ({', '.join(p_lines)})")
    print(f"  serial   (-j 1): {serial:6.1f} s   ({', '.join(s_lines)})")
    print(f"  serial / parallel = {serial / parallel:.2f}x")


if __name__ == "__main__":
    main()
