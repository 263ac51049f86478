"""The platform an image's Python packages are chosen for: CPython on glibc Linux, one machine.

Wheels are picked by tag and environment markers are evaluated for the image, never for the
machine mlbuild runs on. x86_64 is what images are built for today; aarch64 is here so that a
recipe can select it later without another copy of these rules.
"""

from __future__ import annotations

from dataclasses import dataclass

from packaging.tags import Tag

GLIBC_NEWEST = 40  # manylinux_2_N tags accepted up to this N (a newer base's wheels too)


@dataclass(frozen=True)
class Platform:
    machine: str  # platform_machine in markers; the arch in wheel tags

    def wheel_tags(self, python: str) -> frozenset[Tag]:
        """Wheel tags a CPython `python` on glibc Linux of this machine accepts."""
        major, minor = (int(p) for p in python.split("."))
        cp = f"cp{major}{minor}"
        arch = self.machine
        platforms = ["any", f"linux_{arch}"]
        platforms += [f"manylinux_2_{n}_{arch}" for n in range(5, GLIBC_NEWEST + 1)]
        platforms += [f"manylinux{v}_{arch}" for v in ("1", "2010", "2014")]
        abis = [cp, "abi3", "none"]
        interpreters = [cp, f"py{major}{minor}", f"py{major}", "py3"]
        interpreters += [f"cp{major}{m}" for m in range(2, minor)]  # abi3 wheels of older CPythons
        return frozenset(Tag(i, a, p) for i in interpreters for a in abis for p in platforms)

    def marker_environment(self, python: str, patch: int = 0) -> dict[str, str]:
        """PEP 508 marker values inside the image. The patch release is the base image's
        choice, unknown before the build: callers that care evaluate with more than one."""
        full = f"{python}.{patch}"
        return {
            "implementation_name": "cpython",
            "implementation_version": full,
            "os_name": "posix",
            "platform_machine": self.machine,
            "platform_python_implementation": "CPython",
            "platform_release": "",
            "platform_system": "Linux",
            "platform_version": "",
            "python_full_version": full,
            "python_version": python,
            "sys_platform": "linux",
            "extra": "",
        }


LINUX_X86_64 = Platform("x86_64")
LINUX_AARCH64 = Platform("aarch64")
