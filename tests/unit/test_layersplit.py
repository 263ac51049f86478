"""The slot planner and the venv splitter (builder/layersplit.py) on made-up venvs."""

from __future__ import annotations

import hashlib
import os
import stat
import sys
from pathlib import Path

import pytest

from builder import layersplit as ls
from builder.layersplit import Dist, plan_slots

MB = 2**20


def slot_of(slots: dict[str, list[str]]) -> dict[str, str]:
    return {n: s for s, names in slots.items() for n in names}


def test_framework_large_wheels_deps_and_recipe_each_find_their_slot() -> None:
    dists = [
        Dist("torch", "2.5.1", 800 * MB, ("nvidia-cublas-cu12", "triton", "filelock", "sympy")),
        Dist("nvidia-cublas-cu12", "12.4", 500 * MB),
        Dist("triton", "3.1", 200 * MB, ("filelock",)),
        Dist("filelock", "3.1", 1 * MB),
        Dist("sympy", "1.13", 30 * MB, ("mpmath",)),
        Dist("mpmath", "1.3", 2 * MB),
        Dist("pandas", "2.2.3", 70 * MB, ("numpy", "pytz")),
        Dist("numpy", "2.1", 40 * MB),
        Dist("pytz", "2024.1", 3 * MB),
        Dist("tabulate", "0.9", 1 * MB),
        Dist("pip", "24.0", 10 * MB),
    ]
    where = slot_of(plan_slots(dists, {"torch"}, {"pandas", "tabulate"}))
    assert where["torch"] == ls.FRAMEWORK_SLOT
    # large ones on their own, the framework's own dependencies first
    assert [where[n] for n in ("nvidia-cublas-cu12", "sympy", "triton", "numpy")] == list(ls.LARGE_SLOTS[:4])
    assert where["filelock"] == where["mpmath"] == ls.DEPS_SLOT
    assert where["pytz"] == ls.MORE_SLOT
    assert where["pandas"] == ls.RECIPE_LARGE_SLOTS[0]
    assert where["tabulate"] == ls.RECIPE_SLOT
    assert where["pip"] == ls.VENV_SLOT
    assert set(where) == {d.name for d in dists}  # each exactly once


def test_slots_stay_bounded_when_there_are_more_large_wheels_than_slots() -> None:
    dists = [Dist(f"nvidia-lib{i:02d}", "1", 300 * MB) for i in range(9)] + [
        Dist("torch", "2", 900 * MB, tuple(f"nvidia-lib{i:02d}" for i in range(9))),
        *(Dist(f"big{i}", "1", 100 * MB) for i in range(4)),
    ]
    slots = plan_slots(dists, {"torch"}, {"big0", "big1", "big2", "big3"})
    assert list(slots) == list(ls.SLOTS) and len(ls.SLOTS) <= 12
    assert all(len(slots[s]) == 1 for s in ls.LARGE_SLOTS)
    assert slots[ls.DEPS_SLOT] == [f"nvidia-lib{i:02d}" for i in range(5, 9)]  # overflow: with the deps
    assert slots[ls.RECIPE_SLOT] == ["big2", "big3"]
    assert sorted(n for names in slots.values() for n in names) == sorted(d.name for d in dists)


def test_adding_a_small_package_moves_nothing_else() -> None:
    base = [
        Dist("scikit-learn", "1.5.2", 40 * MB, ("numpy", "scipy", "joblib")),
        Dist("numpy", "2.1", 60 * MB),
        Dist("scipy", "1.14", 100 * MB, ("numpy",)),
        Dist("joblib", "1.4", 2 * MB),
        Dist("pandas", "2.2.3", 70 * MB, ("numpy", "tzdata")),
        Dist("tzdata", "2024", 2 * MB),
    ]
    before = plan_slots(base, {"scikit-learn"}, {"pandas"})
    after = plan_slots([*base, Dist("tabulate", "0.9", MB)], {"scikit-learn"}, {"pandas", "tabulate"})
    assert [s for s in ls.SLOTS if before[s] != after[s]] == [ls.RECIPE_SLOT]


def test_requirement_names_are_normalised() -> None:
    assert ls.requirement_name("Scikit_Learn[extra]==1.5 ; python_version>'3'") == "scikit-learn"
    assert ls.requirement_name("  zope.interface>=5") == "zope-interface"
    assert ls.requirement_name("==1") is None


