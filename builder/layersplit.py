#!/usr/bin/env python3
"""Sort the finished venv into layer slots, by distribution and by how often each changes.

Each install step of the builder stage ends with `layersplit.py link VENV OUT FRAMEWORK
RECIPE -- <installer command>`: the command runs, then what it installed is hard-linked into
its slot folder in the same step. The stage's last step (`layersplit.py PLAN.json`) completes
the slots and their manifests (`layersplit.py PLAN.json -- <command>` runs the command
first). The final stage copies each slot folder as its own layer
(`COPY --from=builder /opt/mlbuild-layers/<slot>/ /`), so a change to one package re-ships
that package's slot (and the few small slots above it), not the whole environment.

Slots, bottom to top, most stable first (a registry pull re-downloads every layer above the
first one it lacks): the venv itself (bin/, pyvenv.cfg, .pth files, pip); up to five very
large distributions, each on its own (chosen by the size of the files their RECORD lists:
torch's nvidia-* and triton, numpy, scipy...); the framework and its companions; the rest of
the framework's dependencies; other dependencies; up to two very large packages the recipe
names, each on its own; the recipe's other packages. Each slot carries a manifest,
/opt/mlbuild/layers/<slot>.txt (no two slot layers are ever identical: the classic builder
fails on consecutive identical COPY layers).

An unchanged slot is the same layer (same diff ID) in every rebuild: file times are set to
SOURCE_DATE_EPOCH (a fixed date without one), timestamp-based .pyc headers follow their
sources' new time, owners are root. Standard library only: it runs inside the image.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field

VENV_SLOT = "01-venv"
LARGE_SLOTS = ("02-large-1", "03-large-2", "04-large-3", "05-large-4", "06-large-5")
FRAMEWORK_SLOT = "07-framework"
DEPS_SLOT = "08-deps"
MORE_SLOT = "09-more"
RECIPE_LARGE_SLOTS = ("10-recipe-large-1", "11-recipe-large-2")
RECIPE_SLOT = "12-recipe"
SLOTS = (VENV_SLOT, *LARGE_SLOTS, FRAMEWORK_SLOT, DEPS_SLOT, MORE_SLOT, *RECIPE_LARGE_SLOTS, RECIPE_SLOT)
OUT = "/opt/mlbuild-layers"
MANIFEST_DIR = "opt/mlbuild/layers"  # inside each slot, relative to /
LARGE_BYTES = 16 * 2**20  # a distribution this large gets a layer of its own (while slots last)
SEED = ("pip", "setuptools", "wheel")  # what `python -m venv` puts in: part of the venv slot
DEFAULT_EPOCH = 315532800  # 1980-01-01, the earliest time a zip (wheel) can hold
NAME_RE = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def normalize(name: str) -> str:
    """PEP 503 name: case and runs of - _ . do not matter."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(text: str) -> str | None:
    m = NAME_RE.match(text)
    return normalize(m.group(1)) if m else None


@dataclass(frozen=True)
class Dist:
    name: str  # normalized
    version: str
    size: int  # bytes of the files its RECORD lists (as installed)
    requires: tuple[str, ...] = ()  # normalized names, extras' requirements left out
    files: tuple[str, ...] = field(default=(), compare=False)  # absolute paths


def plan_slots(
    dists: list[Dist], framework: set[str], recipe: set[str], large: int = LARGE_BYTES
) -> dict[str, list[str]]:
    """Which slot each distribution goes to: every slot of SLOTS, each a sorted name list."""
    by_name = {d.name: d for d in dists}
    fw = {n for n in framework if n in by_name}
    closure: set[str] = set()
    todo = [r for n in fw for r in by_name[n].requires]
    while todo:
        n = todo.pop()
        if n in by_name and n not in closure and n not in fw:
            closure.add(n)
            todo += by_name[n].requires
    named = {n for n in recipe if n in by_name} - fw
    slots: dict[str, list[str]] = {s: [] for s in SLOTS}
    slots[FRAMEWORK_SLOT] = sorted(fw)
    rest = sorted(set(by_name) - fw - named)
    big = sorted((n for n in rest if by_name[n].size >= large), key=lambda n: (n not in closure, n))
    for slot, n in zip(LARGE_SLOTS, big):  # noqa: B905 (images run Python 3.9: no strict=); more than slots: the rest stay below
        slots[slot] = [n]
    placed = set(big[: len(LARGE_SLOTS)])
    for n in rest:
        if n in placed:
            continue
        if n in closure:
            slots[DEPS_SLOT].append(n)
        elif n in SEED:
            slots[VENV_SLOT].append(n)
        else:
            slots[MORE_SLOT].append(n)
    big_named = sorted(n for n in named if by_name[n].size >= large)
    for slot, n in zip(RECIPE_LARGE_SLOTS, big_named):  # noqa: B905 (Python 3.9 in images)
        slots[slot] = [n]
    slots[RECIPE_SLOT] = sorted(named - set(big_named[: len(RECIPE_LARGE_SLOTS)]))
    return slots


