"""The lock format: versioned, stable ordering, one-line diffs, and the checks it drives."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from builder.errors import BuildError
from builder.fileio import write_atomic
from builder.lock import (
    LOCK_VERSION,
    AptPin,
    BaseLock,
    Lock,
    LockedArtefactError,
    LockError,
    PythonPin,
    diff_locks,
    explain_build_failure,
    lock_path,
    read_lock,
    requirements_text,
    spec_digest,
    spec_for_lock,
)
from builder.lockmaker import parse_apt_simulation, parse_pip_report, upgrade
from builder.resolve import load_and_resolve

ROOT = Path(__file__).resolve().parents[2]
H1, H2 = "sha256:" + "a" * 64, "sha256:" + "b" * 64


def make_lock(**changes: object) -> Lock:
    _, spec = load_and_resolve(ROOT / "recipes" / "sklearn-cpu.yaml")
    d = spec_for_lock(spec)
    lock = Lock(
        recipe="sklearn-cpu.yaml",
        base_override=None,
        spec=d,
        spec_digest=spec_digest(d),
        base=BaseLock("debian:bookworm-slim", "sha256:" + "c" * 64, None, "locked by image ID"),
        apt=(
            AptPin("runtime", "python3", "3.11.2-1+b1"),
            AptPin("builder", "python3-venv", "3.11.2-1+b1"),
        ),
        python=(
            PythonPin("packages", "pandas", "2.2.3", (H2,)),
            PythonPin("framework", "scikit-learn", "1.5.2", (H1,)),
            PythonPin("framework", "numpy", "2.1.0", (H2, H1)),
        ),
        index_url=None,
        epoch=1700000000,
        mlbuild_version="0.1.0",
        matrix_version="abc",
    )
    return dataclasses.replace(lock, **changes)  # type: ignore[arg-type]


def test_lock_is_versioned_and_round_trips() -> None:
    lock = make_lock()
    doc = json.loads(lock.to_json())
    assert doc["lock_version"] == LOCK_VERSION
    again = Lock.from_json(lock.to_json())
    assert again.to_json() == lock.to_json()
    assert again.digest() == lock.digest()


def test_unknown_lock_version_is_refused_with_a_hint() -> None:
    doc = json.loads(make_lock().to_json())
    doc["lock_version"] = LOCK_VERSION + 1
    with pytest.raises(LockError) as err:
        Lock.from_json(json.dumps(doc))
    assert "lock_version" in err.value.message and err.value.hint


def test_order_of_inputs_does_not_change_the_bytes() -> None:
    a = make_lock()
    b = make_lock(python=tuple(reversed(a.python)), apt=tuple(reversed(a.apt)))
    assert a.to_json() == b.to_json()


def test_a_version_bump_is_a_one_line_diff() -> None:
    a = make_lock()
    pins = tuple(dataclasses.replace(p, version="2.2.4") if p.name == "pandas" else p for p in a.python)
    b = make_lock(python=pins)
    old, new = a.to_json().splitlines(), b.to_json().splitlines()
    assert len(old) == len(new)
    changed = [(x, y) for x, y in zip(old, new, strict=True) if x != y]
    assert changed == [('        "version": "2.2.3"', '        "version": "2.2.4"')]
    assert diff_locks(a, b) == ["~ python packages: pandas 2.2.3 -> 2.2.4"]


def test_hashes_sorted_and_requirements_require_them() -> None:
    text = requirements_text(make_lock().python, "framework", "https://index.example/whl")
    assert text.splitlines() == [
        "--index-url https://index.example/whl",
        f"numpy==2.1.0 --hash={H1} --hash={H2}",
        f"scikit-learn==1.5.2 --hash={H1}",
    ]


def test_changed_recipe_is_named() -> None:
    lock = make_lock()
    _, spec = load_and_resolve(ROOT / "recipes" / "sklearn-cpu.yaml")
    lock.check_spec(spec)  # unchanged: no error
    spec = dataclasses.replace(spec, requirements=("pandas==2.2.2",), env=())
    with pytest.raises(LockError) as err:
        lock.check_spec(spec)
    assert err.value.exit_code == 2
    assert "requirements" in err.value.message and "env" in err.value.message
    assert any("pandas==2.2.3" in d and "pandas==2.2.2" in d for d in err.value.details)


def test_apt_simulation_and_pip_report_are_parsed() -> None:
    sim = (
        "NOTE: This is only a simulation!\n"
        "Inst libc6 [2.36-9] (2.36-9+deb12u9 Debian:12.9/stable [amd64])\n"
        "Inst python3.11-minimal (3.11.2-6+deb12u8 Debian:12/stable [amd64])\n"
        "Conf python3.11-minimal (3.11.2-6+deb12u8 Debian:12/stable [amd64])\n"
    )
    assert parse_apt_simulation(sim, "runtime") == [
        AptPin("runtime", "libc6", "2.36-9+deb12u9"),
        AptPin("runtime", "python3.11-minimal", "3.11.2-6+deb12u8"),
    ]
    report = {
        "install": [
            {
                "metadata": {"name": "Scikit_Learn", "version": "1.5.2"},
                "download_info": {"url": "x", "archive_info": {"hash": "sha256=" + "a" * 64}},
            },
            {
                "metadata": {"name": "numpy", "version": "2.1.0"},
                "download_info": {"url": "y", "archive_info": {"hashes": {"sha256": "b" * 64}}},
            },
        ]
    }
    assert parse_pip_report(report, "framework") == [
        PythonPin("framework", "numpy", "2.1.0", (H2,)),
        PythonPin("framework", "scikit-learn", "1.5.2", (H1,)),
    ]
    with pytest.raises(LockError):
        parse_pip_report(
            {
                "install": [
                    {
                        "metadata": {"name": "x", "version": "1"},
                        "download_info": {"url": "file:///x", "dir_info": {}},
                    }
                ]
            },
            "packages",
        )


def test_pip_hash_mismatch_becomes_a_clear_error() -> None:
    exc = BuildError(
        "build failed at Step 9/20",
        details=[
            "ERROR: THESE PACKAGES DO NOT MATCH THE HASHES FROM THE REQUIREMENTS FILE.",
            "    joblib==1.4.2 from https://files.example/joblib-1.4.2-py3-none-any.whl:",
            "        Expected sha256 0000",
            "             Got        3dbb",
        ],
    )
    clear = explain_build_failure(exc)
    assert isinstance(clear, LockedArtefactError)
    assert "hash" in clear.message and any("joblib==1.4.2" in d for d in clear.details)
    gone = explain_build_failure(BuildError("x", details=["E: Version '1.0' for 'curl' was not found"]))
    assert isinstance(gone, LockedArtefactError) and gone.details == ["apt: curl=1.0"]


def test_uv_hash_mismatch_and_missing_pins_become_clear_errors() -> None:
    """uv's own words (uv 0.13: the builder stage installs with it)."""
    exc = BuildError(
        "build failed at Step 10/20",
        details=[
            "error: Failed to download `joblib==1.4.2`",
            "  cause: Hash mismatch for `joblib==1.4.2`",
            "",
            "         Expected:",
            "           sha256:" + "0" * 64,
            "",
            "         Computed:",
            "           sha256:" + "3d" * 32,
        ],
    )
    clear = explain_build_failure(exc)
    assert isinstance(clear, LockedArtefactError) and "hash" in clear.message
    assert clear.details == ["joblib==1.4.2: downloaded bytes differ from the lock", "computed sha256:" + "3d" * 32]
    gone = explain_build_failure(
        BuildError("x", details=["  cause: Because there is no version of six==99.0 and you require six==99.0, we"])
    )
    assert isinstance(gone, LockedArtefactError) and gone.details == ["pip: six==99.0"]


