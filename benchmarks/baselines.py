"""Baselines for build_bench.py that an expert would compare with (issue 14).

- expert_context: the two-stage Dockerfile a person who knows uv writes by hand: the OS Python
  and uv in a builder stage, one RUN that makes the venv and installs the pins with uv
  (bytecode compiled, no cache), then the slim base with the Python runtime and the venv.
- host_uv_floor: `uv venv` and `uv pip install` of the same pins on this host, no cache.
- step_times: the seconds each `Step N/M` of a classic build took, read as the lines come; of a
  BuildKit build (plain progress: `#7 [builder 3/6] RUN ...` ... `#7 DONE 12.3s`), each step's
  own DONE seconds (its stages run at once, so these may add up to more than the whole).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

STEP_RE = re.compile(r"Step (\d+)/(\d+)\s*(?:\S+\s)?:?\s*(.*)$")
# getting the venv into the image: one COPY, or mlbuild's layer split and its slot COPYs
VENV_COPIES = ("COPY --from=builder /opt/venv", "COPY --from=builder /opt/mlbuild-layers/")
KIT_STEP_RE = re.compile(r"^#(\d+) \[(?:[^\]\s]+ +)?\s*\d+/\d+\] (.*)$")  # "[builder  3/13]": padded
KIT_ID_RE = re.compile(r"^#(\d+) ")
MLBUILD_KIT_STEP_RE = re.compile(r"^Step \d+/\d+ \[[\d.]+s\] (.*)$")
KIT_DONE_RE = re.compile(r"^#(\d+) DONE (\d+(?:\.\d+)?)s$")


def uv_binary() -> str:
    """uv on this host: next to this Python (the venv's) or on PATH; the floor needs it."""
    here = Path(sys.executable).with_name("uv")
    found = str(here) if here.exists() else shutil.which("uv")
    if not found:
        sys.exit("uv is not installed on this host: pip install uv (the uv floor measures it)")
    return found


def uv_pin() -> str:
    from builder.matrix import load_matrix

    pin = load_matrix().uv
    if pin is None:
        sys.exit("builder/data/bases.yaml has no tools.uv pin")
    return pin.version


def expert_context(spec: Any, folder: Path, uv_binary: Path | None = None) -> None:
    """Two stages, uv, the same base, pins, index and CA settings (uv.toml, SSL_CERT_FILE) as
    mlbuild's; no labels, no user, no smoke files: what an expert writes for the same image.
    uv: pip installs it in the builder stage; with `uv_binary`, the builder stage copies it in,
    as `COPY --from=ghcr.io/astral-sh/uv:<version> /uv /bin/` does where that image can be
    pulled (not here), and then needs no ensurepip package either."""
    from builder.settings import load_settings

    folder.mkdir(parents=True, exist_ok=True)
    settings = load_settings()
    settings.write_build_settings(folder / "build-settings")
    python = f"python{spec.python}"
    cert = " SSL_CERT_FILE=/tmp/mlbuild-build/ca.crt" if settings.ca_bundle else ""
    pins = " ".join(spec.packages)
    clean = "rm -rf /var/lib/apt/lists/*"
    if uv_binary:
        shutil.copy2(uv_binary, folder / "uv")
        venv_package, get_uv, uv = "", "COPY uv /usr/local/bin/uv\n", "uv"
    else:
        venv_package, get_uv, uv = f" {python}-venv", "", "/tmp/uv/bin/uv"
    install = f"{uv} venv --python /usr/bin/{python} /opt/venv && {uv} pip install --python /opt/venv/bin/python {pins}"
    if not uv_binary:
        install = f"{python} -m venv /tmp/uv && /tmp/uv/bin/pip install -q uv=={uv_pin()} && {install}"
    (folder / "Dockerfile").write_text(
        f"FROM {spec.base_image} AS builder\n"
        f"RUN apt-get update && apt-get install -y --no-install-recommends {python}{venv_package} "
        f"ca-certificates && {clean}\n"
        f"{get_uv}"
        "COPY build-settings/ /tmp/mlbuild-build/\n"
        "ENV PIP_CONFIG_FILE=/tmp/mlbuild-build/pip.conf PIP_NO_CACHE_DIR=1 "
        f"UV_CONFIG_FILE=/tmp/mlbuild-build/uv.toml UV_NO_CACHE=1 UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy{cert}\n"
        f"RUN {install}\n"
        f"FROM {spec.base_image}\n"
        f"RUN apt-get update && apt-get install -y --no-install-recommends {python} ca-certificates && {clean}\n"
        "COPY --from=builder /opt/venv /opt/venv\n"
        'ENV PATH=/opt/venv/bin:$PATH\nCMD ["python"]\n'
    )


def host_uv_floor(spec: Any, ctx: Path, work: Path) -> dict[str, Any]:
    """uv into a fresh venv on the host: the build's two install steps, its settings, no cache."""
    from builder.settings import load_settings

    settings = load_settings()
    folder = work / "uv-floor-settings"
    settings.write_build_settings(folder)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
    env.update(UV_CONFIG_FILE=str(folder / "uv.toml"), UV_NO_CACHE="1", UV_LINK_MODE="copy")
    if settings.ca_bundle:
        env["SSL_CERT_FILE"] = str(folder / "ca.crt")
    uv, venv, python = uv_binary(), work / "uv-floor-venv", f"python{spec.python}"
    install = [uv, "pip", "install", "--python", str(venv / "bin" / "python"), "--compile-bytecode"]
    steps = [[uv, "venv", "--python", python, str(venv)]]
    if spec.framework_requirement:
        steps.append([*install, "-r", str(ctx / "requirements-framework.txt")])
    if spec.requirements:
        steps.append([*install, "-c", str(ctx / "constraints.txt"), "-r", str(ctx / "requirements.txt")])
    start = time.perf_counter()
    for cmd in steps:
        done = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if done.returncode:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    seconds = time.perf_counter() - start
    shutil.rmtree(venv, ignore_errors=True)
    return {"uv": uv_pin(), "python": python, "uv_floor_seconds": round(seconds, 1)}


def step_times(cmd: list[str], env: dict[str, str]) -> tuple[float, list[dict[str, Any]], str]:
    """Run a build, stamping each `Step N/M` line as it arrives; the last step runs to the end
    of the process (for mlbuild that includes its own work after the build: tags, checks).
    BuildKit's plain progress gives each step's seconds itself: those are taken where present."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    assert proc.stdout
    marks: list[tuple[float, str]] = []
    kit = KitSteps()
    tail: list[str] = []
    for line in proc.stdout:
        m = STEP_RE.search(line)
        if m:
            marks.append((time.perf_counter() - start, m.group(3).strip()))
        kit.read(line.rstrip("\n").removeprefix("  | "))  # mlbuild indents the builder's own lines
        tail = [*tail, line][-40:]
    rc = proc.wait()
    total = time.perf_counter() - start
    if rc:
        raise RuntimeError(f"{' '.join(cmd)} failed ({rc}):\n{''.join(tail)}")
    if kit.steps():  # BuildKit's own seconds (mlbuild's Step lines name only some of its steps)
        return total, kit.steps(), "".join(tail)
    ends = [t for t, _ in marks[1:]] + [total]
    steps = [{"step": text[:120], "seconds": round(end - t, 2)} for (t, text), end in zip(marks, ends, strict=True)]
    return total, steps, "".join(tail)


class KitSteps:
    """The steps of BuildKit's plain progress with their DONE seconds, in the order they began.
    mlbuild shows a step's header as `Step N/M [elapsed] TEXT`: the next `#id` line is its."""

    def __init__(self) -> None:
        self.text: dict[str, str] = {}
        self.seconds: dict[str, float] = {}
        self.pending: str | None = None

    def read(self, line: str) -> None:
        if m := KIT_STEP_RE.match(line):
            self._name(m.group(1), m.group(2))
        elif m := MLBUILD_KIT_STEP_RE.match(line):
            self.pending = m.group(1)
        elif (m := KIT_ID_RE.match(line)) and self.pending is not None and m.group(1) not in self.text:
            self._name(m.group(1), self.pending)
        if (m := KIT_DONE_RE.match(line)) and m.group(1) in self.text:
            self.seconds[m.group(1)] = float(m.group(2))

    def _name(self, step: str, text: str) -> None:
        # without its --mount options: the command is what tells the kind
        self.text.setdefault(step, re.sub(r"--mount=\S+\s+", "", text).strip())
        self.pending = None

    def steps(self) -> list[dict[str, Any]]:
        return [{"step": text[:120], "seconds": self.seconds.get(v, 0.0)} for v, text in self.text.items()]


def breakdown(steps: list[dict[str, Any]], total: float) -> dict[str, float]:
    """Where a cold build's time goes: apt, installing Python packages, bytecode compiling,
    copying the venv into the image (mlbuild: splitting it into layer slots, then their COPYs)
    and the rest (small steps, layer commits, mlbuild's own)."""
    kinds = {"apt": 0.0, "install": 0.0, "compile": 0.0, "copy_venv": 0.0, "other_steps": 0.0}
    for s in steps:
        text = s["step"]
        if "apt-get" in text:
            kind = "apt"
        elif ("pip" in text and "install" in text) or '"link", ' in text:  # link: an install step, wrapped
            kind = "install"
        elif "compileall" in text:
            kind = "compile"
        elif text.startswith(VENV_COPIES) or "layersplit.py" in text:
            kind = "copy_venv"
        else:
            kind = "other_steps"
        kinds[kind] += s["seconds"]
    kinds["before_first_step"] = max(0.0, total - sum(kinds.values()))
    return {k: round(v, 1) for k, v in kinds.items()}