# -- reading the venv ----------------------------------------------------------------------------
def site_packages(venv: str) -> list[str]:
    lib = os.path.join(venv, "lib")
    if not os.path.isdir(lib):
        return []
    found = [os.path.join(lib, d, "site-packages") for d in sorted(os.listdir(lib))]
    return [p for p in found if os.path.isdir(p) and not os.path.islink(p)]


def _metadata(path: str) -> tuple[str, str, tuple[str, ...]]:
    from email.parser import HeaderParser

    with open(path, encoding="utf-8", errors="replace") as fh:
        msg = HeaderParser().parse(fh)
    requires = []
    for req in msg.get_all("Requires-Dist") or []:
        _, _, marker = req.partition(";")
        if "extra" in marker:
            continue  # an extra's requirement: installed only when asked for, then it is found anyway
        name = requirement_name(req)
        if name:
            requires.append(name)
    return normalize(msg.get("Name") or ""), str(msg.get("Version") or ""), tuple(sorted(set(requires)))


INSTALL_TIME_FILES = ("uv_cache.json",)  # uv's, beside a wheel from a path or --find-links: holds the time


def drop_install_times(venv: str) -> int:
    """Remove what records when an installer ran (and its RECORD lines): two builds of the same
    lock must give the same bytes, and pip never reads it. Returns how many files went."""
    dropped = 0
    for sp in site_packages(venv):
        for entry in sorted(e for e in os.listdir(sp) if e.endswith(".dist-info")):
            info = os.path.join(sp, entry)
            gone = [n for n in INSTALL_TIME_FILES if os.path.isfile(os.path.join(info, n))]
            if not gone:
                continue
            for name in gone:
                os.unlink(os.path.join(info, name))
            record = os.path.join(info, "RECORD")
            if os.path.isfile(record):
                with open(record, encoding="utf-8", newline="") as fh:
                    rows = [row for row in csv.reader(fh) if row and row[0] not in {f"{entry}/{n}" for n in gone}]
                with open(record + ".new", "w", encoding="utf-8", newline="") as fh:
                    csv.writer(fh, lineterminator="\n").writerows(rows)
                os.chmod(record + ".new", os.stat(record).st_mode & 0o7777)
                os.replace(record + ".new", record)  # a new file: an older link to RECORD is not changed
            dropped += len(gone)
    return dropped


def read_dists(venv: str) -> list[Dist]:
    """Every distribution in the venv's site-packages, with the files its RECORD lists."""
    venv = os.path.realpath(venv)
    out = []
    for sp in site_packages(venv):
        for entry in sorted(os.listdir(sp)):
            info = os.path.join(sp, entry)
            if not entry.endswith(".dist-info") or not os.path.isfile(os.path.join(info, "METADATA")):
                continue
            name, version, requires = _metadata(os.path.join(info, "METADATA"))
            files = {os.path.join(info, f) for f in os.listdir(info)}
            record = os.path.join(info, "RECORD")
            if os.path.isfile(record):
                with open(record, encoding="utf-8", newline="") as fh:
                    for row in csv.reader(fh):
                        if row:
                            files.add(os.path.normpath(os.path.join(sp, row[0])))
            owned = tuple(sorted(f for f in files if f.startswith(venv + os.sep) and os.path.lexists(f)))
            size = sum(os.lstat(f).st_size for f in owned)
            out.append(
                Dist(name or normalize(entry[: -len(".dist-info")].split("-")[0]), version, size, requires, owned)
            )
    return out