# -- the splitter on a venv made here --------------------------------------------------------------
def make_dist(sp: Path, name: str, version: str, files: dict[str, bytes], requires: tuple[str, ...] = ()) -> None:
    info = sp / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    meta += "".join(f"Requires-Dist: {r}\n" for r in requires)
    meta += "Requires-Dist: pytest ; extra == 'test'\n"
    (info / "METADATA").write_text(meta)
    rows = []
    for rel, data in files.items():
        path = sp / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        rows.append(f"{rel},sha256=x,{len(data)}")
    rows += [f"{info.name}/METADATA,,", f"{info.name}/RECORD,,"]
    (info / "RECORD").write_text("\n".join(rows) + "\n")


def timestamp_pyc(source: Path) -> Path:
    """A timestamp-based .pyc header as pip writes it: flags 0, the source's mtime and size."""
    st = source.stat()
    pyc = source.parent / "__pycache__" / f"{source.stem}.cpython-311.pyc"
    pyc.parent.mkdir(exist_ok=True)
    header = b"\xa7\r\r\n" + b"\0\0\0\0" + int(st.st_mtime).to_bytes(4, "little") + st.st_size.to_bytes(4, "little")
    pyc.write_bytes(header + b"code")
    return pyc


def make_venv(root: Path, extra: bool = False) -> Path:
    venv = root / "venv"
    sp = venv / "lib" / "python3.11" / "site-packages"
    sp.mkdir(parents=True)
    (venv / "bin").mkdir()
    (venv / "bin" / "python").symlink_to("/usr/bin/python3")
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\n")
    (venv / "lib64").symlink_to("lib")
    (sp / "_mlbuild_base.pth").write_text("/base\n")
    make_dist(sp, "scikit-learn", "1.5.2", {"sklearn/__init__.py": b"x" * 100}, ("numpy", "joblib"))
    make_dist(
        sp,
        "numpy",
        "2.1.0",
        {"numpy/__init__.py": b"n", "numpy/core.so": b"\0" * (17 * MB), "../../../bin/f2py": b"#!"},
    )
    make_dist(sp, "joblib", "1.4.2", {"joblib/__init__.py": b"j"})
    make_dist(sp, "pandas", "2.2.3", {"pandas/__init__.py": b"p"}, ("numpy",))
    if extra:
        make_dist(sp, "tabulate", "0.9.0", {"tabulate/__init__.py": b"t"})
    timestamp_pyc(sp / "sklearn" / "__init__.py")  # compiled after the install: in no RECORD
    (sp / "sklearn" / "__pycache__" / "later.cpython-311.pyc").write_bytes(b"\0" * 16)
    return venv


def run_split(root: Path, extra: bool = False) -> tuple[Path, dict[str, list[str]]]:
    venv = make_venv(root, extra)
    out = root / "layers"
    recipe = {"pandas", "tabulate"} if extra else {"pandas"}
    return out, ls.split(str(venv), str(out), {"scikit-learn"}, recipe, epoch=1234567)


def tree_digest(folder: Path, prefix: Path) -> str:
    """Names, kinds, modes, times and contents, as a layer would hold them (paths as in /)."""
    h = hashlib.sha256()
    for path in sorted([folder, *folder.rglob("*")]):
        st = path.lstat()
        rel = str(path.relative_to(folder)).replace(str(prefix).lstrip("/"), "VENV-PARENT")
        h.update(f"{rel} {stat.filemode(st.st_mode)} {int(st.st_mtime)}\n".encode())
        if path.is_symlink():
            h.update(os.readlink(path).encode())
        elif path.is_file():
            h.update(path.read_bytes())
    return h.hexdigest()


