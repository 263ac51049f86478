"""The shipped compatibility data: consistent, sourced, and agreeing with upstream documents."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from pathlib import Path

import pytest
import yaml
from packaging.version import Version

from builder.matrix import Matrix, MatrixDataError, check_matrix, data_dir, load_matrix


@pytest.fixture(scope="module")
def m() -> Matrix:
    return load_matrix()


def _raw() -> dict[str, dict]:  # type: ignore[type-arg]
    return {p.name: yaml.safe_load(p.read_text()) for p in sorted(Path(data_dir()).glob("*.yaml"))}


def test_shipped_data_is_consistent(m: Matrix) -> None:
    check_matrix(m)
    assert set(m.frameworks) == {"pytorch", "tensorflow", "jax", "sklearn"}


@pytest.mark.parametrize("name", sorted(p.name for p in Path(data_dir()).glob("*.yaml")))
def test_every_file_names_its_sources_with_checked_dates(name: str) -> None:
    doc = _raw()[name]
    assert doc.get("schema") == 1
    sources = doc.get("sources")
    assert sources, f"{name} has no sources"
    for s in sources:
        assert s.get("what") and s.get("where"), s
        checked = dt.date.fromisoformat(str(s["checked"]))
        assert dt.date(2020, 1, 1) <= checked <= dt.date.today(), s


def test_every_cuda_build_has_a_driver_minimum(m: Matrix) -> None:
    for fw in m.frameworks.values():
        for rel in fw.releases:
            for v in rel.variants:
                if v.cuda:
                    assert m.full_driver_for(v.cuda), f"{fw.framework} {rel.version} {v.name}"
                    assert m.min_driver_for(v.cuda), f"{fw.framework} {rel.version} {v.name}"


def test_every_row_names_known_pythons_and_cudas(m: Matrix) -> None:
    for fw in m.frameworks.values():
        for rel in fw.releases:
            assert not rel.todo
            for v in rel.variants:
                for py in rel.pythons_for(v):
                    assert py in m.python_bases
                if v.cuda:
                    assert v.cuda in m.toolkits
                    assert set(v.archs) <= set(m.majors[v.cuda.split(".")[0]].archs)
                    assert v.cudnn is None or re.fullmatch(r"\d+\.\d+", v.cudnn)


def test_driver_floors_rise_with_cuda(m: Matrix) -> None:
    toolkits = sorted(m.toolkits.values(), key=lambda t: Version(t.version))
    drivers = [Version(t.min_driver) for t in toolkits]
    assert drivers == sorted(drivers), "a newer CUDA cannot need an older driver"
    for t in toolkits:
        floor = m.min_driver_for(t.version)
        assert floor and Version(floor) <= Version(t.min_driver)
    assert m.min_driver_for("11.0") == "450.51.05"  # older than the 11.x compat floor


def test_releases_are_newest_first_in_the_files() -> None:
    for name, doc in _raw().items():
        versions = [Version(str(r["version"])) for r in doc.get("releases", [])]
        assert versions == sorted(versions, reverse=True), name
        assert len(set(versions)) == len(versions), name


def test_cuda_bases_exist_for_known_toolkits(m: Matrix) -> None:
    for cuda, base in m.cuda_bases.items():
        assert cuda in m.toolkits
        assert base.full.startswith(cuda + ".")
        assert base.runtime.startswith(f"nvidia/cuda:{base.full}-") and "runtime" in base.runtime


def _variant(m: Matrix, fw: str, version: str, name: str):  # type: ignore[no-untyped-def]
    rel = next(r for r in m.framework(fw).releases if str(r.version) == version)
    return next((v for v in rel.variants if v.name == name), None)


# (framework, release, variant, CUDA, cuDNN) from the upstream documents: PyTorch RELEASE.md's
# compatibility matrix and previous-versions page, tensorflow.org/install/source#gpu
KNOWN_BUILDS = [
    ("pytorch", "2.5.1", "cu118", "11.8", "9.1"),
    ("pytorch", "2.5.1", "cu121", "12.1", "9.1"),
    ("pytorch", "2.5.1", "cu124", "12.4", "9.1"),
    ("pytorch", "2.4.0", "cu124", "12.4", "9.1"),
    ("pytorch", "2.3.1", "cu121", "12.1", "8.9"),
    ("pytorch", "2.6.0", "cu126", "12.6", "9.5"),
    ("pytorch", "2.7.0", "cu128", "12.8", "9.7"),
    ("pytorch", "2.0.1", "cu117", "11.7", "8.5"),
    ("pytorch", "1.13.1", "cu116", "11.6", "8.3"),
    ("pytorch", "1.12.1", "cu113", "11.3", "8.3"),
    ("tensorflow", "2.17.0", "cuda12", "12.3", "8.9"),
    ("tensorflow", "2.16.1", "cuda12", "12.3", "8.9"),
    ("tensorflow", "2.15.0", "cuda12", "12.2", "8.9"),
    ("tensorflow", "2.14.0", "cuda11", "11.8", "8.7"),
    ("tensorflow", "2.18.0", "cuda12", "12.5", "9.3"),
]


@pytest.mark.parametrize(("fw", "version", "name", "cuda", "cudnn"), KNOWN_BUILDS)
def test_known_builds(m: Matrix, fw: str, version: str, name: str, cuda: str, cudnn: str) -> None:
    v = _variant(m, fw, version, name)
    assert v is not None and (v.cuda, v.cudnn) == (cuda, cudnn)


KNOWN_ABSENT = [
    ("pytorch", "2.4.1", "cu126"),  # 2.4 shipped 11.8, 12.1, 12.4 only
    ("pytorch", "2.5.1", "cu126"),
    ("pytorch", "2.6.0", "cu121"),
    ("pytorch", "2.7.0", "cu124"),
    ("pytorch", "2.12.0", "cu128"),  # dropped from 2.12 on
    ("pytorch", "2.0.1", "cu121"),
    ("tensorflow", "2.13.1", "cuda11"),  # no and-cuda extra before 2.14
]


@pytest.mark.parametrize(("fw", "version", "name"), KNOWN_ABSENT)
def test_known_absent_builds(m: Matrix, fw: str, version: str, name: str) -> None:
    assert _variant(m, fw, version, name) is None


@pytest.mark.parametrize(
    ("fw", "version", "pythons"),
    [
        ("sklearn", "1.5.2", ["3.9", "3.10", "3.11", "3.12", "3.13"]),
        ("sklearn", "1.5.0", ["3.9", "3.10", "3.11", "3.12"]),
        ("sklearn", "1.0.2", ["3.9", "3.10"]),
        ("pytorch", "2.5.1", ["3.9", "3.10", "3.11", "3.12", "3.13"]),
        ("pytorch", "2.9.0", ["3.10", "3.11", "3.12", "3.13", "3.14"]),
        ("tensorflow", "2.17.0", ["3.9", "3.10", "3.11", "3.12"]),
        ("tensorflow", "2.15.0", ["3.9", "3.10", "3.11"]),
    ],
)
def test_known_pythons(m: Matrix, fw: str, version: str, pythons: list[str]) -> None:
    rel = next(r for r in m.framework(fw).releases if str(r.version) == version)
    assert list(rel.python) == pythons


@pytest.mark.parametrize(
    ("version", "default", "companions"),
    [
        ("2.5.1", "cu124", {"torchvision": "0.20.1", "torchaudio": "2.5.1"}),
        ("2.4.0", "cu121", {"torchvision": "0.19.0", "torchaudio": "2.4.0"}),
        ("2.0.1", "cu117", {"torchvision": "0.15.2", "torchaudio": "2.0.2"}),
        ("2.7.0", "cu126", {"torchvision": "0.22.0", "torchaudio": "2.7.0"}),
        ("1.12.1", "cu102", {"torchvision": "0.13.1", "torchaudio": "0.12.1"}),
    ],
)
def test_torch_defaults_and_companions(m: Matrix, version: str, default: str, companions: dict) -> None:  # type: ignore[type-arg]
    rel = next(r for r in m.framework("pytorch").releases if str(r.version) == version)
    assert rel.default_variant == default
    assert dict(rel.companions) == companions


@pytest.mark.parametrize(
    ("cuda", "driver"),
    [
        ("11.8", "520.61.05"),
        ("12.1", "530.30.02"),
        ("12.4", "550.54.14"),
        ("12.8", "570.26"),
        ("13.0", "580.65.06"),
    ],
)
def test_toolkit_drivers(m: Matrix, cuda: str, driver: str) -> None:
    assert m.full_driver_for(cuda) == driver


def test_compat_floors(m: Matrix) -> None:
    assert m.min_driver_for("11.8") == "450.80.02"
    assert m.min_driver_for("12.6") == "525.60.13"
    assert m.min_driver_for("13.0") == "580.65.06"
    assert "sm_50" not in m.majors["13"].archs  # CUDA 13 dropped Maxwell


# check_matrix must be able to fail: each injected contradiction is reported
def _with_variant(m: Matrix, **changes: object) -> Matrix:
    fw = m.framework("pytorch")
    rel = fw.releases[-1]
    v = next(v for v in rel.variants if v.cuda)
    rel2 = dataclasses.replace(rel, variants=(dataclasses.replace(v, **changes),))
    fw2 = dataclasses.replace(fw, releases=(rel2,))
    return dataclasses.replace(m, frameworks={**m.frameworks, "pytorch": fw2})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"cuda": "12.7"}, "no driver minimum"),
        ({"cuda": "99.0"}, "CUDA major 99.0 missing"),
        ({"archs": ("sm_20",)}, "cannot target sm_20"),
        ({"cuda_match": "roughly"}, "cuda_match"),
        ({"requirement": "torch==2.0"}, "lacks {version}"),
        ({"name": "cu999"}, "no index"),
    ],
)
def test_check_matrix_reports_contradictions(m: Matrix, changes: dict, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(MatrixDataError, match=re.escape(message)):
        check_matrix(_with_variant(m, **changes))


def test_check_matrix_refuses_placeholders_and_unknown_pythons(m: Matrix) -> None:
    fw = m.framework("sklearn")
    todo = dataclasses.replace(fw.releases[0], todo="fill me")
    py = dataclasses.replace(fw.releases[1], python=("3.8",))
    bad = dataclasses.replace(fw, releases=(todo, py))
    with pytest.raises(MatrixDataError) as err:
        check_matrix(dataclasses.replace(m, frameworks={**m.frameworks, "sklearn": bad}))
    assert "needs review (fill me)" in str(err.value)
    assert "Python 3.8 has no base image" in str(err.value)
