"""Readable changes between two mappings, one line each: `+ added`, `- removed`, `~ a -> b`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any


def changed(a: Mapping[Any, str], b: Mapping[Any, str], name: Callable[[Any], str] = str) -> list[str]:
    out = []
    for key in sorted(set(a) | set(b)):
        if key not in a:
            out.append(f"+ {name(key)} {b[key]}")
        elif key not in b:
            out.append(f"- {name(key)} {a[key]}")
        elif a[key] != b[key]:
            out.append(f"~ {name(key)} {a[key]} -> {b[key]}")
    return out
