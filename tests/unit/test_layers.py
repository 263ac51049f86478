"""builder.layers without Docker: chain IDs, layer sizes from history, shared bytes, and the
check against `docker system df -v`."""

from __future__ import annotations

import hashlib
from typing import Any

from fakes import FakeEngine

from builder import layers


def test_chain_ids_follow_the_oci_rule() -> None:
    a, b = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    chain = layers.chain_ids([a, b])
    assert chain[0] == a
    assert chain[1] == "sha256:" + hashlib.sha256(f"{a} {b}".encode()).hexdigest()
    assert layers.chain_ids([b, b])[1] != layers.chain_ids([a, b])[1]  # same content, other parent


def h(size: int, by: str) -> dict[str, Any]:
    return {"Size": size, "CreatedBy": by}


def test_layer_sizes_from_history() -> None:
    history = [
        h(0, '/bin/sh -c #(nop)  CMD ["python"]'),
        h(887, "RUN useradd"),
        h(0, "/bin/sh -c #(nop) WORKDIR /w"),
        h(372, "/bin/sh -c #(nop) COPY dir"),
        h(0, "/bin/sh -c #(nop)  ENV A=1"),
        h(117, ""),
    ]  # newest first
    assert layers.layer_sizes(history, 3) == [117, 372, 887]
    assert layers.layer_sizes(history, 4) == [117, 372, 0, 887]  # WORKDIR made an empty layer
    assert layers.layer_sizes(history, 6) is None  # cannot be told apart: say so, never guess
    buildkit = [
        h(0, 'CMD ["python"]'),
        h(0, "USER 10001"),
        h(0, "WORKDIR /w"),
        h(0, "ENV A=1"),
        h(887, "RUN /opt/venv/bin/python imagesetup.py # buildkit"),
        h(52, "COPY /opt/mlbuild-layers/04-large-3/ / # buildkit"),
        h(0, "ENV DEBIAN_FRONTEND=noninteractive"),
        h(117, ""),
    ]  # BuildKit writes no "#(nop)": its metadata entries are told apart by their instruction
    assert layers.layer_sizes(buildkit, 4) == [117, 52, 887, 0]


def three_images() -> tuple[FakeEngine, list[str]]:
    """Two variants on one base (sharing base + apt), one on another base, and the base."""
    d = {n: "sha256:" + n * 64 for n in "abcdef"}
    engine = FakeEngine()
    ids = [
        engine.add_image("v:1", layers=[(d["a"], 100), (d["b"], 50), (d["c"], 7)]),
        engine.add_image("v:2", layers=[(d["a"], 100), (d["b"], 50), (d["d"], 9)]),
        engine.add_image("v:3", layers=[(d["e"], 80), (d["b"], 50), (d["f"], 5)]),  # d[b] on another parent
    ]
    engine.add_image("base:1", layers=[(d["a"], 100)])
    return engine, ids


def test_sharing_counts_layers_by_chain() -> None:
    engine, (v1, v2, v3) = three_images()
    s = layers.sharing(engine, [v1, v2, v3, "v:1"])
    assert s.images == (v1, v2, v3)
    assert s.total_bytes == 157 + 159 + 135
    assert s.shared_bytes == 150 and s.shared_layers == 2  # base + apt of v1/v2, not v3's b
    assert s.stored_bytes == 100 + 50 + 7 + 9 + 80 + 50 + 5
    assert s.saved_bytes == 150


def test_check_with_df_compares_to_the_engine() -> None:
    engine, (v1, v2, v3) = three_images()
    df = {v1: (157, 150), v2: (159, 150), v3: (135, 999)}  # the engine's own figures
    engine.disk_usage = lambda: {  # type: ignore[method-assign]
        "Images": [{"Id": i, "Size": size, "SharedSize": shared} for i, (size, shared) in df.items()]
    }
    rows = layers.check_with_df(engine, [v1, v2, v3])
    assert [(r.shared, r.df_shared, r.agrees) for r in rows] == [
        (150, 150, True),
        (150, 150, True),
        (0, 999, False),
    ]


def slot_image(created_by: list[str]) -> list[layers.Layer]:
    return [layers.Layer(f"c{i}", f"sha256:{i:064x}", 10 * (i + 1), by) for i, by in enumerate(created_by)]


def test_layer_groups_name_each_venv_slot_classic_and_buildkit() -> None:
    from builder.layersplit import SLOTS

    below = ["", "/bin/sh -c apt-get update && apt-get install -y python3.11"]
    above = ["/bin/sh -c #(nop) COPY multi:0123abcd in /opt/mlbuild/ ", "|0 /opt/venv/bin/python imagesetup.py user"]
    classic = slot_image([*below, *(f"/bin/sh -c #(nop) COPY dir:{i:08x} in / " for i in range(12)), *above])
    groups = layers.layer_groups(classic)
    assert [g.name for g in groups] == [layers.BELOW, *SLOTS, layers.ABOVE]
    assert [len(g.diff_ids) for g in groups] == [2] + [1] * 12 + [2]
    assert sum(g.size for g in groups) == sum(lay.size for lay in classic)
    assert groups[1].size == 30 and groups[1].diff_ids == (classic[2].diff_id,)
    buildkit = slot_image(
        [
            *below,
            *(f"COPY /opt/mlbuild-layers/{s}/ / # buildkit" for s in SLOTS),
            "COPY mlbuild/ /opt/mlbuild/ # buildkit",
        ]
    )
    assert [g.name for g in layers.layer_groups(buildkit)] == [layers.BELOW, *SLOTS, layers.ABOVE]


def test_images_without_slots_are_one_group() -> None:
    old = slot_image(["", "/bin/sh -c #(nop) COPY dir:abc in /opt/venv ", "/bin/sh -c #(nop) COPY file:x in / "])
    (only,) = layers.layer_groups(old)
    assert only.size == 60 and len(only.diff_ids) == 3 and "no venv slots" in only.name


def test_diff_names_the_groups_whose_layers_differ() -> None:
    from builder.imagediff import ImageDiff, LayerDiff, layer_group
    from builder.normalize import FileEntry

    entry = FileEntry("file", 0o644, 0, 0, 1, "sha256:x", 0)
    assert layer_group({"opt/": (entry, None), "opt/mlbuild/layers/12-recipe.txt": (entry, None)}) == "12-recipe"
    assert layer_group({"opt/mlbuild/spec.json": (entry, None)}) == "metadata"
    assert layer_group({"usr/bin/x": (entry, None)}) == "" and layer_group(None) == ""
    d = ImageDiff(
        "a", "b", "sha256:1", "sha256:2", ("+ tabulate 0.9.0",), (), (), (), (),
        (LayerDiff(14, "sha256:a", "sha256:b", ("+ x",), group="12-recipe"),
         LayerDiff(15, "x", "y", (), group="metadata")),
    )  # fmt: skip
    assert d.groups == ("12-recipe", "metadata")
    assert "layer groups that differ: 12-recipe, metadata" in d.lines()
    assert d.to_dict()["groups"] == ["12-recipe", "metadata"] and d.to_dict()["layers"][0]["group"] == "12-recipe"
