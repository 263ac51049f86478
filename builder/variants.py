"""Planning many images: a recipe's `matrix:` (or a folder of recipes) becomes variants, each
resolved on its own; the impossible ones carry the reason. No engine: builder.fanout builds
the plan, `mlbuild matrix-plan` turns it into CI jobs.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from builder.errors import MlbuildError, Problem, RecipeError, ResolveError, UsageError
from builder.recipe import TAG_RE, ImageSpec, Recipe, load_recipe
from builder.resolve import resolve_platforms
from builder.spec import ResolvedSpec

RECIPE_SUFFIXES = (".yaml", ".yml")
DEFAULT_ID = "default"  # the one variant of a recipe without matrix:
MAX_VARIANTS = 256  # GitHub Actions' limit of jobs per matrix; more is a mistake here too
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
        raise RecipeError(str(src), [Problem("matrix", "exclude: leaves no variant to build")])
    return out


def _variant_tags(image: ImageSpec, vid: str) -> ImageSpec:
    """The recipe's own tags (e.g. "v1") would name every variant: suffix them with the id."""
    tags = []
    for tag in image.tags:
        text = f"{tag}-{vid}"[:128]
        tags.append(text if TAG_RE.match(text) else tag)
    return dataclasses.replace(image, tags=tuple(tags))


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


def first_platform(recipe: Recipe) -> ResolvedSpec:
    """The spec of the recipe's first platform, agreed with the others (one release, one Python)."""
    return resolve_platforms(recipe)[0]


def plan(
    paths: Iterable[str | Path],
    *,
    only: tuple[str, ...] = (),
    resolver: Callable[[Recipe], ResolvedSpec] | None = None,
) -> list[Planned]:
    """Load every recipe (all problems of all files first), expand and resolve each variant."""
    resolve_one = resolver or first_platform
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
