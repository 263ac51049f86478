"""Many images at once: a recipe's `matrix:` (or a folder of recipes) becomes variants, each
resolved on its own; the possible ones are built in parallel, each by builder.pipeline.build.

Also here: how many bytes the variants share (from the layers' diff IDs and sizes), checked
against what the engine's own `docker system df -v` says, and the smoke step on another engine
(`--gpu-host`). Nothing here prints: progress goes to an `on_event` callback that the CLI draws.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import re
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builder import pipeline
from builder.engine_api import Engine
from builder.errors import MlbuildError, RecipeError, ResolveError, SmokeFailed, UsageError
from builder.pipeline import BuildOptions, BuildResult
from builder.recipe import TAG_RE, ImageSpec, Recipe, load_recipe
from builder.settings import BuildSettings
from builder.spec import ResolvedSpec

RECIPE_SUFFIXES = (".yaml", ".yml")
DEFAULT_ID = "default"  # the one variant of a recipe without matrix:
MAX_VARIANTS = 256  # GitHub Actions' limit of jobs per matrix; more is a mistake here too
OnEvent = Callable[[str, str, str], None]  # (variant label, state, text)
# pip-style operators in framework_version: keep them readable in variant ids and tags.
_OPERATORS = (
    ("===", "eq"),
    ("==", "eq"),
    ("!=", "ne"),
    ("~=", "compat"),
    (">=", "ge"),
    ("<=", "le"),
    (">", "gt"),
    ("<", "lt"),
    (",", "_"),
    ("*", "x"),
)


# ---- variants --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Variant:
    """One combination of a recipe's matrix: the recipe with one value on each axis."""

    source: Path  # the recipe file
    recipe: Recipe  # matrix: removed, axes set
    values: tuple[tuple[str, str], ...] = ()  # (axis, value) in the matrix's order
    id: str = DEFAULT_ID  # unique within its recipe; used by --variant and in CI job names

    @property
    def label(self) -> str:
        return self.recipe.name if self.id == DEFAULT_ID else f"{self.recipe.name}:{self.id}"

    def value(self, axis: str) -> str | None:
        return dict(self.values).get(axis)


@dataclass(frozen=True)
class Planned:
    """A variant and its resolved spec, or why it cannot be built."""

    variant: Variant
    spec: ResolvedSpec | None
    reason: str = ""
    hint: str = ""

    @property
    def possible(self) -> bool:
        return self.spec is not None

    @property
    def needs_gpu_smoke(self) -> bool:
        """A GPU image whose smoke test exercises the GPU: it wants a GPU runner."""
        return bool(self.spec and self.spec.is_gpu and self.spec.smoke_gpu != "off")


def variant_id(values: Iterable[tuple[str, str]]) -> str:
    """("python", "3.11"), ("cuda", "cpu") -> "py3.11-cpu"; fits in a Docker tag."""
    parts = []
    for axis, value in values:
        if axis == "python":
            parts.append(f"py{value}")
        elif axis == "cuda":
            parts.append("cpu" if value == "cpu" else f"cuda{value}")
        else:
            text = value.replace(" ", "")
            for op, word in _OPERATORS:
                text = text.replace(op, word)
            parts.append("fw" + re.sub(r"[^A-Za-z0-9._]+", "_", text))
    return "-".join(parts) or DEFAULT_ID


def expand(recipe: Recipe, source: Path | None = None) -> list[Variant]:
    """Every combination of the recipe's matrix, in the order written, less `exclude:`."""
    src = source or recipe.path
    if recipe.matrix is None:
        return [Variant(src, recipe)]
    axes = recipe.matrix.axes
    excluded = [dict(e) for e in recipe.matrix.exclude]
    out: list[Variant] = []
    seen: set[str] = set()
    for combo in itertools.product(*(values for _, values in axes)):
        values = tuple((axis, v) for (axis, _), v in zip(axes, combo, strict=True))
        if any(all(dict(values).get(k) == v for k, v in ex.items()) for ex in excluded):
            continue
        vid = variant_id(values)
        if vid in seen:  # two specifiers that read alike: keep ids unique
            vid = f"{vid}-{len(out)}"
        seen.add(vid)
        chosen = dict(values)
        changed = dataclasses.replace(
            recipe,
            matrix=None,
            image=_variant_tags(recipe.image, vid),
            python=chosen.get("python", recipe.python),
            cuda=chosen.get("cuda", recipe.cuda),
            framework_version=chosen.get("framework_version", recipe.framework_version),
        )
        out.append(Variant(src, changed, values, vid))
    if not out:
        raise RecipeError(str(src), [_problem("matrix", "exclude: leaves no variant to build")])
    return out


