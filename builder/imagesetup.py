#!/usr/bin/env python3
"""Build steps that run inside the image with Python alone (no shell, no useradd needed).

Bases that carry a framework (NGC-style, or a base imported from a host) may have no shell
and no shadow utilities, so mlbuild's own steps run as exec-form `RUN ["python", ...]`:
    python imagesetup.py user NAME UID DIR...      add NAME (group 0) to /etc/passwd; make DIRs
    python imagesetup.py pth FILE PATH...          write a .pth file listing PATHs
Standard library only; every argument was validated by mlbuild before it was rendered.
"""

from __future__ import annotations

import os
import sys


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


def main(argv: list[str]) -> int:
    if len(argv) >= 3 and argv[0] == "user":
        add_user(argv[1], int(argv[2]), argv[3:] or [f"/home/{argv[1]}"])
        return 0
    if len(argv) >= 2 and argv[0] == "pth":
        write_pth(argv[1], argv[2:])
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
