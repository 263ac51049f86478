"""uv installs the builder stage's environment (issue 14): pinned and hash-checked, the site's
settings in uv's terms, builder stage only; `installer: pip` (recipe or site config) keeps pip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from builder.errors import RecipeError, UsageError
from builder.lock import Pins
from builder.matrix import load_matrix
from builder.recipe import parse_recipe
from builder.render import TOOLS, pip_wheel_name, place_tools, render, write_context
from builder.resolve import resolve
from builder.settings import BuildSettings, load_settings
from builder.spec import ResolvedSpec

SKLEARN = "name: s\nframework: sklearn\nframework_version: '1.5'\npython: '3.11'\npackages: [pandas==2.2.3]\n"


def spec_for(text: str, tmp_path: Path) -> ResolvedSpec:
    return resolve(parse_recipe(text.encode(), tmp_path / "r.yaml"))


def final_stage(dockerfile: str) -> str:
    return dockerfile.split("\nFROM ")[-1]


def test_uv_is_pinned_with_a_hash_per_architecture() -> None:
    pin = load_matrix().uv
    assert pin is not None and dict(pin.sha256).keys() == {"x86_64", "aarch64"}
    assert pin.requirement.startswith(f"uv=={pin.version} --hash=sha256:")
    assert pin.requirement.count("--hash=sha256:") == 2


def without_constraints(text: str) -> str:
    """The Dockerfile less the lines about the image's constraints file, which name uv's setting."""
    return "\n".join(line for line in text.splitlines() if "constraints.txt" not in line)


def test_default_build_installs_with_uv_in_the_builder_stage_only(tmp_path: Path) -> None:
    text = render(spec_for(SKLEARN, tmp_path))
    builder, final = text.split("\nFROM ")[-2], final_stage(text)
    assert f'"--", "{TOOLS}/uv", "pip", "install", "--python", "/opt/venv/bin/python"' in builder
    assert '/opt/venv/bin/pip", "install"' not in builder  # no pip install step left, not even of uv
    # the venv without ensurepip: uv installs the pinned pip wheel that mlbuild brought
    assert '["/usr/bin/python3.11", "-m", "venv", "--without-pip", "/opt/venv"]' in builder
    seed = [f"{TOOLS}/uv", "pip", "install", "--python", "/opt/venv/bin/python", "--no-index", "--no-deps",
            "--compile-bytecode", "--find-links", TOOLS, f"pip=={load_matrix().pip.version}"]  # type: ignore[union-attr]
    assert "RUN " + json.dumps(seed) in builder
    final = without_constraints(final)  # UV_CONSTRAINT is for images built FROM this one
    assert "UV_" not in final and "uv" not in final.split("LABEL")[0]


def test_recipe_installer_pip_keeps_pip(tmp_path: Path) -> None:
    spec = spec_for(SKLEARN + "installer: pip\n", tmp_path)
    assert spec.installer == "pip" and '"installer":"pip"' in spec.to_json()
    text = render(spec)
    assert "uv" not in without_constraints(text).split("LABEL")[0].lower().replace("uv_image", "")
    assert '"--", "/opt/venv/bin/pip", "install", "-r", "/tmp/mlbuild/requirements-framework.txt"]' in text


def test_spec_without_installer_keeps_its_json(tmp_path: Path) -> None:
    assert "installer" not in spec_for(SKLEARN, tmp_path).to_json()


def test_site_config_installer_pip_and_recipe_wins(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("installer: pip\n")
    settings = load_settings(config_path=str(config), env={})
    assert settings.installer == "pip"
    assert TOOLS not in render(spec_for(SKLEARN, tmp_path), settings=settings)
    assert TOOLS in render(spec_for(SKLEARN + "installer: uv\n", tmp_path), settings=settings)


def test_bad_installer_values_are_named(tmp_path: Path) -> None:
    with pytest.raises(RecipeError) as info:
        spec_for(SKLEARN + "installer: conda\n", tmp_path)
    assert any("installer" in d and "'conda'" in d and "uv | pip" in d for d in info.value.details)
    config = tmp_path / "config.yaml"
    config.write_text("installer: poetry\n")
    with pytest.raises(UsageError, match=r"installer: 'poetry' is not one of: uv \| pip"):
        load_settings(config_path=str(config), env={})


def test_site_settings_reach_uv_in_its_own_terms(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nX\n-----END CERTIFICATE-----\n")
    settings = BuildSettings(
        ca_bundle=ca,
        index_url="https://u:p@mirror.example/simple",
        extra_index_urls=("https://extra.example/simple",),
        trusted_hosts=("mirror.example",),
    )
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    tools = tmp_path / "uv", tmp_path / pip_wheel_name()
    for tool in tools:
        tool.write_bytes(b"stand-in")
    text = write_context(spec_for(SKLEARN, tmp_path), ctx, tmp_path, settings)
    place_tools(ctx, tools)
    assert sorted(p.name for p in (ctx / "build-settings" / "tools").iterdir()) == sorted(t.name for t in tools)
    assert (ctx / "build-settings" / "uv.toml").read_text().splitlines() == [
        'index-strategy = "unsafe-best-match"',
        'index-url = "https://u:p@mirror.example/simple"',
        'extra-index-url = ["https://extra.example/simple"]',
        'allow-insecure-host = ["mirror.example"]',
    ]
    builder = text.split("\nFROM ")[-2]
    assert "SSL_CERT_FILE=/tmp/mlbuild-build/ca.crt" in builder and "UV_NO_CACHE=1" in builder
    assert "u:p@" not in text  # credentials stay in the build-settings files


def test_offline_with_the_uv_and_pip_wheels_in_the_wheelhouse_uses_uv(tmp_path: Path) -> None:
    uv, pip = load_matrix().uv, load_matrix().pip
    assert uv and pip
    house = tmp_path / "wheels"
    house.mkdir()
    (house / f"uv-{uv.version}-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl").write_bytes(b"")
    settings = BuildSettings(wheelhouse=house, offline=True)
    assert TOOLS not in render(spec_for(SKLEARN, tmp_path), settings=settings)  # pip's wheel lacking: pip
    (house / pip_wheel_name()).write_bytes(b"")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    text = write_context(spec_for(SKLEARN, tmp_path), ctx, tmp_path, settings)
    assert f"{TOOLS}/uv" in text
    assert "offline = true" in (ctx / "build-settings" / "uv.toml").read_text()


def test_offline_without_the_uv_wheel_keeps_pip(tmp_path: Path) -> None:
    house = tmp_path / "wheels"
    house.mkdir()
    text = render(spec_for(SKLEARN, tmp_path), settings=BuildSettings(wheelhouse=house, offline=True))
    assert TOOLS not in text and '"/opt/venv/bin/pip", "install"' in text
    # pip is the installer here: ensurepip makes the venv's pip, from the distro's -venv package
    assert "python3.11-venv" in text and '"-m", "venv", "/opt/venv"]' in text


def test_locked_build_requires_hashes_with_uv(tmp_path: Path) -> None:
    pins = Pins(
        framework="scikit-learn==1.5.2 --hash=sha256:" + "a" * 64 + "\n",
        packages="pandas==2.2.3 --hash=sha256:" + "b" * 64 + "\n",
        project="",
        builder_apt=(),
        runtime_apt=(),
        epoch=1,
        lock_digest="sha256:" + "c" * 64,
        lock_json="{}",
    )
    text = render(spec_for(SKLEARN, tmp_path), pins)
    uv = f'"--", "{TOOLS}/uv", "pip", "install", "--python", "/opt/venv/bin/python", "--no-deps", '
    uv += '"--require-hashes"'
    assert text.count(uv) == 2
    assert "--compile-bytecode" not in text  # locked builds compile once, in a fixed order, later


def test_the_builder_stage_shares_the_images_apt_step(tmp_path: Path) -> None:
    """uv brings pip's wheel, so the builder stage needs no ensurepip package: its first steps are
    the image's own, letter for letter, and each builder runs them once for both stages."""
    spec = spec_for(SKLEARN + "system_packages: [libgomp1]\n", tmp_path)
    for buildkit in (False, True):
        text = render(spec, buildkit=buildkit)
        builder, final = text.split("\nFROM ")[-2], final_stage(text)

        def steps_to_apt(stage: str) -> list[str]:
            lines = [line for line in stage.splitlines()[1:] if line and not line.startswith("#")]
            return lines[: next(i for i, line in enumerate(lines) if "apt-get" in line) + 1]

        assert steps_to_apt(builder) == steps_to_apt(final)
        assert "libgomp1" in steps_to_apt(builder)[-1] and "-venv" not in builder


def test_a_python_before_3_10_keeps_its_venv_package_in_the_builder_stage(tmp_path: Path) -> None:
    """uv reads a Python before 3.10 only with distutils (Debian's python3-distutils, which the
    -venv package brings): measured on bullseye's 3.9, uv refused the venv without it."""
    text = render(spec_for(SKLEARN.replace("'3.11'", "'3.9'").replace("'1.5'", "'1.6'"), tmp_path))
    builder = text.split("\nFROM ")[-2]
    assert "--no-install-recommends python3.9 python3.9-venv ca-certificates" in builder
    assert "--without-pip" in builder and f"{TOOLS}/uv" in builder  # still uv, still its pip wheel
