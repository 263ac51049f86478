"""The Python API: what `import builder` offers notebooks and pipelines (docs/api.md).

    spec = builder.resolve({"name": "demo", "framework": "sklearn", "python": "3.11"})
    text = builder.render(spec)
    result = builder.build("recipe.yaml", push=True)

The same calls as the command line (`mlbuild resolve|render|build|push` are built on them),
the same validation (a mapping is checked exactly as a recipe file is), the same typed errors
(builder.errors); nothing here prints or exits. Callbacks (`say`, `on_line`, `on_stage`,
`on_progress`) report progress when a caller wants it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from builder.errors import UsageError
from builder.pipeline import STAGES, BuildOptions, BuildResult
from builder.publish import Published
from builder.recipe import Recipe, check_image_ref, load_recipe
from builder.recipe_mapping import recipe_from_mapping
from builder.settings import BuildSettings
from builder.spec import ResolvedSpec

if TYPE_CHECKING:
    from builder.engine_api import Engine, LineSink, ProgressSink
    from builder.pipeline import Say

# A recipe file (path) or the same keys as a mapping.
RecipeSource = Union[str, "os.PathLike[str]", Mapping[str, Any]]

__all__ = ["STAGES", "BuildOptions", "BuildResult", "Published", "RecipeSource", "build", "load", "push",
           "render", "resolve"]  # fmt: skip


def load(recipe: RecipeSource, *, base_dir: str | os.PathLike[str] | None = None) -> Recipe:
    """The validated recipe. A mapping's relative paths (files:, requirements:, wheelhouse:)
    are inside `base_dir` (default: the current directory); a file's are inside its folder."""
    if isinstance(recipe, Mapping):
        return recipe_from_mapping(recipe, Path(base_dir if base_dir is not None else os.getcwd()).resolve())
    if isinstance(recipe, (str, os.PathLike)):
        if base_dir is not None:
            raise UsageError(
                "base_dir= is for a recipe given as a mapping",
                hint="a recipe file's paths are relative to the file's own folder",
            )
        return load_recipe(Path(recipe))
    raise UsageError(f"a recipe is a path or a mapping, not a {type(recipe).__name__}")


def resolve(
    recipe: RecipeSource | Recipe,
    *,
    base_dir: str | os.PathLike[str] | None = None,
    base_image: str | None = None,
) -> ResolvedSpec:
    """Resolve a recipe (a path, a mapping or a loaded Recipe) against the compatibility
    matrix: the framework, Python, CUDA, base image and packages to build, each decision with
    its reason (`spec.reasons`). Pure: no engine, no network. `base_image` overrides the
    resolved base, like --base-image."""
    from builder.resolve import resolve as resolve_recipe

    loaded = recipe if isinstance(recipe, Recipe) else load(recipe, base_dir=base_dir)
    if base_image:
        loaded = dataclasses.replace(loaded, base_image=check_image_ref(base_image, "base_image="))
    return resolve_recipe(loaded)


def render(
    spec: ResolvedSpec | RecipeSource,
    *,
    base_dir: str | os.PathLike[str] | None = None,
    settings: BuildSettings | None = None,
    buildkit: bool = False,
) -> str:
    """The Dockerfile text for a resolved spec (or a recipe, resolved first); the same spec
    always gives the same bytes. `settings` (a wheelhouse, offline) change the pip steps;
    `buildkit`: BuildKit's variant (cache and secret mounts), as a BuildKit build uses."""
    from builder.render import render as render_spec

    resolved = spec if isinstance(spec, ResolvedSpec) else resolve(spec, base_dir=base_dir)
    return render_spec(resolved, None, settings, buildkit=buildkit)


