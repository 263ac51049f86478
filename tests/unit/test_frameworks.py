"""Frameworks are data: found by listing builder/data/*.yaml, their own fields checked with
clear errors, and a throw-away framework (one data file plus one probe function) that goes
through recipe validation, resolve, render and the probe's dispatch."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from builder import probe
from builder.cli import main
from builder.errors import RecipeError
from builder.matrix import DATA_DIR_ENV, MatrixDataError, data_dir, framework_names, load_matrix
from builder.recipe import parse_recipe
from builder.render import render, write_context
from builder.resolve import resolve
from builder.settings import BuildSettings

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


def test_the_recipe_check_and_the_resolver_share_one_load_of_the_data(tmp_path: Path) -> None:
    load_matrix.cache_clear()
    resolve(parse_recipe(b"name: x\nframework: sklearn\n", tmp_path / "r.yaml"))
    assert load_matrix.cache_info().misses == 1  # `mlbuild resolve` reads the files once


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


@pytest.fixture()
def toy_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """mlbuild pointed at a data folder with the shipped frameworks plus toyfw."""
    folder = data_folder(tmp_path, {p.name: p.read_text() for p in SHIPPED.glob("*.yaml")} | {"toyfw.yaml": TOY})
    monkeypatch.setenv(DATA_DIR_ENV, str(folder))
    load_matrix.cache_clear()
    yield folder
    load_matrix.cache_clear()  # the next test reads the shipped data again


@pytest.fixture()
def toy_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The fake distribution's module, importable as the data file's import_name says, with a
    CUDA library where its data's library_dirs say its wheel keeps them."""
    package = tmp_path / "site-packages" / "toy_mod"
    (package / "libs").mkdir(parents=True)
    (package / "__init__.py").write_text('__version__ = "1.2.0"\n\ndef double(x):\n    return 2 * x\n')
    (package / "libs" / "libcudart.so.12").write_bytes(b"")
    monkeypatch.syspath_prepend(str(tmp_path / "site-packages"))
    yield "toy_mod"
    sys.modules.pop("toy_mod", None)


def test_a_new_framework_is_one_data_file_and_one_probe_function(
    toy_data: Path, toy_module: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # recipe validation knows it (and still suggests the near name for a typo) ...
    assert "toyfw" in framework_names()
    with pytest.raises(RecipeError) as info:
        parse_recipe(b"name: toy\nframework: toyfww\n", tmp_path / "r.yaml")
    assert info.value.details == [
        "framework: 'toyfww' is not one of: pytorch | tensorflow | jax | sklearn | toyfw (did you mean 'toyfw'?)"
    ]
    recipe = parse_recipe(b"name: toy\nframework: toyfw\ncuda: cpu\n", tmp_path / "r.yaml")
    # ... the resolver picks its release, build and Python from the data ...
    spec = resolve(recipe)
    assert (spec.framework, spec.framework_version, spec.python) == ("toyfw", "1.2.0", "3.12")
    assert (spec.distribution, spec.import_name, spec.variant) == ("toy-dist", "toy_mod", "cpu")
    assert spec.library_dirs == ("jaxlib/**", "tensorflow", "torch/lib", "toy_mod/**", "toy_mod/libs")
    # ... the build context installs it and ships the spec the probe reads ...
    (tmp_path / "ctx").mkdir()
    dockerfile = write_context(spec, tmp_path / "ctx", tmp_path, BuildSettings())
    assert dockerfile == render(spec) and "FROM python:3.12-slim-bookworm" in dockerfile
    assert (tmp_path / "ctx" / "mlbuild" / "requirements-framework.txt").read_text() == "toy-dist==1.2.0\n"
    shipped_spec = json.loads((tmp_path / "ctx" / "mlbuild" / "spec.json").read_text())
    # ... its devel stage compiles extensions for its archs through its own variable ...
    devel = resolve(
        parse_recipe(
            b"name: toy\nframework: toyfw\ncuda: '12.4'\nvariant: devel\nbuild_packages: [ext==1.0]\n",
            tmp_path / "r.yaml",
        )
    )
    assert 'ENV TOY_CUDA_ARCHS="sm_80,sm_90" MAX_JOBS=4' in render(devel).splitlines()
    # ... and `mlbuild init` offers it and writes its starter packages.
    done = CliRunner().invoke(main, ["init", "--framework", "toyfw", "-o", "-"])
    assert done.exit_code == 0 and "framework: toyfw  #" in done.output and "  # - numpy<3" in done.output

    # The probe (stand-alone inside images) finds the toy's checks by the spec's framework name.
    monkeypatch.setattr(probe, "PROBES", dict(probe.PROBES))
    seen: list[tuple[object, str]] = []

    @probe.framework_probe("toyfw", lambda module: {"cuda_build": None, "doubles": module.double(2) == 4})
    def probe_toy(r: probe.Report, module: object, gpu: str) -> None:
        seen.append((module, gpu))
        r.run("compute.cpu", lambda: "toy arithmetic")

    doc = probe.probe(shipped_spec, "off")
    assert seen and getattr(seen[0][0], "__name__", "") == "toy_mod" and seen[0][1] == "off"
    checks = {c["name"]: c["status"] for c in doc["checks"]}
    # (the other checks look at this machine's Python and CUDA files, not at the framework)
    assert {k: checks[k] for k in ("framework.import", "compute.cpu", "framework.build")} == {
        "framework.import": "passed", "compute.cpu": "passed", "framework.build": "passed"}  # fmt: skip
    assert "framework.probe" not in checks and doc["framework"]["doubles"] is True
    toy_lib = str(tmp_path / "site-packages" / "toy_mod" / "libs" / "libcudart.so.12")
    assert toy_lib in doc["cuda_libraries"]["files"]["12"]  # the data's library_dirs reached the probe
    assert probe.observe("toy_mod", "toyfw")["doubles"] is True


def test_a_framework_without_probe_checks_fails_its_smoke_test(toy_data: Path, toy_module: str, tmp_path: Path) -> None:
    spec = resolve(parse_recipe(b"name: toy\nframework: toyfw\ncuda: cpu\n", tmp_path / "r.yaml"))
    doc = probe.probe(json.loads(spec.to_json()), "off")
    assert not doc["ok"]
    assert {"name": "framework.probe", "status": "failed",
            "detail": "LookupError: this probe has no checks for framework 'toyfw'"} in doc["checks"]  # fmt: skip


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


def test_a_data_folder_without_frameworks_is_an_error_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "r.yaml").write_text("name: x\nframework: sklearn\n")
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "nowhere"))
    load_matrix.cache_clear()
    try:
        done = CliRunner().invoke(main, ["resolve", str(tmp_path / "r.yaml")])
    finally:
        load_matrix.cache_clear()
    assert done.exit_code == 1 and isinstance(done.exception, SystemExit), done.output  # handled, not raised
    assert f"error: no data file in {tmp_path / 'nowhere'} declares a framework" in done.output
    assert "hint: check $MLBUILD_DATA_DIR" in done.output and "Traceback" not in done.output
