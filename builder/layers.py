"""How many bytes images share: their layers by chain ID, with sizes from the engine's
history, checked against what the engine's own `docker system df -v` says. Used to report
what a many-image build saves; reads the engine, changes nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from builder.engine_api import Engine
from builder.errors import MlbuildError
from builder.layersplit import SLOTS


@dataclass(frozen=True)
class Layer:
    chain_id: str
    diff_id: str
    size: int
    created_by: str = ""  # the history entry that made it


@dataclass(frozen=True)
class Sharing:
    """Bytes of the variants' images: as if apart, as stored, and in layers 2+ of them use."""

    images: tuple[str, ...]
    total_bytes: int  # the sum of the images' sizes: what they would take without sharing
    stored_bytes: int  # each distinct layer once
    shared_bytes: int  # distinct layers used by two or more of the images
    shared_layers: int

    @property
    def saved_bytes(self) -> int:
        return self.total_bytes - self.stored_bytes

    def to_dict(self) -> dict[str, Any]:
        return {
            **dataclasses.asdict(self),
            "images": list(self.images),
            "saved_bytes": self.saved_bytes,
        }


def chain_ids(diff_ids: list[str]) -> list[str]:
    """The layer store keys a layer by its chain ID, not its diff ID: the same content on
    another parent is stored again. ChainID(L0) = DiffID(L0); ChainID(Ln) =
    sha256(ChainID(Ln-1) + " " + DiffID(Ln)) (OCI image spec, "Layer ChainID")."""
    out: list[str] = []
    for diff in diff_ids:
        if not out:
            out.append(diff)
        else:
            out.append("sha256:" + hashlib.sha256(f"{out[-1]} {diff}".encode()).hexdigest())
    return out


# History entries that never make a layer (metadata only); others may, even with 0 bytes.
_METADATA_ONLY = re.compile(  # classic builder: "/bin/sh -c #(nop)  ENV ..."; BuildKit: "ENV ..."
    r"(?:#\(nop\)\s+|^)(ENV|LABEL|CMD|ENTRYPOINT|USER|EXPOSE|ARG|ONBUILD|STOPSIGNAL|HEALTHCHECK|SHELL|"
    r"VOLUME|MAINTAINER)\b"
)


def layer_sizes(history: list[dict[str, Any]], count: int) -> list[int] | None:
    """Sizes of an image's `count` layers, oldest first, from the engine's history.

    The history lists every instruction, newest first, with the size of the layer it made
    (0 for metadata). Entries with bytes are layers for sure; a 0-byte entry may be an empty
    layer or none. None when the layers cannot be told apart (the caller says so).
    """
    entries = layer_entries(history, count)
    return None if entries is None else [int(e.get("Size") or 0) for e in entries]


def layer_entries(history: list[dict[str, Any]], count: int) -> list[dict[str, Any]] | None:
    """The history entries that made the image's `count` layers, oldest first (see layer_sizes)."""
    entries = list(reversed(history))
    sure = [i for i, e in enumerate(entries) if int(e.get("Size") or 0) > 0]
    maybe = [
        i
        for i, e in enumerate(entries)
        if int(e.get("Size") or 0) == 0 and not _METADATA_ONLY.search(str(e.get("CreatedBy") or ""))
    ]
    if len(sure) == count:
        picks = sure
    elif len(sure) + len(maybe) == count:
        picks = sorted(sure + maybe)
    elif not sure and count:
        return [{"Size": 0, "CreatedBy": ""}] * count  # nothing has bytes: every layer is empty
    else:
        return None
    return [entries[i] for i in picks]


def image_layers(engine: Engine, ref: str) -> list[Layer]:
    attrs = engine.inspect(ref)
    diffs = list((attrs.get("RootFS") or {}).get("Layers") or [])
    entries = layer_entries(engine.history(ref), len(diffs))
    sizes = None if entries is None else [int(e.get("Size") or 0) for e in entries]
    if entries is None or sizes is None or sum(sizes) != int(attrs.get("Size") or 0):
        raise MlbuildError(
            f"cannot tell the layer sizes of {ref} from its history",
            details=[f"{len(diffs)} layers, history sizes do not add up to {attrs.get('Size')}"],
        )
    return [
        Layer(c, d, s, str(e.get("CreatedBy") or ""))
        for c, d, s, e in zip(chain_ids(diffs), diffs, sizes, entries, strict=True)
    ]


