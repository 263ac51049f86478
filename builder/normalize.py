"""Make an image's bytes depend only on what is in it, not on when or where it was built.

The classic builder writes the build time into the image config (`created`, every history
entry), the ID of the build container (`container`, `container_config`), the intermediate
parent image (`config.Image`), and layer tars whose file times are the moment each step ran.
`normalize` rewrites the image through `docker save` / `docker load`:

- every layer above the base: entries sorted by name (hard links after their targets), file
  times clamped to the lock's epoch (times older than it, e.g. from .deb files, are kept), no
  atime/ctime headers, owner names dropped (numeric IDs only), PAX format;
- the config: `created` and history times = the epoch, no container, parent or engine version,
  keys sorted, so the image ID (the sha256 of the config) is a function of the content alone.

The base's own layers are left byte-for-byte as they are, so they stay shared with the base.
`SavedImage` is also what imagediff and sbom read.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from builder import sbom
from builder.errors import EngineError
from builder.fileio import write_atomic
from builder.labels import SBOM_LABEL
from builder.lock import Lock, iso, sbom_path
from builder.tarstream import tar_stream

if TYPE_CHECKING:
    from builder.engine_api import Engine

CHUNK = 1 << 20
DROP_PAX = ("atime", "ctime", "mtime", "uname", "gname", "uid", "gid")


@dataclass(frozen=True)
class FileEntry:
    """One tar entry as diff sees it; `digest` is the content's sha256 (files) or link target."""

    kind: str  # file dir link hardlink char block fifo
    mode: int
    uid: int
    gid: int
    size: int
    digest: str
    mtime: int

    def describe(self) -> str:
        return f"{self.kind} {self.mode:o} {self.uid}:{self.gid} {self.size} B {self.digest[:19]} t={self.mtime}"


@dataclass(frozen=True)
class SavedImage:
    """An image saved to a folder: its config and one uncompressed tar per layer."""

    folder: Path
    config: dict[str, Any]
    config_bytes: bytes
    layers: tuple[Path, ...]

    @property
    def image_id(self) -> str:
        return "sha256:" + hashlib.sha256(self.config_bytes).hexdigest()

    @property
    def diff_ids(self) -> tuple[str, ...]:
        return tuple(self.config.get("rootfs", {}).get("diff_ids") or ())

    def layer_files(
        self, index: int, keep: Callable[[str], bool] | None = None
    ) -> dict[str, tuple[FileEntry, bytes | None]]:
        """path -> entry (and, where `keep(path)`, the content) of one layer."""
        return read_layer(self.layers[index], keep)


def save(engine: Engine, ref: str, folder: Path) -> SavedImage:
    """`docker save` into `folder` (unpacked: the layers are needed one by one)."""
    folder.mkdir(parents=True, exist_ok=True)
    raw = folder / "image.tar"
    with raw.open("wb") as fh:
        for chunk in engine.save(ref):
            fh.write(chunk)
    with tarfile.open(raw) as tar:
        tar.extractall(folder / "x", filter="data")  # our own engine's output
    raw.unlink()
    root = folder / "x"
    manifest = json.loads((root / "manifest.json").read_text())[0]
    config_bytes = (root / manifest["Config"]).read_bytes()
    return SavedImage(root, json.loads(config_bytes), config_bytes, tuple(root / p for p in manifest["Layers"]))


def read_layer(path: Path, keep: Callable[[str], bool] | None = None) -> dict[str, tuple[FileEntry, bytes | None]]:
    out: dict[str, tuple[FileEntry, bytes | None]] = {}
    with tarfile.open(path) as tar:
        for m in tar:
            name = m.name[2:] if m.name.startswith("./") else m.name
            content: bytes | None = None
            digest = m.linkname
            if m.isreg():
                h = hashlib.sha256()
                fh = tar.extractfile(m)
                assert fh is not None
                wanted = keep is not None and keep(name)
                parts = []
                while block := fh.read(CHUNK):
                    h.update(block)
                    if wanted:
                        parts.append(block)
                digest = "sha256:" + h.hexdigest()
                content = b"".join(parts) if wanted else None
            out[name] = (
                FileEntry(_kind(m), m.mode & 0o7777, m.uid, m.gid, m.size, digest, int(m.mtime)),
                content,
            )
    return out


