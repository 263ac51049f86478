"""Typed errors. The library raises these; only the CLI prints them and chooses exit codes.

Exit codes are part of the command-line contract:
0 success; 2 invalid recipe, impossible combination or bad usage; 3 smoke test failed;
1 anything else (engine unreachable, build failed, registry refused), always with a hint.
"""

from __future__ import annotations

from dataclasses import dataclass


class MlbuildError(Exception):
    """Base class: a one-line cause, optional detail lines and a hint."""

    exit_code = 1

    def __init__(self, message: str, *, details: list[str] | None = None, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.details = details or []
        self.hint = hint


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a recipe: where, what was found, and what is allowed."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class RecipeError(MlbuildError):
    """The recipe file is unreadable or invalid; carries every problem found at once."""

    exit_code = 2

    def __init__(self, path: str, problems: list[Problem]):
        n = len(problems)
        super().__init__(
            f"{path}: {n} problem{'s' if n != 1 else ''}",
            details=[str(p) for p in problems],
        )
        self.path = path
        self.problems = problems


class ResolveError(MlbuildError):
    """No combination in the compatibility matrix satisfies the recipe."""

    exit_code = 2


class PreflightError(ResolveError):
    """This host's GPU driver or architecture cannot run the resolved build (before building)."""


class UsageError(MlbuildError):
    """Bad command-line usage that click itself cannot catch."""

    exit_code = 2


class EngineError(MlbuildError):
    """The Docker engine is unreachable or refused an operation."""


class BuildError(MlbuildError):
    """`docker build` failed; details hold the failing step and its last output lines."""


class SmokeFailed(MlbuildError):
    """The image built but its smoke test failed (or a required GPU was not usable)."""

    exit_code = 3


class RegistryError(MlbuildError):
    """Push or pull failed: auth, unreachable registry, or an immutable tag conflict."""


NO_SPACE = "no space left on device"


def step_details(lines: list[str], last: int = 15) -> list[str]:
    """A failing step's last lines, and before them any earlier line that says the disk is
    full (an installer may print many lines after it): the pipeline names that cause first."""
    earlier = [line for line in lines[:-last] if NO_SPACE in line.lower()][-2:]
    return [*earlier, *lines[-last:]]
