"""`mlbuild matrix`: show the compatibility data; `mlbuild matrix refresh`: update it from the
package index. Reading only: the library (matrix.py, refresh.py) decides, this module prints."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import click

from builder.commands.choices import FrameworkChoice
from builder.commands.output import Output, handle_errors, json_option

_VALUE_OPTIONS = {"--python", "--cuda", "--framework"}


class _MatrixGroup(click.Group):
    """`mlbuild matrix [FRAMEWORK]` shows the table; `mlbuild matrix refresh` is a subcommand.

    click cannot have both an optional argument and subcommands on one group, so a first
    positional word that is not a subcommand becomes the hidden --framework option.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        args = list(args)
        skip = False
        for i, token in enumerate(args):
            if skip:
                skip = False
                continue
            if token in _VALUE_OPTIONS:
                skip = True
                continue
            if token.startswith("-"):
                continue
            if token not in self.commands:
                args[i : i + 1] = ["--framework", token]
            break
        return super().parse_args(ctx, args)


def _check_python(_: click.Context, __: click.Parameter, value: str | None) -> str | None:
    if value is not None and not re.fullmatch(r"3\.\d{1,2}", value):
        raise click.BadParameter("give a Python minor such as 3.11")
    return value


def _check_cuda(_: click.Context, __: click.Parameter, value: str | None) -> str | None:
    if value is not None and value != "cpu" and not re.fullmatch(r"\d{1,2}\.\d", value):
        raise click.BadParameter('give a CUDA version such as 12.4, or "cpu"')
    return value


@click.group("matrix", cls=_MatrixGroup, invoke_without_command=True)
@click.option("--framework", "framework", type=FrameworkChoice(), hidden=True)
@click.option(
    "--python",
    metavar="X.Y",
    callback=_check_python,
    help="Only releases with wheels for this Python.",
)
@click.option(
    "--cuda",
    metavar="X.Y|cpu",
    callback=_check_cuda,
    help="Only builds for this CUDA (or the CPU builds).",
)
@json_option
@click.pass_context
@handle_errors
def matrix(
    ctx: click.Context, framework: str | None, python: str | None, cuda: str | None, json_mode: bool
) -> None:  # fmt: skip
    """Show the supported combinations: releases, Pythons, builds (CUDA/cuDNN), PyPI's default.

    \b
    Usage: mlbuild matrix [FRAMEWORK] [--python X.Y] [--cuda X.Y|cpu] [--json]
           mlbuild matrix refresh [--index-url URL] [--framework F] [--write]
    \b
    Examples:
      mlbuild matrix pytorch --cuda 12.4
      mlbuild matrix sklearn --python 3.13 --json
    """
    if ctx.invoked_subcommand is not None:
        return
    from builder.matrix import load_matrix

    m = load_matrix()
    rows = matrix_rows(m, framework, python, cuda)
    Output(json_mode).result({"matrix_version": m.version, "releases": rows}, _table(rows, m))


def matrix_rows(m: Any, framework: str | None, python: str | None, cuda: str | None) -> list[dict[str, Any]]:
    """The releases (newest first) and builds that pass the filters, as plain data."""
    from builder.resolve import cuda_fits

    rows = []
    for name in (framework,) if framework else m.frameworks:
        if name not in m.frameworks:
            continue
        fw = m.framework(name)
        for rel in fw.releases:
            variants = []
            for v in rel.variants:
                if cuda == "cpu" and not v.is_cpu:
                    continue
                if cuda and cuda != "cpu" and not (v.cuda and cuda_fits(v, cuda)):
                    continue
                pythons = rel.pythons_for(v)
                if python and python not in pythons:
                    continue
                variants.append({
                    "name": v.name, "cuda": v.cuda, "cudnn": v.cudnn, "rocm": v.rocm,
                    "archs": list(v.archs), "cuda_match": v.cuda_match,
                    "python": list(pythons) if v.python is not None else None,
                    "index_url": None if v.name == rel.default_variant else fw.index_for(v.name),
                    "min_driver": m.min_driver_for(v.cuda) if v.cuda else None,
                })  # fmt: skip
            if not variants:
                continue
            rows.append({
                "framework": name, "distribution": fw.distribution, "version": str(rel.version),
                "python": list(rel.python), "default_variant": rel.default_variant,
                "companions": dict(rel.companions), "variants": variants, "todo": rel.todo,
            })  # fmt: skip
    return rows