def owners(venv: str, dists: list[Dist]) -> dict[str, str]:
    """Every file and symlink in the venv -> its distribution ("" for the venv's own files).

    Files no RECORD lists (.pyc compiled after the install, files a package wrote later)
    belong to the distribution that owns files in their nearest folder below site-packages."""
    venv = os.path.realpath(venv)
    owner: dict[str, str] = {}
    by_dir: dict[str, str] = {}
    for d in sorted(dists, key=lambda d: d.name):
        for f in d.files:
            owner.setdefault(f, d.name)
            by_dir.setdefault(os.path.dirname(f), d.name)
    roots = set(site_packages(venv))
    out: dict[str, str] = {}
    for top, dirs, files in os.walk(venv):
        dirs.sort()
        for name in sorted(files + [d for d in dirs if os.path.islink(os.path.join(top, d))]):
            path = os.path.join(top, name)
            out[path] = owner.get(path) or _nearest(path, by_dir, roots)
    return out


def _nearest(path: str, by_dir: dict[str, str], roots: set[str]) -> str:
    folder = os.path.dirname(path)
    root = next((r for r in roots if folder.startswith(r + os.sep)), None)
    while root is not None and folder != root:
        if folder in by_dir:
            return by_dir[folder]
        folder = os.path.dirname(folder)
    return ""


# -- linking and normalising ---------------------------------------------------------------------
# Files are hard-linked into their slot, not moved, and each install step links what it wrote in
# the same RUN (`layersplit.py link ... -- <installer>`). On overlayfs a rename, a link or a time
# change of a file an *earlier* step wrote copies all its bytes up into the new layer first: the
# final split of a whole venv cost seconds per rebuild that way. The final split keeps every link
# an earlier step made that is still right (the same inode, already normalised) and makes the rest.
def _ensure_dir(slot_root: str, folder: str) -> None:
    target = slot_root + folder
    if os.path.isdir(target):
        return
    parent = os.path.dirname(folder)
    if parent != folder:
        _ensure_dir(slot_root, parent)
    os.mkdir(target)
    os.chmod(target, os.stat(folder).st_mode & 0o7777)


def _move(path: str, slot_root: str) -> None:
    _ensure_dir(slot_root, os.path.dirname(path))
    os.rename(path, slot_root + path)


def _fix_pyc(path: str, epoch: int) -> None:
    """A timestamp-based .pyc records its source's mtime: make it the normalised one."""
    with open(path, "r+b") as fh:
        head = fh.read(16)
        if len(head) == 16 and head[4:8] == b"\0\0\0\0":
            fh.seek(8)
            fh.write((epoch & 0xFFFFFFFF).to_bytes(4, "little"))


def _as_root() -> bool:
    return os.geteuid() == 0  # the build step always is; tests on a host may not be


def normalise_file(path: str, epoch: int) -> None:
    if path.endswith(".pyc") and not os.path.islink(path):
        _fix_pyc(path, epoch)
    if _as_root():
        os.lchown(path, 0, 0)
    os.utime(path, (epoch, epoch), follow_symlinks=False)


def normalise_dirs(root: str, epoch: int) -> None:
    """Folders only: their files were normalised when they were linked."""
    for top, dirs, _files in os.walk(root, topdown=False):
        for name in dirs:
            path = os.path.join(top, name)
            if not os.path.islink(path):
                normalise_file(path, epoch)
    normalise_file(root, epoch)


def _current(path: str, linked: str, epoch: int) -> bool:
    """An earlier step's link that still is the venv's file: the same inode (a later install that
    replaced or rewrote the file made a new one), normalised already."""
    a, b = os.lstat(path), os.lstat(linked)
    return os.path.samestat(a, b) and int(b.st_mtime) == epoch and (b.st_uid == 0 or not _as_root())


def _keep_current(venv: str, out: str, want: dict[str, str], epoch: int) -> int:
    """Drop from `want` what is linked in its slot already; unlink what an earlier step linked
    that is no longer right (replaced, removed, or planned for another slot now)."""
    kept = 0
    for slot in SLOTS:
        root = os.path.join(out, slot)
        for top, dirs, files in os.walk(root + venv, topdown=False):
            for name in files + [d for d in dirs if os.path.islink(os.path.join(top, d))]:
                linked = os.path.join(top, name)
                path = linked[len(root) :]
                if want.get(path) == slot and _current(path, linked, epoch):
                    del want[path]
                    kept += 1
                else:
                    os.unlink(linked)
            if top != root + venv and not os.listdir(top):
                os.rmdir(top)  # emptied: a split of the whole venv at once would not have it
    return kept


