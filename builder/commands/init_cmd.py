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

DEFAULT_OUTPUT = "recipe.yaml"


def starter_recipe(framework: str, name: str, python: str | None = None, cuda: str | None = None) -> str:
    """The starter text, resolved: its framework_version and python are the resolver's picks,
    written down so that the recipe means the same thing next month."""
    from builder.recipe import parse_recipe
    from builder.resolve import resolve

    cuda = cuda or "cpu"
    probe = _text(framework, name, None, python, cuda)
    spec = resolve(parse_recipe(probe.encode(), Path("recipe.yaml"), shown="the starter recipe"))
    major_minor = ".".join(spec.framework_version.split(".")[:2])
    text = _text(framework, name, major_minor, python or spec.python, cuda)
    resolve(parse_recipe(text.encode(), Path("recipe.yaml"), shown="the starter recipe"))
    return text


def _text(framework: str, name: str, version: str | None, python: str | None, cuda: str) -> str:
    from builder.matrix import framework_names, load_matrix

    gpu = cuda != "cpu"
    # the framework's starter packages (its data file): lines a user is likely to want next,
    # left commented so that the starter resolves (and builds quickly) exactly as written
    examples = [f"  # - {p}" for p in load_matrix().framework(framework).starter_packages]
    lines = [
        f"# mlbuild recipe: {framework} on {'CUDA ' + cuda if gpu else 'CPU'}. Written by `mlbuild init`.",
        "# Check it with `mlbuild resolve THIS_FILE`, build it with `mlbuild build THIS_FILE`.",
        "schema: 1",
        f"name: {name}  # the image is mlbuild/{name} unless image.repository says otherwise",
        f"framework: {framework}  # {' | '.join(framework_names())}",
    ]
    if version:
        lines.append(
            f'framework_version: "{version}"  # a prefix ("{version}" = newest {version}.x) '
            f'or a specifier (">={version}")'
        )
    if python:
        lines.append(f'python: "{python}"  # quoted: 3.10 unquoted is the number 3.1')
    lines.append(f'cuda: "{cuda}"  # "cpu", or major.minor such as "12.4" for a GPU build')
    lines += [
        "packages:  # extra pip requirements (pin them for reproducible images)" + (", e.g.:" if examples else ""),
        *(examples or ["  []"]),
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


def _default_framework() -> str:
    """The first framework listed (`order:` in the data files)."""
    from builder.matrix import framework_names

    names = framework_names()
    return names[0] if names else ""


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
    default=Path(DEFAULT_OUTPUT),
    show_default=True,
    help="File to write; - prints the recipe.",
)
@click.option("--force", is_flag=True, help="Replace an existing file.")
@handle_errors
def init_cmd(
    framework: str | None,
    python: str | None,
    cuda: str | None,
    name: str | None,
    output: Path,
    force: bool,
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
    """
    if framework is None and _interactive():
        framework = click.prompt("Framework", type=FrameworkChoice(), default=_default_framework(), err=True)
        cuda = cuda or click.prompt('CUDA version ("cpu" or e.g. 12.4)', default="cpu", err=True)
        python = (
            python or click.prompt("Python (empty: newest supported)", default="", show_default=False, err=True) or None
        )
        name = name or click.prompt("Name", default=default_name(framework, cuda), err=True)
    framework = framework or _default_framework()
    name = name or default_name(framework, cuda)
    text = starter_recipe(framework, name, python, cuda)
    if str(output) == "-":
        click.echo(text, nl=False)
        return
    write_atomically(output, text, force)
    click.echo(f"wrote {output}; next: mlbuild resolve {output}", err=True)


def register(main: click.Group) -> None:
    main.add_command(init_cmd)
