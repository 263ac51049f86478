"""The command line: the click group and its core commands. With builder/commands/, the only
code that prints or exits; the work is the library's (docs/architecture.md).

Exit codes: 0 success; 2 invalid recipe, impossible combination or bad usage; 3 smoke test
failed; 1 anything else (engine unreachable, build failed), with a one-line cause and a hint.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from builder.commands.options import builder_option, settings_options
from builder.commands.output import F, Output, handle_errors, json_option
from builder.version import __version__

if TYPE_CHECKING:
    from builder.engine_api import Engine as EngineApi
    from builder.layers import Group

EPILOG_EXIT = "Exit codes: 0 ok, 1 failure (engine, build), 2 invalid recipe or usage, 3 smoke test failed."


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=EPILOG_EXIT,
)
@click.version_option(__version__, prog_name="mlbuild")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """mlbuild: build small, reproducible ML container images from a short recipe.

    \b
    A recipe names a framework (`mlbuild matrix` lists them), a Python and a CUDA version
    (or cpu), and extra packages. mlbuild resolves it against a compatibility matrix,
    renders a Dockerfile, builds it on your Docker engine, smoke-tests the image and tags
    it.

    \b
    Examples:
      mlbuild init --framework sklearn -o recipe.yaml   a commented starter recipe
      mlbuild resolve recipes/sklearn-cpu.yaml          what would be built, and why
      mlbuild render recipes/sklearn-cpu.yaml -o Dockerfile
      mlbuild build recipes/sklearn-cpu.yaml            build, smoke-test, tag
      mlbuild smoke mlbuild/sklearn-cpu:latest --gpu required
      mlbuild base bootstrap --suite bookworm --tag mlbuild/debian:bookworm
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def _recipe_arg() -> Callable[[F], F]:
    return click.argument("recipe", type=click.Path(dir_okay=False, path_type=Path))


@main.command()
@_recipe_arg()
@json_option
@click.option("--base-image", metavar="REF", help="Use this base image instead of the resolved one.")
@click.option("--platform", metavar="OS/ARCH", help="Only this of the recipe's platforms (default: all of them).")
@handle_errors
def resolve(recipe: Path, json_mode: bool, base_image: str | None, platform: str | None = None) -> None:
    """Resolve RECIPE against the compatibility matrix and show every decision.

    \b
    Example:
      mlbuild resolve recipes/pytorch-gpu.yaml --json | jq .framework_version
    """
    from builder.errors import UsageError
    from builder.recipe import check_image_ref, load_recipe
    from builder.resolve import resolve_platforms

    loaded = load_recipe(recipe)
    if base_image:
        loaded = dataclasses.replace(loaded, base_image=check_image_ref(base_image, "--base-image"))
    if platform and platform not in loaded.platforms:
        raise UsageError(f"--platform {platform}: the recipe builds for {', '.join(loaded.platforms)}")
    specs = [s for s in resolve_platforms(loaded) if platform in (None, s.platform)]
    blocks = []
    for spec in specs:
        sources = dict(spec.requirement_sources)
        packages = [f"{p}  ({sources[p]})" if p in sources else p for p in spec.packages]
        blocks.append("\n".join(
            [
                f"{spec.name}: {spec.framework} {spec.framework_version}, Python {spec.python}, "
                + ("CPU" if spec.cuda == "cpu" else f"CUDA {spec.cuda} ({spec.variant})")
                + (f" on {spec.platform}" if len(loaded.platforms) > 1 else ""),
                f"  base image   {spec.base_image}",
                f"  cuDNN        {spec.cudnn or '-'}",
                f"  min driver   {spec.min_driver or '-'}",
                f"  GPU archs    {' '.join(spec.archs) or '-'}",
                f"  index        {spec.index_url or 'default'}",
                "  packages     " + ("\n               ".join(packages) or "-"),
                "  why:",
                *[f"    - {r}" for r in spec.reasons],
            ]
        ))  # fmt: skip
    doc = specs[0].to_dict() if len(specs) == 1 else {"platforms": {s.platform: s.to_dict() for s in specs}}
    Output(json_mode).result(doc, "\n\n".join(blocks))


