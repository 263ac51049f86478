"""Many images at once: `build` of a folder or a matrix recipe (handed over by cli.build),
`matrix-plan` (a GitHub Actions matrix, one job per variant) and `k8s` (a Job or Deployment).

The library work is in builder.variants (the plan), builder.fanout (building it),
builder.layers (what the images share) and builder.k8s; this module draws it.
"""

from __future__ import annotations

import json
import shutil
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import click

from builder.commands.output import Output, handle_errors

if TYPE_CHECKING:
    from builder.fanout import Outcome
    from builder.layers import Sharing
    from builder.pipeline import BuildOptions
    from builder.settings import BuildSettings
    from builder.variants import Planned

DEFAULT_CPU_RUNNER = "ubuntu-latest"
DEFAULT_GPU_RUNNER = "gpu"  # a self-hosted (or larger) runner label; --gpu-runner to change it
_MARK = {
    "waiting": "..",
    "starting": "..",
    "running": "..",
    "building": "..",
    "smoke": "..",
    "pushing": "..",
    "built": "ok",
    "up-to-date": "ok",
    "failed": "FAIL",
    "smoke-failed": "FAIL",
    "impossible": "skip",
}


def wants_many(recipe: Path, variants: tuple[str, ...], gpu_host: str | None) -> bool:
    """A folder, a recipe with matrix:, --variant or --gpu-host: the many-variants path."""
    from builder.variants import has_matrix

    return recipe.is_dir() or bool(variants) or bool(gpu_host) or has_matrix(recipe)


class StatusBoard:
    """One status line per variant. On a terminal the lines are redrawn in place; elsewhere
    each change is one plain line (`label: state: text`), so CI logs read in order."""

    def __init__(self, labels: list[str], stream: TextIO, *, live: bool, quiet: bool):
        self.labels = labels
        self.stream = stream
        self.live = live and not quiet
        self.quiet = quiet
        self.state: dict[str, tuple[str, str]] = {label: ("waiting", "") for label in labels}
        self.started: dict[str, float] = {}
        self.lock = threading.Lock()
        self.width = max(len(label) for label in labels) if labels else 10
        self.drawn = False

    def __call__(self, label: str, state: str, text: str) -> None:
        if self.quiet:
            return
        with self.lock:
            if state == "starting":
                self.started[label] = time.monotonic()
            self.state[label] = (state, " ".join(text.split()))
            if self.live:
                self._draw()
            else:
                line = f"{label}: {state}: {' '.join(text.split())}"
                self.stream.write(line[:240] + ("..." if len(line) > 240 else "") + "\n")
                self.stream.flush()

    def _line(self, label: str) -> str:
        state, text = self.state[label]
        since = self.started.get(label)
        clock = f"{time.monotonic() - since:5.0f}s" if since else "      "
        mark = _MARK.get(state, "..")
        return f"{mark:>4} {label:<{self.width}} {clock} {state:<12} {text}"

    def _draw(self) -> None:
        cols = shutil.get_terminal_size((100, 20)).columns
        out = []
        if self.drawn:
            out.append(f"\x1b[{len(self.labels)}F")  # back to the first variant's line
        for label in self.labels:
            out.append("\x1b[2K" + self._line(label)[: cols - 1] + "\n")
        self.stream.write("".join(out))
        self.stream.flush()
        self.drawn = True


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"