def _kind(m: tarfile.TarInfo) -> str:
    if m.islnk():
        return "hardlink"
    if m.issym():
        return "link"
    if m.isdir():
        return "dir"
    if m.ischr():
        return "char"
    if m.isblk():
        return "block"
    if m.isfifo():
        return "fifo"
    return "file"


def rewrite_layer(src: Path, dst: Path, epoch: int) -> str:
    """Write `src` again with sorted entries and clamped times; returns the new diff ID."""
    with tarfile.open(src) as tar:
        members = tar.getmembers()
        # Hard links after every other entry: their target must exist when one is extracted.
        members.sort(key=lambda m: (m.islnk(), m.name))
        with dst.open("wb") as raw:
            hashing = _HashingWriter(raw)
            with tarfile.open(fileobj=hashing, mode="w", format=tarfile.PAX_FORMAT) as out:  # type: ignore[call-overload]
                for m in members:
                    n = _clean(m, epoch)
                    out.addfile(n, tar.extractfile(m) if m.isreg() else None)
            # the tar module pads the archive after close; everything went through `hashing`
    return "sha256:" + hashing.sha.hexdigest()


def _clean(m: tarfile.TarInfo, epoch: int) -> tarfile.TarInfo:
    n = tarfile.TarInfo(m.name)
    n.type, n.mode, n.uid, n.gid, n.size = m.type, m.mode, m.uid, m.gid, m.size
    n.linkname, n.devmajor, n.devminor = m.linkname, m.devmajor, m.devminor
    n.mtime = min(int(m.mtime), epoch)
    n.uname = n.gname = ""
    # keep what matters at run time (file capabilities and other xattrs), drop times and names
    n.pax_headers = {
        k: v
        for k, v in sorted(m.pax_headers.items())
        if k not in DROP_PAX and k != "path" and k != "linkpath" and k != "size"
    }
    return n


class _HashingWriter:
    def __init__(self, raw: Any):
        self.raw = raw
        self.sha = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        return int(self.raw.write(data))

    def tell(self) -> int:
        return int(self.raw.tell())


@dataclass(frozen=True)
class Normalized:
    image_id: str
    raw_id: str  # what the builder made, before normalisation
    diff_ids: tuple[str, ...]
    files: dict[str, bytes]  # contents of the paths `capture` asked for (the merged view)
    seconds: float


def normalize(
    engine: Engine,
    image_id: str,
    epoch: int,
    *,
    keep_layers: int,
    labels: Callable[[dict[str, bytes]], dict[str, str]] | None = None,
    capture: Callable[[str], bool] | None = None,
) -> Normalized:
    """Rewrite `image_id` (see the module's doc) and load the result; returns its new ID.

    `keep_layers`: how many bottom layers are the base's (left as they are). `capture` picks
    files whose final contents `labels` may read to add labels (e.g. the SBOM's digest)."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mlbuild-normalize-") as tmp:
        folder = Path(tmp)
        saved = save(engine, image_id, folder / "in")
        out = folder / "out"
        out.mkdir()
        diff_ids: list[str] = []
        layer_names: list[str] = []
        files: dict[str, bytes] = {}
        for i, layer in enumerate(saved.layers):
            name = f"{i:03d}.tar"
            if i < keep_layers:
                shutil.copyfile(layer, out / name)
                diff_ids.append(saved.diff_ids[i])
            else:
                diff_ids.append(rewrite_layer(layer, out / name, epoch))
            if capture:
                _merge_captured(files, capture_layer(out / name, capture))
            layer_names.append(name)
        config = normalized_config(saved.config, epoch, tuple(diff_ids))
        if labels:
            config["config"]["Labels"] = {**(config["config"].get("Labels") or {}), **labels(files)}
        config_bytes = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
        new_id = "sha256:" + hashlib.sha256(config_bytes).hexdigest()
        (out / "config.json").write_bytes(config_bytes)
        manifest = [{"Config": "config.json", "RepoTags": None, "Layers": layer_names}]
        (out / "manifest.json").write_text(json.dumps(manifest))
        engine.load(_bundle(out, ["manifest.json", "config.json", *layer_names]))
    if engine.image_id(new_id) != new_id:
        raise EngineError(f"the normalised image {new_id[:19]} did not load")
    return Normalized(new_id, image_id, tuple(diff_ids), files, time.monotonic() - started)


def whiteouts(paths: list[str]) -> list[tuple[str, bool]]:
    """(hidden path, opaque) for each whiteout entry: a lower file or folder, or a whole
    folder's lower contents (`.wh..wh..opq`)."""
    out = []
    for path in paths:
        folder, _, base = path.rpartition("/")
        if base == ".wh..wh..opq":
            out.append((folder, True))
        elif base.startswith(".wh."):
            out.append((f"{folder}/{base[4:]}" if folder else base[4:], False))
    return out


