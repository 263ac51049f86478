"""The platform an image's Python packages are chosen for: CPython on glibc Linux, one machine.

Wheels are picked by tag and environment markers are evaluated for the image, never for the
machine mlbuild runs on. A recipe's `platforms:` (and `build --platform`) name them the way
container engines and registries do (linux/amd64, linux/arm64); `machine` is the same thing as
Python, wheel tags and `uname -m` spell it.
"""

from __future__ import annotations

from dataclasses import dataclass

from packaging.tags import Tag

GLIBC_NEWEST = 40  # manylinux_2_N tags accepted up to this N (a newer base's wheels too)


@dataclass(frozen=True)
class Platform:
    machine: str  # platform_machine in markers; the arch in wheel tags; `uname -m`
    name: str = "linux/amd64"  # os/architecture, as engines, registries and OCI indexes say it

    @property
    def architecture(self) -> str:
        """The OCI/Go architecture: amd64, arm64 (Docker's --platform, node labels)."""
        return self.name.split("/")[1]

    @property
    def is_default(self) -> bool:
        return self == DEFAULT_PLATFORM

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


LINUX_X86_64 = Platform("x86_64", "linux/amd64")
LINUX_AARCH64 = Platform("aarch64", "linux/arm64")
DEFAULT_PLATFORM = LINUX_X86_64  # what a recipe without `platforms:` builds for
PLATFORMS = {p.name: p for p in (LINUX_X86_64, LINUX_AARCH64)}


def platform_named(name: str) -> Platform:
    """linux/arm64 -> LINUX_AARCH64; KeyError for a name mlbuild does not build for."""
    return PLATFORMS[name]
