"""What differs between two images: packages first (Python, OS), then environment and labels,
then layers and files. builder.verify uses the layer/file part to say where a rebuild went
astray.

Both images are saved (`docker save`) and read layer by layer; a file's identity is its type,
mode, owner, size, content sha256 (or link target) and mtime.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from builder import sbom
from builder.changes import changed
from builder.layersplit import MANIFEST_DIR
from builder.normalize import FileEntry, SavedImage, hides, read_layer, save, whiteouts
from builder.spec import SPEC_PATH

if TYPE_CHECKING:
    from builder.engine_api import Engine

MAX_FILES = 50  # per layer, in text output
MANIFESTS = MANIFEST_DIR + "/"


@dataclass(frozen=True)
class LayerDiff:
    index: int
    a: str | None  # diff ID, None when the image has no such layer
    b: str | None
    files: tuple[str, ...]  # "path: what differs"
    more: int = 0  # differing files not listed
    group: str = ""  # the venv slot the layer carries (builder/layersplit.py), or "metadata"


@dataclass(frozen=True)
class ImageDiff:
    a: str
    b: str
    a_id: str
    b_id: str
    python: tuple[str, ...]
    os: tuple[str, ...]
    env: tuple[str, ...]
    labels: tuple[str, ...]
    config: tuple[str, ...]
    layers: tuple[LayerDiff, ...]
    files: tuple[str, ...] = field(default=())  # the merged file systems

    @property
    def identical(self) -> bool:
        return self.a_id == self.b_id

    @property
    def groups(self) -> tuple[str, ...]:
        """The layer groups (venv slots, mlbuild's metadata) whose layers differ."""
        return tuple(dict.fromkeys(d.group for d in self.layers if d.group))

    def to_dict(self) -> dict[str, Any]:
        return {
            "a": self.a,
            "b": self.b,
            "a_id": self.a_id,
            "b_id": self.b_id,
            "identical": self.identical,
            "python": list(self.python),
            "os": list(self.os),
            "env": list(self.env),
            "labels": list(self.labels),
            "config": list(self.config),
            "layers": [
                {"index": d.index, "group": d.group, "a": d.a, "b": d.b, "files": list(d.files), "more": d.more}
                for d in self.layers
            ],
            "groups": list(self.groups),
            "files": list(self.files),
        }

    def lines(self) -> list[str]:
        if self.identical:
            return [f"identical: {self.a_id}"]
        out = [f"a  {self.a} {self.a_id}", f"b  {self.b} {self.b_id}"]
        for title, items in (
            ("Python packages", self.python),
            ("OS packages", self.os),
            ("environment", self.env),
            ("labels", self.labels),
            ("config", self.config),
        ):
            if items:
                out.append(f"{title}:")
                out += [f"  {x}" for x in items]
        if self.groups:
            out.append(f"layer groups that differ: {', '.join(self.groups)}")
        for d in self.layers:
            group = f" ({d.group})" if d.group else ""
            out.append(f"layer {d.index}{group}: {(d.a or 'none')[:19]} vs {(d.b or 'none')[:19]}")
            out += [f"  {f}" for f in d.files[:MAX_FILES]]
            if d.more or len(d.files) > MAX_FILES:
                out.append(f"  ... and {d.more + max(0, len(d.files) - MAX_FILES)} more")
        if self.files:
            out.append("files (final file system):")
            out += [f"  {f}" for f in self.files[:MAX_FILES]]
            if len(self.files) > MAX_FILES:
                out.append(f"  ... and {len(self.files) - MAX_FILES} more")
        return out


def diff_images(engine: Engine, a: str, b: str, *, files: bool = True) -> ImageDiff:
    with tempfile.TemporaryDirectory(prefix="mlbuild-diff-") as tmp:
        sa = save(engine, a, Path(tmp) / "a")
        sb = save(engine, b, Path(tmp) / "b")
        return compare(sa, sb, a, b, files=files)


def compare(sa: SavedImage, sb: SavedImage, a: str = "a", b: str = "b", *, files: bool = True) -> ImageDiff:
    ca, cb = sa.config.get("config") or {}, sb.config.get("config") or {}
    env = _diff_pairs(_env(ca.get("Env")), _env(cb.get("Env")))
    labels = _diff_pairs(ca.get("Labels") or {}, cb.get("Labels") or {}, long=120)
    config = _diff_pairs(
        {k: _text(v) for k, v in ca.items() if k not in ("Env", "Labels")} | {"created": str(sa.config.get("created"))},
        {k: _text(v) for k, v in cb.items() if k not in ("Env", "Labels")} | {"created": str(sb.config.get("created"))},
    )
    layers: list[LayerDiff] = []
    trees: list[dict[str, FileEntry]] = [{}, {}]
    contents: list[dict[str, bytes]] = [{}, {}]
    n = max(len(sa.layers), len(sb.layers))
    for i in range(n):
        la = read_layer(sa.layers[i], sbom.wanted) if i < len(sa.layers) else None
        lb = read_layer(sb.layers[i], sbom.wanted) if i < len(sb.layers) else None
        for tree, content, layer in ((trees[0], contents[0], la), (trees[1], contents[1], lb)):
            if layer is not None:
                _apply(tree, content, layer)
        ida = sa.diff_ids[i] if i < len(sa.diff_ids) else None
        idb = sb.diff_ids[i] if i < len(sb.diff_ids) else None
        if ida == idb:
            continue
        ea = {p: e for p, (e, _) in (la or {}).items()}
        eb = {p: e for p, (e, _) in (lb or {}).items()}
        changed = _diff_entries(ea, eb)
        group = layer_group(la) or layer_group(lb)
        if files or len(changed) <= MAX_FILES:
            layers.append(LayerDiff(i, ida, idb, tuple(changed), group=group))
        else:  # without files: still named, so that the groups that differ are all listed
            layers.append(LayerDiff(i, ida, idb, (), more=len(changed), group=group))
    pa, pb = sbom.packages(contents[0]), sbom.packages(contents[1])
    python = _diff_packages([p for p in pa if p.ecosystem == "pypi"], [p for p in pb if p.ecosystem == "pypi"])
    os_pkgs = _diff_packages([p for p in pa if p.ecosystem == "deb"], [p for p in pb if p.ecosystem == "deb"])
    merged = tuple(_diff_entries(trees[0], trees[1])) if files else ()
    return ImageDiff(
        a,
        b,
        sa.image_id,
        sb.image_id,
        tuple(python),
        tuple(os_pkgs),
        tuple(env),
        tuple(labels),
        tuple(config),
        tuple(layers),
        merged,
    )


def layer_group(layer: dict[str, tuple[FileEntry, bytes | None]] | None) -> str:
    """A venv slot's layer names itself with its manifest; mlbuild's metadata holds the spec."""
    for path in layer or {}:
        if path.startswith(MANIFESTS) and path.endswith(".txt"):
            return path[len(MANIFESTS) : -len(".txt")]
    return "metadata" if layer and SPEC_PATH.lstrip("/") in layer else ""


def _apply(
    tree: dict[str, FileEntry],
    content: dict[str, bytes],
    layer: dict[str, tuple[FileEntry, bytes | None]],
) -> None:
    for hidden, opaque in whiteouts(list(layer)):
        for key in [k for k in tree if hides(hidden, opaque, k)]:
            tree.pop(key, None)
            content.pop(key, None)
    for path, (entry, data) in layer.items():
        if path.rpartition("/")[2].startswith(".wh."):
            continue
        tree[path] = entry
        if data is not None:
            content[path] = data


def _diff_entries(a: dict[str, FileEntry], b: dict[str, FileEntry]) -> list[str]:
    out = []
    for path in sorted(set(a) | set(b)):
        ea, eb = a.get(path), b.get(path)
        if ea == eb:
            continue
        if ea is None:
            out.append(f"+ {path}")
        elif eb is None:
            out.append(f"- {path}")
        else:
            what = [
                name
                for name in ("kind", "mode", "uid", "gid", "size", "digest", "mtime")
                if getattr(ea, name) != getattr(eb, name)
            ]
            out.append(f"~ {path} ({', '.join(_changed(w, ea, eb) for w in what)})")
    return out


def _changed(field: str, a: FileEntry, b: FileEntry) -> str:
    """One changed field, with both values where they are short (times, modes, owners)."""
    if field == "digest":
        return "content"
    if field == "mtime":
        return f"mtime {_when(a.mtime)} vs {_when(b.mtime)}"
    if field == "mode":
        return f"mode {a.mode:o} vs {b.mode:o}"
    return f"{field} {getattr(a, field)} vs {getattr(b, field)}"


def _when(seconds: int) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _diff_packages(a: list[sbom.Package], b: list[sbom.Package]) -> list[str]:
    return changed({p.name: p.version for p in a}, {p.name: p.version for p in b})


def _env(env: list[str] | None) -> dict[str, str]:
    return dict(e.partition("=")[::2] for e in env or [])


def _text(value: Any) -> str:
    import json

    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _diff_pairs(a: dict[str, Any], b: dict[str, Any], long: int = 200) -> list[str]:
    def cut(v: Any) -> str:
        s = str(v)
        return s if len(s) <= long else s[: long - 3] + "..."

    out = []
    for key in sorted(set(a) | set(b)):
        if key not in a:
            out.append(f"+ {key}={cut(b[key])}")
        elif key not in b:
            out.append(f"- {key}={cut(a[key])}")
        elif a[key] != b[key]:
            out.append(f"~ {key}: {cut(a[key])} -> {cut(b[key])}")
    return out
