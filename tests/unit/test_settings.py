"""Site build settings: precedence, the builder stage's pip.conf, proxies, redaction."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.errors import UsageError
from builder.settings import load_settings, redact


def test_options_beat_environment_beat_site_config(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("index_url: https://config/simple\nextra_index_urls: [https://cfg-extra/simple]\n")
    env = {"PIP_INDEX_URL": "https://env/simple", "MLBUILD_CONFIG": str(config)}
    assert load_settings(env=env).index_url == "https://env/simple"
    assert load_settings(index_url="https://opt/simple", env=env).index_url == "https://opt/simple"
    assert load_settings(env={"MLBUILD_CONFIG": str(config)}).index_url == "https://config/simple"
    assert load_settings(env={"MLBUILD_CONFIG": str(config)}).extra_index_urls == ("https://cfg-extra/simple",)


def test_file_urls_from_the_hosts_pip_config_are_not_taken() -> None:
    s = load_settings(
        env={"PIP_INDEX_URL": "file:///opt/pypi/simple", "PIP_EXTRA_INDEX_URL": "file:///x https://y/simple"}
    )
    assert s.index_url is None and s.extra_index_urls == ("https://y/simple",)


def test_ca_bundle_from_environment_and_pip_conf(tmp_path: Path) -> None:
    ca = tmp_path / "corp.pem"
    ca.write_text("PEM")
    s = load_settings(env={"REQUESTS_CA_BUNDLE": str(ca)})
    assert s.ca_bundle == ca
    s.write_build_settings(tmp_path / "bs")
    assert (tmp_path / "bs" / "ca.crt").read_text() == "PEM"
    assert "cert = /tmp/mlbuild-build/ca.crt" in (tmp_path / "bs" / "pip.conf").read_text()


def test_missing_ca_bundle_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as info:
        load_settings(ca_bundle=str(tmp_path / "missing.pem"), env={})
    assert info.value.exit_code == 2


def test_apt_proxy_is_a_predefined_build_argument(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("apt_proxy: http://user:pw@apt-cache:3142\n")
    s = load_settings(env={"MLBUILD_CONFIG": str(config), "HTTPS_PROXY": "http://proxy:3128"})
    assert s.build_args() == {"HTTPS_PROXY": "http://proxy:3128", "http_proxy": "http://user:pw@apt-cache:3142"}
    assert "pw" in s.secrets()
    assert all("pw" not in line for line in s.describe())


def test_redact_hides_credentials_in_every_url() -> None:
    text = "pip index https://user:TOKEN@idx/simple and http://a:b@c:1/x"
    assert redact(text) == "pip index https://***@idx/simple and http://***@c:1/x"
