"""uv installs the builder stage's environment (issue 14): pinned and hash-checked, the site's
settings in uv's terms, builder stage only; `installer: pip` (recipe or site config) keeps pip."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.errors import RecipeError, UsageError
from builder.lock import Pins
from builder.matrix import load_matrix
from builder.recipe import parse_recipe
from builder.render import UV_TARGET, render, write_context
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
    assert f'"--require-hashes", "--no-compile", "--target", "{UV_TARGET}"' in builder
    assert f'"--", "{UV_TARGET}/bin/uv", "pip", "install", "--python", "/opt/venv/bin/python"' in builder
    assert '/opt/venv/bin/pip", "install", "-r"' not in builder  # no pip install step left
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
    assert UV_TARGET not in render(spec_for(SKLEARN, tmp_path), settings=settings)
    assert UV_TARGET in render(spec_for(SKLEARN + "installer: uv\n", tmp_path), settings=settings)


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
    text = write_context(spec_for(SKLEARN, tmp_path), ctx, tmp_path, settings)
    assert (ctx / "build-settings" / "uv.toml").read_text().splitlines() == [
        'index-strategy = "unsafe-best-match"',
        'index-url = "https://u:p@mirror.example/simple"',
        'extra-index-url = ["https://extra.example/simple"]',
        'allow-insecure-host = ["mirror.example"]',
    ]
    builder = text.split("\nFROM ")[-2]
    assert "SSL_CERT_FILE=/tmp/mlbuild-build/ca.crt" in builder and "UV_NO_CACHE=1" in builder
    assert "u:p@" not in text  # credentials stay in the build-settings files
    pin = (ctx / "build-settings" / "uv-pin.txt").read_text()
    assert pin == load_matrix().uv.requirement + "\n"  # type: ignore[union-attr]


def test_offline_with_the_uv_wheel_in_the_wheelhouse_uses_it(tmp_path: Path) -> None:
    pin = load_matrix().uv
    assert pin
    house = tmp_path / "wheels"
    house.mkdir()
    (house / f"uv-{pin.version}-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl").write_bytes(b"")
    settings = BuildSettings(wheelhouse=house, offline=True)
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    text = write_context(spec_for(SKLEARN, tmp_path), ctx, tmp_path, settings)
    assert UV_TARGET in text
    assert (ctx / "build-settings" / "uv-pin.txt").read_text().startswith("--no-index\n--find-links /tmp/wheelhouse\n")
    assert "offline = true" in (ctx / "build-settings" / "uv.toml").read_text()


def test_offline_without_the_uv_wheel_keeps_pip(tmp_path: Path) -> None:
    house = tmp_path / "wheels"
    house.mkdir()
    text = render(spec_for(SKLEARN, tmp_path), settings=BuildSettings(wheelhouse=house, offline=True))
    assert UV_TARGET not in text and '"/opt/venv/bin/pip", "install"' in text


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
    uv = f'"--", "{UV_TARGET}/bin/uv", "pip", "install", "--python", "/opt/venv/bin/python", "--no-deps", '
    uv += '"--require-hashes"'
    assert text.count(uv) == 2
    assert "--compile-bytecode" not in text  # locked builds compile once, in a fixed order, later