def _span(pythons: list[str]) -> str:
    from builder.matrix import version_key
    from builder.resolve import DASH

    ordered = sorted(pythons, key=version_key)
    if not ordered:
        return "-"
    minors = [int(p.split(".")[1]) for p in ordered]
    if minors == list(range(minors[0], minors[0] + len(minors))) and len(ordered) > 1:
        return f"{ordered[0]}{DASH}{ordered[-1]}"
    return ",".join(ordered)


def _build(v: dict[str, Any]) -> str:
    if v["cuda"]:
        text = f"{v['name']} ({v['cuda']}{'+' if v['cuda_match'] == 'major' else ''}"
        return text + (f"/cuDNN {v['cudnn']})" if v["cudnn"] else ")")
    if v["rocm"]:
        return f"{v['name']}"
    return "cpu"


def _table(rows: list[dict[str, Any]], m: Any) -> str:
    if not rows:
        return "no release matches these filters (mlbuild matrix FRAMEWORK shows all of them)"
    out: list[str] = []
    current = None
    for row in rows:
        if row["framework"] != current:
            current = row["framework"]
            fw = m.framework(current)
            checked = sorted({str(s.get("checked", "?")) for s in fw.sources})
            if out:
                out.append("")
            out.append(f"{current} ({fw.distribution}); data checked {', '.join(checked) or '?'}")
            out.append(f"  {'release':<12} {'python':<12} {'default':<8} builds (CUDA/cuDNN)")
        builds = ", ".join(_build(v) for v in row["variants"])
        default = row["default_variant"] or "-"
        todo = "  [needs review]" if row["todo"] else ""
        out.append(f"  {row['version']:<12} {_span(row['python']):<12} {default:<8} {builds}{todo}")
    out.append("")
    out.append("default: the build PyPI's own wheel is (the others install from their index);")
    out.append("X.Y+: any CUDA X.Z with Z >= Y works (the CUDA libraries come from pip).")
    return "\n".join(out)


@matrix.command("refresh")
@click.option("--index-url", metavar="URL", help="Package index (default: pip's configured index).")
@click.option(
    "--framework",
    "frameworks",
    type=FrameworkChoice(),
    multiple=True,
    help="Only this framework (repeatable; default: all).",
)
@click.option("--write", is_flag=True, help="Write the changes into the data files (default: only show them).")
@click.option("--no-range", is_flag=True, help="Never read wheel METADATA by HTTP range requests.")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Data folder to refresh (default: the one mlbuild loads).",
)
@json_option
@handle_errors
def refresh_cmd(
    index_url: str | None, frameworks: tuple[str, ...], write: bool, no_range: bool,
    data_dir: Path | None, json_mode: bool,
) -> None:  # fmt: skip
    """Update release lists, Pythons and PyPI's default torch build from the package index.

    Shows what would change; --write writes it (atomically, comments kept). New releases carry
    the builds of the nearest older release (`# carried from X`); the first release of a new
    minor also gets a `todo:` that check_matrix refuses until a human checks its builds.
    """
    from builder.fileio import write_atomic as write_atomically
    from builder.refresh import Index, default_index_url, http_fetch, refresh
    from builder.settings import load_settings, redact

    url = default_index_url(index_url)
    out = Output(json_mode)
    out.say(f"reading {redact(url)}")
    index = Index(url, http_fetch(load_settings(index_url=index_url).ca_bundle))
    diffs = refresh(frameworks, index, data_dir, allow_range=not no_range)
    lines: list[str] = []
    for d in diffs:
        lines.extend(d.lines())
        if write and d.has_changes:
            write_atomically(d.path, d.new_text)
            lines.append(f"  wrote {d.path}")
    if not write and any(d.has_changes for d in diffs):
        lines.append("(nothing written: add --write to update the data files)")
    doc = {"index_url": redact(url), "written": write, "frameworks": [d.to_dict() for d in diffs]}
    out.result(doc, "\n".join(lines))


def register(main: click.Group) -> None:
    main.add_command(matrix)