def hides(hidden: str, opaque: bool, path: str) -> bool:
    prefix = hidden + "/" if hidden else ""
    return path.startswith(prefix) if opaque else (path == hidden or path.startswith(prefix))


def capture_layer(path: Path, keep: Callable[[str], bool]) -> dict[str, tuple[FileEntry, bytes | None]]:
    """Only the whiteouts and the files `keep` wants (no hashing: quick)."""
    out: dict[str, tuple[FileEntry, bytes | None]] = {}
    with tarfile.open(path) as tar:
        for m in tar:
            name = m.name[2:] if m.name.startswith("./") else m.name
            if name.rpartition("/")[2].startswith(".wh.") or (m.isreg() and keep(name)):
                fh = tar.extractfile(m) if m.isreg() else None
                entry = FileEntry(_kind(m), m.mode & 0o7777, m.uid, m.gid, m.size, "", int(m.mtime))
                out[name] = (entry, fh.read() if fh else None)
    return out


def _bundle(folder: Path, names: list[str]) -> Iterator[bytes]:
    """A `docker load` tar of `names`, streamed (never a second copy of the layers on disk)."""

    def fill(tar: tarfile.TarFile) -> None:
        for name in names:
            tar.add(folder / name, arcname=name)

    return tar_stream(fill, "the normalised image")


def _merge_captured(files: dict[str, bytes], layer: dict[str, tuple[FileEntry, bytes | None]]) -> None:
    for hidden, opaque in whiteouts(list(layer)):
        for key in [k for k in files if hides(hidden, opaque, k)]:
            del files[key]
    for path, (_entry, content) in layer.items():
        if content is not None:
            files[path] = content


def normalized_config(config: dict[str, Any], epoch: int, diff_ids: tuple[str, ...]) -> dict[str, Any]:
    when = iso(epoch)
    out = {k: v for k, v in config.items() if k not in ("container", "container_config", "docker_version", "parent")}
    out["created"] = when
    out["history"] = [{**h, "created": when} for h in config.get("history") or []]
    out["config"] = {**(config.get("config") or {}), "Image": "", "Hostname": ""}
    out["rootfs"] = {"type": "layers", "diff_ids": list(diff_ids)}
    return out


def normalize_locked(
    engine: Engine,
    image_id: str,
    lock: Lock,
    base_id: str,
    recipe_path: Path,
    say: Callable[[str], None] = lambda _: None,
) -> str:
    """A locked build's last step: normalise the image, write its SBOM beside the lock, and
    name the SBOM (with its digest) in a label. Returns the normalised image's ID."""
    spec = lock.spec
    keep = len((engine.inspect(base_id).get("RootFS") or {}).get("Layers") or [])
    target = sbom_path(recipe_path)
    written: dict[str, str] = {}

    def labels(files: dict[str, bytes]) -> dict[str, str]:
        doc = sbom.cyclonedx(
            sbom.packages(files),
            str(spec.get("name")),
            str(spec.get("framework_version")),
            iso(lock.epoch),
        )
        written["text"] = sbom.to_text(doc)
        return {SBOM_LABEL: f"{target.name} {sbom.digest(written['text'])}"}

    done = normalize(engine, image_id, lock.epoch, keep_layers=keep, labels=labels, capture=sbom.wanted)
    write_atomic(target, written["text"])
    say(f"normalised {done.raw_id} -> {done.image_id} ({done.seconds:.1f} s); SBOM {target}")
    if done.raw_id != done.image_id:
        engine.remove_image(done.raw_id, force=False)  # the builder's own, time-stamped image
    return done.image_id