def test_split_moves_every_file_into_exactly_one_slot(tmp_path: Path) -> None:
    out, slots = run_split(tmp_path)
    venv = (tmp_path / "venv").resolve()
    inside = {s: {str(p.relative_to(out / s)) for p in (out / s).rglob("*") if p.is_file() or p.is_symlink()}
              for s in ls.SLOTS}  # fmt: skip
    for p in venv.rglob("*"):  # each file is linked (the same inode) into exactly one slot
        if p.is_symlink() or not p.is_dir():
            rel = str(p).lstrip("/")
            assert [s for s in ls.SLOTS if rel in inside[s] and os.path.samestat(p.lstat(), (out / s / rel).lstat())]
    v = str(venv).lstrip("/")
    sp = f"{v}/lib/python3.11/site-packages"
    assert slots[ls.FRAMEWORK_SLOT] == ["scikit-learn"] and slots[ls.LARGE_SLOTS[0]] == ["numpy"]
    assert f"{sp}/sklearn/__pycache__/__init__.cpython-311.pyc" in inside[ls.FRAMEWORK_SLOT]
    assert f"{sp}/sklearn/__pycache__/later.cpython-311.pyc" in inside[ls.FRAMEWORK_SLOT]
    assert f"{v}/bin/f2py" in inside[ls.LARGE_SLOTS[0]]
    assert {f"{v}/bin/python", f"{v}/pyvenv.cfg", f"{v}/lib64", f"{sp}/_mlbuild_base.pth"} <= inside[ls.VENV_SLOT]
    assert f"{sp}/pandas/__init__.py" in inside[ls.RECIPE_SLOT]
    for s in ls.SLOTS:
        manifest = out / s / ls.MANIFEST_DIR / f"{s}.txt"
        assert manifest.read_text().splitlines()[1:] == [
            f"{n}=={v}" for n, v in (line.split("==") for line in manifest.read_text().splitlines()[1:])
        ]
    assert (out / ls.RECIPE_SLOT / ls.MANIFEST_DIR / f"{ls.RECIPE_SLOT}.txt").read_text().endswith("pandas==2.2.3\n")
    all_files = [f for names in inside.values() for f in names if "mlbuild/layers" not in f]
    assert len(all_files) == len(set(all_files))


def test_times_are_normalised_and_pyc_headers_follow(tmp_path: Path) -> None:
    out, _ = run_split(tmp_path)
    for p in out.rglob("*"):
        assert int(p.lstat().st_mtime) == 1234567, p
    pyc = next((out / ls.FRAMEWORK_SLOT).rglob("__init__.cpython-311.pyc"))
    assert int.from_bytes(pyc.read_bytes()[8:12], "little") == 1234567
    later = next((out / ls.FRAMEWORK_SLOT).rglob("later.cpython-311.pyc"))
    assert later.read_bytes() == b"\0" * 8 + (1234567).to_bytes(4, "little") + b"\0" * 4


