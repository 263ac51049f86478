#!/usr/bin/env python3
"""Build steps that run inside the image with Python alone (no shell, no useradd needed).

Bases that carry a framework (NGC-style, or a base imported from a host) may have no shell
and no shadow utilities, so mlbuild's own steps run as exec-form `RUN ["python", ...]`:
    python imagesetup.py user NAME UID DIR...      add NAME (group 0) to /etc/passwd; make DIRs
    python imagesetup.py pth FILE PATH...          write a .pth file listing PATHs
    python imagesetup.py constraints FILE NAME...  pin NAMEs and their CUDA build (see below)
Standard library only; every argument was validated by mlbuild before it was rendered.
"""

from __future__ import annotations

import os
import re
import sys

# The image's constraints (/opt/mlbuild/constraints.txt, set as PIP_CONSTRAINT and UV_CONSTRAINT):
# what `pip install` in an image built FROM this one may not replace. The framework and its
# companions (NAME...), and, among their installed dependencies, the pieces of their CUDA build:
# the CUDA libraries shipped as wheels (nvidia-*), the compiler and runtime built against them
# (triton, jaxlib, the jax-cuda plugins, TensorRT). Everything else (numpy, the recipe's packages)
# may still move: pinning it would make unrelated installs fail. `===` is exact string equality:
# `==2.5.1` would also accept 2.5.1+cpu, another build of the same version.
CUDA_BUILD_PREFIXES = ("nvidia-", "jax-cuda", "jax-rocm", "tensorrt", "pytorch-triton")
CUDA_BUILD_NAMES = ("triton", "jaxlib")
CONSTRAINTS_HEADER = """\
# Written by mlbuild: pip (PIP_CONSTRAINT) and uv (UV_CONSTRAINT) in an image built FROM this one
# may not replace these: the framework, its companions and the CUDA build they were installed
# with. Anything else may be added or upgraded. Opting out, in the derived Dockerfile:
# ENV PIP_CONSTRAINT= UV_CONSTRAINT=
"""
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*")


def add_user(name: str, uid: int, dirs: list[str]) -> None:
    home = dirs[0]
    with open("/etc/passwd", encoding="utf-8") as fh:
        entries = [line.split(":") for line in fh.read().splitlines() if line]
    if not any(e[0] == name or (len(e) > 2 and e[2] == str(uid)) for e in entries):
        shell = "/bin/sh" if os.path.exists("/bin/sh") else "/sbin/nologin"
        with open("/etc/passwd", "a", encoding="utf-8") as fh:
            fh.write(f"{name}:x:{uid}:0:{name}:{home}:{shell}\n")
    for d in dirs:
        os.makedirs(d, exist_ok=True)
        os.chown(d, uid, 0)
        # group 0 with the owner's rights: platforms that run images under an arbitrary
        # UID in group 0 (OpenShift) can still write here
        os.chmod(d, 0o775)


def write_pth(target: str, paths: list[str]) -> None:
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with open(target, "w", encoding="utf-8") as fh:
        fh.write("".join(p + "\n" for p in paths))


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned_with_framework(roots: list[str], installed: dict[str, tuple[str, list[str]]]) -> list[str]:
    """`name===version` for the roots and the CUDA build in their dependencies, sorted.
    `installed`: canonical name -> (version, requirement strings), as the metadata says."""
    wanted = {canonical(r) for r in roots}
    seen: set[str] = set()
    todo = sorted(wanted)
    while todo:  # every installed dependency, whatever its marker or extra: only names are kept
        name = todo.pop()
        if name in seen or name not in installed:
            continue
        seen.add(name)
        todo += [canonical(m.group(0)) for m in map(_NAME.match, installed[name][1]) if m]
    keep = [n for n in seen if n in wanted or n.startswith(CUDA_BUILD_PREFIXES) or n in CUDA_BUILD_NAMES]
    return [f"{n}==={installed[n][0]}" for n in sorted(keep)]


def write_constraints(target: str, roots: list[str]) -> None:
    from importlib import metadata

    installed: dict[str, tuple[str, list[str]]] = {}
    for dist in metadata.distributions():  # the first on sys.path wins, as for imports
        name = dist.metadata["Name"]
        if name:
            installed.setdefault(canonical(name), (dist.version, list(dist.requires or [])))
    lines = pinned_with_framework(roots, installed)
    missing = sorted({canonical(r) for r in roots} - set(installed))
    if missing:
        print("imagesetup: not installed, not pinned: " + " ".join(missing))
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with open(target, "w", encoding="utf-8") as fh:
        fh.write(CONSTRAINTS_HEADER + "".join(line + "\n" for line in lines))
    # a fixed time, as layersplit gives the venv: the same pins make the same layer, so a
    # teammate does not download it again after an unrelated change
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH") or 315532800)  # layersplit.DEFAULT_EPOCH
    os.utime(target, (epoch, epoch))


def main(argv: list[str]) -> int:
    if len(argv) >= 3 and argv[0] == "user":
        add_user(argv[1], int(argv[2]), argv[3:] or [f"/home/{argv[1]}"])
        return 0
    if len(argv) >= 2 and argv[0] == "pth":
        write_pth(argv[1], argv[2:])
        return 0
    if len(argv) >= 2 and argv[0] == "constraints":
        write_constraints(argv[1], argv[2:])
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
