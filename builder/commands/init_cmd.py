"""`mlbuild init`: write a commented starter recipe that resolves as written.

Interactive (prompts) when stdin is a terminal and no --framework was given; flags otherwise.
The text is resolved before it is written, so a starter that would not build is never left on
disk, and the file is written atomically (a temporary file, then a rename).
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import click

from builder.cli import handle_errors

FRAMEWORKS = ("pytorch", "tensorflow", "jax", "sklearn")
DEFAULT_OUTPUT = "recipe.yaml"

# Commented examples per framework: lines a user is likely to want next, left commented so
# that the starter resolves (and builds quickly) exactly as written.
_EXAMPLE_PACKAGES = {
    "pytorch": ("torchvision", "transformers==4.44.2"),
    "tensorflow": ("keras-tuner", "pandas==2.2.3"),
    "jax": ("flax", "optax"),
    "sklearn": ("pandas==2.2.3", "joblib"),
}


def starter_recipe(framework: str, name: str, python: str | None = None, cuda: str | None = None) -> str:
    """The starter text, resolved: its framework_version and python are the resolver's picks,
    written down so that the recipe means the same thing next month."""
    return resolved_text(framework, name, python, cuda or "cpu", None)


def resolved_text(
    framework: str,
    name: str,
    python: str | None,
    cuda: str,
    version: str | None,
    *,
    requirements: tuple[str, str] | None = None,
    where: Path = Path("recipe.yaml"),
) -> str:
    """The recipe text with the resolver's picks written down (framework_version as major.minor
    unless given, python), resolved once more as written. `requirements`: (the value of
    requirements:, its comment); `where`: the recipe's path (its folder holds that file)."""
    from builder.recipe import parse_recipe
    from builder.resolve import resolve

    probe = _text(framework, name, version, python, cuda, requirements)
    spec = resolve(parse_recipe(probe.encode(), where, shown="the starter recipe"))
    version = version or ".".join(spec.framework_version.split(".")[:2])
    text = _text(framework, name, version, python or spec.python, cuda, requirements)
    resolve(parse_recipe(text.encode(), where, shown="the starter recipe"))
    return text


def _text(
    framework: str,
    name: str,
    version: str | None,
    python: str | None,
    cuda: str,
    requirements: tuple[str, str] | None = None,
) -> str:
    gpu = cuda != "cpu"
    examples = "\n".join(f"  # - {p}" for p in _EXAMPLE_PACKAGES[framework])
    lines = [
        f"# mlbuild recipe: {framework} on {'CUDA ' + cuda if gpu else 'CPU'}. Written by `mlbuild init`.",
        "# Check it with `mlbuild resolve THIS_FILE`, build it with `mlbuild build THIS_FILE`.",
        "schema: 1",
        f"name: {name}  # the image is mlbuild/{name} unless image.repository says otherwise",
        f"framework: {framework}  # pytorch | tensorflow | jax | sklearn",
    ]
    if version and re.fullmatch(r"\d+\.\d+", version):
        lines.append(
            f'framework_version: "{version}"  # a prefix ("{version}" = newest {version}.x) '
            f'or a specifier (">={version}")'
        )
    elif version:
        lines.append(f"framework_version: {json.dumps(version)}  # the project's own pin")
    if python:
        lines.append(f'python: "{python}"  # quoted: 3.10 unquoted is the number 3.1')
    lines.append(f'cuda: "{cuda}"  # "cpu", or major.minor such as "12.4" for a GPU build')
    if requirements:
        lines += [f"requirements: {requirements[0]}  # {requirements[1]}",
                  "packages:  # more pip requirements, merged with the file's, e.g.:", "  # - rich"]  # fmt: skip
    else:
        lines += ["packages:  # extra pip requirements (pin them for reproducible images), e.g.:", examples]
    lines += [
        "# system_packages: [libgl1]  # Debian packages for the runtime image",
        "# env:",
        '#   OMP_NUM_THREADS: "1"',
        "# files:  # copied into the image; src relative to this file",
        "#   - {src: train.py, dest: /workspace/train.py}",
        "workdir: /workspace",
        "smoke:",
        "  gpu: auto  # auto: test the GPU where one is present | required | off",
        "  # run:  # your own checks, run in the built image",
        "  #   - python -c 'import numpy'",
    ]
    if gpu:
        lines += [
            "# gpu:  # the fleet the image must run on: checked before building",
            '#   min_driver: "535.104.05"',
            "#   archs: [sm_80, sm_90]",
        ]
    lines += [
        "# image:",
        f"#   repository: registry.example.com/team/{name}",
        "#   tags: [latest]",
    ]
    return "\n".join(lines) + "\n"


def _interactive() -> bool:
    return sys.stdin.isatty()


def default_name(framework: str, cuda: str | None) -> str:
    return f"{framework}-{'gpu' if cuda and cuda != 'cpu' else 'cpu'}"


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
    type=click.Choice(FRAMEWORKS),
    help="Framework (prompted on a terminal; default pytorch).",
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
        framework = click.prompt("Framework", type=click.Choice(FRAMEWORKS), default="pytorch", err=True)
        cuda = cuda or click.prompt('CUDA version ("cpu" or e.g. 12.4)', default="cpu", err=True)
        python = (
            python or click.prompt("Python (empty: newest supported)", default="", show_default=False, err=True) or None
        )
        name = name or click.prompt("Name", default=default_name(framework, cuda), err=True)
    framework = framework or "pytorch"
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