def _variant_tags(image: ImageSpec, vid: str) -> ImageSpec:
    """The recipe's own tags (e.g. "v1") would name every variant: suffix them with the id."""
    tags = []
    for tag in image.tags:
        text = f"{tag}-{vid}"[:128]
        tags.append(text if TAG_RE.match(text) else tag)
    return dataclasses.replace(image, tags=tuple(tags))


def _problem(where: str, message: str) -> Any:
    from builder.errors import Problem

    return Problem(where, message)


def recipe_files(paths: Iterable[str | Path]) -> list[Path]:
    """Recipe files named, and the *.yaml / *.yml files of folders named (not recursive)."""
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.suffix in RECIPE_SUFFIXES and f.is_file())
            if not found:
                raise UsageError(f"{p} holds no recipe (*.yaml, *.yml)")
            out.extend(found)
        else:
            out.append(p)
    return list(dict.fromkeys(out))


def has_matrix(path: Path) -> bool:
    """Whether a recipe file declares `matrix:` (False for folders and unreadable files)."""
    if path.is_dir():
        return False
    try:
        return load_recipe(path).matrix is not None
    except MlbuildError:
        return False  # the single-recipe path reports the problems as it always did


def plan(
    paths: Iterable[str | Path],
    *,
    only: tuple[str, ...] = (),
    resolver: Callable[[Recipe], ResolvedSpec] | None = None,
) -> list[Planned]:
    """Load every recipe (all problems of all files first), expand and resolve each variant."""
    from builder.resolve import resolve

    resolve_one = resolver or resolve
    recipes: list[Recipe] = []
    problems: list[str] = []
    for path in recipe_files(paths):
        try:
            recipes.append(load_recipe(path))
        except RecipeError as exc:
            problems += [f"{exc.message}", *(f"  {d}" for d in exc.details)]
    if problems:
        raise (UsageError("invalid recipes", details=problems) if len(problems) > 1 else UsageError(problems[0]))
    names: dict[str, Path] = {}
    for r in recipes:
        if r.name in names and names[r.name] != r.path:
            raise UsageError(
                f"two recipes are named {r.name!r}: {names[r.name]} and {r.path}",
                hint="names become image repositories: give each recipe its own",
            )
        names[r.name] = r.path
    variants = [v for r in recipes for v in expand(r)]
    if only:
        unknown = [o for o in only if not any(o in (v.id, v.label) for v in variants)]
        if unknown:
            raise UsageError(
                f"no variant {', '.join(map(repr, unknown))}",
                details=["variants: " + ", ".join(v.label for v in variants)],
            )
        variants = [v for v in variants if v.id in only or v.label in only]
    if len(variants) > MAX_VARIANTS:
        raise UsageError(
            f"{len(variants)} variants; at most {MAX_VARIANTS}",
            hint="narrow the matrix with exclude:, or split the recipes",
        )
    out = []
    for v in variants:
        try:
            out.append(Planned(v, resolve_one(v.recipe)))
        except ResolveError as exc:
            out.append(Planned(v, None, exc.message, exc.hint or ""))  # details repeat it
    return out


def check_strict(planned: list[Planned], strict: bool) -> None:
    """Impossible variants are skipped; with --strict they fail the run (exit 2)."""
    bad = [p for p in planned if not p.possible]
    if not any(p.possible for p in planned):
        raise ResolveError("no variant can be built", details=[f"{p.variant.label}: {p.reason}" for p in bad])
    if strict and bad:
        raise ResolveError(
            f"{len(bad)} of {len(planned)} variants cannot be built (--strict)",
            details=[f"{p.variant.label}: {p.reason}" for p in bad],
            hint="drop them with matrix.exclude:, or run without --strict to skip them",
        )