def test_uv_mismatch_seen_only_in_the_logs_tail_names_the_locked_pin() -> None:
    """The classic builder colours stderr and keeps the tail: uv's Expected block, no name."""
    lock = make_lock(python=(PythonPin("framework", "joblib", "1.4.2", ("sha256:" + "0" * 64,)),))
    red = [" ", "  Expected:", "  sha256:" + "0" * 64, "", "", "  Computed:", "  sha256:" + "3d" * 32]
    tail = [f"\x1b[91m{line}\x1b[0m" for line in red]
    clear = explain_build_failure(BuildError("build failed at Step 11/30", details=tail), lock)
    assert isinstance(clear, LockedArtefactError) and "does not match its hash" in clear.message
    assert clear.details[0] == "joblib==1.4.2: downloaded bytes differ from the lock"


def test_upgrade_one_package_keeps_the_rest(tmp_path: Path) -> None:
    old = make_lock()
    fresh_pins = tuple(dataclasses.replace(p, version="9") for p in old.python)
    new = upgrade(old, make_lock(python=fresh_pins, epoch=1800000000), "pandas")
    assert {p.name: p.version for p in new.python} == {
        "pandas": "9",
        "numpy": "2.1.0",
        "scikit-learn": "1.5.2",
    }
    assert new.epoch == 1800000000
    assert upgrade(old, make_lock(epoch=1800000000), None) is old  # nothing changed: kept as is


