"""Facts about things on this host that cannot change under the same name, kept between runs.

What a base image carries (keyed by its image ID, which is the digest of its content) and what
a docker CLI can drive (keyed by the binary's and its plugins' identity) cost a container start
or several CLI launches each time; a no-op `mlbuild build` would spend most of its time on
them. Every key names everything that makes its fact true, so an entry is never stale: another
image or another CLI is another key. One small JSON file per entry, written atomically, so
parallel builds never see half a file; an unreadable or unwritable cache is only slower.

The folder: $MLBUILD_CACHE_DIR, else $XDG_CACHE_HOME/mlbuild, else ~/.cache/mlbuild.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from builder.fileio import write_atomic

CACHE_ENV = "MLBUILD_CACHE_DIR"


def cache_dir() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "mlbuild"


def key(*parts: object) -> str:
    """A file name for these parts (any JSON-able values)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:40]


def get(kind: str, entry: str) -> Any | None:
    try:
        return json.loads((cache_dir() / kind / f"{entry}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def put(kind: str, entry: str, value: Any) -> None:
    try:
        write_atomic(cache_dir() / kind / f"{entry}.json", json.dumps(value, sort_keys=True))
    except OSError:
        return  # a read-only home: the next run probes again


def file_identity(path: str) -> list[object]:
    """What changes when a file is replaced or rewritten: its real path, inode, size and time."""
    real = os.path.realpath(path)
    try:
        st = os.stat(real)
    except OSError:
        return [real, None]
    return [real, st.st_ino, st.st_size, st.st_mtime_ns]