# ---- building --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Outcome:
    planned: Planned
    result: str  # built | up-to-date | impossible | failed | smoke-failed
    build: BuildResult | None = None
    error: MlbuildError | None = None
    seconds: float = 0.0
    pushed: tuple[str, ...] = ()  # repository@digest
    smoked_on: str = ""  # the engine of the smoke step, when not the building one

    @property
    def ok(self) -> bool:
        return self.result in ("built", "up-to-date", "impossible")

    def to_dict(self) -> dict[str, Any]:
        b = self.build
        return {
            "variant": self.planned.variant.label,
            "recipe": str(self.planned.variant.source),
            "id": self.planned.variant.id,
            "values": dict(self.planned.variant.values),
            "result": self.result,
            "reason": self.planned.reason or (self.error.message if self.error else ""),
            "details": list(self.error.details) if self.error else [],
            "image_id": b.image_id if b else None,
            "size_bytes": b.size_bytes if b else None,
            "tags": list(b.tags) if b else [],
            "seconds": round(self.seconds, 1),
            "pushed": list(self.pushed),
            "smoked_on": self.smoked_on or None,
            "smoke": b.smoke.to_dict() if b and b.smoke else None,
        }


class FanoutFailed(MlbuildError):
    """Some variants failed; exit 3 when every failure is a smoke test, else 1."""

    def __init__(self, outcomes: list[Outcome]):
        bad = [o for o in outcomes if not o.ok]
        super().__init__(
            f"{len(bad)} of {len(outcomes)} variants failed",
            details=[f"{o.planned.variant.label}: {o.error.message if o.error else o.result}" for o in bad],
        )
        self.exit_code = 3 if all(o.result == "smoke-failed" for o in bad) else 1


def build_all(
    planned: list[Planned],
    *,
    connect: Callable[[], Engine],
    settings: BuildSettings,
    options: BuildOptions,
    jobs: int = 2,
    on_event: OnEvent = lambda *_: None,
    smoke_connect: Callable[[], Engine] | None = None,
) -> list[Outcome]:
    """Build the possible variants, at most `jobs` at a time; outcomes in the plan's order.

    Each variant goes through builder.pipeline.build, as one recipe does. Threads, not
    processes: a build mostly waits on the engine. Each thread connects its own Engine (the
    SDK's HTTP session is not meant to be shared between threads).
    """
    if jobs < 1:
        raise UsageError(f"-j {jobs}: give at least 1")

    def one(p: Planned) -> Outcome:
        label = p.variant.label
        if not p.possible:
            on_event(label, "impossible", p.reason)
            return Outcome(p, "impossible")
        on_event(label, "starting", "connecting to the engine")
        started = time.monotonic()
        try:
            return _build_one(p, connect, settings, options, on_event, smoke_connect, started)
        except SmokeFailed as exc:
            on_event(label, "smoke-failed", exc.message)
            return Outcome(p, "smoke-failed", error=exc, seconds=time.monotonic() - started)
        except MlbuildError as exc:
            on_event(label, "failed", exc.message)
            return Outcome(p, "failed", error=exc, seconds=time.monotonic() - started)
        except Exception as exc:
            err = MlbuildError(f"unexpected {type(exc).__name__}: {exc}")
            on_event(label, "failed", err.message)
            return Outcome(p, "failed", error=err, seconds=time.monotonic() - started)

    # Variants on one base share their first layers (OS packages, the venv) only when those
    # come from the build cache: built side by side, each would make its own copy. So the
    # first variant of each group builds first, and the rest of its group after it.
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, p in enumerate(planned):
        groups.setdefault(prefix_key(p) if p.possible else ("impossible", i), []).append(i)
    outcomes: dict[int, Outcome] = {}
    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="mlbuild-variant") as pool:
        running: dict[Future[Outcome], tuple[int, list[int]]] = {}
        for members in groups.values():
            running[pool.submit(one, planned[members[0]])] = (members[0], members[1:])
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                index, followers = running.pop(future)
                outcomes[index] = future.result()
                for i in followers:
                    running[pool.submit(one, planned[i])] = (i, [])
    return [outcomes[i] for i in range(len(planned))]


