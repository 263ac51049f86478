"""Sharing images: `mlbuild push IMAGE`, `mlbuild pull RECIPE`, `mlbuild login REGISTRY`.

The library side (credentials, digests, immutable tags, records) is builder/registry.py; this
module only parses options, prints and exits.
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
    from builder.engine_api import Engine, LayerProgress
    from builder.registry import PushResult

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


def ensure_smoked(
    engine: Engine,
    image: str,
    out: Output,
    gpu_mode: str | None = None,
    gpu_access: str | None = None,
) -> None:
    """Run the smoke test from the image's own labels; SmokeFailed (exit 3) when it fails."""
    from builder.errors import SmokeFailed, UsageError
    from builder.smoke import smoke
    from builder.spec import ResolvedSpec

    spec = ResolvedSpec.from_labels(engine.labels(image))
    if spec is None:
        raise UsageError(f"{image} was not built by mlbuild (no org.mlbuild.spec label)")
    out.say(f"smoke test of {image[:19]} before pushing")
    report = smoke(engine, image, spec, gpu_mode or spec.smoke_gpu, gpu_access)
    if not report.passed:
        raise SmokeFailed(
            f"smoke test failed for {image[:19]}: not pushed",
            details=[f"{c.name}: {c.detail}" for c in report.failures()],
        )


def push_and_record(
    engine: Engine,
    image_id: str,
    refs: list[str] | tuple[str, ...],
    out: Output,
    recipe: Path | None,
    registry_ca: str | None,
) -> tuple[list[PushResult], Path | None]:
    """Push, then write the record next to the recipe (only when every push succeeded)."""
    from builder import registry
    from builder.labels import CONTENT_LABEL

    results = registry.push_image(
        engine,
        image_id,
        list(refs),
        registry_ca=registry_ca,
        say=out.say,
        on_progress=LayerPrinter(out),
    )
    written = None
    if recipe is not None:
        attrs = engine.inspect(image_id)
        labels = dict((attrs.get("Config") or {}).get("Labels") or {})
        # The record names the repository that carries the content tag (the first, if several).
        main = next((r for r in results if labels.get(CONTENT_LABEL) in r.tags), results[0])
        record = registry.make_record(main, labels, registry.platform_of(attrs))
        written = registry.record_path(recipe)
        registry.write_record(written, record)
    return results, written


def push_summary(results: list[PushResult], record: Path | None) -> tuple[dict[str, Any], str]:
    doc = {
        "pushed": [
            {
                "repository": r.repository,
                "digest": r.digest,
                "tags": list(r.tags),
                "reference": r.reference,
            }
            for r in results
        ],
        "record": str(record) if record else None,
    }
    lines = [f"pushed  {r.reference}  ({', '.join(r.tags)})" for r in results]
    if record:
        lines.append(f"record  {record}")
    return doc, "\n".join(lines)


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
    from builder.engine import Engine
    from builder.errors import UsageError
    from builder.labels import CONTENT_LABEL, SPEC_LABEL
    from builder.refs import parse_reference

    out = Output(json_mode, quiet)
    if recipe is not None and not recipe.is_file():
        raise UsageError(f"recipe {recipe} does not exist")
    engine = Engine.connect()
    attrs = engine.inspect(image)
    image_id = str(attrs["Id"])
    labels = dict((attrs.get("Config") or {}).get("Labels") or {})
    content = labels.get(CONTENT_LABEL)
    if not content or SPEC_LABEL not in labels:
        raise UsageError(f"{image} was not built by mlbuild (no {CONTENT_LABEL} label)")
    repo_tags = [str(t) for t in attrs.get("RepoTags") or []]
    # `build --no-smoke` tags too, so the tags prove nothing: test what is about to be shared.
    ensure_smoked(engine, image_id, out)
    source = parse_reference(image).name if not image.startswith("sha256:") else None
    target = parse_reference(to_repo).name if to_repo else source
    if target is None:
        raise UsageError("an image ID names no repository", hint="add --to REPO")
    tags = [t for t in (parse_reference(r).tag for r in repo_tags if parse_reference(r).name in (source, target)) if t]
    tags = list(dict.fromkeys([content, *tags]))  # the immutable tag always travels along
    for tag in tags:
        engine.tag(image_id, target, tag)
    results, written = push_and_record(engine, image_id, [f"{target}:{t}" for t in tags], out, recipe, registry_ca)
    doc, text = push_summary(results, written)
    out.result(doc, text)


