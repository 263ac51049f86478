"""The import rules of builder/, read from the source with ast (docs/architecture.md).

Every module sits on one floor; a module imports only from its own floor or lower ones, and
the import graph has no circle. Every import counts: at the top, inside functions, under
TYPE_CHECKING. A new module goes on a floor here, deliberately.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "builder"

# Bottom to top. A module may import its own floor and the floors below, never above.
FLOORS: dict[str, tuple[str, ...]] = {
    # nouns, parsing and validation: no engine, no network
    "model": (
        "builder.version", "builder.errors", "builder.labels", "builder.refs", "builder.fileio",
        "builder.changes", "builder.yamlsafe", "builder.pep508", "builder.spec", "builder.recipe", "builder.matrix",
        "builder.settings", "builder.probe", "builder.imagesetup", "builder.layersplit", "builder.tarstream",
        "builder.wheelhouse", "builder.sbom", "builder.lock", "builder.records",
        "builder.engine_api", "builder.progress", "builder.cleanup", "builder.platforms", "builder.platformdata",
        "builder.versionsets", "builder.projectfiles", "builder.pyproject_deps", "builder.requirements_txt",
        "builder.uvlock", "builder.projectinput", "builder.recipe_mapping", "builder.hostcache",
        "builder.contextdigest",
    ),
    # decisions from the model, still pure: the resolved spec, the Dockerfile, plans, manifests
    "decide": ("builder.projectmerge", "builder.resolve", "builder.render", "builder.variants", "builder.k8s"),
    # the outside world: the Docker engine, the host's GPUs, registries, package indexes
    "outside": (
        "builder.engine", "builder.gpu", "builder.smoke", "builder.base", "builder.normalize",
        "builder.imagediff", "builder.layers", "builder.credentials", "builder.registry",
        "builder.lockmaker", "builder.refresh", "builder.doctor", "builder.buildkit", "builder.toolwheels",
    ),
    # the library's jobs: build -> smoke -> tag -> push, many at once, pull, verify
    "library": (
        "builder.publish", "builder.pull", "builder.pipeline", "builder.fanout", "builder.verify", "builder.multiarch",
    ),
    # the Python API: `import builder` (the package) and what it offers, on the library's jobs
    "api": ("builder", "builder.api"),
    # commands: parse options, call the library, print, exit
    "commands": (
        "builder.commands", "builder.commands.output", "builder.commands.options", "builder.commands.choices",
        "builder.commands.share", "builder.commands.many", "builder.commands.repro",
        "builder.commands.init_cmd", "builder.commands.matrix_cmd", "builder.commands.init_from",
        "builder.commands.starter",
    ),
    "entry": ("builder.cli", "builder.__main__"),
}  # fmt: skip
FLOOR_OF = {module: i for i, modules in enumerate(FLOORS.values()) for module in modules}
# Third-party packages only one floor (or module) may use.
ONLY = {"docker": {"builder.engine"}, "click": set(FLOORS["commands"]) | set(FLOORS["entry"])}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Every module `name` imports (all of them: top level, functions, TYPE_CHECKING), as
    builder.* module names, or as top-level third-party names."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the package this module is in
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            # `from builder import pipeline` imports a module; `from builder import __version__` the package
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in known else target)
    return {m if m.startswith("builder") else m.split(".")[0] for m in found}


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports(name, path, set(mods)) for name, path in mods.items()}


def test_every_module_is_on_exactly_one_floor() -> None:
    listed = [m for floor in FLOORS.values() for m in floor]
    assert len(listed) == len(set(listed)), "a module is on two floors"
    mods = set(modules())
    assert sorted(mods - set(listed)) == [], "new modules: put them on a floor in FLOORS"
    assert sorted(set(listed) - mods) == [], "FLOORS names modules that do not exist"


def test_no_import_goes_up_a_floor() -> None:
    floor_names = list(FLOORS)
    upward = [
        f"{src} ({floor_names[FLOOR_OF[src]]}) imports {dst} ({floor_names[FLOOR_OF[dst]]})"
        for src, targets in graph().items()
        for dst in sorted(targets)
        if dst in FLOOR_OF and src in FLOOR_OF and FLOOR_OF[dst] > FLOOR_OF[src]
    ]
    assert upward == []


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module, or a module importing itself
    (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in edges:
                continue  # third-party
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in edges.get(v, ()):
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_no_import_circle() -> None:
    assert cycles(graph()) == []


def test_third_party_packages_stay_where_they_belong() -> None:
    wrong = [
        f"{src} imports {dst}"
        for src, targets in graph().items()
        for dst in sorted(targets)
        if dst in ONLY and src not in ONLY[dst]
    ]
    assert wrong == []


@pytest.mark.parametrize(
    ("edges", "expected"),
    [
        ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, [["a", "b", "c"]]),
        ({"a": {"a"}}, [["a"]]),
        ({"a": {"b", "x"}, "b": {"a"}, "c": {"a"}}, [["a", "b"]]),
    ],
)
def test_cycle_finder_finds_circles(edges: dict[str, set[str]], expected: list[list[str]]) -> None:
    assert cycles(edges) == expected


def test_imports_are_read_from_functions_and_type_checking_blocks(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from builder.engine import Engine\n"
        "def f():\n    from builder import pipeline, __version__\n    import docker.errors\n"
    )
    known = {"builder", "builder.engine", "builder.pipeline"}
    assert imports("builder.m", source, known) == {"typing", "builder.engine", "builder.pipeline", "builder", "docker"}