def prefix_key(p: Planned) -> tuple[Any, ...]:
    """What the first build steps of a variant depend on (the rest differs per variant)."""
    s = p.spec
    assert s is not None
    return (s.base_image, s.python, s.cuda, s.system_packages, s.index_url, s.framework_from_base)


def _build_one(
    p: Planned,
    connect: Callable[[], Engine],
    settings: BuildSettings,
    options: BuildOptions,
    on_event: OnEvent,
    smoke_connect: Callable[[], Engine] | None,
    started: float,
) -> Outcome:
    label = p.variant.label
    engine = connect()
    smoke_engine = smoke_connect() if smoke_connect is not None and options.run_smoke else None
    stage = ["running"]

    def on_stage(name: str) -> None:
        stage[0] = name

    def on_line(line: str) -> None:
        if line.startswith("Step "):
            on_event(label, "building", line)

    result = pipeline.build(
        p.variant.source,
        engine=engine,
        settings=settings,
        # a record names one image: a matrix recipe's variants share its file, so none is written
        options=dataclasses.replace(options, record=options.record and p.variant.id == DEFAULT_ID),
        recipe=p.variant.recipe,
        smoke_engine=smoke_engine,
        say=lambda text: on_event(label, stage[0], text),
        on_line=on_line,
        on_stage=on_stage,
    )
    smoked_on = smoke_engine.base_url if smoke_engine is not None and result.smoke else ""
    pushed = tuple(r.reference for r in result.published.pushed) if result.published else ()
    state = "up-to-date" if result.up_to_date else "built"
    on_event(label, state, f"{result.size_bytes / 1e6:.0f} MB in {time.monotonic() - started:.0f} s")
    return Outcome(p, state, result, None, time.monotonic() - started, pushed, smoked_on)


# ---- shared layers ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Layer:
    chain_id: str
    diff_id: str
    size: int


@dataclass(frozen=True)
class Sharing:
    """Bytes of the variants' images: as if apart, as stored, and in layers 2+ of them use."""

    images: tuple[str, ...]
    total_bytes: int  # the sum of the images' sizes: what they would take without sharing
    stored_bytes: int  # each distinct layer once
    shared_bytes: int  # distinct layers used by two or more of the images
    shared_layers: int

    @property
    def saved_bytes(self) -> int:
        return self.total_bytes - self.stored_bytes

    def to_dict(self) -> dict[str, Any]:
        return {
            **dataclasses.asdict(self),
            "images": list(self.images),
            "saved_bytes": self.saved_bytes,
        }


def chain_ids(diff_ids: list[str]) -> list[str]:
    """The layer store keys a layer by its chain ID, not its diff ID: the same content on
    another parent is stored again. ChainID(L0) = DiffID(L0); ChainID(Ln) =
    sha256(ChainID(Ln-1) + " " + DiffID(Ln)) (OCI image spec, "Layer ChainID")."""
    out: list[str] = []
    for diff in diff_ids:
        if not out:
            out.append(diff)
        else:
            out.append("sha256:" + hashlib.sha256(f"{out[-1]} {diff}".encode()).hexdigest())
    return out


# History entries that never make a layer (metadata only); others may, even with 0 bytes.
_METADATA_ONLY = re.compile(
    r"#\(nop\)\s+(ENV|LABEL|CMD|ENTRYPOINT|USER|EXPOSE|ARG|ONBUILD|STOPSIGNAL|HEALTHCHECK|SHELL|"
    r"VOLUME|MAINTAINER)\b"
)


