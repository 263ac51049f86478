"""Reproducible images on a real engine: lock, locked builds with identical bytes, verify.

One tiny recipe (scikit-learn, no extra packages) is locked once; the module then builds it
from the lock, removes the image, and rebuilds without any cache (inside `verify`). About
4-5 minutes on an idle machine.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from locking import lock_recipe

from builder.errors import BuildError
from builder.labels import LOCK_LABEL, SBOM_LABEL
from builder.lock import (
    LockedArtefactError,
    LockError,
    lock_path,
    read_lock,
    sbom_path,
)
from builder.pipeline import BuildOptions, build

pytestmark = pytest.mark.integration

RECIPE = """\
name: repro-tiny
framework: sklearn
framework_version: "1.5"
python: "3.11"
cuda: cpu
"""


@pytest.fixture(scope="module")
def locked_recipe(engine, bookworm_base, settings, tmp_path_factory):  # type: ignore[no-untyped-def]
    folder = tmp_path_factory.mktemp("repro")
    return lock_recipe(folder, RECIPE, engine=engine, settings=settings, base_image=bookworm_base)


@pytest.fixture(scope="module", params=["buildkit", "classic"])
def first_build(request, engine, settings, locked_recipe):  # type: ignore[no-untyped-def]
    """The locked build, on each builder (the lock is the same; the tests below run for both)."""
    settings = dataclasses.replace(settings, builder=request.param)
    said: list[str] = []
    started = time.monotonic()
    result = build(
        locked_recipe,
        engine=engine,
        settings=settings,
        options=BuildOptions(locked=True, reuse=False, run_smoke=True),
        say=said.append,
    )
    assert result.builder == request.param
    raw = next(line.split()[1] for line in said if line.startswith("normalised "))
    print(f"first locked build ({request.param}): {time.monotonic() - started:.1f} s, {result.image_id} (raw {raw})")
    return result, raw, settings


def test_lock_pins_base_os_and_python_packages(locked_recipe: Path, engine) -> None:  # type: ignore[no-untyped-def]
    lock = read_lock(locked_recipe)
    names = {p.name: p for p in lock.python}
    assert "scikit-learn" in names and names["scikit-learn"].version == "1.5.2"
    assert "numpy" in names  # dependencies too
    assert all(h.startswith("sha256:") and len(h) == 71 for p in lock.python for h in p.hashes)
    assert {p.name for p in lock.apt if p.stage == "runtime"} >= {"python3", "python3.11"}
    assert lock.base.image_id == engine.image_id(lock.base.ref)
    assert lock.base.digest is None and "image ID" in lock.base.note  # a bootstrapped base


def test_locked_build_is_labelled_and_has_its_sbom(first_build, locked_recipe: Path, engine) -> None:  # type: ignore[no-untyped-def]
    result, _raw, _settings = first_build
    labels = engine.labels(result.image_id)
    lock = read_lock(locked_recipe)
    assert labels[LOCK_LABEL] == lock.digest()
    sbom_file = sbom_path(locked_recipe)
    doc = json.loads(sbom_file.read_text())
    purls = {c["purl"].split("@")[0] for c in doc["components"]}
    assert {"pkg:pypi/scikit-learn", "pkg:pypi/numpy", "pkg:deb/debian/python3.11"} <= purls
    import hashlib

    assert labels[SBOM_LABEL] == f"{sbom_file.name} sha256:{hashlib.sha256(sbom_file.read_bytes()).hexdigest()}"
    assert (
        labels["org.opencontainers.image.created"]
        == engine.inspect(result.image_id)["Created"].replace(".000000000", "")[:19] + "Z"
    )
    assert result.smoke and result.smoke.passed


def test_recipe_edited_after_locking_is_refused(engine, settings, locked_recipe: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    edited = tmp_path / "tiny.yaml"
    edited.write_text(RECIPE + "packages:\n  - joblib\n")
    shutil.copy(lock_path(locked_recipe), lock_path(edited))
    with pytest.raises(LockError) as err:
        build(edited, engine=engine, settings=settings, options=BuildOptions(locked=True, run_smoke=False))
    assert err.value.exit_code == 2 and "requirements" in err.value.message
    cli = subprocess.run(
        ["python", "-m", "builder", "build", str(edited), "--locked", "-q"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cli.returncode == 2, cli.stderr
    assert "changed since it was locked" in cli.stderr and "requirements" in cli.stderr


def test_edited_hash_fails_the_locked_build_clearly(
    engine, locked_recipe: Path, tmp_path: Path, first_build
) -> None:  # type: ignore[no-untyped-def]
    settings = first_build[2]  # on each builder
    tampered = tmp_path / "tiny.yaml"
    shutil.copy(locked_recipe, tampered)
    doc = json.loads(lock_path(locked_recipe).read_text())
    entry = doc["python"]["framework"]["joblib"]
    entry["hashes"] = ["sha256:" + "0" * 64]
    lock_path(tampered).write_text(json.dumps(doc, indent=2, sort_keys=True))
    with pytest.raises(BuildError) as err:
        build(tampered, engine=engine, settings=settings, options=BuildOptions(locked=True, run_smoke=False))
    assert isinstance(err.value, LockedArtefactError), err.value.details
    assert "does not match its hash" in err.value.message
    assert any("joblib" in d for d in err.value.details)


def test_rebuild_without_cache_is_identical_and_verify_names_differing_files(
    engine,
    settings,
    locked_recipe: Path,
    first_build,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    from builder.verify import verify

    result, raw, settings = first_build  # verify rebuilds with the same builder
    # A deliberately different image that claims the same lock: one file changed.
    (tmp_path / "Dockerfile").write_text(
        f"FROM {result.image_id}\nUSER 0\nRUN echo '# changed' >> /opt/mlbuild/probe.py\n"
    )
    subprocess.run(
        ["docker", "build", "-q", "-t", "mlbuild-test/repro-tampered:1", str(tmp_path)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    # Remove the first image and its build cache: the rebuild starts from nothing (no cache).
    engine.remove_image("mlbuild-test/repro-tampered:1")  # untag; keep the image by ID
    tampered_id = subprocess.run(
        ["docker", "build", "-q", str(tmp_path)],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout.strip()
    for ref in result.tags:
        engine.remove_image(ref, force=True)
    started = time.monotonic()
    said: list[str] = []
    checked = verify(engine, locked_recipe, settings=settings, reference=tampered_id, say=said.append)
    seconds = time.monotonic() - started
    raw2 = next(line.split()[1] for line in said if line.startswith("normalised "))
    print(
        f"rebuild without cache: {seconds:.1f} s; first {result.image_id}, "
        f"again {checked.rebuilt_id}; "
        f"raw {raw} vs {raw2}"
    )
    # identical bytes from the same lock, after removing the image and without any cache ...
    if checked.rebuilt_id != result.image_id:  # the first image lives on as the tampered one's parent
        from builder.imagediff import diff_images

        where = diff_images(engine, result.image_id, checked.rebuilt_id).lines()
        pytest.fail("the rebuild differs from the first build:\n" + "\n".join(where[:60]))
    # ... while the builder's own images (the control: no normalisation) differ
    assert raw2 != raw
    # verify saw that the tampered image is not what the lock builds, and says where
    assert not checked.identical and checked.diff is not None
    lines = "\n".join(checked.diff.lines())
    assert "opt/mlbuild/probe.py" in lines
    assert any(d.a is not None and d.b is None for d in checked.diff.layers)  # the extra layer
    engine.remove_image(tampered_id, force=True)
