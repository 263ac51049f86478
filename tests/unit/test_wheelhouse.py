"""The offline pre-check: what a wheelhouse lacks, dependencies and markers included."""

from __future__ import annotations

import zipfile
from pathlib import Path

from builder.wheelhouse import missing, target_tags


def wheel(folder: Path, name: str, version: str, tag: str, requires: list[str]) -> None:
    dist = f"{name.replace('-', '_')}-{version}"
    with zipfile.ZipFile(folder / f"{dist}-{tag}.whl", "w") as zf:
        meta = [f"Name: {name}", f"Version: {version}"] + [f"Requires-Dist: {r}" for r in requires]
        zf.writestr(f"{dist}.dist-info/METADATA", "Metadata-Version: 2.1\n" + "\n".join(meta) + "\n")


def test_complete_wheelhouse_lacks_nothing(tmp_path: Path) -> None:
    wheel(
        tmp_path,
        "torch",
        "2.13.0+cpu",
        "cp311-cp311-manylinux_2_28_x86_64",
        ["filelock", "sympy>=1.13"],
    )
    wheel(tmp_path, "filelock", "3.16.1", "py3-none-any", [])
    wheel(tmp_path, "sympy", "1.13.3", "py3-none-any", ["mpmath<1.4,>=1.1.0"])
    wheel(tmp_path, "mpmath", "1.3.0", "py3-none-any", [])
    assert missing(["torch==2.13.0+cpu"], tmp_path, "3.11") == []


def test_missing_dependencies_name_who_needs_them(tmp_path: Path) -> None:
    wheel(
        tmp_path,
        "torch",
        "2.13.0+cpu",
        "cp311-cp311-manylinux_2_28_x86_64",
        ["filelock", "sympy>=1.13"],
    )
    wheel(tmp_path, "sympy", "1.12", "py3-none-any", [])
    assert missing(["torch==2.13.0+cpu"], tmp_path, "3.11") == [
        "filelock (needed by torch 2.13.0+cpu)",
        "sympy>=1.13 (needed by torch 2.13.0+cpu)",
    ]


def test_wheels_for_another_python_do_not_count(tmp_path: Path) -> None:
    wheel(tmp_path, "torch", "2.13.0+cpu", "cp311-cp311-manylinux_2_28_x86_64", [])
    assert missing(["torch==2.13.0+cpu"], tmp_path, "3.12") == ["torch==2.13.0+cpu"]


def test_markers_are_evaluated_for_the_image_python(tmp_path: Path) -> None:
    wheel(tmp_path, "a", "1.0", "py3-none-any", ['tomli; python_version < "3.11"', 'b; extra == "x"'])
    assert missing(["a"], tmp_path, "3.11") == []
    assert missing(["a"], tmp_path, "3.10") == ["tomli (needed by a 1.0)"]
    assert missing(["a[x]"], tmp_path, "3.11") == ["b (needed by a 1.0)"]


def test_target_tags_accept_abi3_and_manylinux() -> None:
    from packaging.tags import Tag

    tags = target_tags("3.12")
    assert Tag("cp39", "abi3", "manylinux_2_17_x86_64") in tags
    assert Tag("cp312", "cp312", "manylinux2014_x86_64") in tags
    assert Tag("cp311", "cp311", "manylinux2014_x86_64") not in tags