def test_unchanged_slots_are_the_same_bytes_after_a_package_is_added(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    out_a, _ = run_split(tmp_path / "a")
    out_b, _ = run_split(tmp_path / "b", extra=True)
    differ = [
        s
        for s in ls.SLOTS
        if tree_digest(out_a / s, (tmp_path / "a").resolve()) != tree_digest(out_b / s, (tmp_path / "b").resolve())
    ]
    assert differ == [ls.RECIPE_SLOT]


def test_main_reads_its_plan_and_says_where_each_went(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    venv = make_venv(tmp_path)
    plan = tmp_path / "layers.json"
    plan.write_text(f'{{"venv": "{venv}", "out": "{tmp_path / "out"}", "framework": ["Scikit_Learn"], "recipe": []}}')
    assert ls.main([str(plan)]) == 0
    assert f"{ls.FRAMEWORK_SLOT}: scikit-learn" in capsys.readouterr().out
    assert ls.main([]) == 2


# -- linking step by step, as the install steps do -------------------------------------------------
def slot_files(out: Path) -> dict[str, tuple[int, str]]:
    """Every file in the slots -> (inode, slot)."""
    return {str(p.relative_to(out / s)): (p.lstat().st_ino, s)
            for s in ls.SLOTS for p in (out / s).rglob("*") if p.is_file() or p.is_symlink()}  # fmt: skip


def test_links_an_install_step_made_are_kept_and_the_result_is_the_one_split_of_the_whole(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    out_a, _ = run_split(tmp_path / "a", extra=True)  # all at once
    venv = make_venv(tmp_path / "b", extra=True)
    out_b = tmp_path / "b" / "layers"
    _, _, linked, kept = ls.place(str(venv), str(out_b), {"scikit-learn"}, set(), 1234567)  # the framework step
    assert linked > 0 and kept == 0
    before = slot_files(out_b)
    ls.split(str(venv), str(out_b), {"scikit-learn"}, {"pandas", "tabulate"}, epoch=1234567)
    after = slot_files(out_b)
    sp = str(venv.resolve() / "lib/python3.11/site-packages").lstrip("/")
    assert after[f"{sp}/sklearn/__init__.py"] == before[f"{sp}/sklearn/__init__.py"]  # the same link, kept
    assert before[f"{sp}/pandas/__init__.py"][1] == ls.MORE_SLOT  # guessed without the recipe's names...
    assert after[f"{sp}/pandas/__init__.py"][1] == ls.RECIPE_SLOT  # ...and moved by the final split
    assert [s for s in ls.SLOTS if list((out_b / s).rglob("pandas"))] == [ls.RECIPE_SLOT]
    for s in ls.SLOTS:
        assert tree_digest(out_a / s, (tmp_path / "a").resolve()) == tree_digest(out_b / s, (tmp_path / "b").resolve())


def test_a_file_a_later_step_replaced_or_removed_is_not_shipped_from_its_old_link(tmp_path: Path) -> None:
    venv = make_venv(tmp_path)
    out = tmp_path / "layers"
    ls.place(str(venv), str(out), {"scikit-learn"}, {"pandas"}, 1234567)
    sp = venv / "lib" / "python3.11" / "site-packages"
    (sp / "joblib" / "__init__.py").unlink()  # a later install replaces a file: a new inode
    (sp / "joblib" / "__init__.py").write_bytes(b"new")
    with open(sp / "sklearn" / "__init__.py", "ab") as fh:  # or rewrites it in place: its time moves
        fh.write(b"more")
    (sp / "pandas" / "__init__.py").unlink()  # or removes it (its RECORD still names it)
    ls.split(str(venv), str(out), {"scikit-learn"}, {"pandas"}, epoch=1234567)
    rel = str(sp.resolve()).lstrip("/")
    assert (out / ls.DEPS_SLOT / rel / "joblib" / "__init__.py").read_bytes() == b"new"
    assert (out / ls.FRAMEWORK_SLOT / rel / "sklearn" / "__init__.py").read_bytes() == b"x" * 100 + b"more"
    assert not list(out.rglob("pandas/__init__.py"))
    for p in out.rglob("*"):
        assert int(p.lstat().st_mtime) == 1234567, p


def test_link_runs_the_install_command_first_and_links_only_when_it_passed(tmp_path: Path) -> None:
    venv = make_venv(tmp_path)
    out = tmp_path / "layers"
    args = ["link", str(venv), str(out), "scikit-learn", ""]
    assert ls.main([*args, "--", sys.executable, "-c", "raise SystemExit(7)"]) == 7
    assert not out.exists()  # a failed install links nothing
    marker = tmp_path / "ran"
    assert ls.main([*args, "--", sys.executable, "-c", f"open({str(marker)!r}, 'w')"]) == 0
    assert marker.exists() and list((out / ls.FRAMEWORK_SLOT).rglob("sklearn"))
    assert ls.main(["link", str(venv)]) == 2  # no "--": a usage error


def test_the_time_an_installer_ran_is_not_shipped(tmp_path: Path) -> None:
    """uv leaves uv_cache.json (the install's time) beside a wheel it took from a path or a
    --find-links folder (the venv's pip, a wheelhouse): gone, with its RECORD line, so two builds
    of one lock give the same bytes."""
    digests = []
    for run, when in (("a", 1796236146), ("b", 1796239999)):
        venv = make_venv(tmp_path / run)
        info = venv / "lib" / "python3.11" / "site-packages" / "joblib-1.4.2.dist-info"
        (info / "uv_cache.json").write_text(f'{{"timestamp":{{"secs_since_epoch":{when}}}}}')
        record = (info / "RECORD").read_text()
        (info / "RECORD").write_text(record + "joblib-1.4.2.dist-info/uv_cache.json,sha256=y,42\n")
        out = tmp_path / run / "layers"
        ls.split(str(venv), str(out), {"scikit-learn"}, {"pandas"}, epoch=1234567)
        assert not (info / "uv_cache.json").exists() and "uv_cache.json" not in (info / "RECORD").read_text()
        assert (info / "RECORD").read_text().splitlines() == record.splitlines()
        digests.append({s: tree_digest(out / s, venv.resolve().parent) for s in ls.SLOTS})
    assert digests[0] == digests[1]
