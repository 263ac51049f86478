"""A recipe given as a Python mapping (the API: `builder.resolve({...})`).

The mapping is written out as the YAML text it stands for and read back by `parse_recipe`, so
it meets exactly the checks a recipe file meets (size, depth, value kinds, every field's
allow-list, paths inside the folder). Only values a YAML recipe can hold are accepted: text,
numbers, booleans, None, lists (tuples) and mappings with text keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from builder.errors import Problem, RecipeError
from builder.recipe import Recipe, parse_recipe
from builder.yamlsafe import MAX_DEPTH

SHOWN = "recipe mapping"  # how errors name it: there is no file
MAPPING_FILE = "<mapping>"  # the recipe's path: its folder is base_dir; nothing is written there


def recipe_from_mapping(doc: Mapping[str, Any], base_dir: Path) -> Recipe:
    """Validate `doc` as a recipe whose relative paths (files:, requirements:, wheelhouse:)
    are inside `base_dir`. Raises RecipeError naming every problem."""
    problems: list[Problem] = []
    plain = _plain(doc, "", 0, problems)
    if problems:
        raise RecipeError(SHOWN, problems)
    text = yaml.safe_dump(plain, sort_keys=False, allow_unicode=True, width=1_000_000)
    return parse_recipe(text.encode("utf-8"), base_dir / MAPPING_FILE, shown=SHOWN)


def _plain(value: Any, where: str, depth: int, problems: list[Problem]) -> Any:
    """`value` as plain YAML data, or a Problem naming where it is not (no YAML tags, no
    objects: what cannot be written in a recipe file cannot be given here either)."""
    if depth > MAX_DEPTH:
        problems.append(Problem(where, f"nested deeper than {MAX_DEPTH} levels"))
        return None
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                problems.append(Problem(where, f"key {key!r} is not text; keys are text"))
                continue
            out[key] = _plain(item, f"{where}.{key}" if where else key, depth + 1, problems)
        return out
    if isinstance(value, (list, tuple)):
        return [_plain(item, f"{where}[{i}]", depth + 1, problems) for i, item in enumerate(value)]
    problems.append(
        Problem(where, f"a {type(value).__name__} is not a recipe value; expected text, a number, "
                "true/false, a list or a mapping (give paths as text)")
    )  # fmt: skip
    return None
