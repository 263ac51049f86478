"""Sharing images: `mlbuild push IMAGE`, `mlbuild pull RECIPE`, `mlbuild login REGISTRY`.

The library side is builder/publish.py (push every tag, immutable content tags, the record),
builder/pull.py, builder/registry.py and builder/credentials.py; this module only parses
options, prints and exits.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from builder.commands.options import registry_ca_option
from builder.commands.output import Output, handle_errors, json_option

if TYPE_CHECKING:
    from builder.engine_api import LayerProgress
    from builder.publish import Published

_STREAMING = ("Pushing", "Downloading", "Extracting")


class LayerPrinter:
    """Per-layer progress on stderr: every change of status, and byte counts once a second."""

    def __init__(self, out: Output, interval: float = 1.0) -> None:
        self.out = out
        self.interval = interval
        self.status: dict[str, str] = {}
        self.when: dict[str, float] = {}

    def __call__(self, ev: LayerProgress) -> None:
        if self.out.quiet:
            return
        layer = ev.layer[:12]
        now = time.monotonic()
        if ev.status in _STREAMING and ev.total:
            if self.status.get(layer) == ev.status and now - self.when.get(layer, 0.0) < self.interval:
                return
            pct = 100 * (ev.current or 0) // max(ev.total, 1)
            text = f"{layer}: {ev.status.lower()} {pct}% of {ev.total / 1e6:.1f} MB"
        elif self.status.get(layer) == ev.status:
            return
        else:
            text = f"{layer}: {ev.status}"
        self.status[layer], self.when[layer] = ev.status, now
        self.out.line(text)


def push_summary(published: Published) -> tuple[dict[str, Any], str]:
    lines = [f"pushed  {r.reference}  ({', '.join(r.tags)})" for r in published.pushed]
    if published.record:
        lines.append(f"record  {published.record}")
    return published.to_dict(), "\n".join(lines)


@click.command("push")
@click.argument("image")
@click.option(
    "--to",
    "to_repo",
    metavar="REPO",
    help="Push into this repository (e.g. host:5000/team/name), keeping the tag names.",
)
@click.option(
    "--recipe",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the image record next to this recipe.",
)
@registry_ca_option
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
@json_option
@handle_errors
def push_cmd(
    image: str,
    to_repo: str | None,
    recipe: Path | None,
    registry_ca: str | None,
    quiet: bool,
    json_mode: bool,
) -> None:
    """Push every tag of IMAGE in its repository (or --to REPO) and print the registry digest.

    Only images that passed their smoke test are pushed: mlbuild gives the content tag
    (spec-<hash>) only after a passing smoke test. Content tags are immutable in the registry.

    \b
    Examples:
      mlbuild push registry.example.com/team/train:spec-0123456789abcdef --recipe train.yaml
      mlbuild push mlbuild/sklearn-cpu:latest --to 127.0.0.1:5000/team/sklearn-cpu
    """
    from builder.api import push

    out = Output(json_mode, quiet)
    published = push(image, to=to_repo, recipe=recipe, registry_ca=registry_ca, say=out.say,
                     on_progress=LayerPrinter(out))  # fmt: skip
    out.result(*push_summary(published))


@click.command("pull")
@click.argument("recipe", type=click.Path(dir_okay=False, path_type=Path))
@registry_ca_option
@click.option(
    "--platform",
    metavar="OS/ARCH",
    help="Of a multi-platform record, this platform's image (default: the engine's own).",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
@json_option
@handle_errors
def pull_cmd(recipe: Path, registry_ca: str | None, platform: str | None, quiet: bool, json_mode: bool) -> None:
    """Pull exactly the image that RECIPE's record names, by digest, and check it.

    The record (RECIPE's name with .image.json) is written by `mlbuild build --push` or
    `mlbuild push --recipe`. The image's labels must match the record and the recipe. A record
    of several platforms gives the engine's own platform's image, or that of --platform.
    """
    from builder.engine import Engine
    from builder.pull import pull_recorded
    from builder.render import summary

    out = Output(json_mode, quiet)
    engine = Engine.connect()
    pulled = pull_recorded(engine, recipe, platform=platform, registry_ca=registry_ca, say=out.say,
                           on_progress=LayerPrinter(out))  # fmt: skip
    record, spec = pulled.record, pulled.spec
    doc = {**record.to_dict(), "pulled_image_id": pulled.image_id, "size_bytes": pulled.size_bytes}
    out.result(
        doc,
        f"{record.reference}: {spec.name}, {summary(spec)}, {pulled.size_bytes / 1e6:.0f} MB, "
        f"{record.content_tag}, {record.platform}",
    )


@click.command("login")
@click.argument("registry_host", metavar="REGISTRY")
@click.option(
    "-u",
    "--username",
    envvar="MLBUILD_REGISTRY_USER",
    required=True,
    help="User name (default: $MLBUILD_REGISTRY_USER).",
)
@registry_ca_option
@handle_errors
def login_cmd(registry_host: str, username: str, registry_ca: str | None) -> None:
    """Check credentials for REGISTRY (password on stdin) and store them like `docker login`.

    \b
    Example:
      printf %s "$TOKEN" | mlbuild login registry.example.com -u ci-bot
    """
    from builder.errors import UsageError
    from builder.registry import login

    if sys.stdin.isatty():
        password = click.prompt("password", hide_input=True, err=True)
    else:
        password = sys.stdin.read().rstrip("\r\n")
    if not password:
        raise UsageError(
            "no password on stdin",
            hint=f'printf %s "$PASSWORD" | mlbuild login {registry_host} -u {username}',
        )
    host, where = login(registry_host, username, password, registry_ca)
    click.echo(f"logged in to {host} as {username} (stored in {where})")


def register(main: click.Group) -> None:
    for command in (push_cmd, pull_cmd, login_cmd):
        main.add_command(command)
