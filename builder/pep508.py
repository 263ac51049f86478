"""One pip requirement as mlbuild accepts it, from a recipe or a project file: the checks that
keep a requirement from becoming a pip option or another line of a requirements file."""

from __future__ import annotations

import re

from packaging.requirements import InvalidRequirement, Requirement

MAX_TEXT = 4096
REQ_CHARS_RE = re.compile(r"[\x20-\x22\x24-\x7e]+")  # printable ASCII but '#'


def requirement_problem(text: str) -> tuple[Requirement | None, str]:
    """A pip requirement from a recipe or a project file: (parsed, "") or (None, why not)."""
    if len(text) > MAX_TEXT:
        return None, f"is {len(text)} characters long; at most {MAX_TEXT} allowed"
    # pip splits requirements files with str.splitlines() (\x0b, \x85, \u2028 ... too)
    # and drops " #..." as a comment: either could smuggle a `-i URL` line into them.
    if not REQ_CHARS_RE.fullmatch(text):
        return None, f"{text!r}: only printable ASCII without '#' is allowed"
    try:
        req = Requirement(text)
    except InvalidRequirement as exc:
        return None, f"{text!r} is not a PEP 508 requirement ({_first_line(exc)})"
    if req.url:
        return None, f"{text!r}: direct URL requirements are not supported; use a wheelhouse"
    return req, ""


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
