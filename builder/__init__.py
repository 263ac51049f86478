"""mlbuild: small, reproducible GPU/CPU container images for ML frameworks, from a recipe.

The Python API (docs/api.md), from builder.api, imported on first use so that `import
builder` stays light:

    import builder
    spec = builder.resolve({"name": "demo", "framework": "sklearn", "python": "3.11", "cuda": "cpu"})
    print(builder.render(spec))
    result = builder.build("recipe.yaml", push=True)   # result.image_id, .tags, .size_bytes, .smoke

Errors are builder.errors' classes (also here: builder.RecipeError ...).
"""

from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING, Any

from builder.version import __version__

if TYPE_CHECKING:
    from builder.api import BuildOptions, BuildResult, build, load, push, render, resolve
    from builder.errors import (
        BuildError,
        EngineError,
        MlbuildError,
        RecipeError,
        RegistryError,
        ResolveError,
        SmokeFailed,
        UsageError,
    )

__all__ = [  # noqa: RUF022 - grouped, and _API/_ERRORS below slice it
    "__version__",
    # the API (builder.api)
    "resolve", "render", "build", "push", "load", "BuildOptions", "BuildResult",
    # the typed errors (builder.errors)
    "MlbuildError", "RecipeError", "ResolveError", "UsageError", "EngineError", "BuildError", "SmokeFailed",
    "RegistryError",
]  # fmt: skip
_API = frozenset(__all__[1:8])
_ERRORS = frozenset(__all__[8:])


def __getattr__(name: str) -> Any:
    if name in _API:
        from builder import api

        return getattr(api, name)
    if name in _ERRORS:
        from builder import errors

        return getattr(errors, name)
    raise AttributeError(f"module 'builder' has no attribute {name!r}")


class _Package(types.ModuleType):
    """builder.resolve and builder.render are also modules. Importing a submodule binds it on
    its package (builder.resolve = <module>), which would hide the API function of that name
    from then on; the API keeps the name. Library code imports the modules with
    `from builder.resolve import ...`, which does not read this attribute."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _API and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