def test_lock_file_sits_beside_the_recipe_and_is_written_atomically(tmp_path: Path) -> None:
    recipe = tmp_path / "train.yaml"
    assert lock_path(recipe) == tmp_path / "train.lock.json"
    with pytest.raises(LockError) as err:
        read_lock(recipe)
    assert "mlbuild lock" in (err.value.hint or "")
    write_atomic(lock_path(recipe), make_lock().to_json())
    assert read_lock(recipe).digest() == make_lock().digest()
    assert [p.name for p in tmp_path.iterdir()] == ["train.lock.json"]  # no temporary left


def test_locked_render_pins_everything() -> None:
    from builder.render import render

    lock = make_lock()
    _, spec = load_and_resolve(ROOT / "recipes" / "sklearn-cpu.yaml")
    text = render(spec, lock.pins())
    assert "python3=3.11.2-1+b1" in text and "python3-venv=3.11.2-1+b1" in text
    assert '"--require-hashes"' in text and '"--no-deps"' in text and "CHECKED_HASH" in text
    assert f'"org.mlbuild.lock"="{lock.digest()}"' in text
    assert "SOURCE_DATE_EPOCH=1700000000" in text.split("\nFROM ")[0] + text.split("\nFROM ")[1]
    final = text.split("\nFROM ")[-1]
    assert "ENV SOURCE_DATE_EPOCH" not in final  # never in the image's ENV ...
    assert "ARG SOURCE_DATE_EPOCH=1700000000\nRUN apt-get" in final  # ... but it keys the cached steps
    assert render(spec) != text


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (("apt", "runtime", "git"), "1:2.39\nRUN touch /pwned", "apt.runtime.'git'"),
        (("apt", "runtime", "git;id"), "1.0", "apt.runtime.'git;id'"),
        (
            ("python", "framework", "scikit-learn", "version"),
            "1.5.2 --extra-index-url http://evil",
            "python.framework.'scikit-learn'",
        ),
        (("python", "framework", "scikit-learn", "hashes"), ["md5:abc"], "hashes must be sha256"),
        (("python", "index_url"), "http://x/simple\n--trusted-host evil", "python.index_url"),
        (("base", "ref"), "debian; id", "base:"),
    ],
)
def test_a_tampered_lock_is_refused_before_any_use(path: tuple[str, ...], value: object, field: str) -> None:
    """Shared lock files get the recipe's allow-lists: nothing reaches a Dockerfile or pip."""
    import json

    from builder.lock import LockError

    doc = json.loads(make_lock().to_json())
    target = doc
    for key in path[:-1]:
        target = target.setdefault(key, {})
    if path[-1] == "git;id" or path[-1] == "git":
        target[path[-1]] = value if path[-1] == "git" else "1.0"
    else:
        target[path[-1]] = value
    with pytest.raises(LockError) as info:
        Lock.from_json(json.dumps(doc))
    assert info.value.exit_code == 2
    assert any(field in d for d in info.value.details), info.value.details


def _two_platform_lock(arm_pandas: str = "2.2.3") -> Lock:
    amd = make_lock()
    arm_spec = {**amd.spec, "platform": "linux/arm64"}
    arm = make_lock(
        spec=arm_spec,
        spec_digest=spec_digest(arm_spec),
        python=(PythonPin("packages", "pandas", arm_pandas, (H1,)),),
    )
    return dataclasses.replace(amd, others=(("linux/arm64", arm),))


def test_a_lock_carries_one_entry_per_platform_and_round_trips(tmp_path: Path) -> None:
    lock = _two_platform_lock()
    back = Lock.from_json(lock.to_json())
    assert back.to_json() == lock.to_json()
    assert json.loads(lock.to_json())["platforms"]["linux/arm64"]["spec"]["platform"] == "linux/arm64"
    assert back.for_platform(None) is back and back.for_platform("linux/amd64") is back
    arm = back.for_platform("linux/arm64")
    assert arm.platform == "linux/arm64" and [p.name for p in arm.python] == ["pandas"]
    assert arm.pins().lock_json == arm.to_json()  # a platform's locked build sees its own entry only
    with pytest.raises(LockError, match="no entry for linux/s390x"):
        back.for_platform("linux/s390x")
    assert "platforms" not in make_lock().to_dict()  # single-platform locks stay as they were


def test_upgrade_of_a_two_platform_lock_sees_a_change_on_either_platform() -> None:
    old = _two_platform_lock()
    assert upgrade(old, _two_platform_lock(), None) is old
    changed = upgrade(old, _two_platform_lock("2.2.4"), None)
    assert changed.for_platform("linux/arm64").python[0].version == "2.2.4"
    one = upgrade(old, _two_platform_lock("9"), "pandas")
    assert one.for_platform("linux/arm64").python[0].version == "9"