def place(
    venv: str, out: str, framework: set[str], recipe: set[str], epoch: int
) -> tuple[dict[str, list[str]], dict[str, str], int, int]:
    """Link every file of the venv into the slot the plan gives its distribution now, normalised.
    Returns the slots, each distribution's version, and how many files were linked and kept."""
    venv = os.path.realpath(venv)
    drop_install_times(venv)
    dists = read_dists(venv)
    slots = plan_slots(dists, framework, recipe)
    slot_of = {n: s for s, names in slots.items() for n in names}
    want = {path: slot_of.get(dist, VENV_SLOT) for path, dist in owners(venv, dists).items()}
    os.makedirs(out, exist_ok=True)
    for slot in SLOTS:
        root = os.path.join(out, slot)
        if not os.path.isdir(root):
            os.mkdir(root)
            os.chmod(root, 0o755)
        _ensure_dir(root, venv)
    kept = _keep_current(venv, out, want, epoch)
    for path, slot in sorted(want.items()):
        root = os.path.join(out, slot)
        _ensure_dir(root, os.path.dirname(path))
        os.link(path, root + path, follow_symlinks=False)
        normalise_file(root + path, epoch)
    return slots, {d.name: d.version for d in dists}, len(want), kept


def split(
    venv: str, out: str, framework: set[str], recipe: set[str], epoch: int, files: dict[str, str] | None = None
) -> dict[str, list[str]]:
    """The builder stage's last step: every slot complete, with its manifest, folders normalised.
    `files`: other files of the builder stage (absolute path -> slot) that go with a slot,
    normalised with it: a file the final stage copied on its own would be a layer of its own
    whose folder times change with every build."""
    venv = os.path.realpath(venv)
    slots, versions, _linked, _kept = place(venv, out, framework, recipe, epoch)
    for top, dirs, names in os.walk(venv):  # empty folders are kept, in the venv slot
        if not dirs and not names:
            _ensure_dir(os.path.join(out, VENV_SLOT), top)
    for path, slot in sorted((files or {}).items()):
        _move(path, os.path.join(out, slot))
        normalise_file(os.path.join(out, slot) + path, epoch)
    for slot in SLOTS:
        root = os.path.join(out, slot)
        manifest = os.path.join(root, MANIFEST_DIR)
        os.makedirs(manifest, mode=0o755, exist_ok=True)
        lines = [f"# mlbuild layer {slot}: the distributions in it\n"]
        lines += [f"{n}=={versions[n]}\n" for n in slots[slot]]
        with open(os.path.join(manifest, slot + ".txt"), "w", encoding="utf-8") as fh:
            fh.write("".join(lines))
        os.chmod(os.path.join(manifest, slot + ".txt"), 0o644)
        normalise_file(os.path.join(manifest, slot + ".txt"), epoch)
        normalise_dirs(root, epoch)
    return slots


def _epoch() -> int:
    return int(os.environ.get("SOURCE_DATE_EPOCH") or DEFAULT_EPOCH)


def _names(text: str) -> set[str]:
    return {normalize(n) for n in text.split(",") if n}


def run_first(command: list[str]) -> int:
    """The step's own command, before the layers are touched: its exit status, as a shell's."""
    if not command:
        return 0
    sys.stdout.flush()
    code = subprocess.call(command)
    return code if code >= 0 else 128 - code  # killed by a signal


def run_and_link(argv: list[str]) -> int:
    """`link VENV OUT FRAMEWORK RECIPE -- COMMAND...`: run an install step's command, then link
    what it installed into the slots (FRAMEWORK, RECIPE: comma-separated names)."""
    if len(argv) < 5 or argv[4] != "--":
        print(__doc__, file=sys.stderr)
        return 2
    venv, out, framework, recipe, command = argv[0], argv[1], argv[2], argv[3], argv[5:]
    code = run_first(command)
    if code:
        return code
    _slots, _versions, linked, kept = place(venv, out, _names(framework), _names(recipe), _epoch())
    print(f"mlbuild layers: {linked} files linked into their slots, {kept} kept")
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["link"]:
        return run_and_link(argv[1:])
    if len(argv) < 1 or (len(argv) > 1 and argv[1] != "--"):  # PLAN.json [-- COMMAND...]
        print(__doc__, file=sys.stderr)
        return 2
    code = run_first(argv[2:])
    if code:
        return code
    with open(argv[0], encoding="utf-8") as fh:
        plan = json.load(fh)
    slots = split(
        plan["venv"],
        plan.get("out", OUT),
        {normalize(n) for n in plan.get("framework", [])},
        {normalize(n) for n in plan.get("recipe", [])},
        _epoch(),
        plan.get("files", {}),
    )
    for slot in SLOTS:
        print(f"{slot}: {' '.join(slots[slot]) or '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
