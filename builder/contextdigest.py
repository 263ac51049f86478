"""The digest of a build context: what an image is built from besides its Dockerfile.

The content tag (build avoidance, and a teammate's pull by that tag) must change whenever a
build would put other bytes in: mlbuild's own helpers (probe.py, layersplit.py, imagesetup.py),
the recipe's `files:`, the lock's pins, the wheelhouse's wheels. The Dockerfile's text names
none of their contents, so an edited file, or a newer mlbuild, found the older image "up to
date". The folder of the site's build settings is left out: the CA bundle and the index
(pip.conf, uv.toml) are how this site reaches packages, not what the image holds, and the uv pin
there follows the matrix, which the spec names.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Sequence
from pathlib import Path

from builder import hostcache
from builder.fileio import sha256_of

BUILD_SETTINGS = "build-settings"  # the builder stage's site settings, copied into that stage only
_REMEMBER_FROM = 16 << 20  # wheels: a no-op build should not read a framework's GBs again


def context_digest(
    folder: Path, skip: tuple[str, ...] = (BUILD_SETTINGS,), sources: Sequence[tuple[str, Path]] = ()
) -> str:
    """sha256 over every entry's relative path, kind, executable bit and content, in name order.
    `sources`: (relative path, file or folder) that the build will place there but the folder
    does not hold yet (the recipe's files, the wheels): read where they are, through symlinks
    as a copy does, so that an up-to-date build copies nothing, and a large file's digest is
    remembered by its identity."""
    h = hashlib.sha256()
    entries = [(rel, path, False) for rel, path in _entries(folder, folder, skip)]
    for rel, source in sources:
        entries.append((rel, source, True))
        if source.is_dir():
            entries += [(f"{rel}/{r}", p, True) for r, p in _entries(source, source, follow=True)]
    for rel, path, follow in sorted(entries):
        st = path.stat() if follow else path.lstat()
        if stat.S_ISLNK(st.st_mode):
            entry = f"link {rel} {os.readlink(path)}"
        elif stat.S_ISDIR(st.st_mode):
            entry = f"dir {rel}"
        else:
            entry = f"file {rel} {'x' if st.st_mode & 0o111 else '-'} {file_sha256(path, st.st_size)}"
        h.update(entry.encode("utf-8", "surrogateescape") + b"\0")
    return h.hexdigest()


def _entries(folder: Path, top: Path, skip: tuple[str, ...] = (), follow: bool = False) -> list[tuple[str, Path]]:
    """(path relative to `top`, path) of everything under `folder`; `skip`: names left out at its top."""
    found = []
    for root, dirs, files in os.walk(folder, followlinks=follow):
        here = Path(root)
        if here == folder:
            dirs[:] = [d for d in dirs if d not in skip]
            files = [f for f in files if f not in skip]
        found += [(p.relative_to(top).as_posix(), p) for p in [*(here / d for d in dirs), *(here / f for f in files)]]
    return found


def file_sha256(path: Path, size: int) -> str:
    """The file's sha256; a large one's is remembered by its identity (inode, size, time), so
    the wheels hard-linked from a wheelhouse are read once, not on every no-op build."""
    entry = hostcache.key("sha256", hostcache.file_identity(str(path))) if size >= _REMEMBER_FROM else None
    if entry and isinstance(known := hostcache.get("sha256", entry), str):
        return known
    digest = sha256_of(path)
    if entry:
        hostcache.put("sha256", entry, digest)
    return digest
