"""The text of a starter recipe, resolved as written: shared by `mlbuild init` and
`mlbuild init --from` (builder.commands.init_from)."""

from __future__ import annotations

import json
import re
from pathlib import Path


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
        lines += [
            "packages:  # extra pip requirements (pin them for reproducible images)" + (", e.g.:" if examples else ""),
            *(examples or ["  []"]),
        ]
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


def default_name(framework: str, cuda: str | None) -> str:
    return f"{framework}-{'gpu' if cuda and cuda != 'cpu' else 'cpu'}"