def layer_sizes(history: list[dict[str, Any]], count: int) -> list[int] | None:
    """Sizes of an image's `count` layers, oldest first, from the engine's history.

    The history lists every instruction, newest first, with the size of the layer it made
    (0 for metadata). Entries with bytes are layers for sure; a 0-byte entry may be an empty
    layer or none. None when the layers cannot be told apart (the caller says so).
    """
    entries = list(reversed(history))
    sure = [i for i, e in enumerate(entries) if int(e.get("Size") or 0) > 0]
    maybe = [
        i
        for i, e in enumerate(entries)
        if int(e.get("Size") or 0) == 0 and not _METADATA_ONLY.search(str(e.get("CreatedBy") or ""))
    ]
    if len(sure) == count:
        picks = sure
    elif len(sure) + len(maybe) == count:
        picks = sorted(sure + maybe)
    elif not sure and count:
        return [0] * count  # nothing has bytes: every layer is empty wherever it sits
    else:
        return None
    return [int(entries[i].get("Size") or 0) for i in picks]


def image_layers(engine: Engine, ref: str) -> list[Layer]:
    attrs = engine.inspect(ref)
    diffs = list((attrs.get("RootFS") or {}).get("Layers") or [])
    sizes = layer_sizes(engine.history(ref), len(diffs))
    if sizes is None or sum(sizes) != int(attrs.get("Size") or 0):
        raise MlbuildError(
            f"cannot tell the layer sizes of {ref} from its history",
            details=[f"{len(diffs)} layers, history sizes do not add up to {attrs.get('Size')}"],
        )
    return [Layer(c, d, s) for c, d, s in zip(chain_ids(diffs), diffs, sizes, strict=True)]


def sharing(engine: Engine, images: Iterable[str]) -> Sharing:
    ids = tuple(dict.fromkeys(str(engine.inspect(i)["Id"]) for i in images))  # one per image
    layers = {i: image_layers(engine, i) for i in ids}
    users: dict[str, int] = {}
    size: dict[str, int] = {}
    for ls in layers.values():
        for layer in {lay.chain_id: lay for lay in ls}.values():
            users[layer.chain_id] = users.get(layer.chain_id, 0) + 1
            size[layer.chain_id] = layer.size
    shared = [c for c, n in users.items() if n > 1]
    return Sharing(
        images=ids,
        total_bytes=sum(lay.size for ls in layers.values() for lay in ls),
        stored_bytes=sum(size.values()),
        shared_bytes=sum(size[c] for c in shared),
        shared_layers=len(shared),
    )


@dataclass(frozen=True)
class DfRow:
    image_id: str
    size: int  # from the layers
    shared: int  # bytes in layers that another image on the engine also uses, from the layers
    df_size: int  # what `docker system df -v` says
    df_shared: int

    @property
    def agrees(self) -> bool:
        return self.size == self.df_size and self.shared == self.df_shared


def check_with_df(engine: Engine, images: Iterable[str]) -> list[DfRow]:
    """Recompute `docker system df -v`'s SIZE and SHARED SIZE of each image from the layers.

    The engine counts, for each layer (by chain ID), how many of the images `docker images`
    lists use it (intermediate images of the classic builder are not listed, and not
    counted); a layer used by more than one is shared. Agreement with the engine's numbers
    shows that the layer sizes behind the variants' shared-bytes figure are the engine's own.
    """
    wanted = tuple(dict.fromkeys(images))
    refs: dict[str, int] = {}
    for img in engine.list_images():
        attrs = engine.inspect(str(img["Id"]))
        for c in set(chain_ids(list((attrs.get("RootFS") or {}).get("Layers") or []))):
            refs[c] = refs.get(c, 0) + 1
    df = {str(i["Id"]): i for i in engine.disk_usage().get("Images") or []}
    rows = []
    for image in wanted:
        full = engine.inspect(image)["Id"]
        layers = image_layers(engine, full)
        shared = sum(lay.size for lay in layers if refs.get(lay.chain_id, 0) > 1)
        seen = df.get(full) or {}
        rows.append(
            DfRow(
                full,
                sum(lay.size for lay in layers),
                shared,
                int(seen.get("Size", -1)),
                int(seen.get("SharedSize", -1)),
            )
        )
    return rows
