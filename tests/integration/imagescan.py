"""Search every byte of an image (each layer's files, its config, history and labels)."""

from __future__ import annotations

import io
import json
import tarfile
from typing import Any


def image_tar(engine: Any, ref: str) -> bytes:
    return b"".join(engine.client.images.get(ref).save(named=False))


def layer_members(engine: Any, ref: str) -> list[tuple[str, str, bytes]]:
    """(layer, path, content) for every regular file in every layer of the image."""
    out = []
    with tarfile.open(fileobj=io.BytesIO(image_tar(engine, ref))) as outer:
        for member in outer.getmembers():
            if not member.name.endswith("layer.tar"):
                continue
            data = outer.extractfile(member)
            assert data is not None
            with tarfile.open(fileobj=io.BytesIO(data.read())) as layer:
                for m in layer.getmembers():
                    if m.isfile():
                        f = layer.extractfile(m)
                        out.append((member.name, m.name, f.read() if f else b""))
    return out


def find_in_image(engine: Any, ref: str, needles: list[bytes]) -> list[str]:
    """Where any needle occurs: layer files, the image config (env, labels) and its history."""
    found = []
    for layer, path, content in layer_members(engine, ref):
        for n in needles:
            if n in content:
                found.append(f"{layer}:{path} contains {n[:20]!r}")
    attrs = engine.inspect(ref)
    meta = json.dumps(attrs).encode() + json.dumps(engine.history(ref)).encode()
    for n in needles:
        if n in meta:
            found.append(f"config/history contains {n[:20]!r}")
    return found
