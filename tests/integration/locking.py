"""Locking a small recipe for the reproducibility tests (one place for both test files)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from builder.fileio import write_atomic
from builder.lock import lock_path
from builder.lockmaker import resolve_lock


def lock_recipe(folder: Path, text: str, *, engine: Any, settings: Any, base_image: str) -> Path:
    """Write `text` as folder/tiny.yaml, lock it on `base_image`, and return the recipe path."""
    recipe = folder / "tiny.yaml"
    recipe.write_text(text)
    started = time.monotonic()
    lock = resolve_lock(recipe, engine=engine, settings=settings, base_image=base_image)
    write_atomic(lock_path(recipe), lock.to_json())
    print(f"\nlock: {time.monotonic() - started:.1f} s, {len(lock.python)} Python, {len(lock.apt)} OS pins")
    return recipe