def summary_table(outcomes: list[Outcome]) -> list[str]:
    rows = [("VARIANT", "RESULT", "SIZE", "TIME", "TAGS")]
    for o in outcomes:
        b = o.build
        tags = list(b.tags) if b else []
        shown = tags[0] + (f" (+{len(tags) - 1})" if len(tags) > 1 else "") if tags else "-"
        time_text = f"{o.seconds:.0f} s" if o.result != "impossible" else "-"
        rows.append(
            (
                o.planned.variant.label,
                o.result,
                _size(b.size_bytes if b else None),
                time_text,
                shown,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def sharing_lines(share: Sharing | None, agrees: bool | None) -> list[str]:
    if share is None:
        return []
    n = len(share.images)
    lines = [
        f"shared  {_size(share.shared_bytes)} in {share.shared_layers} layers used by 2+ of the "
        f"{n} images; stored {_size(share.stored_bytes)} for {_size(share.total_bytes)} of images "
        f"(saves {_size(share.saved_bytes)})"
    ]
    if agrees is not None:
        lines.append(
            "        layer sizes "
            + ("agree with `docker system df -v`" if agrees else "DIFFER from `docker system df -v`")
        )
    return lines


def build_many(
    paths: list[Path],
    *,
    out: Output,
    settings: BuildSettings,
    options: BuildOptions,
    jobs: int,
    strict: bool,
    variants: tuple[str, ...],
    gpu_host: str | None,
) -> None:
    """cli.build for a folder, a matrix: recipe, --variant or --gpu-host."""
    from builder import fanout, layers
    from builder.engine import Engine
    from builder.errors import UsageError
    from builder.progress import live_allowed
    from builder.variants import check_strict, plan

    planned = plan(paths, only=variants)
    for p in planned:
        if not p.possible:
            out.say(f"skipping {p.variant.label}: {p.reason}" + (f" (hint: {p.hint})" if p.hint else ""))
    check_strict(planned, strict)
    possible = [p for p in planned if p.possible]
    if options.extra_tags and len(possible) > 1:
        raise UsageError(
            "--tag names one image; this run builds several variants",
            hint="pick one with --variant, or tag with image.tags: in the recipe",
        )
    engine = Engine.connect()  # fail before any thread starts when the engine is not there
    smoke_connect = None
    if gpu_host:
        Engine.connect(base_url=gpu_host)
        smoke_connect = lambda: Engine.connect(base_url=gpu_host)  # noqa: E731
    out.say(
        f"{len(possible)} variant(s) to build, {min(jobs, len(possible))} at a time"
        + (f"; smoke tests on {gpu_host}" if gpu_host else "")
    )
    board = StatusBoard(
        [p.variant.label for p in possible],
        sys.stderr,
        live=live_allowed(sys.stderr),
        quiet=out.quiet,
    )
    outcomes = fanout.build_all(
        planned,
        connect=Engine.connect,
        settings=settings,
        options=options,
        jobs=jobs,
        on_event=lambda label, state, text: board(label, state, text) if state != "impossible" else None,
        smoke_connect=smoke_connect,
    )
    images = [o.build.image_id for o in outcomes if o.build]
    share, agrees = None, None
    if len(set(images)) > 1:
        share = layers.sharing(engine, images)
        agrees = all(r.agrees for r in layers.check_with_df(engine, images))
    lines = [*summary_table(outcomes), "", *sharing_lines(share, agrees)]
    for o in outcomes:
        if o.result == "impossible":
            lines.append(f"skipped {o.planned.variant.label}: {o.planned.reason}")
        elif not o.ok and o.error:
            lines.append(f"failed  {o.planned.variant.label}: {o.error.message}")
            lines += [f"          {d}" for d in o.error.details[-5:]]
        for ref in o.pushed:
            lines.append(f"pushed  {o.planned.variant.label}: {ref}")
    doc = {
        "variants": [o.to_dict() for o in outcomes],
        "sharing": share.to_dict() if share else None,
        "df_agrees": agrees,
    }
    out.result(doc, "\n".join(line for line in lines).rstrip())
    if not all(o.ok for o in outcomes):
        raise fanout.FanoutFailed(outcomes)


# ---- matrix-plan -------------------------------------------------------------------------------
def github_matrix(planned: list[Planned], cpu_runner: str, gpu_runner: str) -> dict[str, Any]:
    """`strategy.matrix` for GitHub Actions: one include entry per possible variant."""
    from builder.errors import UsageError
    from builder.resolve import resolve_platforms

    include = []
    for p in planned:
        if not p.possible or p.spec is None:
            continue
        several = len(p.variant.recipe.platforms) > 1  # one job per platform: build --platform
        for spec in resolve_platforms(p.variant.recipe) if several else (p.spec,):
            gpu = p.needs_gpu_smoke and spec.platform == "linux/amd64"  # emulated smoke: CPU checks
            include.append(
                {
                    "recipe": p.variant.source.as_posix(),
                    "variant": p.variant.id,
                    "name": p.variant.label + (f" ({spec.platform})" if several else ""),
                    "python": spec.python,
                    "cuda": spec.cuda,
                    "framework": f"{spec.framework} {spec.framework_version}",
                    "gpu": gpu,
                    "runner": gpu_runner if gpu else cpu_runner,
                    **({"platform": spec.platform} if several else {}),
                }
            )
    if not include:
        raise UsageError("no variant can be built: an empty matrix fails the workflow")
    if len(include) > 256:  # GitHub Actions: "A matrix can generate a maximum of 256 jobs"
        raise UsageError(f"{len(include)} jobs; GitHub Actions runs at most 256 per matrix")
    return {"include": include}


@click.command("matrix-plan")
@click.argument("recipes", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["github", "json"]),
    default="github",
    show_default=True,
    help="github: the strategy.matrix JSON on one line; json: every variant with its spec or reason.",
)
@click.option("--strict", is_flag=True, help="Fail when a variant cannot be resolved.")
@click.option(
    "--cpu-runner",
    default=DEFAULT_CPU_RUNNER,
    show_default=True,
    help="runs-on label for variants without a GPU smoke test.",
)
@click.option(
    "--gpu-runner",
    default=DEFAULT_GPU_RUNNER,
    show_default=True,
    help="runs-on label for variants whose smoke test uses a GPU.",
)
@handle_errors
def matrix_plan_cmd(recipes: tuple[Path, ...], fmt: str, strict: bool, cpu_runner: str, gpu_runner: str) -> None:
    """Plan one CI job per variant of RECIPES (files or folders).

    \b
    Examples:
      mlbuild matrix-plan recipes/ --format github >> "$GITHUB_OUTPUT"   (as matrix=...)
      mlbuild matrix-plan train.yaml --format json | jq '.variants[].id'
    """
    from builder import variants

    planned = variants.plan(list(recipes))
    for p in planned:
        if not p.possible:
            click.echo(f"skipping {p.variant.label}: {p.reason}", err=True)
    variants.check_strict(planned, strict)
    if fmt == "github":
        matrix = github_matrix(planned, cpu_runner, gpu_runner)
        click.echo(json.dumps(matrix, separators=(",", ":")))
        return
    doc = {
        "variants": [
            {
                "recipe": p.variant.source.as_posix(),
                "variant": p.variant.id,
                "name": p.variant.label,
                "values": dict(p.variant.values),
                "possible": p.possible,
                "reason": p.reason or None,
                "hint": p.hint or None,
                "gpu_smoke": p.needs_gpu_smoke,
                "spec": p.spec.to_dict() if p.spec else None,
            }
            for p in planned
        ]
    }
    click.echo(json.dumps(doc, indent=2, sort_keys=True))


# ---- k8s ---------------------------------------------------------------------------------------
def image_ref(engine: Any, spec: Any, given: str | None, warn: Callable[[str], None]) -> str:
    """The image by registry digest when known; else by its content tag, with a warning."""
    from builder.errors import UsageError
    from builder.labels import CONTENT_LABEL
    from builder.refs import parse_reference

    ref = given or f"{spec.repository}:{spec.readable_tag}"
    attrs = engine.inspect(ref) if given else (engine.inspect(ref) if engine.image_id(ref) else None)
    if attrs is None:
        raise UsageError(
            f"{ref} is not on this engine, and the recipe has no image record",
            hint="build it first (mlbuild build RECIPE --push), then run k8s again",
        )
    repo = parse_reference(ref).name
    digests = [str(d) for d in attrs.get("RepoDigests") or []]
    mine = [d for d in digests if parse_reference(d).name == repo] or digests
    if mine:
        return mine[0]
    labels = (attrs.get("Config") or {}).get("Labels") or {}
    content = labels.get(CONTENT_LABEL)
    by_tag = f"{repo}:{content}" if content else ref
    warn(
        f"{by_tag} has no registry digest (never pushed): the manifest names it by tag; "
        "push it (mlbuild push) so the cluster runs exactly this image"
    )
    return by_tag


@click.command("k8s")
@click.argument("target")
@click.option("--kind", type=click.Choice(["Job", "Deployment"]), default="Job", show_default=True)
@click.option("--name", help="Object name (default: the recipe's name).")
@click.option("--namespace", help="metadata.namespace (default: none, kubectl's current one).")
@click.option(
    "--gpus",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="nvidia.com/gpu for GPU images.",
)
@click.option(
    "--replicas",
    type=click.IntRange(0, 1000),
    default=1,
    show_default=True,
    help="Deployment replicas.",
)
@click.option(
    "--variant",
    "variants",
    multiple=True,
    metavar="ID",
    help="Only these variants of a matrix: recipe.",
)
@click.option("--output", "fmt", type=click.Choice(["yaml", "json"]), default="yaml", show_default=True)
@click.argument("command", nargs=-1)
@handle_errors
def k8s_cmd(
    target: str,
    kind: str,
    name: str | None,
    namespace: str | None,
    gpus: int,
    replicas: int,
    variants: tuple[str, ...],
    fmt: str,
    command: tuple[str, ...],
) -> None:
    """Print a Kubernetes Job (or Deployment) for TARGET: a recipe or an image.

    The image is named by its registry digest when known (the recipe's image record, or the
    image's RepoDigests), else by its content tag with a warning. GPU images request
    nvidia.com/gpu and only schedule on nodes (GPU feature discovery labels) whose driver and
    GPU architecture can run them. Anything after -- is the container's command.

    \b
    Examples:
      mlbuild k8s recipes/pytorch-gpu.yaml --kind Job -- python train.py | kubectl apply -f -
      mlbuild k8s registry:5000/team/app@sha256:... --kind Deployment --replicas 2
    """
    import yaml

    from builder import k8s
    from builder.engine import Engine
    from builder.errors import EngineError, RegistryError, UsageError
    from builder.recipe import check_image_ref
    from builder.records import read_record
    from builder.spec import image_spec
    from builder.variants import plan

    def warn(text: str) -> None:
        click.echo(click.style("warning: ", fg="yellow") + text, err=True)

    docs = []
    path = Path(target)
    if path.is_file():
        planned = plan([path], only=variants)
        for p in planned:
            if not p.possible or p.spec is None:
                warn(f"skipping {p.variant.label}: {p.reason}")
                continue
            ref = None
            platforms: tuple[str, ...] = ()
            if len(planned) == 1:
                try:
                    record = read_record(path)
                    ref, platforms = record.reference, tuple(e.platform for e in record.platforms)
                except RegistryError:
                    ref = None
            if ref is None:
                try:
                    engine = Engine.connect()
                except EngineError as exc:
                    raise UsageError(
                        f"no image record for {path}, and {exc.message}",
                        hint="build and push it first: mlbuild build RECIPE --push",
                    ) from None
                ref = image_ref(engine, p.spec, None, warn)
            docs.append(
                k8s.manifest(
                    p.spec,
                    ref,
                    kind=kind,
                    name=name if len(planned) == 1 else None,
                    namespace=namespace,
                    gpus=gpus,
                    command=command,
                    replicas=replicas,
                    platforms=platforms,
                )
            )
    else:
        check_image_ref(target, "IMAGE")
        engine = Engine.connect()
        spec = image_spec(engine.labels(target), target)
        ref = target if "@sha256:" in target else image_ref(engine, spec, target, warn)
        docs.append(
            k8s.manifest(
                spec,
                ref,
                kind=kind,
                name=name,
                namespace=namespace,
                gpus=gpus,
                command=command,
                replicas=replicas,
            )
        )
    if not docs:
        raise UsageError(f"no variant of {target} can be built")
    if fmt == "json":
        click.echo(
            json.dumps(
                docs[0] if len(docs) == 1 else {"apiVersion": "v1", "kind": "List", "items": docs},
                indent=2,
            )
        )
    else:
        click.echo("---\n".join(yaml.safe_dump(d, sort_keys=False) for d in docs), nl=False)


def register(main: click.Group) -> None:
    main.add_command(matrix_plan_cmd)
    main.add_command(k8s_cmd)
