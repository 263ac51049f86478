"""Frameworks are data: found by listing builder/data/*.yaml, their own fields checked with
clear errors, and a throw-away framework (one data file plus one probe function) that goes
through recipe validation, resolve, render and the probe's dispatch."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from builder import probe
from builder.matrix import MatrixDataError, data_dir, framework_names, load_matrix
from builder.recipe import parse_recipe
from builder.render import render
from builder.resolve import resolve

SHIPPED = data_dir()

# A framework mlbuild has never heard of: a made-up PyPI project with a CPU and a CUDA build.
TOY = """\
# a throw-away framework for tests
schema: 1
framework: toyfw
distribution: toy-dist
import_name: toy_mod
order: 9
starter_packages: [rich, "numpy<3"]
pythons_from: toy-dist-core
cuda_arch_env:
  name: TOY_CUDA_ARCHS
  format: "sm_{major}{minor}"
  separator: ","
library_dirs: ["toy_mod/libs", "toy_mod/**"]
companions: []
sources:
  - {what: "nothing: a test fixture", where: "tests/unit/test_frameworks.py", checked: "2026-01-01"}
releases:
  - version: "1.2.0"
    python: ["3.11", "3.12"]
    variants:
      - name: cpu
        requirement: "toy-dist=={version}"
      - name: cu124
        cuda: "12.4"
        cudnn: "9.1"
        archs: [sm_80, sm_90]
        requirement: "toy-dist[cuda]=={version}"
