"""`mlbuild init`: write a commented starter recipe that resolves as written.

Interactive (prompts) when stdin is a terminal and no --framework was given; flags otherwise.
The text is resolved before it is written, so a starter that would not build is never left on
disk, and the file is written atomically (a temporary file, then a rename).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from builder.commands.choices import FrameworkChoice
from builder.commands.output import handle_errors
from builder.commands.starter import default_name, starter_recipe

DEFAULT_OUTPUT = "recipe.yaml"


def _default_framework() -> str:
    """The first framework listed (`order:` in the data files)."""
    from builder.matrix import framework_names

    names = framework_names()
    return names[0] if names else ""


def _interactive() -> bool:
    return sys.stdin.isatty()


def write_atomically(path: Path, text: str, force: bool) -> None:
    """Write via a temporary file in the same folder and a rename: never a half-written file.
    Without --force an existing file is left alone (O_EXCL-style check right before the rename)."""
    from builder.errors import UsageError

    if path.exists() and not force:
        raise UsageError(f"{path} exists already", hint="choose another file with -o, or pass --force")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        if force:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # fails if the file appeared meanwhile, unlike a rename
            except FileExistsError:
                raise UsageError(f"{path} exists already", hint="pass --force to replace it") from None
    finally:
        tmp.unlink(missing_ok=True)


@click.command("init")
@click.option(
    "--framework",
    type=FrameworkChoice(),
    help="Framework (prompted on a terminal; default: the first one listed).",
)
@click.option("--python", metavar="X.Y", help="Python version (default: the newest the framework supports).")
@click.option("--cuda", metavar="X.Y|cpu", help='CUDA version such as "12.4", or cpu (default).')
@click.option(
    "--name",
    metavar="NAME",
    help="Recipe and image name (default: FRAMEWORK-cpu or FRAMEWORK-gpu).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"File to write; - prints the recipe. [default: {DEFAULT_OUTPUT}; with --from, next to FILE]",
)
@click.option("--force", is_flag=True, help="Replace an existing file.")
@click.option(
    "--from",
    "source",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    metavar="FILE",
    help="An existing project's requirements.txt, pyproject.toml or uv.lock: the recipe points at it.",
)
@click.option("--extra", "extras", multiple=True, metavar="NAME", help="With --from: an optional-dependency extra.")
@click.option("--group", "groups", multiple=True, metavar="NAME", help="With --from: a dependency group.")
@handle_errors
def init_cmd(
    framework: str | None,
    python: str | None,
    cuda: str | None,
    name: str | None,
    output: Path | None,
    force: bool,
    source: Path | None,
    extras: tuple[str, ...],
    groups: tuple[str, ...],
) -> None:
    """Write a commented starter recipe that resolves as written.

    On a terminal, without --framework, it asks for the framework, Python and CUDA; otherwise
    it uses the flags. The framework version and Python it writes are the ones `mlbuild
    resolve` picks today, so the recipe keeps meaning the same thing.

    \b
    Examples:
      mlbuild init                                   asks, writes recipe.yaml
      mlbuild init --framework sklearn -o sk.yaml
      mlbuild init --framework pytorch --cuda 12.4 --python 3.11 --name train
      mlbuild init --framework jax -o -              print instead of writing
      mlbuild init --from uv.lock --cuda 12.4        a recipe for this project

    With --from FILE the framework is guessed from the project's dependencies, its version
    from the project's pin, Python from its requires-python; the recipe's requirements: points
    at FILE (it is read at every resolve), so the recipe goes next to it.
    """
    if source is not None:
        from builder.commands.init_from import recipe_from_project

        target = output or source.parent / DEFAULT_OUTPUT
        where = source.parent / DEFAULT_OUTPUT if str(target) == "-" else target
        text = recipe_from_project(
            source, where, framework=framework, name=name, python=python, cuda=cuda, extras=extras, groups=groups
        )
        _emit(text, target, force)
        return
    if extras or groups:
        raise click.UsageError("--extra and --group go with --from")
    if framework is None and _interactive():
        framework = click.prompt("Framework", type=FrameworkChoice(), default=_default_framework(), err=True)
        cuda = cuda or click.prompt('CUDA version ("cpu" or e.g. 12.4)', default="cpu", err=True)
        python = (
            python or click.prompt("Python (empty: newest supported)", default="", show_default=False, err=True) or None
        )
        name = name or click.prompt("Name", default=default_name(framework, cuda), err=True)
    framework = framework or _default_framework()
    name = name or default_name(framework, cuda)
    _emit(starter_recipe(framework, name, python, cuda), output or Path(DEFAULT_OUTPUT), force)


def _emit(text: str, output: Path, force: bool) -> None:
    if str(output) == "-":
        click.echo(text, nl=False)
        return
    write_atomically(output, text, force)
    click.echo(f"wrote {output}; next: mlbuild resolve {output}", err=True)


def register(main: click.Group) -> None:
    main.add_command(init_cmd)