@click.command("pull")
@click.argument("recipe", type=click.Path(dir_okay=False, path_type=Path))
@registry_ca_option
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
@json_option
@handle_errors
def pull_cmd(recipe: Path, registry_ca: str | None, quiet: bool, json_mode: bool) -> None:
    """Pull exactly the image that RECIPE's record names, by digest, and check it.

    The record (RECIPE's name with .image.json) is written by `mlbuild build --push` or
    `mlbuild push --recipe`. The image's labels must match the record and the recipe.
    """
    from builder import registry
    from builder.engine import Engine
    from builder.errors import RegistryError
    from builder.refs import parse_reference
    from builder.render import summary
    from builder.resolve import load_and_resolve
    from builder.spec import ResolvedSpec

    out = Output(json_mode, quiet)
    record = registry.read_record(recipe)
    base = str(record.spec.get("base_image") or "") or None
    _, expected = load_and_resolve(recipe, base)  # the same base as the build: compare the rest
    ref = parse_reference(record.repository)
    acc = registry.access_for(ref.registry, registry_ca)
    engine = Engine.connect()
    out.say(f"pulling {record.reference}")
    auth = acc.creds.auth_config() if acc.creds else None
    try:
        image_id = engine.pull_ref(record.reference, auth_config=auth, on_progress=LayerPrinter(out))
    except RegistryError as exc:
        if any(w in " ".join(exc.details).lower() for w in ("unauthorized", "authentication required")):
            raise registry.auth_error(ref.registry, acc.creds) from None
        raise
    attrs = engine.inspect(image_id)
    labels = dict((attrs.get("Config") or {}).get("Labels") or {})
    problems = registry.check_labels(labels, record, expected.to_dict())
    if record.image_id and image_id != record.image_id:
        problems.append(f"image ID {image_id}, the record says {record.image_id}")
    if problems:
        raise RegistryError(
            f"the image {record.reference} does not match {recipe}",
            details=problems,
            hint="the recipe changed since the push: rebuild and push, or use the recipe's "
            "version from when the record was written",
        )
    for tag in record.tags:
        engine.tag(image_id, record.repository, tag)
    spec = ResolvedSpec.from_labels(labels)
    assert spec is not None  # check_labels found the label
    size = int(attrs.get("Size") or 0)
    doc = {**record.to_dict(), "pulled_image_id": image_id, "size_bytes": size}
    out.result(
        doc,
        f"{record.reference}: {spec.name}, {summary(spec)}, {size / 1e6:.0f} MB, "
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
    from builder import registry
    from builder.errors import UsageError

    if sys.stdin.isatty():
        password = click.prompt("password", hide_input=True, err=True)
    else:
        password = sys.stdin.read().rstrip("\r\n")
    if not password:
        raise UsageError(
            "no password on stdin",
            hint=f'printf %s "$PASSWORD" | mlbuild login {registry_host} -u {username}',
        )
    host = registry.normalize_registry(registry_host)
    creds = registry.Credentials(username, password, "mlbuild login")
    ca = registry.ca_for(host, registry_ca, registry.site_registry_ca())
    registry.RegistryClient(host, creds, ca, registry.RetryPolicy.from_env()).ping()
    where = registry.store_credentials(host, creds)
    click.echo(f"logged in to {host} as {username} (stored in {where})")


def register(main: click.Group) -> None:
    for command in (push_cmd, pull_cmd, login_cmd):
        main.add_command(command)
