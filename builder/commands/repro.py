"""Reproducibility: `mlbuild lock`, `mlbuild verify`, `mlbuild diff`, `mlbuild sbom`.

The library side is builder/lock.py (the lock), builder/normalize.py (identical bytes),
builder/imagediff.py (diff and verify) and builder/sbom.py; this module parses, prints, exits.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from builder.commands.options import builder_option, settings_options
from builder.commands.output import Output, handle_errors, json_option


@click.command("lock")
@click.argument("recipe", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--upgrade",
    "upgrade_",
    is_flag=True,
    help="Refresh an existing lock (all packages, or only PACKAGE) and show what changed.",
)
@click.argument("package", required=False)
@click.option("--base-image", metavar="REF", help="Lock on this base image instead of the resolved one.")
@click.option("--network", metavar="MODE", help="Network for the resolver's build steps.")
@settings_options
@builder_option
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
@json_option
@handle_errors
def lock_cmd(
    recipe: Path,
    upgrade_: bool,
    package: str | None,
    base_image: str | None,
    network: str | None,
    ca_bundle: str | None,
    index_url: str | None,
    extra_index_urls: tuple[str, ...],
    quiet: bool,
    json_mode: bool,
    builder: str | None = None,
) -> None:
    """Resolve RECIPE completely and write RECIPE's lock (<stem>.lock.json) beside it.

    \b
    Base image by digest (or ID), exact Debian package versions, every Python package with
    its sha256, framework/CUDA/cuDNN, matrix and mlbuild versions, the timestamp epoch.
    Needs a Docker engine (pip and apt run inside the base), no GPU.

    \b
    Examples:
      mlbuild lock recipes/sklearn-cpu.yaml
      mlbuild lock recipes/sklearn-cpu.yaml --upgrade            refresh everything
      mlbuild lock recipes/sklearn-cpu.yaml --upgrade pandas     refresh one package
    """
    from builder.engine import Engine
    from builder.errors import UsageError
    from builder.fileio import write_atomic
    from builder.lock import Lock, diff_locks, lock_path
    from builder.lockmaker import lock_platforms, upgrade
    from builder.recipe import load_recipe
    from builder.settings import load_settings

    out = Output(json_mode, quiet)
    if package and not upgrade_:
        raise UsageError("PACKAGE only goes with --upgrade", hint=f"mlbuild lock {recipe} --upgrade {package}")
    load_recipe(recipe)
    path = lock_path(recipe)
    old = Lock.from_json(path.read_text(), str(path)) if path.exists() else None
    if old and not upgrade_:
        raise UsageError(f"{path} exists", hint=f"refresh it deliberately: mlbuild lock {recipe} --upgrade")
    settings = load_settings(ca_bundle=ca_bundle, index_url=index_url, extra_index_urls=extra_index_urls)
    engine = Engine.connect()
    platforms = load_recipe(recipe).platforms
    base = base_image or (old.base_override if old else None)
    fresh = lock_platforms(
        recipe,
        platforms,
        base_images={p: base for p in platforms},
        engine=engine,
        settings=settings,
        network=network,
        say=out.say,
        on_line=out.line,
        builder=builder,
    )
    new = upgrade(old, fresh, package)
    changes = diff_locks(old, new)
    if new is not old:
        write_atomic(path, new.to_json())
    n_py, n_apt = len(new.python), len(new.apt)
    summary = (
        f"{'wrote' if new is not old else 'unchanged'} {path}: {n_py} Python and {n_apt} OS "
        f"packages, base {new.base.digest or new.base.image_id[:19]}" + (f" ({new.base.note})" if new.base.note else "")
    )
    doc = {"lock": str(path), "changed": new is not old, "changes": changes, **new.to_dict()}
    out.result(doc, "\n".join([summary, *(changes if old else [])]))


@click.command("verify")
@click.argument("target")
@click.option(
    "--recipe",
    type=click.Path(dir_okay=False, path_type=Path),
    help="With an IMAGE: its recipe (the lock beside it is used).",
)
@click.option("--network", metavar="MODE", help="Network for build steps.")
@click.option(
    "--platform",
    metavar="OS/ARCH",
    help="Which of the lock's platforms to rebuild (default: the image's own, else the recipe's first).",
)
@settings_options
@click.option("-q", "--quiet", is_flag=True)
@json_option
@handle_errors
def verify_cmd(
    target: str,
    recipe: Path | None,
    network: str | None,
    platform: str | None,
    ca_bundle: str | None,
    index_url: str | None,
    extra_index_urls: tuple[str, ...],
    quiet: bool,
    json_mode: bool,
) -> None:
    """Rebuild from the lock without cache and compare with the image built before.

    TARGET is a recipe (compared with the newest image built from its lock) or an image
    (give --recipe when its recipe is not in this folder). Exit 1 on a mismatch, naming the
    layers and files that differ. A lock of several platforms has one entry per platform:
    `--platform linux/arm64` verifies that one (an image target: its own platform).
    """
    from builder.engine import Engine
    from builder.errors import UsageError
    from builder.settings import load_settings
    from builder.verify import verify

    out = Output(json_mode, quiet)
    engine = Engine.connect()
    reference = None
    if Path(target).is_file():
        recipe = Path(target)
    else:
        reference = target
        if recipe is None:
            from builder.spec import image_spec

            guess = Path(f"{image_spec(engine.labels(target), target).name}.yaml")
            if not guess.is_file():
                raise UsageError(f"cannot find the recipe of {target}", hint="give --recipe RECIPE")
            recipe = guess
    settings = load_settings(ca_bundle=ca_bundle, index_url=index_url, extra_index_urls=extra_index_urls)
    result = verify(engine, recipe, settings=settings, reference=reference, network=network, platform=platform,
                    say=out.say)  # fmt: skip
    doc = {
        "identical": result.identical,
        "reference": result.reference_id,
        "rebuilt": result.rebuilt_id,
        "seconds": round(result.seconds, 1),
        "diff": result.diff.to_dict() if result.diff else None,
    }
    if result.identical:
        out.result(doc, f"reproduced: {result.rebuilt_id} ({result.seconds:.0f} s)")
        return
    assert result.diff
    out.result(
        doc,
        "\n".join([f"NOT reproduced: {result.reference_id} != {result.rebuilt_id}", *result.diff.lines()]),
    )
    sys.exit(1)


@click.command("diff")
@click.argument("image_a")
@click.argument("image_b")
@click.option("--no-files", is_flag=True, help="Packages, environment and labels only.")
@json_option
@handle_errors
def diff_cmd(image_a: str, image_b: str, no_files: bool, json_mode: bool) -> None:
    """What differs between two images: Python packages, OS packages, environment, labels,
    then layers (named by their group: the venv slot, or mlbuild's metadata) and files.
    Exit 0 when identical, 1 when not."""
    from builder.engine import Engine
    from builder.imagediff import diff_images

    result = diff_images(Engine.connect(), image_a, image_b, files=not no_files)
    Output(json_mode).result(result.to_dict(), "\n".join(result.lines()))
    if not result.identical:
        sys.exit(1)


@click.command("sbom")
@click.argument("image")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write here (default: stdout).",
)
@handle_errors
def sbom_cmd(image: str, output: Path | None) -> None:
    """A CycloneDX JSON SBOM of IMAGE's Debian and Python packages.

    For an image built with --locked, the same SBOM is already beside the lock; this checks
    it against the digest in the image's org.mlbuild.sbom label.
    """
    import tempfile

    from builder import sbom
    from builder.engine import Engine
    from builder.labels import LOCK_LABEL, OCI_CREATED, SBOM_LABEL
    from builder.normalize import save
    from builder.spec import ResolvedSpec

    engine = Engine.connect()
    labels = engine.labels(image)
    files: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory(prefix="mlbuild-sbom-") as tmp:
        saved = save(engine, image, Path(tmp))
        from builder.normalize import _merge_captured, read_layer

        for layer in saved.layers:
            _merge_captured(files, read_layer(layer, sbom.wanted))
        created = str(saved.config.get("created") or "")[:19] + "Z"
    spec = ResolvedSpec.from_labels(labels)
    lock_label = labels.get(LOCK_LABEL)
    when = created
    if lock_label and labels.get(OCI_CREATED):
        when = labels[OCI_CREATED]
    doc = sbom.cyclonedx(
        sbom.packages(files),
        str((spec.to_dict() if spec else {}).get("name", image)),
        spec.framework_version if spec else "",
        when,
    )
    text = sbom.to_text(doc)
    label = labels.get(SBOM_LABEL)
    if output:
        output.write_text(text)
        click.echo(f"wrote {output} ({len(doc['components'])} components)", err=True)
    else:
        click.echo(text, nl=False)
    if label:
        same = label.split()[-1] == sbom.digest(text)
        click.echo(
            f"{'matches' if same else 'DIFFERS from'} the image's {SBOM_LABEL} label ({label})",
            err=True,
        )


def register(main: click.Group) -> None:
    for command in (lock_cmd, verify_cmd, diff_cmd, sbom_cmd):
        main.add_command(command)