@main.command()
@_recipe_arg()
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write here.")
@click.option("--base-image", metavar="REF", help="Use this base image instead of the resolved one.")
@handle_errors
def render(recipe: Path, output: Path | None, base_image: str | None) -> None:
    """Print the Dockerfile for RECIPE (the same recipe always gives the same bytes)."""
    from builder.api import render as render_spec
    from builder.api import resolve as resolve_recipe

    text = render_spec(resolve_recipe(recipe, base_image=base_image))
    if output:
        from builder.fileio import write_atomic

        write_atomic(output, text)
        click.echo(f"wrote {output}", err=True)
    else:
        click.echo(text, nl=False)


def _comma_list(values: tuple[str, ...]) -> tuple[str, ...]:
    """`--platform linux/amd64,linux/arm64` (docker's way) and repeated options alike."""
    return tuple(dict.fromkeys(p.strip() for v in values for p in v.split(",") if p.strip()))


@main.command()
@click.argument("recipe", type=click.Path(path_type=Path))
@click.option("--base-image", metavar="REF", help="Build on this base image instead of the resolved one.")
@click.option(
    "--tag",
    "tags",
    multiple=True,
    metavar="REF",
    help="Extra tag, e.g. registry:5000/team/x:v1 (repeatable).",
)
@click.option("--no-smoke", is_flag=True, help="Skip the smoke test (the image still gets its tags).")
@click.option(
    "--gpu",
    "gpu_mode",
    type=click.Choice(["auto", "required", "off"]),
    help="GPU smoke mode (default: the recipe's smoke.gpu).",
)
@click.option(
    "--gpu-access",
    type=click.Choice(["toolkit", "cdi", "devices"]),
    help="Force one way of giving the GPU to the container.",
)
@click.option(
    "--network",
    metavar="MODE",
    help="Network for build steps (e.g. none on hosts without a bridge; default: the engine's).",
)
@settings_options
@click.option(
    "--push",
    is_flag=True,
    help="After a passing smoke test, push every tag, print the registry digest and write the record "
    "RECIPE.image.json.",
)
@click.option(
    "--registry-ca",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="CA of a private registry (for --push).",
)
@click.option("--rebuild", is_flag=True, help="Build and smoke-test even when the content tag exists already.")
@click.option(
    "--locked",
    is_flag=True,
    help="Install only what RECIPE's lock (<stem>.lock.json, from `mlbuild lock`) names; "
    "identical bytes from the same lock.",
)
@click.option(
    "-j",
    "--jobs",
    type=click.IntRange(1, 64),
    default=2,
    show_default=True,
    help="Variants built at once (RECIPE a folder, or a recipe with matrix:).",
)
@click.option(
    "--strict",
    is_flag=True,
    help="Fail when a matrix variant cannot be resolved (default: list it, skip it).",
)
@click.option(
    "--variant",
    "variants",
    multiple=True,
    metavar="ID",
    help="Build only this matrix variant, e.g. py3.11-cpu (repeatable).",
)
@click.option(
    "--gpu-host",
    metavar="URL",
    help="Run only the smoke step on this engine (ssh://user@gpu-box, tcp://host:2376); the image is copied there.",
)
@click.option(
    "--wheelhouse",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="A folder of wheels pip may use (builder stage only).",
)
@click.option(
    "--offline",
    is_flag=True,
    help="Every Python package from the wheelhouse (pip --no-index); what it lacks is listed before building.",
)
@builder_option
@click.option(
    "--cache-from",
    "cache_from",
    multiple=True,
    metavar="IMAGE",
    help="BuildKit: reuse the layers of this pushed mlbuild image (its inline cache), e.g. on a CI "
    "runner without a local cache (repeatable).",
)
@click.option(
    "--platform",
    "platforms",
    multiple=True,
    metavar="OS/ARCH",
    callback=lambda _ctx, _param, values: _comma_list(values),
    help="Build only these of the recipe's platforms: linux/amd64,linux/arm64 (comma-separated, as "
    "docker takes them, or repeated). Default: all of them; another architecture than the engine's "
    "builds under QEMU.",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
@json_option
@handle_errors
def build(
    recipe: Path, base_image: str | None, tags: tuple[str, ...], no_smoke: bool,
    gpu_mode: str | None, gpu_access: str | None, network: str | None, ca_bundle: str | None, index_url: str | None,
    extra_index_urls: tuple[str, ...], quiet: bool, json_mode: bool,
    push: bool = False, registry_ca: str | None = None, rebuild: bool = False, locked: bool = False,
    jobs: int = 2, strict: bool = False, variants: tuple[str, ...] = (), gpu_host: str | None = None,
    wheelhouse: Path | None = None, offline: bool = False, builder: str | None = None,
    cache_from: tuple[str, ...] = (), platforms: tuple[str, ...] = (),
) -> None:  # fmt: skip
    """Build RECIPE into an image, smoke-test it, and tag it.

    RECIPE may be a folder of recipes or a recipe with matrix:; then every variant is built,
    -j at a time, with one status line each and a summary table (see builder/commands/many.py).

    The image gets a readable tag (e.g. sklearn1.5.2-py3.11-cpu) and an immutable content tag
    (spec-<hash>) only after its smoke test passed.

    \b
    Examples:
      mlbuild build recipes/sklearn-cpu.yaml
      mlbuild build recipes/sklearn-cpu.yaml --base-image mlbuild/debian:bookworm --json
      mlbuild build train.yaml --ca-bundle corp-ca.pem --index-url https://pypi.corp/simple
      mlbuild build recipes/pytorch-cpu.yaml --wheelhouse /opt/wheels
      mlbuild build recipes/sklearn-cpu.yaml --platform linux/arm64
    """
    from builder.api import build as run_build
    from builder.api import load
    from builder.cleanup import install_signal_handlers
    from builder.commands.many import build_many, wants_many
    from builder.commands.share import LayerPrinter, push_summary
    from builder.engine import Engine
    from builder.errors import UsageError
    from builder.pipeline import BuildOptions
    from builder.settings import load_settings

    install_signal_handlers()  # SIGTERM unwinds like Ctrl-C: contexts, containers, tags cleaned
    out = Output(json_mode, quiet, timed=True)
    options = BuildOptions(
        base_image=base_image, extra_tags=tags, run_smoke=not no_smoke, gpu_mode=gpu_mode, gpu_access=gpu_access,
        network=network, reuse=not rebuild, locked=locked, push=push, registry_ca=registry_ca, builder=builder,
        cache_from=cache_from,
    )  # fmt: skip
    if wants_many(recipe, variants, gpu_host):  # a folder, matrix:, --variant or --gpu-host
        if len(platforms) > 1:
            raise UsageError("a folder or a matrix builds one --platform at a time (one CI job each)")
        options = dataclasses.replace(options, platform=platforms[0] if platforms else None)
        if locked:
            raise UsageError("--locked builds one recipe from its lock; not a folder or a matrix")
        settings = load_settings(ca_bundle=ca_bundle, index_url=index_url, extra_index_urls=extra_index_urls,
                                 wheelhouse=wheelhouse, offline=offline)  # fmt: skip
        return build_many([recipe], out=out, settings=settings, options=options, jobs=jobs, strict=strict,
                          variants=variants, gpu_host=gpu_host)  # fmt: skip
    wanted = platforms or load(recipe).platforms  # recipe problems before touching the engine
    settings = load_settings(ca_bundle=ca_bundle, index_url=index_url, extra_index_urls=extra_index_urls,
                             wheelhouse=wheelhouse, offline=offline)  # fmt: skip
    engine = Engine.connect()
    # a native engine per platform where the site config names one (else QEMU on this one)
    engines = {p: Engine.connect(base_url=url) for p in wanted if (url := settings.engine_for(p))}
    if len(wanted) > 1:
        from builder.multiarch import build_platforms

        both = build_platforms(recipe, wanted, engine=engine, settings=settings, options=options, say=out.say,
                               on_line=out.build_line, on_progress=LayerPrinter(out), engines=engines)  # fmt: skip
        return out.result(both.to_dict(), both.summary())
    engine = engines.get(wanted[0], engine)
    options = dataclasses.replace(options, platform=wanted[0])
    result = run_build(recipe, options, engine=engine, settings=settings, say=out.say,
                       on_line=out.build_line, on_progress=LayerPrinter(out))  # fmt: skip
    smoke_line = "not run (up to date)" if result.up_to_date else "skipped"
    if result.smoke:
        smoke_line = "passed" + (
            f" (GPU {result.smoke.gpu_status}"
            + (f": {result.smoke.gpu_reason}" if result.smoke.gpu_reason else "")
            + ")"
        )
    text = "\n".join([
        f"image   {result.image_id}",
        *[f"tag     {t}" for t in result.tags],
        f"size    {result.size_bytes / 1e6:.1f} MB",
        f"smoke   {smoke_line}",
        f"time    {result.seconds:.1f} s",
        *(["status  up to date"] if result.up_to_date else []),
        *(push_summary(result.published)[1].splitlines() if result.published else []),
    ])  # fmt: skip
    out.result(result.to_dict(), text)


@main.command("smoke")
@click.argument("image")
@click.option(
    "--gpu",
    "gpu_mode",
    type=click.Choice(["auto", "required", "off"]),
    default="auto",
    show_default=True,
    help="auto: test the GPU where one is present; required: fail without one.",
)
@click.option(
    "--gpu-access",
    type=click.Choice(["toolkit", "cdi", "devices"]),
    help="Force one way of giving the GPU to the container.",
)
@json_option
@handle_errors
def smoke_cmd(image: str, gpu_mode: str, gpu_access: str | None, json_mode: bool) -> None:
    """Run the smoke probe inside IMAGE (any image built by mlbuild).

    Expectations come from the image's own labels. Exit 3 when a check fails, or with
    --gpu required when no GPU could be reached.
    """
    from builder.engine import Engine
    from builder.errors import SmokeFailed
    from builder.smoke import smoke
    from builder.spec import image_spec

    engine = Engine.connect()
    spec = image_spec(engine.labels(image), image)
    report = smoke(engine, image, spec, gpu_mode, gpu_access)
    lines = [f"{'ok  ' if c.status == 'passed' else c.status[:4]:4} {c.name}: {c.detail}" for c in report.checks]
    lines.append(
        f"GPU: {report.gpu_status}"
        + (f" via {report.gpu_access}" if report.gpu_access else "")
        + (f" ({report.gpu_reason})" if report.gpu_reason else "")
    )
    Output(json_mode).result(report.to_dict(), "\n".join(lines))
    if not report.passed:
        raise SmokeFailed(
            f"smoke test failed for {image}",
            details=[f"{c.name}: {c.detail}" for c in report.failures()],
        )


@main.command()
@click.argument("image")
@json_option
@handle_errors
def inspect(image: str, json_mode: bool) -> None:
    """Show what IMAGE says about itself: its resolved spec, read from its labels."""
    from builder.engine import Engine
    from builder.labels import LOCK_LABEL, OCI_CREATED, SPEC_LABEL
    from builder.render import summary
    from builder.smoke import last_result
    from builder.spec import image_spec

    engine = Engine.connect()
    attrs = engine.inspect(image)
    labels = (attrs.get("Config") or {}).get("Labels") or {}
    spec = image_spec(labels, image)
    doc = {
        "image_id": attrs["Id"],
        "tags": attrs.get("RepoTags") or [],
        "digests": attrs.get("RepoDigests") or [],
        "size_bytes": attrs.get("Size"),
        "labels": {k: v for k, v in labels.items() if k != SPEC_LABEL},
        "spec": spec.to_dict(),
        "smoke": last_result(str(attrs["Id"])),
        "lock": labels.get(LOCK_LABEL),
    }
    groups = _layer_groups(engine, image)
    doc["layer_groups"] = [g.to_dict() for g in groups]
    smoke = doc["smoke"]
    smoke_text = "never run here"
    if smoke:
        smoke_text = f"{'passed' if smoke['passed'] else 'FAILED'} (GPU {smoke['gpu']}) at {smoke['when']}"
    text = "\n".join([
        f"{spec.name}: {summary(spec)}",
        f"  image     {attrs['Id']}",
        f"  tags      {', '.join(doc['tags']) or '-'}",
        f"  digests   {', '.join(doc['digests']) or '-'}",
        f"  size      {(attrs.get('Size') or 0) / 1e6:.1f} MB",
        f"  base      {spec.base_image}",
        f"  driver    >= {spec.min_driver}" if spec.min_driver else "  driver    -",
        f"  created   {labels.get(OCI_CREATED, '-')}",
        f"  smoke     {smoke_text}",
        f"  lock      {doc['lock'] or '-'}",
        "  layers    " + ("-" if not groups else f"{len(groups)} groups, bottom to top:"),
        *(f"    {g.name:<26} {g.size / 1e6:9.1f} MB  ({len(g.diff_ids)} layer{'s' * (len(g.diff_ids) != 1)})"
          for g in groups),
    ])  # fmt: skip
    Output(json_mode).result(doc, text)


def _layer_groups(engine: EngineApi, image: str) -> list[Group]:
    """The image's layers by venv slot (builder/layers.py); none when its history cannot tell."""
    from builder.errors import MlbuildError
    from builder.layers import image_layers, layer_groups

    try:
        return layer_groups(image_layers(engine, image))
    except MlbuildError:
        return []


@main.group()
def base() -> None:
    """Base images for sites that cannot pull from a registry."""


@base.command("bootstrap")
@click.option(
    "--suite",
    required=True,
    type=click.Choice(["bullseye", "bookworm", "trixie"]),
    help="Debian release (Python 3.9, 3.11, 3.13).",
)
@click.option(
    "--tag", "tag", metavar="REF", help="Image reference to create (default: mlbuild/debian:SUITE, -ARCH for arm64)."
)
@click.option("--mirror", metavar="URL", help="Debian archive (default: the one this host's apt sources use).")
@click.option(
    "--arch",
    default="amd64",
    show_default=True,
    type=click.Choice(["amd64", "arm64"]),
    help="Debian architecture; another than the host's runs under QEMU (scripts/setup-host.sh).",
)
@click.option("-q", "--quiet", is_flag=True)
@json_option
@handle_errors
def base_bootstrap(suite: str, tag: str | None, mirror: str | None, arch: str, quiet: bool, json_mode: bool) -> None:
    """Make a Debian base image with debootstrap, for air-gapped sites.

    Needs root and debootstrap (apt-get install debootstrap). About 30 s and 200 MB; an
    emulated architecture (--arch arm64 on an x86_64 host) takes minutes.

    \b
    Examples:
      mlbuild base bootstrap --suite bookworm --tag mlbuild/debian:bookworm
      mlbuild base bootstrap --suite bookworm --arch arm64   # mlbuild/debian:bookworm-arm64
    """
    from builder.base import bootstrap
    from builder.engine import Engine

    out = Output(json_mode, quiet, timed=True)
    engine = Engine.connect()
    default_tag = f"mlbuild/debian:{suite}" + ("" if arch == "amd64" else f"-{arch}")
    made = bootstrap(engine, suite, tag or default_tag, mirror, say=out.say, arch=arch)
    out.result(
        made,
        f"image   {made['image_id']}\ntag     {made['tag']} ({made['platform']})\n"
        f"size    {made['size_bytes'] / 1e6:.1f} MB\nmirror  {made['mirror']}",
    )


@main.command()
@json_option
@handle_errors
def doctor(json_mode: bool) -> None:
    """Check this host: Docker engine, GPUs and driver, GPU access modes, disk."""
    from builder.doctor import run_checks

    findings = run_checks()
    worst = max(
        (f["severity"] for f in findings),
        key=["ok", "info", "warning", "error"].index,
        default="ok",
    )
    lines = [
        f"{f['severity']:8} {f['what']}" + (f"\n         remedy: {f['remedy']}" if f.get("remedy") else "")
        for f in findings
    ]
    Output(json_mode).result({"findings": findings, "worst": worst}, "\n".join(lines))
    if worst == "error":
        sys.exit(1)


def _register_command_modules() -> None:
    import importlib

    from builder.commands import MODULES

    for name in MODULES:
        importlib.import_module(f"builder.commands.{name}").register(main)


_register_command_modules()

if __name__ == "__main__":
    main()