# A slot's COPY (builder/layersplit.py): the classic builder records `COPY dir:<hash> in / `,
# BuildKit `COPY /opt/mlbuild-layers/<slot>/ / # buildkit`. Only slots are copied to "/".
_SLOT_COPY = re.compile(r"COPY (?:dir:[0-9a-f]+ in / *$|(?:--from=\S+ )?/opt/mlbuild-layers/(?P<slot>[\w.-]+)/ / )")
BELOW, ABOVE = "base and OS packages", "metadata, user and files"


@dataclass(frozen=True)
class Group:
    """Consecutive layers of an image that belong together: one venv slot, or what lies below
    the slots (the base, OS packages) or above them (mlbuild's files, the user, the recipe's files)."""

    name: str
    size: int
    diff_ids: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "size": self.size, "layers": len(self.diff_ids), "diff_ids": list(self.diff_ids)}


def layer_groups(layers: list[Layer]) -> list[Group]:
    """The image's layers grouped by venv slot; one group of all layers for images without slots."""
    slots = [i for i, lay in enumerate(layers) if _SLOT_COPY.search(lay.created_by)]
    if len(slots) != len(SLOTS) or slots != list(range(slots[0], slots[0] + len(SLOTS))):
        return [_group("all layers (no venv slots)", layers)]
    first, last = slots[0], slots[-1]
    groups = [_group(BELOW, layers[:first])]
    for i, name in zip(slots, SLOTS, strict=True):
        m = _SLOT_COPY.search(layers[i].created_by)
        groups.append(_group((m and m.group("slot")) or name, [layers[i]]))
    return [*groups, _group(ABOVE, layers[last + 1 :])]


def _group(name: str, layers: list[Layer]) -> Group:
    return Group(name, sum(lay.size for lay in layers), tuple(lay.diff_id for lay in layers))


def sharing(engine: Engine, images: Iterable[str]) -> Sharing:
    ids = tuple(dict.fromkeys(str(engine.inspect(i)["Id"]) for i in images))  # one per image
    layers = {i: image_layers(engine, i) for i in ids}
    users: dict[str, int] = {}
    size: dict[str, int] = {}
    for ls in layers.values():
        for layer in {lay.chain_id: lay for lay in ls}.values():
            users[layer.chain_id] = users.get(layer.chain_id, 0) + 1
            size[layer.chain_id] = layer.size
    shared = [c for c, n in users.items() if n > 1]
    return Sharing(
        images=ids,
        total_bytes=sum(lay.size for ls in layers.values() for lay in ls),
        stored_bytes=sum(size.values()),
        shared_bytes=sum(size[c] for c in shared),
        shared_layers=len(shared),
    )


@dataclass(frozen=True)
class DfRow:
    image_id: str
    size: int  # from the layers
    shared: int  # bytes in layers that another image on the engine also uses, from the layers
    df_size: int  # what `docker system df -v` says
    df_shared: int

    @property
    def agrees(self) -> bool:
        return self.size == self.df_size and self.shared == self.df_shared


def check_with_df(engine: Engine, images: Iterable[str]) -> list[DfRow]:
    """Recompute `docker system df -v`'s SIZE and SHARED SIZE of each image from the layers.

    The engine counts, for each layer (by chain ID), how many of the images `docker images`
    lists use it (intermediate images of the classic builder are not listed, and not
    counted); a layer used by more than one is shared. Agreement with the engine's numbers
    shows that the layer sizes behind the variants' shared-bytes figure are the engine's own.
    """
    wanted = tuple(dict.fromkeys(images))
    refs: dict[str, int] = {}
    for img in engine.list_images():
        attrs = engine.inspect(str(img["Id"]))
        for c in set(chain_ids(list((attrs.get("RootFS") or {}).get("Layers") or []))):
            refs[c] = refs.get(c, 0) + 1
    df = {str(i["Id"]): i for i in engine.disk_usage().get("Images") or []}
    rows = []
    for image in wanted:
        full = engine.inspect(image)["Id"]
        layers = image_layers(engine, full)
        shared = sum(lay.size for lay in layers if refs.get(lay.chain_id, 0) > 1)
        seen = df.get(full) or {}
        rows.append(
            DfRow(
                full,
                sum(lay.size for lay in layers),
                shared,
                int(seen.get("Size", -1)),
                int(seen.get("SharedSize", -1)),
            )
        )
    return rows
