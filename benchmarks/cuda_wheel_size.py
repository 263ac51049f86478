"""One real CUDA-wheel build: PyTorch with its CUDA libraries from PyPI (several GB), its image
size against the payload (base plus installed files), measured in one run. Opt-in: run by hand.

    python benchmarks/cuda_wheel_size.py [--base-image mlbuild/debian:bookworm]

Writes benchmarks/results/cuda-wheel-<date>.json and prints the ratio. Needs a few GB of disk
and network to the package index; no GPU (the smoke test reports the GPU checks as not run).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from build_bench import machine, payload  # noqa: E402 - the same payload measure as the build benchmark

RECIPE = """\
name: bench-pytorch-cuda
framework: pytorch
framework_version: "2.5"
python: "3.11"
cuda: "12.4"
image: {repository: mlbuild-bench/pytorch-cuda}
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base-image", default="mlbuild/debian:bookworm")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        recipe = Path(tmp) / "recipe.yaml"
        recipe.write_text(RECIPE)
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "builder", "build", str(recipe), "--base-image", args.base_image, "--json"],
            capture_output=True, text=True, check=False, cwd=HERE.parent,
        )  # fmt: skip
        seconds = time.monotonic() - started
    if done.returncode != 0:
        print(done.stderr[-3000:], file=sys.stderr)
        return done.returncode
    built = json.loads(done.stdout)
    pay = payload(built["image_id"], args.base_image)
    doc = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "recipe": RECIPE,
        "packages": built["spec"]["packages"],
        "seconds": round(seconds, 1),
        "image_bytes": built["size_bytes"],
        **pay,
        "size_vs_payload": round(built["size_bytes"] / pay["payload_bytes"], 4),
        "smoke": {c["name"]: c["status"] for c in (built["smoke"] or {}).get("checks", [])},
    }
    out = HERE / "results" / f"cuda-wheel-{dt.date.today().isoformat()}.json"
    out.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    spec = built["spec"]
    print(f"PyTorch {spec['framework_version']} {spec['variant']} image: {doc['image_bytes'] / 1e9:.2f} GB; "
          f"payload {pay['payload_bytes'] / 1e9:.2f} GB (base {pay['base_bytes'] / 1e6:.0f} MB + venv "
          f"{pay['venv_bytes'] / 1e9:.2f} GB + Debian packages {pay['apt_added_bytes'] / 1e6:.0f} MB); "
          f"image / payload {doc['size_vs_payload']:.3f}; built in {seconds:.0f} s")  # fmt: skip
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