"""


def data_folder(tmp_path: Path, files: dict[str, str]) -> Path:
    """The shipped cuda.yaml and bases.yaml, plus the given framework files."""
    folder = tmp_path / "data"
    folder.mkdir()
    for name in ("cuda.yaml", "bases.yaml"):
        shutil.copy(SHIPPED / name, folder / name)
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def load(folder: Path):  # type: ignore[no-untyped-def]
    load_matrix.cache_clear()
    try:
        return load_matrix(str(folder))
    finally:
        load_matrix.cache_clear()


def test_frameworks_are_the_data_files_that_declare_one() -> None:
    assert framework_names() == ("pytorch", "tensorflow", "jax", "sklearn")  # by `order:`
    declared = {p.stem for p in SHIPPED.glob("*.yaml") if "\nframework:" in p.read_text()}
    assert declared == set(framework_names())
    assert {"bases", "cuda"}.isdisjoint(declared)


def test_shipped_frameworks_say_what_code_used_to_hard_code() -> None:
    m = load_matrix()
    assert m.framework("jax").pythons_from == "jaxlib"
    assert m.framework("sklearn").pythons_from == "scikit-learn"  # default: the distribution
    arch_env = m.framework("pytorch").cuda_arch_env
    assert arch_env is not None and arch_env.name == "TORCH_CUDA_ARCH_LIST"
    assert [name for name, fw in m.frameworks.items() if fw.cuda_arch_env] == ["pytorch"]
    assert m.library_dirs == ("jaxlib/**", "tensorflow", "torch/lib")
    assert all(fw.starter_packages for fw in m.frameworks.values())


def test_a_new_file_is_a_new_framework_listed_after_those_with_an_order(tmp_path: Path) -> None:
    toy = TOY.replace("order: 9\n", "")
    folder = data_folder(tmp_path, {"sklearn.yaml": (SHIPPED / "sklearn.yaml").read_text(), "toyfw.yaml": toy})
    m = load(folder)
    assert list(m.frameworks) == ["sklearn", "toyfw"]
    toyfw = m.framework("toyfw")
    assert (toyfw.distribution, toyfw.import_name, toyfw.pythons_from) == ("toy-dist", "toy_mod", "toy-dist-core")
    assert toyfw.starter_packages == ("rich", "numpy<3")


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("framework: toyfw", "framework: Toy FW", "framework: 'Toy FW' is not lower-case letters"),
        ("distribution: toy-dist", "distribution: 'toy dist'", "distribution: 'toy dist' is not a PyPI project name"),
        ("import_name: toy_mod", "import_name: toy-mod", "import_name: 'toy-mod' is not a Python module name"),
        ("order: 9", "order: first", "order: 'first' is not a whole number"),
        ("[rich, ", "[rich, 'numpy >>> 3', ", "starter_packages: 'numpy >>> 3' is not a pip requirement"),
        ("pythons_from: toy-dist-core", "pythons_from: [a]", "pythons_from: ['a'] is not a PyPI project name"),
        ("name: TOY_CUDA_ARCHS", "name: TOY ARCHS", "cuda_arch_env.name: 'TOY ARCHS' is not an environment"),
        ('format: "sm_{major}{minor}"', 'format: "sm_{major}"', "cuda_arch_env.format: 'sm_{major}' must place"),
        ('format: "sm_{major}{minor}"', 'format: "$(id){major}{minor}"', "cuda_arch_env.format: '$(id)"),
        ('separator: ","', 'separator: "&&"', "cuda_arch_env.separator: '&&' is not one of"),
        ('"toy_mod/libs"', '"../../etc"', "library_dirs: '../../etc' is not a folder glob below site-packages"),
        ('"toy_mod/libs"', '"/usr/lib"', "library_dirs: '/usr/lib' is not a folder glob below site-packages"),
    ],
)
def test_bad_framework_fields_are_named_with_their_value(tmp_path: Path, old: str, new: str, message: str) -> None:
    assert old in TOY
    folder = data_folder(tmp_path, {"toyfw.yaml": TOY.replace(old, new)})
    with pytest.raises(MatrixDataError) as info:
        load(folder)
    assert "toyfw.yaml" in str(info.value) and message in str(info.value)


def test_the_file_must_be_named_after_its_framework(tmp_path: Path) -> None:
    folder = data_folder(tmp_path, {"toy.yaml": TOY})
    with pytest.raises(
        MatrixDataError, match=r"(?s)toy.yaml: 1 problem:\n.*framework: 'toyfw' must be the file's name \(toy\)"
    ):
        load(folder)


@pytest.mark.parametrize(
    ("framework", "version", "cuda", "line"),
    [
        ("pytorch", "2.5", "12.4", 'ENV TORCH_CUDA_ARCH_LIST="5.0;6.0;7.0;7.5;8.0;8.6;9.0" MAX_JOBS=4'),
        ("tensorflow", "2.17", "12.3", None),
        ("jax", "0.4.35", "12.6", None),
    ],
)
def test_devel_stage_sets_an_arch_variable_only_where_the_framework_reads_one(
    framework: str, version: str, cuda: str, line: str | None, tmp_path: Path
) -> None:
    text = (
        f"name: x\nframework: {framework}\nframework_version: '{version}'\ncuda: '{cuda}'\npython: '3.11'\n"
        "variant: devel\nbuild_packages: [some-extension==1.0]\n"
    )
    spec = resolve(parse_recipe(text.encode(), tmp_path / "r.yaml"))
    dockerfile = render(spec)
    assert "FROM nvidia/cuda:" in dockerfile and " AS devel" in dockerfile
    env_lines = [ln for ln in dockerfile.splitlines() if ln.startswith("ENV") and "ARCH" in ln]
    assert env_lines == ([line] if line else [])


def test_every_shipped_framework_has_probe_checks() -> None:
    assert set(framework_names()) <= set(probe.PROBES)


def test_tensorflow_build_facts_read_its_compute_capability_list() -> None:
    """TF 2.x build info lists the capabilities (['sm_60', ..., 'compute_90']); they were read as
    one string before, so the archs came out as "['sm_60'" and " 'compute_90']"."""

    class sysconfig:
        @staticmethod
        def get_build_info() -> dict[str, object]:
            return {"cuda_version": "12.3", "cudnn_version": "8", "cuda_compute_capabilities": ["sm_60", "compute_90"]}

    class tf:
        pass

    tf.sysconfig = sysconfig  # type: ignore[attr-defined]
    facts = probe.PROBES["tensorflow"].build_facts(tf)
    assert facts == {"cuda_build": "12.3", "cudnn": "8", "archs": ["sm_60", "compute_90"]}
    assert probe.arch_covers((9, 0), facts["archs"])
