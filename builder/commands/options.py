"""Options that several commands share, so each reads and behaves the same everywhere."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def settings_options(fn: F) -> F:
    """--ca-bundle, --index-url, --extra-index-url: the site settings of build steps."""
    fn = click.option(
        "--ca-bundle",
        type=click.Path(dir_okay=False),
        help="CA bundle for build steps (default: $PIP_CERT, $REQUESTS_CA_BUNDLE or $SSL_CERT_FILE). "
        "Never left in the image.",
    )(fn)
    fn = click.option(
        "--index-url",
        metavar="URL",
        help="pip index for build steps (default: $PIP_INDEX_URL or the site config).",
    )(fn)
    fn = click.option(
        "--extra-index-url",
        "extra_index_urls",
        multiple=True,
        metavar="URL",
        help="Extra pip index (repeatable).",
    )(fn)
    return fn


registry_ca_option = click.option(
    "--registry-ca",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="CA certificate of a private registry (default: site config registry_ca, or /etc/docker/certs.d/HOST/ca.crt).",
)


builder_option = click.option(
    "--builder",
    type=click.Choice(["auto", "buildkit", "classic"]),
    help="auto (default, or the site config's builder): BuildKit where a docker CLI can drive it "
    "(cache mounts, secrets, parallel stages), else the classic builder. `mlbuild doctor` says which.",
)