def build(
    recipe: RecipeSource,
    options: BuildOptions | None = None,
    *,
    base_dir: str | os.PathLike[str] | None = None,
    engine: Engine | None = None,
    settings: BuildSettings | None = None,
    smoke_engine: Engine | None = None,
    say: Say | None = None,
    on_line: LineSink | None = None,
    on_stage: Say | None = None,
    on_progress: ProgressSink | None = None,
    **fields: Any,
) -> BuildResult:
    """Build, smoke-test and tag one image (and, with push=True, publish it), as `mlbuild
    build` does. Options: a BuildOptions, or its fields as keywords (push=True,
    extra_tags=[...], run_smoke=False, gpu_mode="required", base_image=..., locked=True ...).
    `engine`: default the local Docker engine; `settings`: default the site's (CA bundle,
    index: $MLBUILD_*/$PIP_* and the site config).

    Returns a BuildResult: image_id, tags, size_bytes, smoke (the SmokeReport, None when not
    run), spec, dockerfile, published (with push). Raises builder.errors: RecipeError,
    ResolveError, BuildError, SmokeFailed (the image is left untagged), RegistryError ...
    """
    from builder.pipeline import build as run_build

    opts = _options(options, fields)
    loaded = load(recipe, base_dir=base_dir)  # recipe problems before touching the engine
    if loaded.matrix is not None:
        raise UsageError(
            "this recipe has matrix: (several images); builder.build makes one",
            hint="give one value per axis, or build them all with: mlbuild build RECIPE",
        )
    if isinstance(recipe, Mapping):
        if opts.locked:
            raise UsageError(
                "locked= builds from the lock beside a recipe file",
                hint="save the recipe to a file, then: mlbuild lock FILE",
            )
        opts = dataclasses.replace(opts, record=False)  # no file to write the record beside
    settings = settings if settings is not None else _site_settings()
    return run_build(
        loaded.path,
        engine=engine if engine is not None else _connect(),
        settings=settings,
        options=opts,
        recipe=loaded,
        smoke_engine=smoke_engine,
        say=say or _quiet,
        on_line=on_line,
        on_stage=on_stage or _quiet,
        on_progress=on_progress,
    )


def push(
    image: str,
    *,
    to: str | None = None,
    recipe: str | os.PathLike[str] | None = None,
    registry_ca: str | os.PathLike[str] | None = None,
    engine: Engine | None = None,
    say: Say | None = None,
    on_progress: ProgressSink | None = None,
) -> Published:
    """Push every tag of an mlbuild image (in its repository, or in `to`), after its smoke
    test passes again here (only tested images are shared), as `mlbuild push` does. With
    `recipe`, the image record is written beside that recipe file."""
    from builder.publish import publish, push_refs, require_smoke

    if recipe is not None and not Path(recipe).is_file():
        raise UsageError(f"recipe {recipe} does not exist")
    engine = engine if engine is not None else _connect()
    image_id, refs = push_refs(engine, image, to)
    require_smoke(engine, image_id, say=say or _quiet)
    ca = Path(registry_ca) if registry_ca is not None else None
    return publish(engine, image_id, refs, recipe=Path(recipe) if recipe is not None else None, registry_ca=ca,
                   say=say or _quiet, on_progress=on_progress)  # fmt: skip


_OPTION_FIELDS = tuple(f.name for f in dataclasses.fields(BuildOptions))


def _options(options: BuildOptions | None, fields: dict[str, Any]) -> BuildOptions:
    if options is not None and fields:
        raise UsageError("give options= or option keywords, not both")
    if options is not None:
        return options
    unknown = sorted(set(fields) - set(_OPTION_FIELDS))
    if unknown:
        raise UsageError(f"unknown build option(s): {', '.join(unknown)}", hint=f"known: {', '.join(_OPTION_FIELDS)}")
    tags = fields.get("extra_tags")
    if tags is not None:  # one reference, or any sequence of them
        fields["extra_tags"] = (tags,) if isinstance(tags, str) else tuple(tags)
    return BuildOptions(**fields)


def _site_settings() -> BuildSettings:
    from builder.settings import load_settings

    return load_settings()


def _connect() -> Engine:
    from builder.engine import Engine as DockerEngine  # the Docker SDK: only when a build needs it

    return DockerEngine.connect()


def _quiet(_: str) -> None:
    pass
